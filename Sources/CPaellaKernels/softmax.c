// Softmax and log-softmax over the rows of [rows, n], numerically stable (the row maximum is subtracted
// before exponentiating, so no exp overflows), and their backward passes.
#include "paella_elementwise.h"
#include "elementwise_simd.h"
#include <stdlib.h>
#include <string.h>

// ---- References ------------------------------------------------------------------------------------------------

void pk_softmax_ref(const float *x, float *y, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float max = -INFINITY;
        for (size_t j = 0; j < n; j++) if (xr[j] > max) max = xr[j];
        if (max == -INFINITY) {  // everything masked: no probability anywhere
            for (size_t j = 0; j < n; j++) yr[j] = 0.0f;
            continue;
        }
        double sum = 0;
        for (size_t j = 0; j < n; j++) {
            yr[j] = expf(xr[j] - max);
            sum += yr[j];
        }
        float inv = (float)(1.0 / sum);
        for (size_t j = 0; j < n; j++) yr[j] *= inv;
    }
}

void pk_log_softmax_ref(const float *x, float *y, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float max = -INFINITY;
        for (size_t j = 0; j < n; j++) if (xr[j] > max) max = xr[j];
        if (max == -INFINITY) {
            for (size_t j = 0; j < n; j++) yr[j] = -INFINITY;
            continue;
        }
        double sum = 0;
        for (size_t j = 0; j < n; j++) sum += expf(xr[j] - max);
        float shift = max + (float)log(sum);  // log-sum-exp of the row
        for (size_t j = 0; j < n; j++) yr[j] = xr[j] - shift;
    }
}

void pk_softmax_backward(const float *y, const float *dy, float *dx, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * n, *g = dy + r * n;
        float *d = dx + r * n;
        double dot = 0;
        for (size_t j = 0; j < n; j++) dot += (double)g[j] * yr[j];
        for (size_t j = 0; j < n; j++) d[j] = yr[j] * (g[j] - (float)dot);
    }
}

void pk_log_softmax_backward(const float *y, const float *dy, float *dx, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * n, *g = dy + r * n;
        float *d = dx + r * n;
        double sum = 0;
        for (size_t j = 0; j < n; j++) sum += g[j];
        for (size_t j = 0; j < n; j++) d[j] = g[j] - expf(yr[j]) * (float)sum;
    }
}

// ---- Typical filtering: scores and the filtered row ------------------------------------------------------------
// Score |-log p - H| of every entry; the histogram of p over score buckets (the selection of the threshold in
// PaellaCore's TypicalFilter.swift reads it). Shared by the twin and the fast versions.
static void typical_histogram(const float *p, const uint32_t *score_bits, size_t n, int bucket_shift,
                              double *bucket_mass, int32_t *bucket_count) {
    if (!bucket_mass || !bucket_count) return;
    size_t buckets = (size_t)1 << (31 - bucket_shift);  // scores are >= 0: the sign bit is clear
    memset(bucket_mass, 0, buckets * sizeof(double));
    memset(bucket_count, 0, buckets * sizeof(int32_t));
    for (size_t j = 0; j < n; j++) {
        uint32_t b = score_bits[j] >> bucket_shift;
        bucket_mass[b] += (double)p[j];
        bucket_count[b] += 1;
    }
}

