// Private vector maths for the element-wise kernels (norm, activation, softmax, sampling): exp, log and erf
// on AVX-512 (16 lanes), AVX2+FMA (8 lanes) and NEON (4 lanes), plus masked loads for loop tails.
// Every function is static inline and compiled for one instruction set through a target attribute, so the
// package needs no global -m flags and runs on any x86-64; callers dispatch on pk_active_isa().
//
// Accuracy (measured by the tests against double-precision libm on dense grids):
//   exp  <= 2 ulp on [-87, 88], 0 below about -104, +inf above log(FLT_MAX), NaN stays NaN;
//   log  <= 2 ulp for positive normal inputs, log(0) = -inf, log(x<0) = NaN, log(+inf) = +inf;
//   erf  <= 1.2e-7 absolute everywhere (about 1 ulp near |erf| = 1).
#ifndef PAELLA_ELEMENTWISE_SIMD_H
#define PAELLA_ELEMENTWISE_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "paella_kernels.h"

#define PK_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define PK_AVX2 __attribute__((target("avx2,fma,f16c")))

// ---- Constants shared by every width ----------------------------------------------------------------------
// exp: e^x = 2^n * e^r with n = round(x * log2(e)) and r = x - n*ln2, |r| <= ln2/2. ln2 is split into a
// short high part (n*PK_LN2_HI is exact) and a correction so that r is accurate to a few bits beyond float.
#define PK_LOG2E 1.44269504088896341f
#define PK_LN2_HI 0.693359375f
#define PK_LN2_LO -2.12194440e-4f
// Below this e^x is under half the smallest subnormal (0); above it e^x overflows (+inf).
#define PK_EXP_MIN -104.0f
#define PK_EXP_MAX 88.72283935546875f
// e^r on |r| <= 0.347 by its Taylor series to r^7: the first omitted term r^8/8! is under 5.2e-9 relative.
#define PK_EXP_C2 (1.0f / 2.0f)
#define PK_EXP_C3 (1.0f / 6.0f)
#define PK_EXP_C4 (1.0f / 24.0f)
#define PK_EXP_C5 (1.0f / 120.0f)
#define PK_EXP_C6 (1.0f / 720.0f)
#define PK_EXP_C7 (1.0f / 5040.0f)

// log: x = m * 2^e with m in [sqrt(1/2), sqrt(2)) (AVX-512: [0.75, 1.5)); with f = m - 1 and s = f/(2+f),
// log(m) = 2 atanh(s) = 2s + s R, R = 2s^2/3 + 2s^4/5 + ... + 2s^10/11 (first omitted term below 1e-8
// relative). Since 2s = f - s f, log(m) = f - (f^2/2 - s (f^2/2 + R)) (the fdlibm arrangement): the exact f
// leads and the rounding of s only touches a correction a few times smaller.
#define PK_LN2_F 0.693147180559945309f
#define PK_LN2_F_LO 1.42860677e-06f   // ln2 - 0.693145751953125f
#define PK_LN2_F_HI 0.693145751953125f

// erf, two branches (coefficients fitted for this file by iteratively reweighted least squares against
// mpmath's erf at 40 digits, then rounded to float; float evaluation with FMA measured at <= 6.2e-8 absolute):
//  |x| < 0.875: erf(x) = x*(2/sqrt(pi)) + x^3 * P(x^2), with 2/sqrt(pi) split in hi + lo so that the final FMA
//               rounds only once;
//  |x| >= 0.875: erf(|x|) = 1 - exp(Q(|x| - 0.875)) where Q approximates log(erfc(t)) on t in [0.875, 4];
//               beyond 4, erf rounds to +-1 in float (erfc(4) = 1.5e-8), so t is clamped there.
#define PK_ERF_SPLIT 0.875f
#define PK_ERF_CLAMP 4.0f
#define PK_ERF_C0_HI 1.128379226e+00f
#define PK_ERF_C0_LO -5.863538277e-08f
#define PK_ERF_P0 -3.761263788e-01f
#define PK_ERF_P1 1.128378138e-01f
#define PK_ERF_P2 -2.686454915e-02f
#define PK_ERF_P3 5.214767996e-03f
#define PK_ERF_P4 -8.309381083e-04f
#define PK_ERF_P5 9.121737821e-05f
#define PK_ERF_Q0 -1.532824397e+00f
#define PK_ERF_Q1 -2.430219650e+00f
#define PK_ERF_Q2 -8.265409470e-01f
#define PK_ERF_Q3 -4.690277576e-02f
#define PK_ERF_Q4 1.135157701e-02f
#define PK_ERF_Q5 -2.209331607e-03f
#define PK_ERF_Q6 2.899526444e-04f
#define PK_ERF_Q7 -1.508555124e-05f
#define PK_ERF_Q8 -9.386582178e-07f

