// The bfloat16 GEMM: weights packed once as bfloat16 pairs (pk_bf16_pack), activations rounded to bfloat16 as the
// driver packs them, products summed in float32 by the micro-kernels of gemm_kernels.h: vdpbf16ps where the CPU
// has AVX512-BF16, float32 FMAs on the widened pairs on other AVX2 CPUs (gemm_avx2bf16.c), a portable loop elsewhere.
//
// Loop nest (B is packed already, so there is no B block to build; each panel's k block is a contiguous run):
//   for ic: blocks of mc rows of A                 rows packed as float32 by the a_source (the fp32 GEMM's
//     for pc: blocks of kc (even) along k          packers, so convolutions work too), then rounded into pairs
//       for jr: panels of 32 columns               a panel's kc / 2 x 32 words (16 KB) stay in L1 ...
//         for ir: strips of mr rows                ... while the A strips of the block stream from L2
//           micro-kernel: C[ir:ir+mr, jr:jr+32] (+)= A strip * B panel
// Only the first k block applies the caller's beta. Edge tiles go through a scratch tile, as in gemm.c.
#include "paella_gemm.h"
#include "paella_kernels.h"
#include "gemm_kernels.h"
#include "bf16_round.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BF16_KC 256          // k block (even): a panel's block is 128 pair rows x 32 words = 16 KB
#define BF16_MC 480          // rows of an A block: 480 x 128 words = 240 KB of L2
#define PORTABLE_BF16_MR 4
#define MAX_BF16_MR 12

static inline float bits_to_float(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }

static inline uint32_t pair(float low, float high) {
    return (uint32_t)pk_bf16_round_bits(low) | (uint32_t)pk_bf16_round_bits(high) << 16;
}
static inline float low_half(uint32_t w) { return bits_to_float(w << 16); }
static inline float high_half(uint32_t w) { return bits_to_float(w & 0xffff0000u); }

// Portable micro-kernel (4 x 32), in vdpbf16ps's order: the high (odd k) product first, then the low one. Each
// product of two bfloat16s is exact in float32, so only the two additions round.
static void bf16_kernel_portable(size_t kc2, const uint32_t *a, const uint32_t *b, float *c, size_t ldc, float beta) {
    float acc[PORTABLE_BF16_MR][PK_BF16_PANEL];
    memset(acc, 0, sizeof(acc));
    for (size_t p = 0; p < kc2; p++) {
        float bl[PK_BF16_PANEL], bh[PK_BF16_PANEL];
        for (int j = 0; j < PK_BF16_PANEL; j++) { bl[j] = low_half(b[j]); bh[j] = high_half(b[j]); }
        for (int i = 0; i < PORTABLE_BF16_MR; i++) {
            const float al = low_half(a[i]), ah = high_half(a[i]);
            for (int j = 0; j < PK_BF16_PANEL; j++) {
                acc[i][j] += ah * bh[j];
                acc[i][j] += al * bl[j];
            }
        }
        a += PORTABLE_BF16_MR;
        b += PK_BF16_PANEL;
    }
    for (int i = 0; i < PORTABLE_BF16_MR; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < PK_BF16_PANEL; j++) ci[j] = beta == 0.0f ? acc[i][j] : acc[i][j] + beta * ci[j];
    }
}

typedef struct {
    int mr;
    pk_bf16_kernel_fn kernel;
    int a_floats;      // A packed as float32 values rounded to bfloat16 (two per pair and row), not as words
    const char *name;
} bf16_config;

static const bf16_config portable_bf16 = {PORTABLE_BF16_MR, bf16_kernel_portable, 0, "portable"};
#if defined(__x86_64__) || defined(__i386__)
static const bf16_config avx512_bf16 = {PK_BF16_AVX512_MR, pk_gemm_bf16_kernel_avx512, 0, "avx512-bf16"};
static const bf16_config avx2_bf16 = {PK_BF16_AVX2_MR, pk_gemm_bf16_kernel_avx2, 1, "avx2"};
_Static_assert(PK_BF16_AVX512_MR <= MAX_BF16_MR && MAX_BF16_MR % PK_BF16_AVX2_MR == 0,
               "MAX_BF16_MR sizes the scratch tile and the workspace (a multiple of every mr rounds at least as far)");

static int cpu_has_avx512_bf16(void) {
    static _Atomic int known = -1;
    int v = known;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
        known = v;
    }
    return v;
}
#endif

static const bf16_config *active_bf16(void) {
#if defined(__x86_64__) || defined(__i386__)
    if (pk_active_isa() == PK_ISA_AVX512 && cpu_has_avx512_bf16()) return &avx512_bf16;
    // Without bfloat16 dot products, AVX2 widens the packed weights in registers (AVX-512 CPUs run that too).
    if (pk_isa_runs_avx2(pk_active_isa())) return &avx2_bf16;
#endif
    return &portable_bf16;
}

