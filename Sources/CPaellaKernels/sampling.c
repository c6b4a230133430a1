// Gumbel-max sampling and argmax over the rows of [rows, n]. The Gumbel noise follows upstream Paella's
// utils.py (dome272/Paella): log(t) = torch.log(t + 1e-20), gumbel_noise = -log(-log(u)),
// gumbel_sample = argmax(t / max(temperature, 1e-10) + gumbel_noise).
#include "paella_elementwise.h"
#include "elementwise_simd.h"

#define PK_GUMBEL_EPS 1e-20f
#define PK_MIN_TEMPERATURE 1e-10f

static inline float gumbel_score(float logit, float u, float temperature) {
    float g = -logf(-logf(u + PK_GUMBEL_EPS) + PK_GUMBEL_EPS);
    return logit / temperature + g;
}

// ---- References ------------------------------------------------------------------------------------------------

void pk_gumbel_argmax_ref(const float *logits, const float *u, size_t rows, size_t n, float temperature,
                          int32_t *out) {
    float t = temperature > PK_MIN_TEMPERATURE ? temperature : PK_MIN_TEMPERATURE;
    for (size_t r = 0; r < rows; r++) {
        float best = -INFINITY;
        int32_t at = 0;
        for (size_t j = 0; j < n; j++) {
            float v = gumbel_score(logits[r * n + j], u[r * n + j], t);
            if (v > best) { best = v; at = (int32_t)j; }  // strict: the first maximum wins
        }
        out[r] = at;
    }
}

void pk_argmax_ref(const float *x, size_t rows, size_t n, int32_t *out) {
    for (size_t r = 0; r < rows; r++) {
        float best = -INFINITY;
        int32_t at = 0;
        for (size_t j = 0; j < n; j++)
            if (x[r * n + j] > best) { best = x[r * n + j]; at = (int32_t)j; }
        out[r] = at;
    }
}

// ---- Fast versions: every lane keeps its own first maximum and index; the lanes are merged at the end ----------

#if defined(__x86_64__) || defined(__i386__)
static inline PK_AVX512 __m512 gumbel16(__m512 logit, __m512 u, __m512 t) {
    const __m512 eps = _mm512_set1_ps(PK_GUMBEL_EPS);
    __m512 inner = _mm512_sub_ps(eps, pk16_log(_mm512_add_ps(u, eps)));  // -log(u + eps) + eps
    return _mm512_sub_ps(_mm512_div_ps(logit, t), pk16_log(inner));
}

// The index of the first maximum among the lanes: the largest value, then the smallest index holding it.
static inline PK_AVX512 int32_t merge16(__m512 best, __m512i at) {
    float top = _mm512_reduce_max_ps(best);
    __mmask16 winners = _mm512_cmp_ps_mask(best, _mm512_set1_ps(top), _CMP_EQ_OQ);
    if (!winners) return 0;  // no lane saw a candidate
    return _mm512_reduce_min_epi32(_mm512_mask_mov_epi32(_mm512_set1_epi32(INT32_MAX), winners, at));
}

static PK_AVX512 void gumbel_argmax_avx512(const float *logits, const float *u, size_t rows, size_t n,
                                           float temperature, int32_t *out, int useNoise) {
    __m512 t = _mm512_set1_ps(temperature);
    const __m512i step = _mm512_set1_epi32(16);
    for (size_t r = 0; r < rows; r++) {
        const float *lr = logits + r * n;
        const float *ur = useNoise ? u + r * n : NULL;
        __m512 best = _mm512_set1_ps(-INFINITY);
        __m512i at = _mm512_setzero_si512();
        __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (size_t j = 0; j < n; j += 16) {
            __mmask16 m = pk16_mask(n - j);
            __m512 v = _mm512_maskz_loadu_ps(m, lr + j);
            if (ur) v = gumbel16(v, _mm512_maskz_loadu_ps(m, ur + j), t);
            __mmask16 better = _mm512_mask_cmp_ps_mask(m, v, best, _CMP_GT_OQ);  // NaN is never better
            best = _mm512_mask_mov_ps(best, better, v);
            at = _mm512_mask_mov_epi32(at, better, idx);
            idx = _mm512_add_epi32(idx, step);
        }
        out[r] = merge16(best, at);
    }
}

static inline PK_AVX2 __m256 gumbel8(__m256 logit, __m256 u, __m256 t) {
    const __m256 eps = _mm256_set1_ps(PK_GUMBEL_EPS);
    __m256 inner = _mm256_sub_ps(eps, pk8_log(_mm256_add_ps(u, eps)));
    return _mm256_sub_ps(_mm256_div_ps(logit, t), pk8_log(inner));
}

static PK_AVX2 void gumbel_argmax_avx2(const float *logits, const float *u, size_t rows, size_t n,
                                       float temperature, int32_t *out, int useNoise) {
    __m256 t = _mm256_set1_ps(temperature);
    const __m256i step = _mm256_set1_epi32(8);
    for (size_t r = 0; r < rows; r++) {
        const float *lr = logits + r * n;
        const float *ur = useNoise ? u + r * n : NULL;
        __m256 best = _mm256_set1_ps(-INFINITY);
        __m256i at = _mm256_setzero_si256();
        __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (size_t j = 0; j < n; j += 8) {
            size_t k = n - j;
            // Padding lanes hold a -inf logit, which never beats anything.
            __m256 v = pk8_load(lr + j, k, -INFINITY);
            if (ur) v = gumbel8(v, pk8_load(ur + j, k, 0.5f), t);
            __m256 better = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
            best = _mm256_blendv_ps(best, v, better);
            at = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(at), _mm256_castsi256_ps(idx), better));
            idx = _mm256_add_epi32(idx, step);
        }
        float top = pk8_max(best);
        float lanesBest[8];
        int32_t lanesAt[8];
        _mm256_storeu_ps(lanesBest, best);
        _mm256_storeu_si256((__m256i *)lanesAt, at);
        int32_t choice = INT32_MAX;
        for (int l = 0; l < 8; l++)
            if (lanesBest[l] == top && lanesAt[l] < choice) choice = lanesAt[l];
        out[r] = choice == INT32_MAX ? 0 : choice;
    }
}
#endif

void pk_gumbel_argmax(const float *logits, const float *u, size_t rows, size_t n, float temperature, int32_t *out) {
    float t = temperature > PK_MIN_TEMPERATURE ? temperature : PK_MIN_TEMPERATURE;
    PK_DISPATCH_X86(gumbel_argmax_avx512, gumbel_argmax_avx2, (logits, u, rows, n, t, out, 1))
    pk_gumbel_argmax_ref(logits, u, rows, n, t, out);
}

void pk_argmax(const float *x, size_t rows, size_t n, int32_t *out) {
    PK_DISPATCH_X86(gumbel_argmax_avx512, gumbel_argmax_avx2, (x, NULL, rows, n, 1.0f, out, 0))
    pk_argmax_ref(x, rows, n, out);
}
