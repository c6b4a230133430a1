// The built-in GEMM driver: blocking, packing, ISA dispatch, the portable micro-kernel and the reference twin.
//
// Loop nest (the GotoBLAS/BLIS scheme, written for row-major C with micro-kernels that vectorise along N):
//   for ic: blocks of mc rows of C                    packed A block (mc x kc) lives in L2/L3
//     for pc: blocks of kc along k                    A block packed once per (ic, pc), alpha folded in
//       for jc: blocks of nc columns                  packed B block (kc x nc) sized to stay in L2
//         for ir: strips of mr rows                   one A strip (mr x kc) stays in L1 ...
//           for jr: panels of nr columns              ... while the B panels stream through it from L2
//             micro-kernel: C[ir:ir+mr, jr:jr+nr] (+)= A strip * B panel
// Only the first k block applies the caller's beta; later ones accumulate (beta = 1). Edge tiles are computed
// whole into a scratch tile (the packing zero-pads) and only their valid part is merged into C.
#include "paella_gemm.h"
#include "paella_kernels.h"
#include "gemm_kernels.h"
#include "conv_index.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int mr, nr;            // micro-tile
    size_t kc_max;         // depth of a k block: an A strip (mr x kc) should fill at most ~half of L1
    size_t mc;             // rows of an A block (a multiple of mr)
    size_t b_block_floats; // budget for the packed B block (kc x nc), about half of L2
    pk_gemm_kernel_fn kernel;
} gemm_config;

#define PORTABLE_MR 4
#define PORTABLE_NR 8
#define MAX_TILE (16 * 32) // largest mr * nr of any kernel

// Portable micro-kernel, same contract as the SIMD ones (see gemm_kernels.h). The 4 x 8 accumulator array is
// small enough for compilers to keep in registers and vectorise the j loop.
static void kernel_portable(size_t kc, const float *a, const float *b, float *c, size_t ldc, float beta) {
    float acc[PORTABLE_MR][PORTABLE_NR] = {{0}};
    for (size_t p = 0; p < kc; p++) {
        for (int i = 0; i < PORTABLE_MR; i++) {
            float ai = a[i];
            for (int j = 0; j < PORTABLE_NR; j++) acc[i][j] += ai * b[j];
        }
        a += PORTABLE_MR;
        b += PORTABLE_NR;
    }
    for (int i = 0; i < PORTABLE_MR; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < PORTABLE_NR; j++) ci[j] = beta == 0.0f ? acc[i][j] : acc[i][j] + beta * ci[j];
    }
}

static const gemm_config portable_config = {PORTABLE_MR, PORTABLE_NR, 256, 960, 64 * 1024, kernel_portable};
#if defined(__x86_64__) || defined(__i386__)
static const gemm_config avx512_config = {PK_GEMM_AVX512_MR, PK_GEMM_AVX512_NR, 384, 960, 256 * 1024,
                                          pk_gemm_kernel_avx512};
static const gemm_config avx2_config = {PK_GEMM_AVX2_MR, PK_GEMM_AVX2_NR, 256, 960, 64 * 1024, pk_gemm_kernel_avx2};
#endif
#if defined(__aarch64__)
static const gemm_config neon_config = {PK_GEMM_NEON_MR, PK_GEMM_NEON_NR, 256, 960, 64 * 1024, pk_gemm_kernel_neon};
#endif

static const gemm_config *active_config(void) {
    switch (pk_active_isa()) {
#if defined(__x86_64__) || defined(__i386__)
    case PK_ISA_AVX512: return &avx512_config;
    case PK_ISA_AVX2: return &avx2_config;
#endif
#if defined(__aarch64__)
    case PK_ISA_NEON: return &neon_config;
#endif
    default: return &portable_config;
    }
}

void pk_sgemm_micro_tile(int *mr, int *nr) {
    const gemm_config *cfg = active_config();
    *mr = cfg->mr;
    *nr = cfg->nr;
}