const char *pk_bf16_kernel_name(void) { return active_bf16()->name; }

size_t pk_bf16_packed_words(size_t k, size_t n) {
    return round_up(n, PK_BF16_PANEL) * ((k + 1) / 2);
}

void pk_bf16_pack(int trans_b, const float *b, size_t ldb, size_t k, size_t n, size_t panel_begin, size_t panel_end,
                  uint32_t *packed) {
    const size_t k2 = (k + 1) / 2, panel_words = k2 * PK_BF16_PANEL;
    for (size_t t = panel_begin; t < panel_end; t++) {
        uint32_t *dst = packed + t * panel_words;
        for (size_t j = 0; j < PK_BF16_PANEL; j++) {
            const size_t column = t * PK_BF16_PANEL + j;
            for (size_t p = 0; p < k2; p++) {
                float low = 0, high = 0;
                if (column < n) {
                    // op(B)[q][column] is b[q * ldb + column], or b[column * ldb + q] when B is stored transposed.
                    const float *at = trans_b ? b + column * ldb : b + column;
                    const size_t step = trans_b ? 1 : ldb;
                    low = at[2 * p * step];
                    if (2 * p + 1 < k) high = at[(2 * p + 1) * step];
                }
                dst[p * PK_BF16_PANEL + j] = pair(low, high);
            }
        }
    }
}

void pk_bf16_unpack(const uint32_t *packed, size_t k, size_t n, float *b) {
    const size_t panel_words = (k + 1) / 2 * PK_BF16_PANEL;
    for (size_t q = 0; q < k; q++)
        for (size_t j = 0; j < n; j++) {
            const uint32_t w = packed[j / PK_BF16_PANEL * panel_words + q / 2 * PK_BF16_PANEL + j % PK_BF16_PANEL];
            b[q * n + j] = q % 2 ? high_half(w) : low_half(w);
        }
}

static size_t a_block_words(int mr, size_t m, size_t k) {
    return round_up(min_size(m, BF16_MC), (size_t)mr) * ((min_size(k, BF16_KC) + 1) / 2);
}

size_t pk_gemm_bf16_workspace_floats(size_t m, size_t k) {
    if (m == 0 || k == 0) return 0;
    // The float strip the a_source packs into (MAX_BF16_MR x kc), then the block: words, or twice as many floats
    // (a_floats), for the largest mr.
    return (size_t)MAX_BF16_MR * BF16_KC + 2 * a_block_words(MAX_BF16_MR, m, k) + 32;
}

