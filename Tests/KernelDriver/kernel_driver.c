// Kernel driver: every CPaellaKernels kernel against its _ref twin (or double-precision libm), on random and odd
// shapes, at every instruction-set level this CPU can run (x86-64: avx512, avx2, portable; aarch64: neon,
// portable). Plain C, no Swift, so that it cross-builds for aarch64 and runs under qemu-aarch64
// (scripts/test-kernels-arm64.sh). The tolerances are the ones of the Swift suites ElementwiseKernelTests,
// GEMMTests and ConvolutionKernelTests (Tests/PaellaCoreTests), quoted next to each check.
//
// Build (scripts/test-kernels-arm64.sh does it natively and for aarch64):
//   cc -std=gnu11 -O2 -I Sources/CPaellaKernels/include Tests/KernelDriver/kernel_driver.c Sources/CPaellaKernels/*.c -lm -ldl
// Usage: kernel_driver [--isa NAME]   (NAME: one level to run, e.g. neon; default: every level this CPU has)
// Prints, per level, how many kernels and cases ran and passed; exits 1 on any failure, naming the kernel, the
// shape and the worst error, and 2 on bad usage.
#include "paella_conv.h"
#include "paella_elementwise.h"
#include "paella_gemm.h"
#include "paella_kernels.h"
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- Random numbers (SplitMix64, as Tests/PaellaTestSupport) ----------------------------------------------------

typedef struct { uint64_t state; } rng_t;

static uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/// Uniform in [lo, hi).
static float rng_float(rng_t *r, float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(rng_next(r) >> 40) * 0x1p-24);
}

/// Uniform integer in [lo, hi].
static int rng_int(rng_t *r, int lo, int hi) { return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1)); }

static void *checked_alloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size);
    if (!p) {
        fprintf(stderr, "kernel_driver: out of memory for %zu x %zu bytes; free some memory and run it again.\n", count, size);
        exit(2);
    }
    return p;
}

static float *random_floats(rng_t *r, size_t n, float lo, float hi) {
    float *v = checked_alloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = rng_float(r, lo, hi);
    return v;
}

static float *filled_floats(size_t n, float value) {
    float *v = checked_alloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = value;
    return v;
}

static uint32_t float_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }
static float bits_float(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }

// ---- Cases: one kernel call on one shape, compared element by element ------------------------------------------

/// The counts of one ISA level.
typedef struct {
    const char *kernels_seen[64];
    int kernel_count, failed_kernel_count;
    const char *failed_kernels[64];
    long cases, passed;
} level_stats;

static level_stats stats;
static const char *level_name = "";
static int printed_failures;

/// One case: the worst element seen so far, as a multiple of its tolerance (> 1 fails; NaN counts as infinite).
typedef struct {
    const char *kernel;
    char shape[200];
    double worst_ratio;
    size_t at;
    double got, want, tolerance, input;
    size_t row_length;    // when not 0, elements are named [row][column] of rows this long (a matrix with padding)
    const char *problem;  // a failed check that is not an element-wise tolerance
} case_check;

static void remember(const char **list, int *count, const char *name) {
    for (int i = 0; i < *count; i++)
        if (strcmp(list[i], name) == 0) return;
    if (*count < 64) list[(*count)++] = name;
}

static void case_begin(case_check *c, const char *kernel, const char *shape_format, ...) {
    memset(c, 0, sizeof(*c));
    c->kernel = kernel;
    va_list args;
    va_start(args, shape_format);
    vsnprintf(c->shape, sizeof(c->shape), shape_format, args);
    va_end(args);
    remember(stats.kernels_seen, &stats.kernel_count, kernel);
}

/// |got - want| <= tolerance; equal values (infinities included) always pass. `input` is the kernel's input at
/// that element when there is one (NAN otherwise), shown in the failure message.
static void case_value(case_check *c, size_t i, double got, double want, double tolerance, double input) {
    double error = got == want ? 0 : fabs(got - want);
    double ratio = error == 0 ? 0 : (isnan(error) ? INFINITY : error / tolerance);
    if (ratio > c->worst_ratio) {
        c->worst_ratio = ratio;
        c->at = i;
        c->got = got;
        c->want = want;
        c->tolerance = tolerance;
        c->input = input;
    }
}

/// A bit-for-bit comparison of two values (conversions, copies, integer results).
static void case_exact(case_check *c, size_t i, uint64_t got, uint64_t want, double input) {
    if (got != want && c->worst_ratio <= 1) {
        c->worst_ratio = INFINITY;
        c->at = i;
        c->got = (double)got;
        c->want = (double)want;
        c->tolerance = 0;
        c->input = input;
    }
}

static void case_problem(case_check *c, const char *problem) {
    if (!c->problem) c->problem = problem;
}

static void case_end(case_check *c) {
    stats.cases++;
    if (c->worst_ratio <= 1 && !c->problem) {
        stats.passed++;
        return;
    }
    remember(stats.failed_kernels, &stats.failed_kernel_count, c->kernel);
    if (printed_failures++ >= 40) return;  // the first ones say enough
    if (c->problem) printf("FAIL %s %s %s: %s\n", level_name, c->kernel, c->shape, c->problem);
    if (c->worst_ratio <= 1) return;
    if (c->tolerance == 0) {
        printf("FAIL %s %s %s: element %zu is %#llx, the reference gives %#llx", level_name, c->kernel, c->shape, c->at,
               (unsigned long long)c->got, (unsigned long long)c->want);
        if (!isnan(c->input)) printf(" (input %.9g)", c->input);
        printf("\n");
    } else {
        printf("FAIL %s %s %s: worst error %.3g at element ", level_name, c->kernel, c->shape, fabs(c->got - c->want));
        if (c->row_length) printf("[%zu][%zu]", c->at / c->row_length, c->at % c->row_length);
        else printf("%zu", c->at);
        printf(" (got %.9g, reference %.9g, tolerance %.3g", c->got, c->want, c->tolerance);
        if (!isnan(c->input)) printf(", input %.9g", c->input);
        printf(")\n");
    }
}

// ---- Shapes ---------------------------------------------------------------------------------------------------

// The Swift suites' odd sizes (1, 3, 7, 15, 17, 31, 33, 100, 1025) plus the edges of 4-, 8- and 16-lane vectors
// and a few primes, so that every vector loop sees empty, partial and full tails.
static const size_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 64, 100, 127, 1025};
#define SIZE_COUNT (sizeof(sizes) / sizeof(sizes[0]))

// ---- Vector maths against double-precision libm --------------------------------------------------------------

typedef void (*map_fn)(const float *, float *, size_t);

/// Runs `fast` on x, then again in place on a copy of x, which must give the same bits; returns the first result.
static float *run_map(map_fn fast, const float *x, size_t n, case_check *c) {
    float *y = filled_floats(n, NAN);
    fast(x, y, n);
    float *inplace = checked_alloc(n, sizeof(float));
    memcpy(inplace, x, n * sizeof(float));
    fast(inplace, inplace, n);
    for (size_t i = 0; i < n; i++)
        if (float_bits(inplace[i]) != float_bits(y[i])) case_problem(c, "in place differs from out of place");
    free(inplace);
    return y;
}

/// A vector-maths kernel against double-precision libm (rounded to float): random inputs in [lo, hi) at every odd
/// size, a dense grid of `grid` points over [lo, hi], then the special values repeated at every position of a vector.
/// With `decades`, lo and hi are powers of ten. Where the rounded truth is NaN, infinite or zero the result must be
/// exactly that; elsewhere within relative * |truth| + absolute.
typedef struct {
    const char *kernel;
    map_fn fast;
    double (*truth)(double);
    double lo, hi;
    size_t grid;
    int decades;
    double relative, absolute;
    const float *special;
    size_t special_count;
} libm_comparison;