// k blocks of equal depth (e.g. k = 1280 with kc_max 384 -> 4 blocks of 320) rather than full blocks and a
// thin remainder, so every block does the same amount of work per packed element.
static size_t block_depth(size_t k, size_t kc_max) {
    size_t blocks = (k + kc_max - 1) / kc_max;
    return (k + blocks - 1) / blocks;
}

// Columns of a packed B block: as many whole panels as the L2 budget allows for this depth.
static size_t block_columns(const gemm_config *cfg, size_t kc) {
    size_t nc = cfg->b_block_floats / kc / (size_t)cfg->nr * (size_t)cfg->nr;
    return nc < (size_t)cfg->nr ? (size_t)cfg->nr : nc;
}

static void workspace_layout(const gemm_config *cfg, size_t m, size_t n, size_t k, size_t *a_floats, size_t *b_floats) {
    size_t kc = block_depth(k, cfg->kc_max);
    *a_floats = round_up(round_up(min_size(m, cfg->mc), (size_t)cfg->mr) * kc, 16);
    *b_floats = round_up(round_up(min_size(n, block_columns(cfg, kc)), (size_t)cfg->nr) * kc, 16);
}

// The largest workspace any compiled-in blocking needs, so that a workspace sized before pk_force_isa changes
// the active ISA (another thread, a test) is still big enough for the call that uses it.
size_t pk_sgemm_workspace_floats(size_t m, size_t n, size_t k) {
    if (m == 0 || n == 0 || k == 0) return 0;
    const gemm_config *configs[] = {
        &portable_config,
#if defined(__x86_64__) || defined(__i386__)
        &avx512_config, &avx2_config,
#endif
#if defined(__aarch64__)
        &neon_config,
#endif
    };
    size_t most = 0;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        size_t a_floats, b_floats;
        workspace_layout(configs[i], m, n, k, &a_floats, &b_floats);
        if (a_floats + b_floats > most) most = a_floats + b_floats;
    }
    return most + 16; // + 16: room to align the start to 64 bytes
}

// ---- Transposing copies for packing -------------------------------------------------------------------------
// Packing A (not transposed) and B (transposed) turns rows that run along k into panels that run across it: a
// transpose. Element by element that is one strided store per float, which perf showed at a quarter of a v1
// denoiser forward (as much as the micro-kernel) for the weights' [out, in] layout. With AVX2, 8 x 8 and 4 x 8
// tiles are transposed in registers and stored as whole rows. The packed values are the same floats (alpha * a,
// as the scalar loops compute it), so results do not change.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PK_PACK_AVX2 __attribute__((target("avx2")))

// Rows v[0..7] (8 floats each) become columns: v[q] = (v0[q], v1[q], ..., v7[q]).
static inline PK_PACK_AVX2 void transpose_8x8(__m256 v[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int q = 0; q < 4; q++) {
        v[q] = _mm256_permute2f128_ps(u[q], u[q + 4], 0x20);
        v[q + 4] = _mm256_permute2f128_ps(u[q], u[q + 4], 0x31);
    }
}

// dst[q * stride + i] = scale * src[i][q] for i < 8, q < 8.
static inline PK_PACK_AVX2 void copy_transposed_8x8(const float *const *src, size_t p, float scale, float *dst, size_t stride) {
    __m256 v[8], s = _mm256_set1_ps(scale);
    for (int i = 0; i < 8; i++) v[i] = _mm256_mul_ps(s, _mm256_loadu_ps(src[i] + p));
    transpose_8x8(v);
    for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (size_t)q * stride, v[q]);
}

// dst[q * stride + i] = scale * src[i][q] for i < 4, q < 8.
static inline PK_PACK_AVX2 void copy_transposed_4x8(const float *const *src, size_t p, float scale, float *dst, size_t stride) {
    __m256 s = _mm256_set1_ps(scale);
    __m256 r0 = _mm256_mul_ps(s, _mm256_loadu_ps(src[0] + p)), r1 = _mm256_mul_ps(s, _mm256_loadu_ps(src[1] + p));
    __m256 r2 = _mm256_mul_ps(s, _mm256_loadu_ps(src[2] + p)), r3 = _mm256_mul_ps(s, _mm256_loadu_ps(src[3] + p));
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 c[4] = {_mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
                   _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2))};
    for (int q = 0; q < 4; q++) {  // c[q] holds column q in its low half and column q + 4 in its high half
        _mm_storeu_ps(dst + (size_t)q * stride, _mm256_castps256_ps128(c[q]));
        _mm_storeu_ps(dst + (size_t)(q + 4) * stride, _mm256_extractf128_ps(c[q], 1));
    }
}