// C = A * B + beta * C with A from `source` and B the packed panels from `panel_begin`.
static void bf16_driver(const a_source *source, size_t m, size_t n, size_t k, const uint32_t *packed,
                        size_t panel_begin, float beta, float *c, size_t ldc, float *workspace) {
    const bf16_config *cfg = active_bf16();
    const size_t mr = (size_t)cfg->mr, panel_words = (k + 1) / 2 * PK_BF16_PANEL;
    const size_t a_words = cfg->a_floats ? 2 : 1; // 32-bit slots per pair and row of A
    float *owned = NULL;
    if (!workspace) {
        owned = malloc(pk_gemm_bf16_workspace_floats(m, k) * sizeof(float));
        if (!owned) abort(); // out of memory for a few hundred KB of packing space
        workspace = owned;
    }
    float *strip = (float *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
    uint32_t *aw = (uint32_t *)(strip + (size_t)MAX_BF16_MR * BF16_KC);
    _Alignas(64) float tile[MAX_BF16_MR * PK_BF16_PANEL];

    for (size_t ic = 0; ic < m; ic += BF16_MC) {
        const size_t mc = min_size(BF16_MC, m - ic);
        for (size_t pc = 0; pc < k; pc += BF16_KC) {
            const size_t kc = min_size(BF16_KC, k - pc), kc2 = (kc + 1) / 2;
            const float beta_block = pc == 0 ? beta : 1.0f;
            // Pack the block strip by strip: float32 from the source, then pairs (a zero pads an odd depth).
            for (size_t ir = 0; ir < mc; ir += mr) {
                const size_t rows = min_size(mr, mc - ir);
                source->pack(source, ic + ir, rows, pc, kc, 1.0f, (int)mr, strip);
                uint32_t *words = aw + ir * kc2 * a_words;
                for (size_t p = 0; p < kc2; p++) {
                    const float *low = strip + 2 * p * mr, *high = 2 * p + 1 < kc ? low + mr : NULL;
                    for (size_t i = 0; i < mr; i++) {
                        const uint32_t w = pair(low[i], high ? high[i] : 0.0f);
                        if (cfg->a_floats) {
                            words[2 * (p * mr + i)] = w << 16;                 // the bits of low_half(w)
                            words[2 * (p * mr + i) + 1] = w & 0xffff0000u;     // high_half(w)
                        } else {
                            words[p * mr + i] = w;
                        }
                    }
                }
            }
            for (size_t jr = 0; jr < n; jr += PK_BF16_PANEL) {
                const size_t cols = min_size(PK_BF16_PANEL, n - jr);
                const uint32_t *b_panel = packed + (panel_begin + jr / PK_BF16_PANEL) * panel_words + pc / 2 * PK_BF16_PANEL;
                for (size_t ir = 0; ir < mc; ir += mr) {
                    const size_t rows = min_size(mr, mc - ir);
                    float *ct = c + (ic + ir) * ldc + jr;
                    if (rows == mr && cols == PK_BF16_PANEL) {
                        cfg->kernel(kc2, aw + ir * kc2 * a_words, b_panel, ct, ldc, beta_block);
                    } else {
                        cfg->kernel(kc2, aw + ir * kc2 * a_words, b_panel, tile, PK_BF16_PANEL, 0.0f);
                        for (size_t i = 0; i < rows; i++)
                            for (size_t j = 0; j < cols; j++) {
                                float *x = ct + i * ldc + j;
                                *x = beta_block == 0.0f ? tile[i * PK_BF16_PANEL + j] : tile[i * PK_BF16_PANEL + j] + beta_block * *x;
                            }
                    }
                }
            }
        }
    }
    free(owned);
}

void pk_gemm_bf16(size_t m, size_t n, size_t k, const float *a, size_t lda, const uint32_t *packed, size_t panel_begin,
                  float beta, float *c, size_t ldc, float *workspace) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        pk_gemm_scale_c(m, n, beta, c, ldc);
        return;
    }
    const a_source source = {.pack = pk_pack_matrix_rows, .trans = 0, .a = a, .lda = lda};
    bf16_driver(&source, m, n, k, packed, panel_begin, beta, c, ldc, workspace);
}

size_t pk_conv2d_gemm_bf16_workspace_floats(size_t m, size_t k, size_t cg) {
    return pk_gemm_bf16_workspace_floats(m, k) + cg;
}

void pk_conv2d_gemm_bf16_nhwc(const float *x, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg, const pk_conv_geometry *g,
                              ptrdiff_t pixel_begin, ptrdiff_t pixel_end, const uint32_t *packed, size_t panel_begin,
                              size_t n, float beta, float *y, size_t ldy, float *workspace) {
    const size_t m = (size_t)(pixel_end - pixel_begin), k = (size_t)(g->kernel_h * g->kernel_w * cg);
    if (m == 0 || n == 0) return;
    if (k == 0) {
        pk_gemm_scale_c(m, n, beta, y, ldy);
        return;
    }
    float *owned = NULL;
    if (!workspace) {
        owned = malloc(pk_conv2d_gemm_bf16_workspace_floats(m, k, (size_t)cg) * sizeof(float));
        if (!owned) abort();
        workspace = owned;
    }
    float *zeros = workspace + pk_gemm_bf16_workspace_floats(m, k); // what zero padding reads, after the packing space
    memset(zeros, 0, (size_t)cg * sizeof(float));
    const a_source source = {.pack = pk_pack_conv_rows, .x = x, .channels = (size_t)channels, .c0 = (size_t)c0,
                             .cg = (size_t)cg, .g = g, .zeros = zeros, .first_pixel = (size_t)pixel_begin};
    bf16_driver(&source, m, n, k, packed, panel_begin, beta, y, ldy, workspace);
    free(owned);
}

void pk_gemm_bf16_ref(size_t m, size_t n, size_t k, const float *a, size_t lda, const uint32_t *packed, size_t panel_begin,
                      float beta, float *c, size_t ldc) {
    const size_t panel_words = (k + 1) / 2 * PK_BF16_PANEL;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            const uint32_t *column = packed + (panel_begin + j / PK_BF16_PANEL) * panel_words + j % PK_BF16_PANEL;
            double sum = 0;
            for (size_t q = 0; q < k; q++) {
                const uint32_t w = column[q / 2 * PK_BF16_PANEL];
                const double bv = q % 2 ? high_half(w) : low_half(w);
                sum += (double)bits_to_float((uint32_t)pk_bf16_round_bits(a[i * lda + q]) << 16) * bv;
            }
            float *out = c + i * ldc + j;
            *out = (float)sum + (beta == 0.0f ? 0.0f : beta * *out);
        }
}