static void check_values_against_libm(case_check *c, const libm_comparison *t, const float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float want = (float)t->truth((double)x[i]);
        if (isnan(want) || isinf(want) || want == 0) {
            if (isnan(want) ? !isnan(y[i]) : y[i] != want) case_exact(c, i, float_bits(y[i]), float_bits(want), x[i]);
        } else {
            double truth = t->truth((double)x[i]);
            case_value(c, i, y[i], truth, t->relative * fabs(truth) + t->absolute, x[i]);
        }
    }
}

static void test_against_libm(rng_t *r, const libm_comparison *t) {
    for (size_t s = 0; s <= SIZE_COUNT; s++) {
        size_t n = s < SIZE_COUNT ? sizes[s] : t->grid;
        float *x = checked_alloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++) {
            double v = s < SIZE_COUNT ? rng_float(r, (float)t->lo, (float)t->hi) : t->lo + (t->hi - t->lo) * (double)i / (double)(n - 1);
            x[i] = (float)(t->decades ? pow(10, v) : v);
        }
        case_check c;
        case_begin(&c, t->kernel, s < SIZE_COUNT ? "n=%zu random in [%s%g, %s%g]" : "n=%zu grid over [%s%g, %s%g]", n,
                   t->decades ? "1e" : "", t->lo, t->decades ? "1e" : "", t->hi);
        float *y = run_map(t->fast, x, n, &c);
        check_values_against_libm(&c, t, x, y, n);
        case_end(&c);
        free(x);
        free(y);
    }
    for (size_t n = 1; n <= 40; n += 13) {
        float *x = checked_alloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++) x[i] = t->special[i % t->special_count];
        case_check c;
        case_begin(&c, t->kernel, "n=%zu special values", n);
        float *y = run_map(t->fast, x, n, &c);
        check_values_against_libm(&c, t, x, y, n);
        case_end(&c);
        free(x);
        free(y);
    }
}

// Relative error within 2 ulp (2.4e-7) wherever e^x is a normal float; 0 below about -104, +inf past log(FLT_MAX).
static const float exp_special[] = {0, -1, INFINITY, -INFINITY, NAN, 200, -200, -104.5f, 88.8f, -0.0f};
static void test_exp(rng_t *r) {
    libm_comparison t = {"pk_exp", pk_exp, exp, -87, 88, 100001, 0, 2.4e-7, 0, exp_special, 10};
    test_against_libm(r, &t);
}

// Relative error within 2 ulp (2.4e-7) for x from 1e-30 to 1e30; log 0 = -inf, log of a negative number NaN.
static const float log_special[] = {0, -1, INFINITY, -INFINITY, NAN, 1, 1e-45f, 1e-40f, -0.0f};
static void test_log(rng_t *r) {
    libm_comparison t = {"pk_log", pk_log, log, -30, 30, 100001, 1, 2.4e-7, 0, log_special, 9};
    test_against_libm(r, &t);
}

// Within 1.2e-7 absolute of the true erf everywhere.
static const float erf_special[] = {NAN, INFINITY, -INFINITY, 0, -0.0f, 0.875f, -0.875f, 4, -4, 1e-30f};
static void test_erf(rng_t *r) {
    libm_comparison t = {"pk_erf", pk_erf, erf, -6, 6, 200001, 0, 0, 1.2e-7, erf_special, 10};
    test_against_libm(r, &t);
}

// ---- Activations against their twins -------------------------------------------------------------------------

static void test_gelu(rng_t *r) {
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes[s];
        float *x = random_floats(r, n, -8, 8), *ref = filled_floats(n, 0);
        case_check c;
        case_begin(&c, "pk_gelu", "n=%zu random in [-8, 8]", n);
        float *y = run_map(pk_gelu, x, n, &c);
        pk_gelu_ref(x, ref, n);
        // Both erfs are within 6.5e-8 of the truth; GELU scales that by |x|/2, plus result rounding.
        for (size_t i = 0; i < n; i++) case_value(&c, i, y[i], ref[i], 2e-7 * (1 + fabsf(x[i])), x[i]);
        case_end(&c);
        free(x);
        free(y);
        free(ref);
    }
}

/// GELU's backward against its twin, in place too (dx aliasing dy), with huge inputs whose density underflows.
/// Its own random stream, so that the cases of the kernels after it stay as they were.
static void test_gelu_backward(rng_t *shared) {
    (void)shared;
    rng_t own = {0x6e1ba7u}, *r = &own;
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes[s];
        float *x = random_floats(r, n, -8, 8), *dy = random_floats(r, n, -2, 2);
        float *dx = filled_floats(n, NAN), *ref = filled_floats(n, 0), *inplace = filled_floats(n, 0);
        if (n > 3) { x[0] = -100; x[1] = 100; x[2] = 0; }
        memcpy(inplace, dy, n * sizeof(float));
        case_check c;
        case_begin(&c, "pk_gelu_backward", "n=%zu random in [-8, 8]", n);
        pk_gelu_backward(x, dy, dx, n);
        pk_gelu_backward(x, inplace, inplace, n);
        pk_gelu_backward_ref(x, dy, ref, n);
        // erf and exp within a few ulp; x phi(x) scales the exp's error by |x| (small where phi is not tiny).
        for (size_t i = 0; i < n; i++) {
            case_value(&c, i, dx[i], ref[i], 4e-7 * (1 + fabsf(x[i])) * fabsf(dy[i]) + 1e-30, x[i]);
            if (float_bits(inplace[i]) != float_bits(dx[i])) case_exact(&c, i, float_bits(inplace[i]), float_bits(dx[i]), x[i]);
        }
        case_end(&c);
        free(x); free(dy); free(dx); free(ref); free(inplace);
    }
}

static void test_silu(rng_t *r) {
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes[s];
        float *x = random_floats(r, n, -30, 30), *ref = filled_floats(n, 0);
        if (n > 3) { x[0] = -100; x[1] = 100; x[2] = 0; }  // e^-x overflowing, vanishing, and the origin
        case_check c;
        case_begin(&c, "pk_silu", "n=%zu random in [-30, 30]", n);
        float *y = run_map(pk_silu, x, n, &c);
        pk_silu_ref(x, ref, n);
        // A few ulp of exp and one of the division: 4 ulp relative.
        for (size_t i = 0; i < n; i++) case_value(&c, i, y[i], ref[i], 5e-7 * fabsf(ref[i]) + 1e-38, x[i]);
        case_end(&c);
        free(x);
        free(y);
        free(ref);
    }
}

// ---- Softmax -------------------------------------------------------------------------------------------------

/// Rows of random logits in [-10, 10] with about one entry in ten masked (-inf) and, with several rows, the
/// second row masked entirely.
static float *softmax_input(rng_t *r, size_t rows, size_t n) {
    float *x = random_floats(r, rows * n, -10, 10);
    for (size_t i = 0; i < rows * n; i++)
        if (rng_int(r, 0, 9) == 0) x[i] = -INFINITY;
    if (rows > 1)
        for (size_t j = 0; j < n; j++) x[n + j] = -INFINITY;
    return x;
}

typedef void (*rows_fn)(const float *, float *, size_t, size_t);

/// Softmax, or with `log` log-softmax, against its twin. A masked entry gets probability exactly 0 (log: -inf).
static void test_softmax_kind(rng_t *r, int log) {
    const char *kernel = log ? "pk_log_softmax" : "pk_softmax";
    rows_fn fast = log ? pk_log_softmax : pk_softmax, twin = log ? pk_log_softmax_ref : pk_softmax_ref;
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes[s], rows = (size_t)rng_int(r, 1, 9);
        float *x = softmax_input(r, rows, n), *y = filled_floats(rows * n, NAN), *ref = filled_floats(rows * n, 0);
        case_check c;
        case_begin(&c, kernel, "rows=%zu n=%zu", rows, n);
        fast(x, y, rows, n);
        twin(x, ref, rows, n);
        for (size_t i = 0; i < rows * n; i++) {
            if (x[i] == -INFINITY || ref[i] == -INFINITY) {
                float masked = log ? -INFINITY : 0;
                if (y[i] != masked) case_exact(&c, i, float_bits(y[i]), float_bits(masked), x[i]);
                continue;
            }
            // exp within 2 ulp; the float sum of up to 1025 terms in 4-16 lanes adds at most ~1e-6 relative.
            case_value(&c, i, y[i], ref[i], log ? 2e-6 * (1 + fabsf(ref[i])) : 2e-6 * ref[i] + 1e-12, x[i]);
        }
        case_end(&c);
        free(x);
        free(y);
        free(ref);
    }
}