// dst[p * stride + i] = scale * src[i][p] for i < rows, p < depth: tiles of 8 (then 4) rows by 8 along p, the
// rest element by element.
static PK_PACK_AVX2 void copy_transposed_rows_avx2(const float *const *src, size_t rows, size_t depth, float scale,
                                                   float *dst, size_t stride) {
    size_t i = 0;
    for (; i + 8 <= rows; i += 8) {
        size_t p = 0;
        for (; p + 8 <= depth; p += 8) copy_transposed_8x8(src + i, p, scale, dst + p * stride + i, stride);
        for (; p < depth; p++)
            for (size_t r = 0; r < 8; r++) dst[p * stride + i + r] = scale * src[i + r][p];
    }
    for (; i + 4 <= rows; i += 4) {
        size_t p = 0;
        for (; p + 8 <= depth; p += 8) copy_transposed_4x8(src + i, p, scale, dst + p * stride + i, stride);
        for (; p < depth; p++)
            for (size_t r = 0; r < 4; r++) dst[p * stride + i + r] = scale * src[i + r][p];
    }
    for (; i < rows; i++)
        for (size_t p = 0; p < depth; p++) dst[p * stride + i] = scale * src[i][p];
}
#endif

// dst[p * stride + i] = scale * src[i][p] for i < rows, p < depth (a transpose of rows that may lie anywhere), in
// register tiles where the CPU allows.
static void copy_transposed_rows(const float *const *src, size_t rows, size_t depth, float scale, float *dst, size_t stride) {
#if defined(__x86_64__) || defined(__i386__)
    pk_isa isa = pk_active_isa();
    if (pk_isa_runs_avx2(isa)) {
        copy_transposed_rows_avx2(src, rows, depth, scale, dst, stride);
        return;
    }
#endif
    for (size_t i = 0; i < rows; i++)
        for (size_t p = 0; p < depth; p++) dst[p * stride + i] = scale * src[i][p];
}

#define MAX_PACK_ROWS 32 // the most rows a packing step transposes at once: an A strip (mr) or a B panel (nr)
// pack_conv_rows keeps one A strip's row addresses on the stack.
_Static_assert(PORTABLE_MR <= MAX_PACK_ROWS, "an A strip must fit the packing's row arrays");
#if defined(__x86_64__) || defined(__i386__)
_Static_assert(PK_GEMM_AVX512_MR <= MAX_PACK_ROWS && PK_GEMM_AVX2_MR <= MAX_PACK_ROWS, "an A strip must fit the packing's row arrays");
#endif
#if defined(__aarch64__)
_Static_assert(PK_GEMM_NEON_MR <= MAX_PACK_ROWS, "an A strip must fit the packing's row arrays");
#endif

// dst[p * stride + i] = scale * src[i * ld + p] for i < rows, p < depth (row pointers made MAX_PACK_ROWS at a time).
static void copy_transposed(const float *src, size_t ld, size_t rows, size_t depth, float scale, float *dst, size_t stride) {
    const float *row[MAX_PACK_ROWS];
    for (size_t first = 0; first < rows; first += MAX_PACK_ROWS) {
        const size_t n = min_size(MAX_PACK_ROWS, rows - first);
        for (size_t i = 0; i < n; i++) row[i] = src + (first + i) * ld;
        copy_transposed_rows(row, n, depth, scale, dst + first, stride);
    }
}