static inline uint32_t float_bits(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

// A row with no finite logit: nothing to keep or remove by probability (every score +inf).
static float typical_empty_row(float *p, uint32_t *score_bits, size_t n, int bucket_shift, double *bucket_mass,
                               int32_t *bucket_count) {
    for (size_t j = 0; j < n; j++) { p[j] = 0.0f; score_bits[j] = float_bits(INFINITY); }
    typical_histogram(p, score_bits, n, bucket_shift, bucket_mass, bucket_count);
    return 0.0f;
}

float pk_typical_scores_ref(const float *x, size_t n, float *p, uint32_t *score_bits, int bucket_shift,
                            double *bucket_mass, int32_t *bucket_count) {
    float max = -INFINITY;
    for (size_t j = 0; j < n; j++) if (x[j] > max) max = x[j];
    if (max == -INFINITY) return typical_empty_row(p, score_bits, n, bucket_shift, bucket_mass, bucket_count);
    double sum = 0;
    for (size_t j = 0; j < n; j++) { p[j] = expf(x[j] - max); sum += p[j]; }
    float inv = (float)(1.0 / sum), shift = max + (float)log(sum);
    float entropy = 0.0f;
    for (size_t j = 0; j < n; j++) {
        p[j] *= inv;
        float term = (x[j] - shift) * p[j];  // -inf * 0 = NaN for a masked entry: left out (nansum)
        if (term == term) entropy -= term;
    }
    for (size_t j = 0; j < n; j++) score_bits[j] = float_bits(fabsf(-(x[j] - shift) - entropy));
    typical_histogram(p, score_bits, n, bucket_shift, bucket_mass, bucket_count);
    return entropy;
}

// Gathers the keys (score bits << 32 | index) of the entries in score bucket `bucket`; returns how many.
static size_t typical_gather_ref(const uint32_t *score_bits, size_t n, int bucket_shift, uint32_t bucket, uint64_t *keys) {
    size_t k = 0;
    for (size_t j = 0; j < n; j++)
        if (score_bits[j] >> bucket_shift == bucket) keys[k++] = (uint64_t)score_bits[j] << 32 | j;
    return k;
}

static int compare_keys(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

// Sorts keys[0..k) ascending: insertion for the short buckets that are the rule, qsort otherwise. Keys are
// distinct (they hold the index), so every correct sort gives the same order.
static void sort_keys(uint64_t *keys, size_t k) {
    if (k > 48) { qsort(keys, k, sizeof *keys, compare_keys); return; }
    for (size_t i = 1; i < k; i++) {
        uint64_t v = keys[i];
        size_t j = i;
        for (; j > 0 && keys[j - 1] > v; j--) keys[j] = keys[j - 1];
        keys[j] = v;
    }
}

typedef size_t (*typical_gather_fn)(const uint32_t *, size_t, int, uint32_t, uint64_t *);

static uint32_t typical_threshold(const float *p, const uint32_t *score_bits, size_t n, float mass, int bucket_shift,
                                  const double *bucket_mass, const int32_t *bucket_count, uint64_t *keys,
                                  typical_gather_fn gather) {
    size_t buckets = (size_t)1 << (31 - bucket_shift);
    double below = 0;
    for (size_t b = 0; b < buckets; b++) {
        if (bucket_count[b] == 0) continue;
        if ((float)(below + bucket_mass[b]) < mass) { below += bucket_mass[b]; continue; }
        size_t k = gather(score_bits, n, bucket_shift, (uint32_t)b, keys);
        sort_keys(keys, k);
        for (size_t i = 0; i < k; i++) {
            below += (double)p[keys[i] & 0xFFFFFFFFu];
            if ((float)below >= mass) return (uint32_t)(keys[i] >> 32);
        }
        return (uint32_t)(keys[k - 1] >> 32);  // rounding left the bucket's own sum short: keep all of it
    }
    return UINT32_MAX;
}

uint32_t pk_typical_threshold_ref(const float *p, const uint32_t *score_bits, size_t n, float mass, int bucket_shift,
                                  const double *bucket_mass, const int32_t *bucket_count, uint64_t *keys) {
    return typical_threshold(p, score_bits, n, mass, bucket_shift, bucket_mass, bucket_count, keys, typical_gather_ref);
}

void pk_typical_apply_ref(const float *x, const uint32_t *score_bits, uint32_t threshold_bits, float *y, size_t n) {
    for (size_t j = 0; j < n; j++) y[j] = score_bits[j] > threshold_bits ? -INFINITY : x[j];
}

// ---- Fast versions: one pass for the max, one for exp and its sum, one to scale ---------------------------------

#if defined(__x86_64__) || defined(__i386__)
static PK_AVX512 float row_max16(const float *x, size_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    size_t j = 0;
    for (; j + 16 <= n; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + j));
    if (j < n) m = _mm512_mask_max_ps(m, pk16_mask(n - j), m, _mm512_maskz_loadu_ps(pk16_mask(n - j), x + j));
    return _mm512_reduce_max_ps(m);
}

// Sum of exp(x - max); writes the exponentials to y when y is not NULL.
static PK_AVX512 float exp_sum16(const float *x, float *y, size_t n, float max) {
    __m512 vmax = _mm512_set1_ps(max), acc = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 e = pk16_exp(_mm512_sub_ps(_mm512_loadu_ps(x + j), vmax));
        if (y) _mm512_storeu_ps(y + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (j < n) {
        __mmask16 m = pk16_mask(n - j);
        __m512 e = pk16_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vmax));
        if (y) _mm512_mask_storeu_ps(y + j, m, e);
        acc = _mm512_mask_add_ps(acc, m, acc, e);
    }
    return pk16_sum(acc);
}