static void test_softmax(rng_t *r) { test_softmax_kind(r, 0); }
static void test_log_softmax(rng_t *r) { test_softmax_kind(r, 1); }

// ---- Typical filtering -----------------------------------------------------------------------------------------

/// The typical filter's scores and histogram against the twin (probabilities and scores to float round-off: the
/// entropy is summed in lanes), a fully masked row, and the filtered-row writer exactly. Its own random stream,
/// so that adding it left the cases of the kernels after it as they were.
static void test_typical(rng_t *shared) {
    (void)shared;
    rng_t own = {0x7791ca10u}, *r = &own;
    const int shift = 20;
    const size_t buckets = (size_t)1 << (31 - shift);
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        for (int whole = 0; whole < 2; whole++) {
            size_t n = sizes[s];
            float *x = softmax_input(r, 1, n);
            if (whole) for (size_t j = 0; j < n; j++) x[j] = -INFINITY;
            float *p = filled_floats(n, NAN), *p_ref = filled_floats(n, NAN), *y = filled_floats(n, NAN), *y_ref = filled_floats(n, 0);
            uint32_t *bits = calloc(n, sizeof(uint32_t)), *bits_ref = calloc(n, sizeof(uint32_t));
            double *mass = calloc(buckets, sizeof(double)), *mass_ref = calloc(buckets, sizeof(double));
            int32_t *count = calloc(buckets, sizeof(int32_t)), *count_ref = calloc(buckets, sizeof(int32_t));
            case_check c;
            case_begin(&c, "pk_typical_scores", "n=%zu masked=%d", n, whole);
            float h = pk_typical_scores(x, n, p, bits, shift, mass, count);
            float h_ref = pk_typical_scores_ref(x, n, p_ref, bits_ref, shift, mass_ref, count_ref);
            case_value(&c, 0, h, h_ref, 1e-5 * (1 + fabsf(h_ref)), NAN);
            double total = 0;
            long entries = 0;
            for (size_t b = 0; b < buckets; b++) { total += mass[b]; entries += count[b]; }
            case_value(&c, 0, total, whole ? 0 : 1, 1e-5, NAN);
            if (entries != (long)n) case_exact(&c, 0, (uint32_t)entries, (uint32_t)n, NAN);
            for (size_t j = 0; j < n; j++) {
                case_value(&c, j, p[j], p_ref[j], 2e-6 * p_ref[j] + 1e-12, x[j]);
                float score, score_ref;
                memcpy(&score, bits + j, sizeof score);
                memcpy(&score_ref, bits_ref + j, sizeof score_ref);
                if (isinf(score_ref) || isinf(score)) { if (bits[j] != bits_ref[j]) case_exact(&c, j, bits[j], bits_ref[j], x[j]); }
                else case_value(&c, j, score, score_ref, 2e-5 * (1 + score_ref), x[j]);
            }
            case_end(&c);
            case_begin(&c, "pk_typical_threshold", "n=%zu masked=%d", n, whole);
            uint64_t *keys = calloc(n, sizeof(uint64_t)), *keys_ref = calloc(n, sizeof(uint64_t));
            const float targets[] = {0.05f, 0.2f, 0.9f, 1.5f};
            for (size_t t = 0; t < 4; t++) {
                uint32_t found = pk_typical_threshold(p, bits, n, targets[t], shift, mass, count, keys);
                uint32_t found_ref = pk_typical_threshold_ref(p, bits, n, targets[t], shift, mass, count, keys_ref);
                if (found != found_ref) case_exact(&c, t, found, found_ref, targets[t]);
            }
            free(keys); free(keys_ref);
            case_end(&c);
            case_begin(&c, "pk_typical_apply", "n=%zu masked=%d", n, whole);
            uint32_t threshold = bits[rng_int(r, 0, (int)n - 1)];
            pk_typical_apply(x, bits, threshold, y, n);
            pk_typical_apply_ref(x, bits, threshold, y_ref, n);
            for (size_t j = 0; j < n; j++)
                if (float_bits(y[j]) != float_bits(y_ref[j])) case_exact(&c, j, float_bits(y[j]), float_bits(y_ref[j]), x[j]);
            case_end(&c);
            free(x); free(p); free(p_ref); free(y); free(y_ref); free(bits); free(bits_ref);
            free(mass); free(mass_ref); free(count); free(count_ref);
        }
    }
}

// ---- Normalization -------------------------------------------------------------------------------------------

/// Compares per-row (or per-group) statistics: mean within 1e-6 (mean_offset + |ref|), rstd within 1e-5 relative.
static void check_statistics(case_check *c, const float *mean, const float *mean_ref, const float *rstd,
                             const float *rstd_ref, size_t count, double mean_offset) {
    for (size_t i = 0; i < count; i++) {
        if (fabs((double)mean[i] - mean_ref[i]) > 1e-6 * (mean_offset + fabs((double)mean_ref[i])))
            case_problem(c, "a mean differs from the reference's by more than 1e-6 relative");
        if (fabs((double)rstd[i] - rstd_ref[i]) > 1e-5 * rstd_ref[i])
            case_problem(c, "an rstd differs from the reference's by more than 1e-5 relative");
    }
}

static void test_layer_norm(rng_t *r) {
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        for (int affine = 0; affine <= 1; affine++) {
            size_t n = sizes[s], rows = (size_t)rng_int(r, 1, 9);
            // An offset of 3 against a spread of 1 checks that the mean is removed before squaring.
            float *x = random_floats(r, rows * n, 2, 4);
            float *w = affine ? random_floats(r, n, 0.5f, 1.5f) : NULL, *b = affine ? random_floats(r, n, -1, 1) : NULL;
            float *y = filled_floats(rows * n, NAN), *ref = filled_floats(rows * n, 0);
            float *mean = filled_floats(rows, NAN), *rstd = filled_floats(rows, NAN);
            float *mean_ref = filled_floats(rows, 0), *rstd_ref = filled_floats(rows, 0);
            case_check c;
            case_begin(&c, "pk_layer_norm", "rows=%zu n=%zu %s", rows, n, affine ? "weight and bias" : "no affine");
            pk_layer_norm(x, y, rows, n, w, b, 1e-5f, mean, rstd);
            pk_layer_norm_ref(x, ref, rows, n, w, b, 1e-5f, mean_ref, rstd_ref);
            // The parity tests downstream need 1e-5 relative; float statistics stay well inside that.
            for (size_t i = 0; i < rows * n; i++) case_value(&c, i, y[i], ref[i], 1e-5 * (1 + fabsf(ref[i])), x[i]);
            check_statistics(&c, mean, mean_ref, rstd, rstd_ref, rows, 0);
            case_end(&c);
            free(x); free(w); free(b); free(y); free(ref); free(mean); free(rstd); free(mean_ref); free(rstd_ref);
        }
    }
}