// Packs rows [0, rows) x depth [0, kc) of alpha * op(A) (A already offset to the block's corner) into strips
// of mr rows: strip s holds dst[s*mr*kc + p*mr + i] = alpha * op(A)[s*mr + i][p], zero for rows past `rows`.
static void pack_a(int trans, const float *a, size_t lda, size_t rows, size_t kc, float alpha, int mr, float *dst) {
    for (size_t s = 0; s < rows; s += (size_t)mr) {
        size_t r = min_size((size_t)mr, rows - s);
        if (!trans) {
            // op(A)[i][p] = a[i*lda + p]: rows along k become the strip's columns.
            copy_transposed(a + s * lda, lda, r, kc, alpha, dst, (size_t)mr);
        } else {
            // op(A)[i][p] = a[p*lda + i]: the mr values of one k step are contiguous in memory.
            for (size_t p = 0; p < kc; p++) {
                const float *src = a + p * lda + s;
                for (size_t i = 0; i < r; i++) dst[p * (size_t)mr + i] = alpha * src[i];
            }
        }
        if (r < (size_t)mr)
            for (size_t p = 0; p < kc; p++)
                for (size_t i = r; i < (size_t)mr; i++) dst[p * (size_t)mr + i] = 0.0f;
        dst += (size_t)mr * kc;
    }
}

// Packs depth [0, kc) x columns [0, cols) of op(B) (B already offset to the block's corner) into panels of
// nr columns: panel t holds dst[t*nr*kc + p*nr + j] = op(B)[p][t*nr + j], zero for columns past `cols`.
static void pack_b(int trans, const float *b, size_t ldb, size_t kc, size_t cols, int nr, float *dst) {
    for (size_t t = 0; t < cols; t += (size_t)nr) {
        size_t w = min_size((size_t)nr, cols - t);
        if (!trans) {
            // op(B)[p][j] = b[p*ldb + j]: each k step is one contiguous run of w floats. A whole panel's runs are
            // copied with a size known at compile time (inlined moves): a library memcpy call per 64-byte run was
            // 10% of a Winograd VQGAN decode, whose GEMMs pack their [cin, cout] B for every 264 rows.
            if (w == (size_t)nr && nr == 16) {
                for (size_t p = 0; p < kc; p++) memcpy(dst + p * 16, b + p * ldb + t, 16 * sizeof(float));
            } else if (w == (size_t)nr && nr == 32) {
                for (size_t p = 0; p < kc; p++) memcpy(dst + p * 32, b + p * ldb + t, 32 * sizeof(float));
            } else {
                for (size_t p = 0; p < kc; p++) {
                    memcpy(dst + p * (size_t)nr, b + p * ldb + t, w * sizeof(float));
                    for (size_t j = w; j < (size_t)nr; j++) dst[p * (size_t)nr + j] = 0.0f;
                }
            }
        } else {
            // op(B)[p][j] = b[j*ldb + p]: stored rows along k become the panel's columns.
            copy_transposed(b + t * ldb, ldb, w, kc, 1.0f, dst, (size_t)nr);
            if (w < (size_t)nr)
                for (size_t p = 0; p < kc; p++)
                    for (size_t j = w; j < (size_t)nr; j++) dst[p * (size_t)nr + j] = 0.0f;
        }
        dst += (size_t)nr * kc;
    }
}

// C = beta * C (the whole result when alpha == 0 or k == 0); beta == 0 clears C without reading it.
void pk_gemm_scale_c(size_t m, size_t n, float beta, float *c, size_t ldc) {
    for (size_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f) memset(ci, 0, n * sizeof(float));
        else if (beta != 1.0f)
            for (size_t j = 0; j < n; j++) ci[j] *= beta;
    }
}

void pk_pack_matrix_rows(const a_source *s, size_t row, size_t rows, size_t p, size_t kc, float alpha, int mr, float *dst) {
    pack_a(s->trans, s->trans ? s->a + p * s->lda + row : s->a + row * s->lda + p, s->lda, rows, kc, alpha, mr, dst);
}

