// Layer norm over the last dimension and group norm over channels-last [batch, hw, c], with the statistics
// the backward pass needs. Both use two passes (mean, then the mean of squared deviations), which stays
// accurate when the mean is large compared with the spread, unlike E[x^2] - E[x]^2.
#include "paella_elementwise.h"
#include "elementwise_simd.h"
#include <stdlib.h>

// ---- Layer norm: references ----------------------------------------------------------------------------------

void pk_layer_norm_ref(const float *x, float *y, size_t rows, size_t n, const float *weight, const float *bias,
                       float eps, float *mean, float *rstd) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum = 0;
        for (size_t j = 0; j < n; j++) sum += xr[j];
        double mu = sum / (double)n;
        double sq = 0;
        for (size_t j = 0; j < n; j++) sq += ((double)xr[j] - mu) * ((double)xr[j] - mu);
        double rs = 1.0 / sqrt(sq / (double)n + (double)eps);
        if (mean) mean[r] = (float)mu;
        if (rstd) rstd[r] = (float)rs;
        for (size_t j = 0; j < n; j++) {
            double v = ((double)xr[j] - mu) * rs;
            if (weight) v *= weight[j];
            if (bias) v += bias[j];
            yr[j] = (float)v;
        }
    }
}

void pk_layer_norm_backward(const float *dy, const float *x, const float *mean, const float *rstd,
                            const float *weight, size_t rows, size_t n, float *dx, float *dweight, float *dbias) {
    for (size_t r = 0; r < rows; r++) {
        const float *g = dy + r * n, *xr = x + r * n;
        float *d = dx + r * n;
        float mu = mean[r], rs = rstd[r];
        // The normalized input xhat has zero mean and unit variance, so the gradient through the statistics
        // removes the mean of g and the component of g along xhat.
        double sumG = 0, sumGX = 0;
        for (size_t j = 0; j < n; j++) {
            float gj = weight ? g[j] * weight[j] : g[j];
            float xhat = (xr[j] - mu) * rs;
            sumG += gj;
            sumGX += (double)gj * xhat;
        }
        float meanG = (float)(sumG / (double)n), meanGX = (float)(sumGX / (double)n);
        for (size_t j = 0; j < n; j++) {
            float gy = g[j];
            float xhat = (xr[j] - mu) * rs;
            if (dweight) dweight[j] += gy * xhat;
            if (dbias) dbias[j] += gy;
            float gj = weight ? gy * weight[j] : gy;
            d[j] = rs * (gj - meanG - xhat * meanGX);
        }
    }
}

// ---- Layer norm: fast versions (float, several accumulators per row) -------------------------------------------

#if defined(__x86_64__) || defined(__i386__)
static PK_AVX512 void layer_norm_avx512(const float *x, float *y, size_t rows, size_t n, const float *weight,
                                        const float *bias, float eps, float *mean, float *rstd) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        size_t j = 0;
        for (; j + 32 <= n; j += 32) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(xr + j));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(xr + j + 16));
        }
        for (; j < n; j += 16) a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(pk16_mask(n - j), xr + j));
        float mu = pk16_sum(_mm512_add_ps(a0, a1)) / (float)n;
        __m512 vmu = _mm512_set1_ps(mu);
        a0 = _mm512_setzero_ps();
        a1 = _mm512_setzero_ps();
        for (j = 0; j + 32 <= n; j += 32) {
            __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(xr + j), vmu);
            __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(xr + j + 16), vmu);
            a0 = _mm512_fmadd_ps(d0, d0, a0);
            a1 = _mm512_fmadd_ps(d1, d1, a1);
        }
        for (; j < n; j += 16) {
            __mmask16 m = pk16_mask(n - j);
            __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xr + j), vmu);
            a0 = _mm512_fmadd_ps(d, d, a0);
        }
        float var = pk16_sum(_mm512_add_ps(a0, a1)) / (float)n;
        float rs = 1.0f / sqrtf(var + eps);
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
        __m512 vrs = _mm512_set1_ps(rs);
        for (j = 0; j < n; j += 16) {
            __mmask16 m = pk16_mask(n - j);
            __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + j), vmu), vrs);
            if (weight && bias) v = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(m, weight + j), _mm512_maskz_loadu_ps(m, bias + j));
            else if (weight) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, weight + j));
            else if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + j));
            _mm512_mask_storeu_ps(yr + j, m, v);
        }
    }
}