static void test_group_norm(rng_t *r) {
    static const size_t layouts[][2] = {{4, 2}, {12, 3}, {33, 11}, {64, 32}, {96, 32}, {5, 1}, {14, 7}, {26, 2}};
    static const size_t hws[] = {1, 7, 17, 100};
    for (size_t l = 0; l < sizeof(layouts) / sizeof(layouts[0]); l++) {
        for (int silu = 0; silu <= 1; silu++) {
            size_t ch = layouts[l][0], groups = layouts[l][1];
            size_t batch = (size_t)rng_int(r, 1, 3), hw = hws[rng_int(r, 0, 3)];
            size_t count = batch * hw * ch;
            float *x = random_floats(r, count, -2, 3), *w = random_floats(r, ch, 0.5f, 1.5f), *b = random_floats(r, ch, -1, 1);
            float *y = filled_floats(count, NAN), *ref = filled_floats(count, 0);
            float *mean = filled_floats(batch * groups, NAN), *rstd = filled_floats(batch * groups, NAN);
            float *mean_ref = filled_floats(batch * groups, 0), *rstd_ref = filled_floats(batch * groups, 0);
            case_check c;
            case_begin(&c, "pk_group_norm", "batch=%zu hw=%zu c=%zu groups=%zu silu=%d", batch, hw, ch, groups, silu);
            pk_group_norm(x, y, batch, hw, ch, groups, 1e-6f, w, b, silu, mean, rstd);
            pk_group_norm_ref(x, ref, batch, hw, ch, groups, 1e-6f, w, b, silu, mean_ref, rstd_ref);
            for (size_t i = 0; i < count; i++) case_value(&c, i, y[i], ref[i], 1e-5 * (1 + fabsf(ref[i])), x[i]);
            check_statistics(&c, mean, mean_ref, rstd, rstd_ref, batch * groups, 1);
            case_end(&c);
            free(x); free(w); free(b); free(y); free(ref); free(mean); free(rstd); free(mean_ref); free(rstd_ref);
        }
    }
}

typedef void (*channel_reduce_fn)(const float *x, size_t rows, size_t c, const float *center, double *sums);
static void channel_sums_adapter(const float *x, size_t rows, size_t c, const float *center, double *sums) {
    (void)center;
    pk_channel_sums(x, rows, c, sums);
}
static void channel_sums_ref_adapter(const float *x, size_t rows, size_t c, const float *center, double *sums) {
    (void)center;
    pk_channel_sums_ref(x, rows, c, sums);
}

/// Per channel both versions sum the rows in the same order in double: the results must be identical. The
/// sums start from a non-zero value because the kernels add to them.
static void test_channel_reduction(rng_t *r, const char *kernel, channel_reduce_fn fast, channel_reduce_fn ref) {
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t ch = sizes[s], rows = (size_t)rng_int(r, 1, 9);
        float *x = random_floats(r, rows * ch, -3, 3), *center = random_floats(r, ch, -1, 1);
        double *sums = checked_alloc(ch, sizeof(double)), *sums_ref = checked_alloc(ch, sizeof(double));
        for (size_t j = 0; j < ch; j++) sums[j] = sums_ref[j] = 0.25 * (double)j;
        case_check c;
        case_begin(&c, kernel, "rows=%zu c=%zu", rows, ch);
        fast(x, rows, ch, center, sums);
        ref(x, rows, ch, center, sums_ref);
        for (size_t j = 0; j < ch; j++) {
            uint64_t a, b;
            memcpy(&a, &sums[j], 8);
            memcpy(&b, &sums_ref[j], 8);
            case_exact(&c, j, a, b, NAN);
        }
        case_end(&c);
        free(x); free(center); free(sums); free(sums_ref);
    }
}

static void test_channel_sums(rng_t *r) {
    test_channel_reduction(r, "pk_channel_sums", channel_sums_adapter, channel_sums_ref_adapter);
}

static void test_channel_centered_squares(rng_t *r) {
    test_channel_reduction(r, "pk_channel_centered_squares", pk_channel_centered_squares, pk_channel_centered_squares_ref);
}

static void test_channel_affine(rng_t *r) {
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        for (int silu = 0; silu <= 1; silu++) {
            size_t ch = sizes[s], rows = (size_t)rng_int(r, 1, 9);
            float *x = random_floats(r, rows * ch, -3, 3), *scale = random_floats(r, ch, -1, 1), *shift = random_floats(r, ch, -1, 1);
            float *y = filled_floats(rows * ch, NAN), *ref = filled_floats(rows * ch, 0);
            case_check c;
            case_begin(&c, "pk_channel_affine", "rows=%zu c=%zu silu=%d", rows, ch, silu);
            pk_channel_affine(x, y, rows, ch, scale, shift, silu);
            pk_channel_affine_ref(x, ref, rows, ch, scale, shift, silu);
            // A fused or unfused multiply-add (1 ulp) and SiLU's exp (a few ulp).
            for (size_t i = 0; i < rows * ch; i++) case_value(&c, i, y[i], ref[i], 6e-7 * (fabsf(ref[i]) + 1), x[i]);
            case_end(&c);
            free(x); free(scale); free(shift); free(y); free(ref);
        }
    }
}

// ---- Conversions: bit for bit ----------------------------------------------------------------------------------

typedef void (*widen_fn)(const uint16_t *, float *, size_t);
typedef void (*narrow_fn)(const float *, uint16_t *, size_t);

/// Every 16-bit pattern at once, then windows of odd sizes at odd offsets (so that the vector tails see
/// patterns of every kind).
static void test_widening(rng_t *r, const char *kernel, widen_fn fast, widen_fn ref) {
    const size_t all = 65536;
    uint16_t *halves = checked_alloc(all, sizeof(uint16_t));
    for (size_t i = 0; i < all; i++) halves[i] = (uint16_t)i;
    for (size_t s = 0; s <= SIZE_COUNT; s++) {
        size_t n = s < SIZE_COUNT ? sizes[s] : all;
        size_t offset = s < SIZE_COUNT ? (size_t)rng_int(r, 0, (int)(all - n)) : 0;
        float *y = filled_floats(n, NAN), *want = filled_floats(n, 0);
        case_check c;
        case_begin(&c, kernel, "n=%zu from pattern %#zx", n, offset);
        fast(halves + offset, y, n);
        ref(halves + offset, want, n);
        for (size_t i = 0; i < n; i++) case_exact(&c, i, float_bits(y[i]), float_bits(want[i]), halves[offset + i]);
        case_end(&c);
        free(y);
        free(want);
    }
    free(halves);
}

/// Random bit patterns plus the values where rounding decisions happen, whole and in odd windows.
static void test_narrowing(rng_t *r, const char *kernel, narrow_fn fast, narrow_fn ref) {
    static const float edges[] = {0, -0.0f, 1, 1 + 1.0f / 256, 1 + 3.0f / 256, 65504, 65519.99f, 65520, 1e-8f, 6.1e-5f,
                                  5.96e-8f, 2.98e-8f, INFINITY, -INFINITY, NAN, FLT_MAX, 1.4e-45f, 0x1.002p0f, 0x1.006p0f,
                                  0x1.00802p0f, -0x1.018p0f};
    const size_t edge_count = sizeof(edges) / sizeof(edges[0]), total = 20000 + edge_count;
    float *values = checked_alloc(total, sizeof(float));
    for (size_t i = 0; i < 20000; i++) values[i] = bits_float((uint32_t)rng_next(r));
    memcpy(values + 20000, edges, sizeof(edges));
    for (size_t s = 0; s <= SIZE_COUNT; s++) {
        size_t n = s < SIZE_COUNT ? sizes[s] : total;
        // Odd windows end on the edge values half the time.
        size_t offset = s == SIZE_COUNT ? 0 : (s % 2 ? total - n : (size_t)rng_int(r, 0, (int)(total - n)));
        uint16_t *y = checked_alloc(n, sizeof(uint16_t)), *want = checked_alloc(n, sizeof(uint16_t));
        case_check c;
        case_begin(&c, kernel, "n=%zu from value %zu", n, offset);
        fast(values + offset, y, n);
        ref(values + offset, want, n);
        for (size_t i = 0; i < n; i++) case_exact(&c, i, y[i], want[i], values[offset + i]);
        case_end(&c);
        free(y);
        free(want);
    }
    free(values);
}