// The lowered (im2col) input without the copy: row r of A is output pixel r of the flattened (batch, oy, ox) index
// and column p = (ky * kernel_w + kx) * cg + ci reads channel c0 + ci of the pixel that tap (ky, kx) sees, or zero
// (pk_im2col_nhwc's matrix, element for element). Within one tap the channels are contiguous in x, so a strip is
// packed tap by tap, transposing mr runs of channels that start at per-row addresses.
void pk_pack_conv_rows(const a_source *s, size_t row, size_t rows, size_t p, size_t kc, float alpha, int mr, float *dst) {
    const pk_conv_geometry *g = s->g;
    const size_t cg = s->cg, pixels_per_image = (size_t)(g->out_h * g->out_w);
    const float *run[MAX_PACK_ROWS];
    ptrdiff_t image[MAX_PACK_ROWS], oy[MAX_PACK_ROWS], ox[MAX_PACK_ROWS];
    for (size_t first = 0; first < rows; first += (size_t)mr) {
        const size_t r = min_size((size_t)mr, rows - first);
        for (size_t i = 0; i < r; i++) {
            const size_t pixel = s->first_pixel + row + first + i, within = pixel % pixels_per_image;
            image[i] = (ptrdiff_t)(pixel / pixels_per_image);
            oy[i] = (ptrdiff_t)within / g->out_w;
            ox[i] = (ptrdiff_t)within % g->out_w;
        }
        for (size_t q = p; q < p + kc;) {
            const size_t tap = q / cg, ci = q % cg, depth = min_size(cg - ci, p + kc - q);
            const ptrdiff_t ky = (ptrdiff_t)tap / g->kernel_w, kx = (ptrdiff_t)tap % g->kernel_w;
            for (size_t i = 0; i < r; i++) {
                const ptrdiff_t iy = pk_conv_source_index(oy[i] * g->stride_h - g->pad_top + ky * g->dilation_h, g->in_h, g->pad_mode);
                const ptrdiff_t ix = pk_conv_source_index(ox[i] * g->stride_w - g->pad_left + kx * g->dilation_w, g->in_w, g->pad_mode);
                run[i] = iy < 0 || ix < 0 ? s->zeros + ci
                                          : s->x + ((image[i] * g->in_h + iy) * g->in_w + ix) * (ptrdiff_t)s->channels + (ptrdiff_t)(s->c0 + ci);
            }
            copy_transposed_rows(run, r, depth, alpha, dst + (q - p) * (size_t)mr, (size_t)mr);
            q += depth;
        }
        if (r < (size_t)mr)
            for (size_t q = 0; q < kc; q++)
                for (size_t i = r; i < (size_t)mr; i++) dst[q * (size_t)mr + i] = 0.0f;
        dst += (size_t)mr * kc;
    }
}