static PK_AVX512 void fill16(float *y, size_t n, float v) {
    size_t j = 0;
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(y + j, _mm512_set1_ps(v));
    if (j < n) _mm512_mask_storeu_ps(y + j, pk16_mask(n - j), _mm512_set1_ps(v));
}

// y = x * a + b
static PK_AVX512 void scale16(const float *x, float *y, size_t n, float a, float b) {
    __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    size_t j = 0;
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(y + j, _mm512_fmadd_ps(_mm512_loadu_ps(x + j), va, vb));
    if (j < n) {
        __mmask16 m = pk16_mask(n - j);
        _mm512_mask_storeu_ps(y + j, m, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + j), va, vb));
    }
}

static PK_AVX512 void softmax_avx512(const float *x, float *y, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float max = row_max16(xr, n);
        if (max == -INFINITY) { fill16(yr, n, 0.0f); continue; }
        float sum = exp_sum16(xr, yr, n, max);
        scale16(yr, yr, n, 1.0f / sum, 0.0f);
    }
}

static PK_AVX512 void log_softmax_avx512(const float *x, float *y, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float max = row_max16(xr, n);
        if (max == -INFINITY) { fill16(yr, n, -INFINITY); continue; }
        float sum = exp_sum16(xr, NULL, n, max);
        scale16(xr, yr, n, 1.0f, -(max + logf(sum)));
    }
}

// Typical scores: the max and exp-sum passes of softmax, then one pass for p, log p and the entropy (lanes summed
// separately: a different order than the twin's, so H may differ in its last bits), one for the scores.
static PK_AVX512 float typical_scores_avx512(const float *x, size_t n, float *p, uint32_t *score_bits, int bucket_shift,
                                             double *bucket_mass, int32_t *bucket_count) {
    float max = row_max16(x, n);
    if (max == -INFINITY) return typical_empty_row(p, score_bits, n, bucket_shift, bucket_mass, bucket_count);
    float sum = exp_sum16(x, p, n, max);
    float inv = 1.0f / sum, shift = max + logf(sum);
    __m512 vinv = _mm512_set1_ps(inv), vshift = _mm512_set1_ps(-shift), acc = _mm512_setzero_ps();
    size_t j = 0;
    for (; j < n; j += 16) {
        __mmask16 m = j + 16 <= n ? (__mmask16)0xFFFF : pk16_mask(n - j);
        __m512 pj = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + j), vinv);
        _mm512_mask_storeu_ps(p + j, m, pj);
        __m512 term = _mm512_mul_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(m, x + j), vshift), pj);
        __mmask16 ordered = _mm512_mask_cmp_ps_mask(m, term, term, _CMP_ORD_Q);  // nansum: NaN terms left out
        acc = _mm512_mask_add_ps(acc, ordered, acc, term);
    }
    float entropy = -_mm512_reduce_add_ps(acc);
    __m512 ventropy = _mm512_set1_ps(entropy);
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    for (j = 0; j < n; j += 16) {
        __mmask16 m = j + 16 <= n ? (__mmask16)0xFFFF : pk16_mask(n - j);
        __m512 logp = _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + j), vshift);
        __m512 score = _mm512_sub_ps(_mm512_sub_ps(_mm512_setzero_ps(), logp), ventropy);
        _mm512_mask_storeu_epi32(score_bits + j, m, _mm512_and_si512(_mm512_castps_si512(score), abs_mask));
    }
    typical_histogram(p, score_bits, n, bucket_shift, bucket_mass, bucket_count);
    return entropy;
}

static PK_AVX512 void typical_apply_avx512(const float *x, const uint32_t *score_bits, uint32_t threshold_bits, float *y,
                                           size_t n) {
    const __m512i threshold = _mm512_set1_epi32((int)threshold_bits);
    const __m512 minus_inf = _mm512_set1_ps(-INFINITY);
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 m = j + 16 <= n ? (__mmask16)0xFFFF : pk16_mask(n - j);
        __mmask16 removed = _mm512_mask_cmpgt_epu32_mask(m, _mm512_maskz_loadu_epi32(m, score_bits + j), threshold);
        __m512 v = _mm512_mask_mov_ps(_mm512_maskz_loadu_ps(m, x + j), removed, minus_inf);
        _mm512_mask_storeu_ps(y + j, m, v);
    }
}