static void test_bf16_to_f32(rng_t *r) { test_widening(r, "pk_bf16_to_f32", pk_bf16_to_f32, pk_bf16_to_f32_ref); }
static void test_f16_to_f32(rng_t *r) { test_widening(r, "pk_f16_to_f32", pk_f16_to_f32, pk_f16_to_f32_ref); }
static void test_f32_to_bf16(rng_t *r) { test_narrowing(r, "pk_f32_to_bf16", pk_f32_to_bf16, pk_f32_to_bf16_ref); }
static void test_f32_to_f16(rng_t *r) { test_narrowing(r, "pk_f32_to_f16", pk_f32_to_f16, pk_f32_to_f16_ref); }

// ---- Sampling --------------------------------------------------------------------------------------------------

/// Upstream's score in double: logits / max(T, 1e-10) + g, g = -log(-log(u + 1e-20) + 1e-20).
static double gumbel_score(float logit, float u, float t) {
    double g = -log(-log((double)(u + 1e-20f)) + 1e-20);
    return (double)(logit / (t > 1e-10f ? t : 1e-10f)) + g;
}

static void test_gumbel_argmax(rng_t *r) {
    static const float temperatures[] = {1, 0.7f, 1e-12f};
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        for (size_t ti = 0; ti < 6; ti++) {
            size_t n = sizes[s], rows = (size_t)rng_int(r, 1, 9);
            float t = temperatures[ti % 3];
            float *logits = random_floats(r, rows * n, -5, 5), *u = random_floats(r, rows * n, 0, 1);
            // One entry in 8 filtered out to -inf; or, as after typical filtering, all but one in 32 (whole SIMD
            // chunks of -inf, which the fast versions skip), the first row now and then entirely.
            int sparse = ti >= 3;
            for (size_t i = 0; i < rows * n; i++)
                if (sparse ? rng_int(r, 0, 31) != 0 : rng_int(r, 0, 7) == 0) logits[i] = -INFINITY;
            if (sparse && rng_int(r, 0, 3) == 0)
                for (size_t j = 0; j < n; j++) logits[j] = -INFINITY;
            int32_t *got = checked_alloc(rows, sizeof(int32_t)), *want = checked_alloc(rows, sizeof(int32_t));
            case_check c;
            case_begin(&c, "pk_gumbel_argmax", "rows=%zu n=%zu temperature=%g", rows, n, t);
            pk_gumbel_argmax(logits, u, rows, n, t, got);
            pk_gumbel_argmax_ref(logits, u, rows, n, t, want);
            for (size_t row = 0; row < rows; row++) {
                if (got[row] == want[row]) continue;
                if (got[row] < 0 || (size_t)got[row] >= n) { case_exact(&c, row, (uint64_t)got[row], (uint64_t)want[row], NAN); continue; }
                // Only a near tie may differ: the two logs differ from libm's by an ulp or two.
                double a = gumbel_score(logits[row * n + got[row]], u[row * n + got[row]], t);
                double b = gumbel_score(logits[row * n + want[row]], u[row * n + want[row]], t);
                case_value(&c, row, a, b, 1e-5 * fmax(1, fabs(b)), NAN);
            }
            case_end(&c);
            free(logits); free(u); free(got); free(want);
        }
    }
}

static void test_argmax(rng_t *r) {
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes[s], rows = (size_t)rng_int(r, 1, 9);
        // Values on a coarse grid so that ties are common; a row of -inf and a NaN now and then.
        float *x = checked_alloc(rows * n, sizeof(float));
        for (size_t i = 0; i < rows * n; i++) x[i] = (float)rng_int(r, -20, 20);
        for (size_t i = 0; i < rows * n; i++)
            if (rng_int(r, 0, 15) == 0) x[i] = NAN;
        if (rows > 1)
            for (size_t j = 0; j < n; j++) x[n + j] = -INFINITY;
        int32_t *got = checked_alloc(rows, sizeof(int32_t)), *want = checked_alloc(rows, sizeof(int32_t));
        case_check c;
        case_begin(&c, "pk_argmax", "rows=%zu n=%zu", rows, n);
        pk_argmax(x, rows, n, got);
        pk_argmax_ref(x, rows, n, want);
        for (size_t row = 0; row < rows; row++) case_exact(&c, row, (uint64_t)got[row], (uint64_t)want[row], NAN);
        case_end(&c);
        free(x); free(got); free(want);
    }
}

// ---- GEMM ----------------------------------------------------------------------------------------------------

/// One pk_sgemm problem in padded row-major buffers, checked as GEMMTests' Problem.expectMatchesReference: per
/// element, |C - C_ref| <= (4 sqrt(k) + 4) eps (|alpha| sum_p |a_ip b_pj| + |beta c_ij|) + FLT_MIN, and the padding
/// columns of C untouched. With beta == 0, C starts as NaN, which must not leak into the result. A `large` problem
/// skips the per-element scale (a second reference product, slow under emulation) and takes the bound of GEMMTests'
/// large product instead: sum_p |a b| <= k for operands in [-1, 1], so 4 sqrt(k) eps k + 4 eps 20 for |beta c| <= 20.
static void gemm_case(rng_t *r, int ta, int tb, size_t m, size_t n, size_t k, float alpha, float beta, size_t padding,
                      int own_workspace, int large) {
    size_t lda = (ta ? m : k) + padding, ldb = (tb ? k : n) + padding, ldc = n + padding;
    size_t a_count = (ta ? k : m) * lda, b_count = (tb ? n : k) * ldb, c_count = m * ldc;
    float *a = random_floats(r, a_count, -1, 1), *b = random_floats(r, b_count, -1, 1);
    float *c0 = beta == 0 ? filled_floats(c_count, NAN) : random_floats(r, c_count, -1, 1);
    float *c = checked_alloc(c_count, sizeof(float)), *ref = checked_alloc(c_count, sizeof(float));
    memcpy(c, c0, c_count * sizeof(float));
    memcpy(ref, c0, c_count * sizeof(float));
    float *abs_a = checked_alloc(a_count, sizeof(float)), *abs_b = checked_alloc(b_count, sizeof(float));
    for (size_t i = 0; i < a_count; i++) abs_a[i] = fabsf(a[i]);
    for (size_t i = 0; i < b_count; i++) abs_b[i] = fabsf(b[i]);
    float *scale = filled_floats(c_count, 0);

    float *workspace = NULL, *workspace_block = NULL;
    if (own_workspace) {  // one float past an aligned start, so that the kernel must align it itself
        workspace_block = checked_alloc(pk_sgemm_workspace_floats(m, n, k) + 1, sizeof(float));
        workspace = workspace_block + 1;
    }
    case_check cc;
    case_begin(&cc, "pk_sgemm", "%c%c m=%zu n=%zu k=%zu alpha=%g beta=%g lda=%zu ldb=%zu ldc=%zu", ta ? 'T' : 'N',
               tb ? 'T' : 'N', m, n, k, alpha, beta, lda, ldb, ldc);
    cc.row_length = ldc;
    pk_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, workspace);
    pk_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, ref, ldc);
    if (!large) pk_sgemm_ref(ta, tb, m, n, k, 1, abs_a, lda, abs_b, ldb, 0, scale, ldc);
    double factor = (4 * sqrt((double)k) + 4) * FLT_EPSILON;
    double large_bound = 4 * sqrt((double)k) * FLT_EPSILON * (double)k + 4 * FLT_EPSILON * 20;
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            size_t at = i * ldc + j;
            double bound = large ? large_bound
                                 : factor * (fabs(alpha) * scale[at] + (beta == 0 ? 0 : fabs(beta * c0[at]))) + FLT_MIN;
            case_value(&cc, at, c[at], ref[at], bound, NAN);
        }
        for (size_t j = n; j < ldc; j++)
            if (float_bits(c[i * ldc + j]) != float_bits(c0[i * ldc + j])) case_problem(&cc, "wrote a padding column of C");
    }
    case_end(&cc);
    free(a); free(b); free(c0); free(c); free(ref); free(abs_a); free(abs_b); free(scale); free(workspace_block);
}