// The transposed lowered input, for the kernel gradient dK = col^T dy: row r of A is column r = (ky * kernel_w + kx)
// * cg + ci of pk_im2col_nhwc's matrix and its depth runs over output pixels. A strip's mr values at one pixel are
// runs of consecutive channels of x, copied as they lie.
static void pack_conv_columns(const a_source *s, size_t row, size_t rows, size_t p, size_t kc, float alpha, int mr, float *dst) {
    const pk_conv_geometry *g = s->g;
    const size_t cg = s->cg, pixels_per_image = (size_t)(g->out_h * g->out_w);
    // The first pixel's place; the loops below step it one pixel at a time instead of dividing for every pixel.
    const size_t first_pixel = s->first_pixel + p, first_within = first_pixel % pixels_per_image;
    const ptrdiff_t first_image = (ptrdiff_t)(first_pixel / pixels_per_image);
    const ptrdiff_t first_oy = (ptrdiff_t)first_within / g->out_w, first_ox = (ptrdiff_t)first_within % g->out_w;
    // A strip's runs of consecutive channels (one per tap it touches), worked out once for all kc pixels: at most
    // one per row of the strip, and a strip fits MAX_PACK_ROWS (asserted above).
    struct { ptrdiff_t dy, dx; size_t ci, n, i; } runs[MAX_PACK_ROWS];
    for (size_t first = 0; first < rows; first += (size_t)mr) {
        const size_t r = min_size((size_t)mr, rows - first);
        size_t run_count = 0;
        for (size_t i = 0; i < r;) {
            const size_t column = s->first_column + row + first + i, tap = column / cg, ci = column % cg, n = min_size(cg - ci, r - i);
            runs[run_count].dy = (ptrdiff_t)(tap / (size_t)g->kernel_w) * g->dilation_h - g->pad_top;
            runs[run_count].dx = (ptrdiff_t)(tap % (size_t)g->kernel_w) * g->dilation_w - g->pad_left;
            runs[run_count].ci = ci, runs[run_count].n = n, runs[run_count].i = i;
            run_count++;
            i += n;
        }
        ptrdiff_t image = first_image, oy = first_oy, ox = first_ox;
        for (size_t q = 0; q < kc; q++) {
            float *out = dst + q * (size_t)mr;
            for (size_t u = 0; u < run_count; u++) {
                const size_t i = runs[u].i, n = runs[u].n;
                const ptrdiff_t iy = pk_conv_source_index(oy * g->stride_h + runs[u].dy, g->in_h, g->pad_mode);
                const ptrdiff_t ix = pk_conv_source_index(ox * g->stride_w + runs[u].dx, g->in_w, g->pad_mode);
                if (iy < 0 || ix < 0) {
                    memset(out + i, 0, n * sizeof(float));
                } else {
                    const float *src = s->x + ((image * g->in_h + iy) * g->in_w + ix) * (ptrdiff_t)s->channels + (ptrdiff_t)(s->c0 + runs[u].ci);
                    for (size_t j = 0; j < n; j++) out[i + j] = alpha * src[j];
                }
            }
            for (size_t i = r; i < (size_t)mr; i++) out[i] = 0.0f;
            if (++ox == g->out_w) {
                ox = 0;
                if (++oy == g->out_h) { oy = 0; image++; }
            }
        }
        dst += (size_t)mr * kc;
    }
}

// C = alpha * A * op(B) + beta * C with A from `source`: the loop nest of the file comment. Both public entry
// points run it, so a convolution through the implicit GEMM computes exactly what im2col + pk_sgemm computes.
static void gemm_driver(const a_source *source, int trans_b, size_t m, size_t n, size_t k, float alpha,
                        const float *b, size_t ldb, float beta, float *c, size_t ldc, float *workspace) {
    const gemm_config *cfg = active_config();
    const size_t mr = (size_t)cfg->mr, nr = (size_t)cfg->nr;
    const size_t kc_block = block_depth(k, cfg->kc_max);
    const size_t nc_block = block_columns(cfg, kc_block);
    size_t a_floats, b_floats;
    workspace_layout(cfg, m, n, k, &a_floats, &b_floats);

    float *owned = NULL;
    if (!workspace) {
        owned = malloc((a_floats + b_floats + 16) * sizeof(float));
        if (!owned) abort(); // out of memory for a few MB of packing space: nothing sensible left to do
        workspace = owned;
    }
    float *ap = (float *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
    float *bp = ap + a_floats;
    _Alignas(64) float tile[MAX_TILE];

    for (size_t ic = 0; ic < m; ic += cfg->mc) {
        size_t mc = min_size(cfg->mc, m - ic);
        for (size_t pc = 0; pc < k; pc += kc_block) {
            size_t kc = min_size(kc_block, k - pc);
            float beta_block = pc == 0 ? beta : 1.0f;
            source->pack(source, ic, mc, pc, kc, alpha, cfg->mr, ap);
            for (size_t jc = 0; jc < n; jc += nc_block) {
                size_t nc = min_size(nc_block, n - jc);
                pack_b(trans_b, trans_b ? b + jc * ldb + pc : b + pc * ldb + jc, ldb, kc, nc, cfg->nr, bp);
                for (size_t ir = 0; ir < mc; ir += mr) {
                    size_t rows = min_size(mr, mc - ir);
                    const float *a_strip = ap + ir * kc;
                    for (size_t jr = 0; jr < nc; jr += nr) {
                        size_t cols = min_size(nr, nc - jr);
                        const float *b_panel = bp + jr * kc;
                        float *ct = c + (ic + ir) * ldc + jc + jr;
                        if (rows == mr && cols == nr) {
                            cfg->kernel(kc, a_strip, b_panel, ct, ldc, beta_block);
                        } else {
                            cfg->kernel(kc, a_strip, b_panel, tile, nr, 0.0f);
                            for (size_t i = 0; i < rows; i++)
                                for (size_t j = 0; j < cols; j++) {
                                    float *x = ct + i * ldc + j;
                                    *x = beta_block == 0.0f ? tile[i * nr + j] : tile[i * nr + j] + beta_block * *x;
                                }
                        }
                    }
                }
            }
        }
    }
    free(owned);
}

void pk_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
              const float *a, size_t lda, const float *b, size_t ldb,
              float beta, float *c, size_t ldc, float *workspace) {
    if (m == 0 || n == 0) return;
    if (k == 0 || alpha == 0.0f) {
        pk_gemm_scale_c(m, n, beta, c, ldc);
        return;
    }
    const a_source source = {.pack = pk_pack_matrix_rows, .trans = trans_a, .a = a, .lda = lda};
    gemm_driver(&source, trans_b, m, n, k, alpha, b, ldb, beta, c, ldc, workspace);
}