#define PK_SQRT1_2 0.707106781186547524f

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

// ---- AVX-512: 16 lanes ------------------------------------------------------------------------------------

/// Lanes [0, n) set, n <= 16.
static inline PK_AVX512 __mmask16 pk16_mask(size_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

static inline PK_AVX512 __m512 pk16_exp(__m512 x) {
    // Clamp so that n stays in [-151, 128]; scalef then produces the right subnormal, 0 or +inf.
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(PK_EXP_MIN)), _mm512_set1_ps(PK_EXP_MAX + 1.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(PK_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(PK_LN2_HI), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(PK_LN2_LO), r);
    __m512 p = _mm512_set1_ps(PK_EXP_C7);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PK_EXP_C6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PK_EXP_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PK_EXP_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PK_EXP_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PK_EXP_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512 y = _mm512_scalef_ps(p, n);  // p * 2^n with correct overflow and gradual underflow
    // NaN in, NaN out (the clamps above would have turned it into a number).
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
}

static inline PK_AVX512 __m512 pk16_log(__m512 x) {
    // getmant gives m in [0.75, 1.5); when it halved the [1, 2) mantissa (m < 1) the exponent grows by one.
    __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);
    __m512 e = _mm512_getexp_ps(x);
    e = _mm512_mask_add_ps(e, _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.0f), _CMP_LT_OQ), e, _mm512_set1_ps(1.0f));
    // s = (m-1)/(m+1) in [-1/7, 1/5]; s^2 <= 0.04 so the series below is still exact to 1e-8.
    __m512 f = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
    __m512 s = _mm512_div_ps(f, _mm512_add_ps(m, _mm512_set1_ps(1.0f)));
    __m512 z = _mm512_mul_ps(s, s);
    __m512 rr = _mm512_set1_ps(2.0f / 11.0f);
    rr = _mm512_fmadd_ps(rr, z, _mm512_set1_ps(2.0f / 9.0f));
    rr = _mm512_fmadd_ps(rr, z, _mm512_set1_ps(2.0f / 7.0f));
    rr = _mm512_fmadd_ps(rr, z, _mm512_set1_ps(2.0f / 5.0f));
    rr = _mm512_fmadd_ps(rr, z, _mm512_set1_ps(2.0f / 3.0f));
    rr = _mm512_mul_ps(rr, z);
    __m512 hf = _mm512_mul_ps(_mm512_mul_ps(f, f), _mm512_set1_ps(0.5f));
    __m512 logm = _mm512_sub_ps(f, _mm512_fnmadd_ps(s, _mm512_add_ps(hf, rr), hf));
    __m512 y = _mm512_fmadd_ps(e, _mm512_set1_ps(PK_LN2_F_HI), _mm512_fmadd_ps(e, _mm512_set1_ps(PK_LN2_F_LO), logm));
    // Special values: log(0) = -inf, log(+inf) = +inf, log(x < 0) = NaN, NaN stays NaN.
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_EQ_OQ), y, _mm512_set1_ps(-INFINITY));
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ), y, x);
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NGE_UQ), y, _mm512_set1_ps(NAN));
    return y;
}