static void test_sgemm(rng_t *r) {
    // GEMMTests' random problems: odd sizes, the four transpose pairs, alpha/beta including beta 0 over NaN, and
    // padded leading dimensions.
    static const size_t odd[] = {1, 3, 17, 31, 65, 129};
    static const float scalars[][2] = {{1, 0}, {1, 1}, {-0.5f, 0}, {2, -1.5f}, {0.75f, 0.25f}};
    for (int i = 0; i < 48; i++) {
        gemm_case(r, i % 4 & 1, i % 4 >> 1, odd[rng_int(r, 0, 5)], odd[rng_int(r, 0, 5)], odd[rng_int(r, 0, 5)],
                  scalars[i % 5][0], scalars[i % 5][1], (size_t)rng_int(r, 0, 3), i % 2, 0);
    }
    // Sizes around every micro-tile (portable 4x8, NEON 8x12, AVX2 6x16, AVX-512 12x32): one short, exact, one over.
    static const size_t rows[] = {1, 5, 7, 8, 9, 11, 12, 13, 24, 25};
    static const size_t cols[] = {1, 7, 8, 9, 11, 12, 13, 16, 17, 31, 32, 33};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        for (size_t j = 0; j < sizeof(cols) / sizeof(cols[0]); j++)
            gemm_case(r, (int)(i + j) % 2, (int)(i * j) % 2, rows[i], cols[j], (size_t)rng_int(r, 1, 40),
                      scalars[(i + j) % 5][0], scalars[(i + j) % 5][1], (size_t)rng_int(r, 0, 2), (int)j % 2, 0);
    // Larger than every cache block of every level: m = 965 > mc = 960 (two row blocks); k = 400 > kc_max of 256
    // and 384 (two k blocks of 200); n = 333 is more than the columns a B block holds at that depth on NEON (324),
    // portable and AVX2 (320), so there are two column blocks there (AVX-512 holds 1280).
    gemm_case(r, 0, 0, 965, 333, 400, 0.5f, -1, 1, 1, 1);
    gemm_case(r, 1, 1, 965, 333, 400, 0.5f, -1, 1, 0, 1);
}

// ---- bfloat16 GEMM --------------------------------------------------------------------------------------------

// pk_gemm_bf16 against its reference twin (same packed words, sums in double), for an m x n x k product whose
// weights are stored [k, n] or [n, k], columns from panel `first_panel` on, over C pre-filled with NaN (beta 0)
// or random values. The tolerance is float32 summation error of the exact bfloat16 products.
static void gemm_bf16_case(rng_t *r, size_t m, size_t n, size_t k, int trans_b, size_t first_panel, float beta) {
    const size_t total_n = first_panel * PK_BF16_PANEL + n;
    float *a = random_floats(r, m * k, -1, 1), *b = random_floats(r, k * total_n, -1, 1);
    uint32_t *packed = checked_alloc(pk_bf16_packed_words(k, total_n) + 16, sizeof(uint32_t));
    uint32_t *aligned = (uint32_t *)(((uintptr_t)packed + 63) & ~(uintptr_t)63);
    pk_bf16_pack(trans_b, b, trans_b ? k : total_n, k, total_n, 0, (total_n + PK_BF16_PANEL - 1) / PK_BF16_PANEL, aligned);
    float *c = beta == 0 ? filled_floats(m * n, NAN) : random_floats(r, m * n, -1, 1);
    float *ref = checked_alloc(m * n, sizeof(float));
    memcpy(ref, c, m * n * sizeof(float));
    pk_gemm_bf16(m, n, k, a, k, aligned, first_panel, beta, c, n, NULL);
    pk_gemm_bf16_ref(m, n, k, a, k, aligned, first_panel, beta, ref, n);
    case_check cc;
    case_begin(&cc, "pk_gemm_bf16", "m=%zu n=%zu k=%zu %s panel %zu beta=%g", m, n, k, trans_b ? "[n, k]" : "[k, n]", first_panel, beta);
    cc.row_length = n;
    for (size_t i = 0; i < m * n; i++) case_value(&cc, i, c[i], ref[i], 4 * (sqrt((double)k) + 2) * FLT_EPSILON * (double)k + FLT_MIN, NAN);
    case_end(&cc);
    free(a); free(b); free(packed); free(c); free(ref);
}

static pk_conv_geometry conv_geometry(ptrdiff_t batch, ptrdiff_t h, ptrdiff_t w, ptrdiff_t k, ptrdiff_t stride,
                                      ptrdiff_t pad, pk_pad_mode mode, ptrdiff_t dilation);

// The implicit-GEMM convolution with bfloat16 weights is the same driver as pk_gemm_bf16 fed by the lowered input,
// so it must give the bits of pk_im2col_nhwc followed by pk_gemm_bf16.
static void test_conv2d_gemm_bf16(rng_t *r) {
    static const struct { ptrdiff_t c, k, stride, pad; pk_pad_mode mode; } shapes[] = {
        {5, 3, 1, 1, PK_PAD_REFLECT}, {16, 4, 2, 1, PK_PAD_ZEROS}, {3, 1, 1, 0, PK_PAD_ZEROS}};
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        const ptrdiff_t ch = shapes[si].c, kk = shapes[si].k;
        pk_conv_geometry g = conv_geometry(2, 7, 6, kk, shapes[si].stride, shapes[si].pad, shapes[si].mode, 1);
        const size_t pixels = (size_t)(2 * g.out_h * g.out_w), depth = (size_t)(kk * kk * ch), n = 40;
        float *x = random_floats(r, (size_t)(2 * 7 * 6 * ch), -1, 1), *kernel = random_floats(r, depth * n, -1, 1);
        uint32_t *packed = checked_alloc(pk_bf16_packed_words(depth, n) + 16, sizeof(uint32_t));
        uint32_t *aligned = (uint32_t *)(((uintptr_t)packed + 63) & ~(uintptr_t)63);
        pk_bf16_pack(0, kernel, n, depth, n, 0, (n + PK_BF16_PANEL - 1) / PK_BF16_PANEL, aligned);
        float *col = checked_alloc(pixels * depth, sizeof(float)), *want = filled_floats(pixels * n, NAN);
        float *got = filled_floats(pixels * n, NAN);
        pk_im2col_nhwc(x, ch, 0, ch, &g, 0, 2 * g.out_h, col);
        pk_gemm_bf16(pixels, n, depth, col, depth, aligned, 0, 0, want, n, NULL);
        pk_conv2d_gemm_bf16_nhwc(x, ch, 0, ch, &g, 0, (ptrdiff_t)pixels, aligned, 0, n, 0, got, n, NULL);
        case_check c;
        case_begin(&c, "pk_conv2d_gemm_bf16_nhwc", "c=%td k=%td stride=%td pad=%td %s", ch, kk, g.stride_h, g.pad_top,
                   shapes[si].mode == PK_PAD_REFLECT ? "reflect" : "zeros");
        for (size_t i = 0; i < pixels * n; i++) case_exact(&c, i, float_bits(got[i]), float_bits(want[i]), NAN);
        case_end(&c);
        free(x); free(kernel); free(packed); free(col); free(want); free(got);
    }
}

