// Element-wise maths and activations: exp, log, erf, GELU (erf form), SiLU, and their backward passes.
#include "paella_elementwise.h"
#include "paella_kernels.h"
#include "elementwise_simd.h"

// ---- References: libm, one element at a time ----------------------------------------------------------------

void pk_exp_ref(const float *x, float *y, size_t n) { for (size_t i = 0; i < n; i++) y[i] = expf(x[i]); }
void pk_log_ref(const float *x, float *y, size_t n) { for (size_t i = 0; i < n; i++) y[i] = logf(x[i]); }
void pk_erf_ref(const float *x, float *y, size_t n) { for (size_t i = 0; i < n; i++) y[i] = erff(x[i]); }

void pk_gelu_ref(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * PK_SQRT1_2));
}

void pk_silu_ref(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

// ---- Backward passes ---------------------------------------------------------------------------------------------

void pk_gelu_backward_ref(const float *x, const float *dy, float *dx, size_t n) {
    const float invSqrt2Pi = 0.398942280401432678f;  // 1/sqrt(2 pi), the normal density's constant
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erff(v * PK_SQRT1_2));
        float pdf = invSqrt2Pi * expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

void pk_silu_backward(const float *x, const float *dy, float *dx, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

// ---- Fast versions -------------------------------------------------------------------------------------------
// One template per width: a full-vector loop and a masked tail, with `op` applied to each vector.

#if defined(__x86_64__) || defined(__i386__)
#define PK_MAP16(name, op)                                                                                      \
    static PK_AVX512 void name(const float *x, float *y, size_t n) {                                            \
        size_t i = 0;                                                                                           \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, op(_mm512_loadu_ps(x + i)));                       \
        if (i < n) {                                                                                            \
            __mmask16 m = pk16_mask(n - i);                                                                     \
            _mm512_mask_storeu_ps(y + i, m, op(_mm512_maskz_loadu_ps(m, x + i)));                               \
        }                                                                                                       \
    }
#define PK_MAP8(name, op)                                                                                       \
    static PK_AVX2 void name(const float *x, float *y, size_t n) {                                              \
        size_t i = 0;                                                                                           \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, op(_mm256_loadu_ps(x + i)));                         \
        if (i < n) pk8_store(y + i, op(pk8_load(x + i, n - i, 0.0f)), n - i);                                   \
    }

static inline PK_AVX512 __m512 gelu16(__m512 x) {
    __m512 e = pk16_erf(_mm512_mul_ps(x, _mm512_set1_ps(PK_SQRT1_2)));
    return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}
static inline PK_AVX2 __m256 gelu8(__m256 x) {
    __m256 e = pk8_erf(_mm256_mul_ps(x, _mm256_set1_ps(PK_SQRT1_2)));
    return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
PK_MAP16(exp_avx512, pk16_exp)
PK_MAP8(exp_avx2, pk8_exp)
PK_MAP16(log_avx512, pk16_log)
PK_MAP8(log_avx2, pk8_log)
PK_MAP16(erf_avx512, pk16_erf)
PK_MAP8(erf_avx2, pk8_erf)
PK_MAP16(gelu_avx512, gelu16)
PK_MAP8(gelu_avx2, gelu8)
PK_MAP16(silu_avx512, silu16)
PK_MAP8(silu_avx2, silu8)

// GELU backward, dy * (Phi(x) + x phi(x)), with the vector erf and exp (perf: libm's erff and expf per element made
// the scalar loop 8% of a denoiser training step).
#define PK_INV_SQRT_2PI 0.398942280401432678f
static inline PK_AVX512 __m512 gelu_grad16(__m512 x, __m512 dy) {
    __m512 cdf = _mm512_mul_ps(_mm512_set1_ps(0.5f),
                               _mm512_add_ps(_mm512_set1_ps(1.0f), pk16_erf(_mm512_mul_ps(x, _mm512_set1_ps(PK_SQRT1_2)))));
    __m512 pdf = _mm512_mul_ps(_mm512_set1_ps(PK_INV_SQRT_2PI),
                               pk16_exp(_mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(x, x))));
    return _mm512_mul_ps(dy, _mm512_add_ps(cdf, _mm512_mul_ps(x, pdf)));
}
static PK_AVX512 void gelu_backward_avx512(const float *x, const float *dy, float *dx, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dx + i, gelu_grad16(_mm512_loadu_ps(x + i), _mm512_loadu_ps(dy + i)));
    if (i < n) {
        __mmask16 m = pk16_mask(n - i);
        _mm512_mask_storeu_ps(dx + i, m, gelu_grad16(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, dy + i)));
    }
}
static inline PK_AVX2 __m256 gelu_grad8(__m256 x, __m256 dy) {
    __m256 cdf = _mm256_mul_ps(_mm256_set1_ps(0.5f),
                               _mm256_add_ps(_mm256_set1_ps(1.0f), pk8_erf(_mm256_mul_ps(x, _mm256_set1_ps(PK_SQRT1_2)))));
    __m256 pdf = _mm256_mul_ps(_mm256_set1_ps(PK_INV_SQRT_2PI),
                               pk8_exp(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(x, x))));
    return _mm256_mul_ps(dy, _mm256_add_ps(cdf, _mm256_mul_ps(x, pdf)));
}
static PK_AVX2 void gelu_backward_avx2(const float *x, const float *dy, float *dx, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dx + i, gelu_grad8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(dy + i)));
    if (i < n) pk8_store(dx + i, gelu_grad8(pk8_load(x + i, n - i, 0.0f), pk8_load(dy + i, n - i, 0.0f)), n - i);
}
#endif