size_t pk_conv2d_gemm_workspace_floats(size_t m, size_t n, size_t k, size_t cg) {
    return pk_sgemm_workspace_floats(m, n, k) + cg;
}

void pk_conv2d_gemm_nhwc(const float *x, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg, const pk_conv_geometry *g,
                         ptrdiff_t pixel_begin, ptrdiff_t pixel_end, const float *kernel, size_t ldk, size_t n,
                         float beta, float *y, size_t ldy, float *workspace) {
    const size_t m = (size_t)(pixel_end - pixel_begin), k = (size_t)(g->kernel_h * g->kernel_w * cg);
    if (m == 0 || n == 0) return;
    if (k == 0) {
        pk_gemm_scale_c(m, n, beta, y, ldy);
        return;
    }
    float *owned = NULL;
    if (!workspace) {
        owned = malloc(pk_conv2d_gemm_workspace_floats(m, n, k, (size_t)cg) * sizeof(float));
        if (!owned) abort();
        workspace = owned;
    }
    // The zeros that padding reads sit after the GEMM's packing space.
    float *zeros = workspace + pk_sgemm_workspace_floats(m, n, k);
    memset(zeros, 0, (size_t)cg * sizeof(float));
    const a_source source = {.pack = pk_pack_conv_rows, .x = x, .channels = (size_t)channels, .c0 = (size_t)c0,
                             .cg = (size_t)cg, .g = g, .zeros = zeros, .first_pixel = (size_t)pixel_begin};
    gemm_driver(&source, 0, m, n, k, 1.0f, kernel, ldk, beta, y, ldy, workspace);
    free(owned);
}

void pk_conv2d_gemm_kernel_gradient_nhwc(const float *x, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg,
                                         const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end,
                                         const float *dy, size_t lddy, size_t n, float beta, float *dk, size_t lddk,
                                         float *workspace) {
    const size_t m = (size_t)(row_end - row_begin), pixels = (size_t)(g->batch * g->out_h * g->out_w);
    if (m == 0 || n == 0) return;
    if (pixels == 0) {
        pk_gemm_scale_c(m, n, beta, dk, lddk);
        return;
    }
    const a_source source = {.pack = pack_conv_columns, .x = x, .channels = (size_t)channels, .c0 = (size_t)c0,
                             .cg = (size_t)cg, .g = g, .first_column = (size_t)row_begin};
    gemm_driver(&source, 0, m, n, pixels, 1.0f, dy, lddy, beta, dk, lddk, workspace);
}

void pk_sgemm_ref(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                  const float *a, size_t lda, const float *b, size_t ldb,
                  float beta, float *c, size_t ldc) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double sum = 0;
            for (size_t p = 0; p < k; p++) {
                float av = trans_a ? a[p * lda + i] : a[i * lda + p];
                float bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                sum += (double)av * (double)bv;
            }
            float *x = c + i * ldc + j;
            *x = alpha * (float)sum + (beta == 0.0f ? 0.0f : beta * *x); // beta 0 ignores NaN in C
        }
}