// Winograd F(2x2, 3x3) against the implicit-GEMM convolution (its twin: the direct sum), within float32 rounding of
// sums of 9 * c products of values in [-1, 1]: odd sides (tiles cut by the edge), a split tile range (the same bits
// as the whole range), beta 0 over NaN and beta 1 over a prefilled output.
static void test_winograd(rng_t *r) {
    static const struct { size_t h, w, cin, cout; } shapes[] = {{5, 7, 3, 17}, {8, 9, 16, 40}, {11, 6, 33, 8}};
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        const size_t h = shapes[si].h, w = shapes[si].w, cin = shapes[si].cin, cout = shapes[si].cout, batch = 2;
        pk_conv_geometry g = conv_geometry(2, (ptrdiff_t)h, (ptrdiff_t)w, 3, 1, 1, PK_PAD_ZEROS, 1);
        const size_t pixels = batch * h * w, tiles = batch * ((h + 1) / 2) * ((w + 1) / 2);
        float *x = random_floats(r, pixels * cin, -1, 1), *kernel = random_floats(r, 9 * cin * cout, -1, 1);
        float *u = checked_alloc(pk_winograd3x3_weights_floats(cin, cout), sizeof(float));
        float *space = checked_alloc(pk_conv2d_winograd3x3_workspace_floats(cin, cout), sizeof(float));
        pk_winograd3x3_weights(kernel, cin, cout, u);
        for (int beta = 0; beta < 2; beta++) {
            float *start = beta ? random_floats(r, pixels * cout, -1, 1) : filled_floats(pixels * cout, NAN);
            float *want = checked_alloc(pixels * cout, sizeof(float)), *whole = checked_alloc(pixels * cout, sizeof(float));
            float *split = checked_alloc(pixels * cout, sizeof(float));
            memcpy(want, start, pixels * cout * sizeof(float));
            memcpy(whole, start, pixels * cout * sizeof(float));
            memcpy(split, start, pixels * cout * sizeof(float));
            pk_conv2d_gemm_nhwc(x, (ptrdiff_t)cin, 0, (ptrdiff_t)cin, &g, 0, (ptrdiff_t)pixels, kernel, cout, cout, (float)beta,
                                want, cout, NULL);
            pk_conv2d_winograd3x3_nhwc(x, h, w, cin, u, cout, 0, tiles, (float)beta, whole, space);
            pk_conv2d_winograd3x3_nhwc(x, h, w, cin, u, cout, 0, tiles / 3, (float)beta, split, space);
            pk_conv2d_winograd3x3_nhwc(x, h, w, cin, u, cout, tiles / 3, tiles, (float)beta, split, space);
            case_check c;
            case_begin(&c, "pk_conv2d_winograd3x3_nhwc", "batch=%zu h=%zu w=%zu cin=%zu cout=%zu beta=%d", batch, h, w, cin, cout, beta);
            c.row_length = cout;
            const double tolerance = 1e-5 * (9.0 * (double)cin + 1);
            for (size_t i = 0; i < pixels * cout; i++) case_value(&c, i, whole[i], want[i], tolerance, NAN);
            case_end(&c);
            case_begin(&c, "pk_conv2d_winograd3x3_nhwc", "batch=%zu h=%zu w=%zu cin=%zu cout=%zu beta=%d, tiles in two ranges",
                       batch, h, w, cin, cout, beta);
            for (size_t i = 0; i < pixels * cout; i++) case_exact(&c, i, float_bits(split[i]), float_bits(whole[i]), NAN);
            case_end(&c);
            free(start); free(want); free(whole); free(split);
        }
        free(x); free(kernel); free(u); free(space);
    }
}

static void test_gemm_bf16(rng_t *r) {
    static const size_t rows[] = {1, 3, 4, 5, 11, 12, 13, 25};
    static const size_t cols[] = {1, 31, 32, 33, 70};
    static const size_t depths[] = {1, 2, 7, 64, 257, 513};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        for (size_t j = 0; j < sizeof(cols) / sizeof(cols[0]); j++)
            gemm_bf16_case(r, rows[i], cols[j], depths[(i + j) % 6], (int)(i + j) % 2, j % 2, (i * j) % 3 == 0 ? 0.0f : 0.5f);
    gemm_bf16_case(r, 600, 100, 600, 1, 1, 1);  // two row blocks (480) and three k blocks (256)
    test_conv2d_gemm_bf16(r);
    // Unpacking gives back the bfloat16 values that packing stored.
    const size_t k = 37, n = 45;
    float *b = random_floats(r, k * n, -4, 4), *back = checked_alloc(k * n, sizeof(float));
    uint32_t *packed = checked_alloc(pk_bf16_packed_words(k, n), sizeof(uint32_t));
    pk_bf16_pack(0, b, n, k, n, 0, (n + PK_BF16_PANEL - 1) / PK_BF16_PANEL, packed);
    pk_bf16_unpack(packed, k, n, back);
    case_check c;
    case_begin(&c, "pk_bf16_unpack", "k=%zu n=%zu", k, n);
    for (size_t i = 0; i < k * n; i++) {
        uint16_t half;
        pk_f32_to_bf16_ref(b + i, &half, 1);
        case_exact(&c, i, float_bits(back[i]), (uint32_t)half << 16, b[i]);
    }
    case_end(&c);
    free(b); free(back); free(packed);
}

// ---- Convolution ---------------------------------------------------------------------------------------------

static pk_conv_geometry conv_geometry(ptrdiff_t batch, ptrdiff_t h, ptrdiff_t w, ptrdiff_t k, ptrdiff_t stride,
                                      ptrdiff_t pad, pk_pad_mode mode, ptrdiff_t dilation) {
    pk_conv_geometry g = {batch, h, w, (h + 2 * pad - dilation * (k - 1) - 1) / stride + 1,
                          (w + 2 * pad - dilation * (k - 1) - 1) / stride + 1, k, k, stride, stride, dilation, dilation,
                          pad, pad, mode};
    return g;
}

static void test_depthwise(rng_t *r) {
    static const size_t channels[] = {1, 3, 4, 5, 8, 13, 17, 31, 32, 33, 64, 67, 130};
    static const struct { ptrdiff_t k, stride, pad; pk_pad_mode mode; } shapes[] = {
        {3, 1, 1, PK_PAD_REFLECT}, {3, 2, 1, PK_PAD_ZEROS}, {4, 2, 1, PK_PAD_ZEROS}, {1, 1, 0, PK_PAD_ZEROS}, {5, 1, 2, PK_PAD_ZEROS}};
    for (size_t ci = 0; ci < sizeof(channels) / sizeof(channels[0]); ci++) {
        for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
            for (int use_bias = 0; use_bias <= 1; use_bias++) {
                ptrdiff_t ch = (ptrdiff_t)channels[ci], k = shapes[si].k;
                pk_conv_geometry g = conv_geometry(2, 5, 7, k, shapes[si].stride, shapes[si].pad, shapes[si].mode, 1);
                float *x = random_floats(r, (size_t)(2 * 5 * 7 * ch), -1, 1), *w = random_floats(r, (size_t)(k * k * ch), -1, 1);
                float *bias = use_bias ? random_floats(r, (size_t)ch, -1, 1) : NULL;
                size_t count = (size_t)(2 * g.out_h * g.out_w * ch);
                float *y = filled_floats(count, NAN), *ref = filled_floats(count, NAN);
                case_check c;
                case_begin(&c, "pk_depthwise_conv2d_nhwc", "c=%td k=%td stride=%td pad=%td %s%s", ch, k, g.stride_h,
                           g.pad_top, shapes[si].mode == PK_PAD_REFLECT ? "reflect" : "zeros", use_bias ? " bias" : "");
                pk_depthwise_conv2d_nhwc(x, ch, w, bias, &g, 0, 2 * g.out_h, y);
                pk_depthwise_conv2d_nhwc_ref(x, ch, w, bias, &g, 0, 2 * g.out_h, ref);
                // At most 25 fused vs unfused multiply-adds of values in [-1, 1]: differences ~1e-6.
                for (size_t i = 0; i < count; i++) case_value(&c, i, y[i], ref[i], 1e-5, NAN);
                case_end(&c);
                free(x); free(w); free(bias); free(y); free(ref);
            }
        }
    }
}