static inline PK_AVX512 __m512 pk16_erf(__m512 x) {
    const __m512 signMask = _mm512_set1_ps(-0.0f);
    __m512 t = _mm512_andnot_ps(signMask, x);
    // Small branch: x*c0 + x^3 * P(x^2).
    __m512 s = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(PK_ERF_P5);
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(PK_ERF_P4));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(PK_ERF_P3));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(PK_ERF_P2));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(PK_ERF_P1));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(PK_ERF_P0));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(x, s), p, _mm512_mul_ps(x, _mm512_set1_ps(PK_ERF_C0_LO)));
    small = _mm512_fmadd_ps(x, _mm512_set1_ps(PK_ERF_C0_HI), small);
    // Large branch: 1 - exp(Q(t - 0.875)), sign copied from x.
    __m512 u = _mm512_sub_ps(_mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(PK_ERF_SPLIT)), _mm512_set1_ps(PK_ERF_CLAMP)),
                             _mm512_set1_ps(PK_ERF_SPLIT));
    __m512 q = _mm512_set1_ps(PK_ERF_Q8);
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(PK_ERF_Q7));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(PK_ERF_Q6));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(PK_ERF_Q5));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(PK_ERF_Q4));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(PK_ERF_Q3));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(PK_ERF_Q2));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(PK_ERF_Q1));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(PK_ERF_Q0));
    __m512 large = _mm512_sub_ps(_mm512_set1_ps(1.0f), pk16_exp(q));
    large = _mm512_or_ps(large, _mm512_and_ps(x, signMask));
    __mmask16 isSmall = _mm512_cmp_ps_mask(t, _mm512_set1_ps(PK_ERF_SPLIT), _CMP_LT_OQ);
    __m512 y = _mm512_mask_blend_ps(isSmall, large, small);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
}

/// Sum of the 16 lanes.
static inline PK_AVX512 float pk16_sum(__m512 v) { return _mm512_reduce_add_ps(v); }

// ---- AVX2 + FMA: 8 lanes ----------------------------------------------------------------------------------

/// Integer mask with lanes [0, n) set (all bits), n <= 8, for maskload/maskstore.
static inline PK_AVX2 __m256i pk8_mask(size_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// Loads lanes [0, n) and fills the others with `fill`.
static inline PK_AVX2 __m256 pk8_load(const float *p, size_t n, float fill) {
    if (n >= 8) return _mm256_loadu_ps(p);
    __m256i m = pk8_mask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}

static inline PK_AVX2 void pk8_store(float *p, __m256 v, size_t n) {
    if (n >= 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, pk8_mask(n), v);
}

static inline PK_AVX2 __m256 pk8_exp(__m256 x) {
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(PK_EXP_MIN)), _mm256_set1_ps(PK_EXP_MAX));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(PK_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(PK_LN2_HI), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(PK_LN2_LO), r);
    __m256 p = _mm256_set1_ps(PK_EXP_C7);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PK_EXP_C6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PK_EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PK_EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PK_EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PK_EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    // 2^n as the product of two normal powers of two 2^a * 2^b (a = n >> 1, b = n - a), so that n from
    // -150 to 128 neither overflows the exponent field nor needs subnormal bit patterns.
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i a = _mm256_srai_epi32(ni, 1);
    __m256i b = _mm256_sub_epi32(ni, a);
    __m256 pa = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(127)), 23));
    __m256 pb = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(127)), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, pa), pb);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(PK_EXP_MAX), _CMP_GT_OQ));
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

static inline PK_AVX2 __m256 pk8_log(__m256 x) {
    // Subnormals are scaled up by 2^23 first so that the exponent field is meaningful.
    __m256 isSub = _mm256_cmp_ps(x, _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
    __m256 xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(8388608.0f)), isSub);
    __m256 eBias = _mm256_blendv_ps(_mm256_set1_ps(0.0f), _mm256_set1_ps(23.0f), isSub);
    __m256i bits = _mm256_castps_si256(xs);
    // m = mantissa scaled into [sqrt(1/2), sqrt(2)): subtract the bit pattern of sqrt(1/2) before splitting.
    __m256i shifted = _mm256_sub_epi32(bits, _mm256_set1_epi32(0x3f3504f3));
    __m256i ei = _mm256_srai_epi32(shifted, 23);
    __m256i mbits = _mm256_add_epi32(_mm256_and_si256(shifted, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f3504f3));
    __m256 m = _mm256_castsi256_ps(mbits);
    __m256 e = _mm256_sub_ps(_mm256_cvtepi32_ps(ei), eBias);
    __m256 f = _mm256_sub_ps(m, _mm256_set1_ps(1.0f));
    __m256 s = _mm256_div_ps(f, _mm256_add_ps(m, _mm256_set1_ps(1.0f)));
    __m256 z = _mm256_mul_ps(s, s);
    __m256 rr = _mm256_set1_ps(2.0f / 11.0f);
    rr = _mm256_fmadd_ps(rr, z, _mm256_set1_ps(2.0f / 9.0f));
    rr = _mm256_fmadd_ps(rr, z, _mm256_set1_ps(2.0f / 7.0f));
    rr = _mm256_fmadd_ps(rr, z, _mm256_set1_ps(2.0f / 5.0f));
    rr = _mm256_fmadd_ps(rr, z, _mm256_set1_ps(2.0f / 3.0f));
    rr = _mm256_mul_ps(rr, z);
    __m256 hf = _mm256_mul_ps(_mm256_mul_ps(f, f), _mm256_set1_ps(0.5f));
    __m256 logm = _mm256_sub_ps(f, _mm256_fnmadd_ps(s, _mm256_add_ps(hf, rr), hf));
    __m256 y = _mm256_fmadd_ps(e, _mm256_set1_ps(PK_LN2_F_HI), _mm256_fmadd_ps(e, _mm256_set1_ps(PK_LN2_F_LO), logm));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(-INFINITY), _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_EQ_OQ));
    y = _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, _mm256_set1_ps(INFINITY), _CMP_EQ_OQ));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(NAN), _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NGE_UQ));
    return y;
}