#if defined(__aarch64__)
#define PK_MAP4(name, op, fallback)                                                                             \
    static void name(const float *x, float *y, size_t n) {                                                      \
        size_t i = 0;                                                                                           \
        for (; i + 4 <= n; i += 4) vst1q_f32(y + i, op(vld1q_f32(x + i)));                                      \
        if (i < n) fallback(x + i, y + i, n - i);                                                               \
    }
static inline float32x4_t gelu4(float32x4_t x) {
    float32x4_t e = pk4_erf(vmulq_f32(x, vdupq_n_f32(PK_SQRT1_2)));
    return vmulq_f32(vmulq_f32(x, vdupq_n_f32(0.5f)), vaddq_f32(vdupq_n_f32(1.0f), e));
}
// The last 1-3 elements go through a padded vector so they get the same maths as the rest.
#define PK_TAIL4(name, op)                                                                                      \
    static void name(const float *x, float *y, size_t n) {                                                      \
        float buf[4] = {0, 0, 0, 0};                                                                            \
        for (size_t i = 0; i < n; i++) buf[i] = x[i];                                                           \
        vst1q_f32(buf, op(vld1q_f32(buf)));                                                                     \
        for (size_t i = 0; i < n; i++) y[i] = buf[i];                                                           \
    }
PK_TAIL4(exp_tail4, pk4_exp)
PK_TAIL4(erf_tail4, pk4_erf)
PK_TAIL4(gelu_tail4, gelu4)
PK_TAIL4(silu_tail4, silu4)
PK_MAP4(exp_neon, pk4_exp, exp_tail4)
PK_MAP4(erf_neon, pk4_erf, erf_tail4)
PK_MAP4(gelu_neon, gelu4, gelu_tail4)
PK_MAP4(silu_neon, silu4, silu_tail4)
#endif

// ---- Dispatch --------------------------------------------------------------------------------------------------

void pk_exp(const float *x, float *y, size_t n) {
    PK_DISPATCH_X86(exp_avx512, exp_avx2, (x, y, n))
    PK_DISPATCH_NEON(exp_neon, (x, y, n))
    pk_exp_ref(x, y, n);
}

void pk_log(const float *x, float *y, size_t n) {
    PK_DISPATCH_X86(log_avx512, log_avx2, (x, y, n))
    pk_log_ref(x, y, n);
}

void pk_erf(const float *x, float *y, size_t n) {
    PK_DISPATCH_X86(erf_avx512, erf_avx2, (x, y, n))
    PK_DISPATCH_NEON(erf_neon, (x, y, n))
    pk_erf_ref(x, y, n);
}

void pk_gelu(const float *x, float *y, size_t n) {
    PK_DISPATCH_X86(gelu_avx512, gelu_avx2, (x, y, n))
    PK_DISPATCH_NEON(gelu_neon, (x, y, n))
    pk_gelu_ref(x, y, n);
}

void pk_silu(const float *x, float *y, size_t n) {
    PK_DISPATCH_X86(silu_avx512, silu_avx2, (x, y, n))
    PK_DISPATCH_NEON(silu_neon, (x, y, n))
    pk_silu_ref(x, y, n);
}

void pk_gelu_backward(const float *x, const float *dy, float *dx, size_t n) {
    PK_DISPATCH_X86(gelu_backward_avx512, gelu_backward_avx2, (x, dy, dx, n))
    pk_gelu_backward_ref(x, dy, dx, n);
}