static PK_AVX2 void layer_norm_avx2(const float *x, float *y, size_t rows, size_t n, const float *weight,
                                    const float *bias, float eps, float *mean, float *rstd) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        size_t j = 0;
        for (; j + 16 <= n; j += 16) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(xr + j));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(xr + j + 8));
        }
        for (; j < n; j += 8) a0 = _mm256_add_ps(a0, pk8_load(xr + j, n - j, 0.0f));
        float mu = pk8_sum(_mm256_add_ps(a0, a1)) / (float)n;
        __m256 vmu = _mm256_set1_ps(mu);
        a0 = _mm256_setzero_ps();
        a1 = _mm256_setzero_ps();
        for (j = 0; j + 16 <= n; j += 16) {
            __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + j), vmu);
            __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(xr + j + 8), vmu);
            a0 = _mm256_fmadd_ps(d0, d0, a0);
            a1 = _mm256_fmadd_ps(d1, d1, a1);
        }
        for (; j < n; j += 8) {
            // padding lanes load mu itself, so their deviation is 0
            __m256 d = _mm256_sub_ps(pk8_load(xr + j, n - j, mu), vmu);
            a0 = _mm256_fmadd_ps(d, d, a0);
        }
        float var = pk8_sum(_mm256_add_ps(a0, a1)) / (float)n;
        float rs = 1.0f / sqrtf(var + eps);
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
        __m256 vrs = _mm256_set1_ps(rs);
        for (j = 0; j < n; j += 8) {
            size_t k = n - j;
            __m256 v = _mm256_mul_ps(_mm256_sub_ps(pk8_load(xr + j, k, 0.0f), vmu), vrs);
            if (weight) v = _mm256_mul_ps(v, pk8_load(weight + j, k, 0.0f));
            if (bias) v = _mm256_add_ps(v, pk8_load(bias + j, k, 0.0f));
            pk8_store(yr + j, v, k);
        }
    }
}
#endif

#if defined(__aarch64__)
static void layer_norm_neon(const float *x, float *y, size_t rows, size_t n, const float *weight,
                            const float *bias, float eps, float *mean, float *rstd) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0);
        size_t j = 0;
        for (; j + 8 <= n; j += 8) {
            a0 = vaddq_f32(a0, vld1q_f32(xr + j));
            a1 = vaddq_f32(a1, vld1q_f32(xr + j + 4));
        }
        float sum = vaddvq_f32(vaddq_f32(a0, a1));
        for (; j < n; j++) sum += xr[j];
        float mu = sum / (float)n;
        float32x4_t vmu = vdupq_n_f32(mu);
        a0 = vdupq_n_f32(0);
        a1 = vdupq_n_f32(0);
        for (j = 0; j + 8 <= n; j += 8) {
            float32x4_t d0 = vsubq_f32(vld1q_f32(xr + j), vmu), d1 = vsubq_f32(vld1q_f32(xr + j + 4), vmu);
            a0 = vfmaq_f32(a0, d0, d0);
            a1 = vfmaq_f32(a1, d1, d1);
        }
        float sq = vaddvq_f32(vaddq_f32(a0, a1));
        for (; j < n; j++) sq += (xr[j] - mu) * (xr[j] - mu);
        float rs = 1.0f / sqrtf(sq / (float)n + eps);
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
        for (j = 0; j < n; j++) {
            float v = (xr[j] - mu) * rs;
            if (weight) v *= weight[j];
            if (bias) v += bias[j];
            yr[j] = v;
        }
    }
}
#endif

void pk_layer_norm(const float *x, float *y, size_t rows, size_t n, const float *weight, const float *bias,
                   float eps, float *mean, float *rstd) {
    if (n == 0) return;
    PK_DISPATCH_X86(layer_norm_avx512, layer_norm_avx2, (x, y, rows, n, weight, bias, eps, mean, rstd))
    PK_DISPATCH_NEON(layer_norm_neon, (x, y, rows, n, weight, bias, eps, mean, rstd))
    pk_layer_norm_ref(x, y, rows, n, weight, bias, eps, mean, rstd);
}

// ---- Group norm building blocks ---------------------------------------------------------------------------------
// The per-channel loops are independent across channels, so the compiler vectorizes them along c without
// reassociating any sum; the ISA versions are the same loop compiled for wider vectors.

