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

static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }
static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

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

// Packs rows [0, rows) x depth [0, kc) of alpha * op(A) (A already offset to the block's corner) into strips
// of mr rows: strip s holds dst[s*mr*kc + p*mr + i] = alpha * op(A)[s*mr + i][p], zero for rows past `rows`.
static void pack_a(int trans, const float *a, size_t lda, size_t rows, size_t kc, float alpha, int mr, float *dst) {
    for (size_t s = 0; s < rows; s += (size_t)mr) {
        size_t r = min_size((size_t)mr, rows - s);
        if (!trans) {
            // op(A)[i][p] = a[i*lda + p]: read each row contiguously, write it with stride mr.
            for (size_t i = 0; i < r; i++) {
                const float *src = a + (s + i) * lda;
                for (size_t p = 0; p < kc; p++) dst[p * (size_t)mr + i] = alpha * src[p];
            }
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
            // op(B)[p][j] = b[p*ldb + j]: each k step is one contiguous run of w floats.
            for (size_t p = 0; p < kc; p++) {
                memcpy(dst + p * (size_t)nr, b + p * ldb + t, w * sizeof(float));
                for (size_t j = w; j < (size_t)nr; j++) dst[p * (size_t)nr + j] = 0.0f;
            }
        } else {
            // op(B)[p][j] = b[j*ldb + p]: read each stored row contiguously, write it with stride nr.
            for (size_t j = 0; j < w; j++) {
                const float *src = b + (t + j) * ldb;
                for (size_t p = 0; p < kc; p++) dst[p * (size_t)nr + j] = src[p];
            }
            if (w < (size_t)nr)
                for (size_t p = 0; p < kc; p++)
                    for (size_t j = w; j < (size_t)nr; j++) dst[p * (size_t)nr + j] = 0.0f;
        }
        dst += (size_t)nr * kc;
    }
}

// C = beta * C (the whole result when alpha == 0 or k == 0); beta == 0 clears C without reading it.
static void scale_c(size_t m, size_t n, float beta, float *c, size_t ldc) {
    for (size_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f) memset(ci, 0, n * sizeof(float));
        else if (beta != 1.0f)
            for (size_t j = 0; j < n; j++) ci[j] *= beta;
    }
}

void pk_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
              const float *a, size_t lda, const float *b, size_t ldb,
              float beta, float *c, size_t ldc, float *workspace) {
    if (m == 0 || n == 0) return;
    if (k == 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
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
            pack_a(trans_a, trans_a ? a + pc * lda + ic : a + ic * lda + pc, lda, mc, kc, alpha, cfg->mr, ap);
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