static void test_col2im_transposed(rng_t *r) {
    static const ptrdiff_t shapes[][4] = {{1, 4, 2, 1}, {5, 3, 1, 0}, {17, 3, 2, 1}, {33, 2, 2, 0}, {3, 5, 3, 2}, {8, 4, 2, 1}};
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        for (int use_bias = 0; use_bias <= 1; use_bias++) {
            ptrdiff_t cg = shapes[si][0], k = shapes[si][1], stride = shapes[si][2], pad = shapes[si][3];
            ptrdiff_t b = 2, h = 3, w = 4, oh = (h - 1) * stride - 2 * pad + k, ow = (w - 1) * stride - 2 * pad + k;
            pk_conv_geometry g = {b, h, w, oh, ow, k, k, stride, stride, 1, 1, pad, pad, PK_PAD_ZEROS};
            float *col = random_floats(r, (size_t)(b * h * w * k * k * cg), -1, 1);
            float *bias = use_bias ? random_floats(r, (size_t)(2 * cg), -1, 1) : NULL;
            size_t count = (size_t)(b * oh * ow * 2 * cg);
            float *y = filled_floats(count, 7), *ref = filled_floats(count, 7);
            case_check c;
            case_begin(&c, "pk_col2im_transposed_nhwc", "cg=%td k=%td stride=%td pad=%td%s", cg, k, stride, pad,
                       use_bias ? " bias" : "");
            // Group 1 of 2 (channels cg..<2cg), rows 1..<end, so that the offsets are exercised.
            pk_col2im_transposed_nhwc(col, cg, bias, &g, 2 * cg, cg, 1, b * oh, y);
            pk_col2im_transposed_nhwc_ref(col, cg, bias, &g, 2 * cg, cg, 1, b * oh, ref);
            for (size_t i = 0; i < count; i++) case_value(&c, i, y[i], ref[i], 1e-5, NAN);
            if (y[0] != 7 || y[ow * 2 * cg] != 7) case_problem(&c, "wrote row 0 or channel group 0");
            case_end(&c);
            free(col); free(bias); free(y); free(ref);
        }
    }
}

/// im2col against its twin (pure copies: bit-identical), and col2im_add, which has no twin, as its adjoint:
/// <im2col(x), v> == <x, col2im(v)> for any v (within 1e-3, as ConvolutionKernelTests).
static void test_im2col(rng_t *r, int adjoint) {
    static const struct { ptrdiff_t c, k, stride, pad; pk_pad_mode mode; ptrdiff_t dilation; } shapes[] = {
        {5, 3, 1, 1, PK_PAD_REFLECT, 1}, {3, 4, 2, 1, PK_PAD_ZEROS, 1}, {17, 3, 2, 2, PK_PAD_ZEROS, 2},
        {1, 1, 1, 0, PK_PAD_ZEROS, 1}, {4, 3, 1, 2, PK_PAD_REFLECT, 2}, {13, 2, 1, 0, PK_PAD_ZEROS, 1}};
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        ptrdiff_t ch = shapes[si].c, k = shapes[si].k;
        pk_conv_geometry g = conv_geometry(2, 6, 5, k, shapes[si].stride, shapes[si].pad, shapes[si].mode, shapes[si].dilation);
        size_t x_count = (size_t)(2 * 6 * 5 * 2 * ch);  // two groups of ch channels; lower group 1
        ptrdiff_t rows = 2 * g.out_h;
        size_t col_count = (size_t)(rows * g.out_w * k * k * ch);
        float *x = random_floats(r, x_count, -1, 1), *col = filled_floats(col_count, NAN), *ref = filled_floats(col_count, NAN);
        pk_im2col_nhwc(x, 2 * ch, ch, ch, &g, 0, rows, col);
        case_check c;
        if (!adjoint) {
            case_begin(&c, "pk_im2col_nhwc", "c=%td k=%td stride=%td pad=%td dilation=%td %s", ch, k, g.stride_h, g.pad_top,
                       g.dilation_h, shapes[si].mode == PK_PAD_REFLECT ? "reflect" : "zeros");
            pk_im2col_nhwc_ref(x, 2 * ch, ch, ch, &g, 0, rows, ref);
            for (size_t i = 0; i < col_count; i++) case_exact(&c, i, float_bits(col[i]), float_bits(ref[i]), NAN);
        } else {
            case_begin(&c, "pk_col2im_nhwc_add", "adjoint of im2col, c=%td k=%td stride=%td pad=%td dilation=%td %s", ch,
                       k, g.stride_h, g.pad_top, g.dilation_h, shapes[si].mode == PK_PAD_REFLECT ? "reflect" : "zeros");
            float *v = random_floats(r, col_count, -1, 1), *back = filled_floats(x_count, 0);
            pk_col2im_nhwc_add(v, 2 * ch, ch, ch, &g, 0, rows, back);
            double lhs = 0, rhs = 0;
            for (size_t i = 0; i < col_count; i++) lhs += (double)col[i] * v[i];
            for (size_t i = 0; i < x_count; i++) rhs += (double)x[i] * back[i];
            case_value(&c, 0, lhs, rhs, 1e-3, NAN);
            free(v);
            free(back);
        }
        case_end(&c);
        free(x); free(col); free(ref);
    }
}

static void test_im2col_copy(rng_t *r) { test_im2col(r, 0); }
static void test_col2im_add(rng_t *r) { test_im2col(r, 1); }

// ---- Driver ------------------------------------------------------------------------------------------------------

static void (*const tests[])(rng_t *) = {
    test_exp, test_log, test_erf, test_gelu, test_gelu_backward, test_silu, test_softmax, test_log_softmax, test_typical,
    test_layer_norm, test_group_norm, test_channel_sums, test_channel_centered_squares, test_channel_affine,
    test_bf16_to_f32, test_f16_to_f32, test_f32_to_bf16, test_f32_to_f16, test_gumbel_argmax, test_argmax,
    test_sgemm, test_gemm_bf16, test_winograd, test_im2col_copy, test_col2im_add, test_depthwise, test_col2im_transposed,
};

int main(int argc, char **argv) {
    const char *only = NULL;
    if (argc == 3 && strcmp(argv[1], "--isa") == 0) only = argv[2];
    else if (argc != 1) {
        fprintf(stderr, "usage: %s [--isa avx512|avx2|neon|portable]: runs every kernel against its reference at each "
                        "instruction-set level this CPU has (or only the one named).\n", argv[0]);
        return 2;
    }
    // The detected level and each lower one it can be forced to.
    pk_isa levels[3];
    int level_count = 0;
    switch (pk_detected_isa()) {
    case PK_ISA_AVX512: levels[level_count++] = PK_ISA_AVX512; /* fall through */
    case PK_ISA_AVX2: levels[level_count++] = PK_ISA_AVX2; break;
    case PK_ISA_NEON: levels[level_count++] = PK_ISA_NEON; break;
    default: break;
    }
    levels[level_count++] = PK_ISA_PORTABLE;

    printf("kernel_driver: detected %s\n", pk_isa_name(pk_detected_isa()));
    int failed = 0, ran = 0;
    for (int l = 0; l < level_count; l++) {
        if (only && strcmp(only, pk_isa_name(levels[l])) != 0) continue;
        ran++;
        memset(&stats, 0, sizeof(stats));
        level_name = pk_isa_name(levels[l]);
        pk_set_thread_isa((int)levels[l]);
        if (pk_active_isa() != levels[l]) {
            printf("FAIL %s: the level could not be forced (pk_active_isa() gives %s)\n", level_name, pk_isa_name(pk_active_isa()));
            failed = 1;
            continue;
        }
        rng_t rng = {0x5eed0000u};  // the same cases at every level, so a failure at one level alone is that level's
        for (size_t t = 0; t < sizeof(tests) / sizeof(tests[0]); t++) tests[t](&rng);
        printf("%-8s %d kernels, %ld cases, %ld passed", level_name, stats.kernel_count, stats.cases, stats.passed);
        if (stats.failed_kernel_count) {
            printf(", failing:");
            for (int i = 0; i < stats.failed_kernel_count; i++) printf(" %s", stats.failed_kernels[i]);
            failed = 1;
        }
        printf("\n");
    }
    pk_set_thread_isa(-1);
    if (only && ran == 0) {
        fprintf(stderr, "kernel_driver: this CPU cannot run the level \"%s\"; name one that the line above lists, or none.\n", only);
        return 2;
    }
    return failed;
}