static inline __attribute__((always_inline)) void channel_sums_body(const float *restrict x, size_t rows, size_t c,
                                                                    double *restrict sums) {
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < c; j++) sums[j] += (double)x[r * c + j];
}

static inline __attribute__((always_inline)) void centered_squares_body(const float *restrict x, size_t rows,
                                                                        size_t c, const float *restrict center,
                                                                        double *restrict sums) {
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < c; j++) {
            double d = (double)x[r * c + j] - (double)center[j];
            sums[j] += d * d;
        }
}

void pk_channel_sums_ref(const float *x, size_t rows, size_t c, double *sums) {
    for (size_t j = 0; j < c; j++)
        for (size_t r = 0; r < rows; r++) sums[j] += (double)x[r * c + j];
}

void pk_channel_centered_squares_ref(const float *x, size_t rows, size_t c, const float *center, double *sums) {
    for (size_t j = 0; j < c; j++)
        for (size_t r = 0; r < rows; r++) {
            double d = (double)x[r * c + j] - (double)center[j];
            sums[j] += d * d;
        }
}

void pk_channel_affine_ref(const float *x, float *y, size_t rows, size_t c, const float *scale, const float *shift,
                           int silu) {
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < c; j++) {
            float v = x[r * c + j] * scale[j] + shift[j];
            y[r * c + j] = silu ? v / (1.0f + expf(-v)) : v;
        }
}

#if defined(__x86_64__) || defined(__i386__)
static PK_AVX512 void channel_sums_avx512(const float *x, size_t rows, size_t c, double *sums) {
    channel_sums_body(x, rows, c, sums);
}
static PK_AVX2 void channel_sums_avx2(const float *x, size_t rows, size_t c, double *sums) {
    channel_sums_body(x, rows, c, sums);
}
static PK_AVX512 void centered_squares_avx512(const float *x, size_t rows, size_t c, const float *center,
                                              double *sums) {
    centered_squares_body(x, rows, c, center, sums);
}
static PK_AVX2 void centered_squares_avx2(const float *x, size_t rows, size_t c, const float *center, double *sums) {
    centered_squares_body(x, rows, c, center, sums);
}

static PK_AVX512 void channel_affine_avx512(const float *x, float *y, size_t rows, size_t c, const float *scale,
                                            const float *shift, int silu) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        for (size_t j = 0; j < c; j += 16) {
            __mmask16 m = pk16_mask(c - j);
            __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr + j), _mm512_maskz_loadu_ps(m, scale + j),
                                       _mm512_maskz_loadu_ps(m, shift + j));
            if (silu) v = silu16(v);
            _mm512_mask_storeu_ps(yr + j, m, v);
        }
    }
}

static PK_AVX2 void channel_affine_avx2(const float *x, float *y, size_t rows, size_t c, const float *scale,
                                        const float *shift, int silu) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        for (size_t j = 0; j < c; j += 8) {
            size_t k = c - j;
            __m256 v = _mm256_fmadd_ps(pk8_load(xr + j, k, 0.0f), pk8_load(scale + j, k, 0.0f),
                                       pk8_load(shift + j, k, 0.0f));
            if (silu) v = silu8(v);
            pk8_store(yr + j, v, k);
        }
    }
}
#endif

#if defined(__aarch64__)
static void channel_affine_neon(const float *x, float *y, size_t rows, size_t c, const float *scale,
                                const float *shift, int silu) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        size_t j = 0;
        for (; j + 4 <= c; j += 4) {
            float32x4_t v = vfmaq_f32(vld1q_f32(shift + j), vld1q_f32(xr + j), vld1q_f32(scale + j));
            if (silu) v = silu4(v);
            vst1q_f32(yr + j, v);
        }
        if (j < c) pk_channel_affine_ref(xr + j, yr + j, 1, c - j, scale + j, shift + j, silu);
    }
}
#endif

void pk_channel_sums(const float *x, size_t rows, size_t c, double *sums) {
    PK_DISPATCH_X86(channel_sums_avx512, channel_sums_avx2, (x, rows, c, sums))
    channel_sums_body(x, rows, c, sums);
}

void pk_channel_centered_squares(const float *x, size_t rows, size_t c, const float *center, double *sums) {
    PK_DISPATCH_X86(centered_squares_avx512, centered_squares_avx2, (x, rows, c, center, sums))
    centered_squares_body(x, rows, c, center, sums);
}

