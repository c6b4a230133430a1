// Bulk conversions between the storage types of weights (bfloat16, IEEE half) and float32. Every result is
// exact or correctly rounded (to nearest, ties to even), so the fast versions equal the references bit for bit.
#include "paella_elementwise.h"
#include "elementwise_simd.h"
#include "bf16_round.h"
#include <string.h>

static inline float bits_to_float(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

// ---- References ------------------------------------------------------------------------------------------------

void pk_bf16_to_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bits_to_float((uint32_t)src[i] << 16);
}

void pk_f32_to_bf16_ref(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = pk_bf16_round_bits(src[i]);
}

void pk_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t h = src[i];
        uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
        if (exp == 0) {  // zero or subnormal: mant * 2^-24
            float v = (float)mant * 0x1p-24f;
            dst[i] = bits_to_float(float_to_bits(v) | sign);
        } else if (exp == 31) {  // inf, or NaN made quiet as the hardware conversions do
            dst[i] = bits_to_float(sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0u));
        } else {  // rebias the exponent from 15 to 127
            dst[i] = bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
        }
    }
}

void pk_f32_to_f16_ref(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t b = float_to_bits(src[i]);
        uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
        uint32_t a = b & 0x7fffffffu;
        if (a > 0x7f800000u) { dst[i] = sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu); continue; }  // NaN
        if (a >= 0x477ff000u) { dst[i] = sign | 0x7c00u; continue; }  // >= 65520 rounds to infinity
        if (a < 0x38800000u) {
            // Below 2^-14 the half is subnormal: count units of 2^-24, rounded to nearest even by rintf
            // (the scaling by 2^24 is exact). 1024 units is the smallest normal, encoded the same way.
            dst[i] = sign | (uint16_t)rintf(bits_to_float(a) * 0x1p24f);
            continue;
        }
        uint32_t r = a + 0xfffu + ((a >> 13) & 1u);  // round the 13 dropped bits to nearest even
        dst[i] = sign | (uint16_t)((r - (112u << 23)) >> 13);
    }
}

// ---- Fast versions (whole vectors; the last few elements go through the reference) -----------------------------

#if defined(__x86_64__) || defined(__i386__)
static PK_AVX512 void bf16_to_f32_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    pk_bf16_to_f32_ref(src + i, dst + i, n - i);
}

static PK_AVX2 void bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    pk_bf16_to_f32_ref(src + i, dst + i, n - i);
}

static PK_AVX512 void f16_to_f32_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    pk_f16_to_f32_ref(src + i, dst + i, n - i);
}

static PK_AVX2 void f16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    pk_f16_to_f32_ref(src + i, dst + i, n - i);
}

static PK_AVX512 void f32_to_bf16_avx512(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(src + i);
        __m512i b = _mm512_castps_si512(v);
        __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), one);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(bias, lsb)), 16);
        __m512i nan = _mm512_or_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x40));
        r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), r, nan);
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(r));
    }
    pk_f32_to_bf16_ref(src + i, dst + i, n - i);
}

static PK_AVX2 void f32_to_bf16_avx2(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        __m256i b = _mm256_castps_si256(v);
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), one);
        __m256i r = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(bias, lsb)), 16);
        __m256i nan = _mm256_or_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(0x40));
        r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(nan),
                                                 _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
        // Pack the eight 32-bit lanes (all <= 0xffff) to 16 bits; packus works per 128-bit half.
        __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
        _mm_storeu_si128((__m128i *)(dst + i), _mm_packus_epi32(lo, hi));
    }
    pk_f32_to_bf16_ref(src + i, dst + i, n - i);
}

static PK_AVX512 void f32_to_f16_avx512(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    pk_f32_to_f16_ref(src + i, dst + i, n - i);
}

static PK_AVX2 void f32_to_f16_avx2(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    pk_f32_to_f16_ref(src + i, dst + i, n - i);
}
#endif

#if defined(__aarch64__)
static void f16_to_f32_neon(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    pk_f16_to_f32_ref(src + i, dst + i, n - i);
}
static void f32_to_f16_neon(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
    pk_f32_to_f16_ref(src + i, dst + i, n - i);
}
#endif

void pk_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    PK_DISPATCH_X86(bf16_to_f32_avx512, bf16_to_f32_avx2, (src, dst, n))
    pk_bf16_to_f32_ref(src, dst, n);  // a shift per element: the compiler vectorizes it on its own
}

void pk_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    PK_DISPATCH_X86(f16_to_f32_avx512, f16_to_f32_avx2, (src, dst, n))
    PK_DISPATCH_NEON(f16_to_f32_neon, (src, dst, n))
    pk_f16_to_f32_ref(src, dst, n);
}

void pk_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    PK_DISPATCH_X86(f32_to_bf16_avx512, f32_to_bf16_avx2, (src, dst, n))
    pk_f32_to_bf16_ref(src, dst, n);
}

void pk_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    PK_DISPATCH_X86(f32_to_f16_avx512, f32_to_f16_avx2, (src, dst, n))
    PK_DISPATCH_NEON(f32_to_f16_neon, (src, dst, n))
    pk_f32_to_f16_ref(src, dst, n);
}