// The gather with 16 entries at a time: their bucket compared in one instruction, the matches' indices and score
// bits compressed out (usually none of a vector is in the bucket).
static PK_AVX512 size_t typical_gather_avx512(const uint32_t *score_bits, size_t n, int bucket_shift, uint32_t bucket,
                                              uint64_t *keys) {
    const __m512i target = _mm512_set1_epi32((int)bucket), lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m128i shift = _mm_cvtsi32_si128(bucket_shift);
    uint32_t bits[16], index[16];
    size_t k = 0;
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 m = j + 16 <= n ? (__mmask16)0xFFFF : pk16_mask(n - j);
        __m512i v = _mm512_maskz_loadu_epi32(m, score_bits + j);
        __mmask16 hit = _mm512_mask_cmpeq_epi32_mask(m, _mm512_srl_epi32(v, shift), target);
        if (!hit) continue;
        _mm512_mask_compressstoreu_epi32(bits, hit, v);
        _mm512_mask_compressstoreu_epi32(index, hit, _mm512_add_epi32(lanes, _mm512_set1_epi32((int)j)));
        for (int i = 0, c = __builtin_popcount(hit); i < c; i++) keys[k++] = (uint64_t)bits[i] << 32 | index[i];
    }
    return k;
}

static PK_AVX2 float row_max8(const float *x, size_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
    if (j < n) m = _mm256_max_ps(m, pk8_load(x + j, n - j, -INFINITY));
    return pk8_max(m);
}

static PK_AVX2 float exp_sum8(const float *x, float *y, size_t n, float max) {
    __m256 vmax = _mm256_set1_ps(max), acc = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = pk8_exp(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmax));
        if (y) _mm256_storeu_ps(y + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (j < n) {
        // The padding lanes hold -inf, whose exponential is exactly 0.
        __m256 e = pk8_exp(_mm256_sub_ps(pk8_load(x + j, n - j, -INFINITY), vmax));
        if (y) pk8_store(y + j, e, n - j);
        acc = _mm256_add_ps(acc, e);
    }
    return pk8_sum(acc);
}

static PK_AVX2 void fill8(float *y, size_t n, float v) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, _mm256_set1_ps(v));
    if (j < n) pk8_store(y + j, _mm256_set1_ps(v), n - j);
}

static PK_AVX2 void scale8(const float *x, float *y, size_t n, float a, float b) {
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, _mm256_fmadd_ps(_mm256_loadu_ps(x + j), va, vb));
    if (j < n) pk8_store(y + j, _mm256_fmadd_ps(pk8_load(x + j, n - j, 0.0f), va, vb), n - j);
}

static PK_AVX2 void softmax_avx2(const float *x, float *y, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float max = row_max8(xr, n);
        if (max == -INFINITY) { fill8(yr, n, 0.0f); continue; }
        float sum = exp_sum8(xr, yr, n, max);
        scale8(yr, yr, n, 1.0f / sum, 0.0f);
    }
}

static PK_AVX2 void log_softmax_avx2(const float *x, float *y, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float max = row_max8(xr, n);
        if (max == -INFINITY) { fill8(yr, n, -INFINITY); continue; }
        float sum = exp_sum8(xr, NULL, n, max);
        scale8(xr, yr, n, 1.0f, -(max + logf(sum)));
    }
}
static PK_AVX2 float typical_scores_avx2(const float *x, size_t n, float *p, uint32_t *score_bits, int bucket_shift,
                                         double *bucket_mass, int32_t *bucket_count) {
    float max = row_max8(x, n);
    if (max == -INFINITY) return typical_empty_row(p, score_bits, n, bucket_shift, bucket_mass, bucket_count);
    float sum = exp_sum8(x, p, n, max);
    float inv = 1.0f / sum, shift = max + logf(sum);
    __m256 vinv = _mm256_set1_ps(inv), vshift = _mm256_set1_ps(-shift), acc = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 pj = _mm256_mul_ps(_mm256_loadu_ps(p + j), vinv);
        _mm256_storeu_ps(p + j, pj);
        __m256 term = _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(x + j), vshift), pj);
        acc = _mm256_add_ps(acc, _mm256_and_ps(term, _mm256_cmp_ps(term, term, _CMP_ORD_Q)));  // NaN terms add 0
    }
    float entropy_sum = pk8_sum(acc);
    for (size_t t = j; t < n; t++) {
        p[t] *= inv;
        float term = (x[t] - shift) * p[t];
        if (term == term) entropy_sum += term;
    }
    float entropy = -entropy_sum;
    __m256 ventropy = _mm256_set1_ps(entropy);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 logp = _mm256_add_ps(_mm256_loadu_ps(x + j), vshift);
        __m256 score = _mm256_and_ps(_mm256_sub_ps(_mm256_sub_ps(_mm256_setzero_ps(), logp), ventropy), abs_mask);
        _mm256_storeu_si256((__m256i *)(score_bits + j), _mm256_castps_si256(score));
    }
    for (; j < n; j++) score_bits[j] = float_bits(fabsf(-(x[j] - shift) - entropy));
    typical_histogram(p, score_bits, n, bucket_shift, bucket_mass, bucket_count);
    return entropy;
}