static inline PK_AVX2 __m256 pk8_erf(__m256 x) {
    const __m256 signMask = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_andnot_ps(signMask, x);
    __m256 s = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(PK_ERF_P5);
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(PK_ERF_P4));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(PK_ERF_P3));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(PK_ERF_P2));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(PK_ERF_P1));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(PK_ERF_P0));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(x, s), p, _mm256_mul_ps(x, _mm256_set1_ps(PK_ERF_C0_LO)));
    small = _mm256_fmadd_ps(x, _mm256_set1_ps(PK_ERF_C0_HI), small);
    __m256 u = _mm256_sub_ps(_mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(PK_ERF_SPLIT)), _mm256_set1_ps(PK_ERF_CLAMP)),
                             _mm256_set1_ps(PK_ERF_SPLIT));
    __m256 q = _mm256_set1_ps(PK_ERF_Q8);
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(PK_ERF_Q7));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(PK_ERF_Q6));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(PK_ERF_Q5));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(PK_ERF_Q4));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(PK_ERF_Q3));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(PK_ERF_Q2));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(PK_ERF_Q1));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(PK_ERF_Q0));
    __m256 large = _mm256_sub_ps(_mm256_set1_ps(1.0f), pk8_exp(q));
    large = _mm256_or_ps(large, _mm256_and_ps(x, signMask));
    __m256 y = _mm256_blendv_ps(large, small, _mm256_cmp_ps(t, _mm256_set1_ps(PK_ERF_SPLIT), _CMP_LT_OQ));
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

static inline PK_AVX2 float pk8_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline PK_AVX2 float pk8_max(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
// x / (1 + e^-x): for x -> -inf, e^-x = +inf and the quotient is -0, as in PyTorch.
static inline PK_AVX512 __m512 silu16(__m512 x) {
    __m512 e = pk16_exp(_mm512_sub_ps(_mm512_setzero_ps(), x));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}
static inline PK_AVX2 __m256 silu8(__m256 x) {
    __m256 e = pk8_exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

#endif  // x86

#if defined(__aarch64__)
#include <arm_neon.h>

// ---- NEON: 4 lanes ----------------------------------------------------------------------------------------

static inline float32x4_t pk4_exp(float32x4_t x) {
    float32x4_t xc = vminq_f32(vmaxq_f32(x, vdupq_n_f32(PK_EXP_MIN)), vdupq_n_f32(PK_EXP_MAX));
    float32x4_t n = vrndnq_f32(vmulq_f32(xc, vdupq_n_f32(PK_LOG2E)));
    float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(PK_LN2_HI));
    r = vfmsq_f32(r, n, vdupq_n_f32(PK_LN2_LO));
    float32x4_t p = vdupq_n_f32(PK_EXP_C7);
    p = vfmaq_f32(vdupq_n_f32(PK_EXP_C6), p, r);
    p = vfmaq_f32(vdupq_n_f32(PK_EXP_C5), p, r);
    p = vfmaq_f32(vdupq_n_f32(PK_EXP_C4), p, r);
    p = vfmaq_f32(vdupq_n_f32(PK_EXP_C3), p, r);
    p = vfmaq_f32(vdupq_n_f32(PK_EXP_C2), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    int32x4_t ni = vcvtq_s32_f32(n);
    int32x4_t a = vshrq_n_s32(ni, 1);
    int32x4_t b = vsubq_s32(ni, a);
    float32x4_t pa = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(a, vdupq_n_s32(127)), 23));
    float32x4_t pb = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(b, vdupq_n_s32(127)), 23));
    float32x4_t y = vmulq_f32(vmulq_f32(p, pa), pb);
    y = vbslq_f32(vcgtq_f32(x, vdupq_n_f32(PK_EXP_MAX)), vdupq_n_f32(INFINITY), y);
    return vbslq_f32(vceqq_f32(x, x), y, x);
}