void pk_channel_affine(const float *x, float *y, size_t rows, size_t c, const float *scale, const float *shift,
                       int silu) {
    PK_DISPATCH_X86(channel_affine_avx512, channel_affine_avx2, (x, y, rows, c, scale, shift, silu))
    PK_DISPATCH_NEON(channel_affine_neon, (x, y, rows, c, scale, shift, silu))
    pk_channel_affine_ref(x, y, rows, c, scale, shift, silu);
}

// ---- Group norm ------------------------------------------------------------------------------------------------

void pk_group_norm_ref(const float *x, float *y, size_t batch, size_t hw, size_t c, size_t groups, float eps,
                       const float *weight, const float *bias, int silu, float *mean, float *rstd) {
    size_t cg = c / groups;
    double count = (double)hw * (double)cg;
    for (size_t b = 0; b < batch; b++) {
        const float *xb = x + b * hw * c;
        float *yb = y + b * hw * c;
        for (size_t g = 0; g < groups; g++) {
            double sum = 0, sq = 0;
            for (size_t p = 0; p < hw; p++)
                for (size_t j = g * cg; j < (g + 1) * cg; j++) sum += xb[p * c + j];
            double mu = sum / count;
            for (size_t p = 0; p < hw; p++)
                for (size_t j = g * cg; j < (g + 1) * cg; j++) sq += (xb[p * c + j] - mu) * (xb[p * c + j] - mu);
            double rs = 1.0 / sqrt(sq / count + (double)eps);
            if (mean) mean[b * groups + g] = (float)mu;
            if (rstd) rstd[b * groups + g] = (float)rs;
            for (size_t p = 0; p < hw; p++)
                for (size_t j = g * cg; j < (g + 1) * cg; j++) {
                    double v = (xb[p * c + j] - mu) * rs;
                    if (weight) v *= weight[j];
                    if (bias) v += bias[j];
                    float f = (float)v;
                    yb[p * c + j] = silu ? f / (1.0f + expf(-f)) : f;
                }
        }
    }
}

void pk_group_norm(const float *x, float *y, size_t batch, size_t hw, size_t c, size_t groups, float eps,
                   const float *weight, const float *bias, int silu, float *mean, float *rstd) {
    size_t cg = c / groups;
    double count = (double)hw * (double)cg;
    double *sums = malloc((c + groups) * sizeof(double));
    float *f = malloc(3 * c * sizeof(float));
    if (!sums || !f) abort();
    double *gmean = sums + c;
    float *center = f, *scale = f + c, *shift = f + 2 * c;
    for (size_t b = 0; b < batch; b++) {
        const float *xb = x + b * hw * c;
        float *yb = y + b * hw * c;
        // Pass 1: per-channel sums -> group means.
        for (size_t j = 0; j < c; j++) sums[j] = 0;
        pk_channel_sums(xb, hw, c, sums);
        for (size_t g = 0; g < groups; g++) {
            double s = 0;
            for (size_t j = g * cg; j < (g + 1) * cg; j++) s += sums[j];
            gmean[g] = s / count;
            for (size_t j = g * cg; j < (g + 1) * cg; j++) center[j] = (float)gmean[g];
        }
        // Pass 2: squared deviations from the float-rounded mean m_f. For the exact mean m,
        // mean((x - m)^2) = mean((x - m_f)^2) - (m - m_f)^2, which undoes the rounding of the centre.
        for (size_t j = 0; j < c; j++) sums[j] = 0;
        pk_channel_centered_squares(xb, hw, c, center, sums);
        for (size_t g = 0; g < groups; g++) {
            double sq = 0;
            for (size_t j = g * cg; j < (g + 1) * cg; j++) sq += sums[j];
            double m = gmean[g], off = m - (double)center[g * cg];
            double var = sq / count - off * off;
            double rs = 1.0 / sqrt((var > 0 ? var : 0) + (double)eps);
            if (mean) mean[b * groups + g] = (float)m;
            if (rstd) rstd[b * groups + g] = (float)rs;
            // Pass 3 folds normalization and affine into one multiply-add per element: y = x * scale + shift.
            for (size_t j = g * cg; j < (g + 1) * cg; j++) {
                double w = weight ? weight[j] : 1.0;
                double bj = bias ? bias[j] : 0.0;
                scale[j] = (float)(rs * w);
                shift[j] = (float)(bj - m * rs * w);
            }
        }
        pk_channel_affine(xb, yb, hw, c, scale, shift, silu);
    }
    free(sums);
    free(f);
}