#endif

#if defined(__aarch64__)
static void softmax_neon(const float *x, float *y, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float32x4_t m4 = vdupq_n_f32(-INFINITY);
        size_t j = 0;
        for (; j + 4 <= n; j += 4) m4 = vmaxq_f32(m4, vld1q_f32(xr + j));
        float max = vmaxvq_f32(m4);
        for (; j < n; j++) if (xr[j] > max) max = xr[j];
        if (max == -INFINITY) { for (j = 0; j < n; j++) yr[j] = 0.0f; continue; }
        float32x4_t vmax = vdupq_n_f32(max), acc = vdupq_n_f32(0.0f);
        for (j = 0; j + 4 <= n; j += 4) {
            float32x4_t e = pk4_exp(vsubq_f32(vld1q_f32(xr + j), vmax));
            vst1q_f32(yr + j, e);
            acc = vaddq_f32(acc, e);
        }
        float sum = vaddvq_f32(acc);
        for (; j < n; j++) { yr[j] = expf(xr[j] - max); sum += yr[j]; }
        float inv = 1.0f / sum;
        for (j = 0; j < n; j++) yr[j] *= inv;
    }
}
#endif

void pk_softmax(const float *x, float *y, size_t rows, size_t n) {
    PK_DISPATCH_X86(softmax_avx512, softmax_avx2, (x, y, rows, n))
    PK_DISPATCH_NEON(softmax_neon, (x, y, rows, n))
    pk_softmax_ref(x, y, rows, n);
}

void pk_log_softmax(const float *x, float *y, size_t rows, size_t n) {
    PK_DISPATCH_X86(log_softmax_avx512, log_softmax_avx2, (x, y, rows, n))
    pk_log_softmax_ref(x, y, rows, n);
}

float pk_typical_scores(const float *x, size_t n, float *p, uint32_t *score_bits, int bucket_shift,
                        double *bucket_mass, int32_t *bucket_count) {
#if defined(__x86_64__) || defined(__i386__)
    if (pk_active_isa() == PK_ISA_AVX512)
        return typical_scores_avx512(x, n, p, score_bits, bucket_shift, bucket_mass, bucket_count);
    if (pk_active_isa() == PK_ISA_AVX2)
        return typical_scores_avx2(x, n, p, score_bits, bucket_shift, bucket_mass, bucket_count);
#endif
    return pk_typical_scores_ref(x, n, p, score_bits, bucket_shift, bucket_mass, bucket_count);
}

uint32_t pk_typical_threshold(const float *p, const uint32_t *score_bits, size_t n, float mass, int bucket_shift,
                              const double *bucket_mass, const int32_t *bucket_count, uint64_t *keys) {
#if defined(__x86_64__) || defined(__i386__)
    if (pk_active_isa() == PK_ISA_AVX512)
        return typical_threshold(p, score_bits, n, mass, bucket_shift, bucket_mass, bucket_count, keys, typical_gather_avx512);
#endif
    return pk_typical_threshold_ref(p, score_bits, n, mass, bucket_shift, bucket_mass, bucket_count, keys);
}

void pk_typical_apply(const float *x, const uint32_t *score_bits, uint32_t threshold_bits, float *y, size_t n) {
#if defined(__x86_64__) || defined(__i386__)
    if (pk_active_isa() == PK_ISA_AVX512) { typical_apply_avx512(x, score_bits, threshold_bits, y, n); return; }
#endif
    pk_typical_apply_ref(x, score_bits, threshold_bits, y, n);
}