static inline float32x4_t pk4_erf(float32x4_t x) {
    float32x4_t t = vabsq_f32(x);
    float32x4_t s = vmulq_f32(x, x);
    float32x4_t p = vdupq_n_f32(PK_ERF_P5);
    p = vfmaq_f32(vdupq_n_f32(PK_ERF_P4), p, s);
    p = vfmaq_f32(vdupq_n_f32(PK_ERF_P3), p, s);
    p = vfmaq_f32(vdupq_n_f32(PK_ERF_P2), p, s);
    p = vfmaq_f32(vdupq_n_f32(PK_ERF_P1), p, s);
    p = vfmaq_f32(vdupq_n_f32(PK_ERF_P0), p, s);
    float32x4_t small = vfmaq_f32(vmulq_f32(x, vdupq_n_f32(PK_ERF_C0_LO)), vmulq_f32(x, s), p);
    small = vfmaq_f32(small, x, vdupq_n_f32(PK_ERF_C0_HI));
    float32x4_t u = vsubq_f32(vminq_f32(vmaxq_f32(t, vdupq_n_f32(PK_ERF_SPLIT)), vdupq_n_f32(PK_ERF_CLAMP)),
                              vdupq_n_f32(PK_ERF_SPLIT));
    float32x4_t q = vdupq_n_f32(PK_ERF_Q8);
    q = vfmaq_f32(vdupq_n_f32(PK_ERF_Q7), q, u);
    q = vfmaq_f32(vdupq_n_f32(PK_ERF_Q6), q, u);
    q = vfmaq_f32(vdupq_n_f32(PK_ERF_Q5), q, u);
    q = vfmaq_f32(vdupq_n_f32(PK_ERF_Q4), q, u);
    q = vfmaq_f32(vdupq_n_f32(PK_ERF_Q3), q, u);
    q = vfmaq_f32(vdupq_n_f32(PK_ERF_Q2), q, u);
    q = vfmaq_f32(vdupq_n_f32(PK_ERF_Q1), q, u);
    q = vfmaq_f32(vdupq_n_f32(PK_ERF_Q0), q, u);
    float32x4_t large = vsubq_f32(vdupq_n_f32(1.0f), pk4_exp(q));
    // copy the sign of x onto large
    uint32x4_t signBit = vdupq_n_u32(0x80000000u);
    large = vbslq_f32(signBit, x, large);
    float32x4_t y = vbslq_f32(vcltq_f32(t, vdupq_n_f32(PK_ERF_SPLIT)), small, large);
    return vbslq_f32(vceqq_f32(x, x), y, x);
}
static inline float32x4_t silu4(float32x4_t x) {
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), pk4_exp(vnegq_f32(x))));
}
#endif  // aarch64

// ---- Run-time dispatch: calls the fast version for the active ISA and returns ---------------------------
#if defined(__x86_64__) || defined(__i386__)
#define PK_DISPATCH_X86(avx512, avx2, args)                                                                      \
    switch (pk_active_isa()) {                                                                                  \
    case PK_ISA_AVX512: avx512 args; return;                                                                    \
    case PK_ISA_AVX2: avx2 args; return;                                                                        \
    default: break;                                                                                             \
    }
#else
#define PK_DISPATCH_X86(avx512, avx2, args)
#endif
#if defined(__aarch64__)
#define PK_DISPATCH_NEON(neon, args) if (pk_active_isa() == PK_ISA_NEON) { neon args; return; }
#else
#define PK_DISPATCH_NEON(neon, args)
#endif


#endif
