// The built-in single-precision GEMM: cache-blocked (GotoBLAS/BLIS style: packed panels of A and B, blocked
// for L1/L2/L3) with register-blocked SIMD micro-kernels for AVX-512, AVX2+FMA, NEON and portable C, chosen
// at run time through pk_active_isa().
//
// The C side is single-threaded on purpose: the caller (PaellaCore's BuiltinGEMM) splits C into independent
// rectangles and runs one pk_sgemm call per rectangle on its thread pool, each with its own workspace.
#ifndef PAELLA_GEMM_H
#define PAELLA_GEMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Row-major C = alpha * op(A) * op(B) + beta * C, where op(A) is m x k, op(B) is k x n and C is m x n.
/// op(X) is X when trans_x == 0 and X transposed otherwise; lda/ldb/ldc are the row strides of A, B, C as
/// stored (lda >= k if !trans_a, >= m if trans_a; likewise for B). When beta == 0, C is only written, never
/// read, so NaN or garbage in C does not leak into the result (as in BLAS).
/// `workspace` holds at least pk_sgemm_workspace_floats(m, n, k) floats (any alignment), or is NULL, in which
/// case the function allocates and frees its own. Single-threaded.
void pk_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
              const float *a, size_t lda, const float *b, size_t ldb,
              float beta, float *c, size_t ldc, float *workspace);

/// Floats of workspace that pk_sgemm needs for a problem of this size (enough for every ISA's blocking, so a
/// change of the active ISA between sizing and use is harmless).
size_t pk_sgemm_workspace_floats(size_t m, size_t n, size_t k);

/// The micro-tile of the active ISA: the kernel computes `*mr` rows by `*nr` columns of C at a time. Callers
/// that split C between threads cut at multiples of these so that few edge tiles arise.
void pk_sgemm_micro_tile(int *mr, int *nr);

/// The plain reference twin of pk_sgemm (triple loop, double accumulation), same contract.
void pk_sgemm_ref(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                  const float *a, size_t lda, const float *b, size_t ldb,
                  float beta, float *c, size_t ldc);

// ---- bfloat16 weights, float32 accumulation -------------------------------------------------------------------
// Weights are rounded to bfloat16 and packed once (pk_bf16_pack), activations are rounded to bfloat16 as they are
// packed, and every product is summed in float32: on CPUs with AVX512-BF16 one vdpbf16ps does two multiply-adds per
// lane, from half the weight bytes. Elsewhere a portable kernel computes the same sums (its float32 rounding may
// differ in the last bits). The packed layout is the same on every CPU, so weights packed at load stay valid when
// the active instruction set changes.

/// Columns of one packed panel.
#define PK_BF16_PANEL 32

/// 32-bit words that pk_bf16_pack writes for a k x n matrix: ceil(n / 32) panels of ceil(k / 2) x 32 words.
size_t pk_bf16_packed_words(size_t k, size_t n);

/// Packs panels [panel_begin, panel_end) of op(B) (k x n; B itself when trans_b == 0, else B transposed, with row
/// stride ldb as stored): word [t][p][j] of `packed` = (bf16(op(B)[2p][32t + j]) | bf16(op(B)[2p + 1][32t + j]) << 16),
/// rounded to nearest even, zero past k or n. Panels are independent, so threads may pack disjoint ranges.
void pk_bf16_pack(int trans_b, const float *b, size_t ldb, size_t k, size_t n, size_t panel_begin, size_t panel_end,
                  uint32_t *packed);
/// The inverse of pk_bf16_pack: op(B) [k, n] row-major in b, each value the float32 its bfloat16 stands for.
void pk_bf16_unpack(const uint32_t *packed, size_t k, size_t n, float *b);

/// C = A * B + beta * C for rows [0, m) and the n columns that start at panel `panel_begin` of `packed` (a k-deep
/// pk_bf16_pack matrix; c points at that first column). A is m x k row-major (row stride lda), rounded to bfloat16
/// as it is packed. beta == 0 writes C without reading it. workspace: pk_gemm_bf16_workspace_floats(m, k) floats,
/// or NULL to allocate. Single-threaded (callers split rows, or columns at panel boundaries, between threads).
void pk_gemm_bf16(size_t m, size_t n, size_t k, const float *a, size_t lda, const uint32_t *packed, size_t panel_begin,
                  float beta, float *c, size_t ldc, float *workspace);
size_t pk_gemm_bf16_workspace_floats(size_t m, size_t k);

/// The reference twin: the same rounding of both operands to bfloat16, products summed in double.
void pk_gemm_bf16_ref(size_t m, size_t n, size_t k, const float *a, size_t lda, const uint32_t *packed, size_t panel_begin,
                      float beta, float *c, size_t ldc);

/// The micro-kernel pk_gemm_bf16 uses on this thread: "avx512-bf16" (vdpbf16ps), "avx2" (the packed weights widened to
/// float32 in registers, fused multiply-adds; same results as the portable kernel) or "portable".
const char *pk_bf16_kernel_name(void);

/// The path of the shared library that defines `function` (from dladdr), or NULL if unknown. Used to report
/// which BLAS library was loaded.
const char *pk_gemm_library_path(const void *function);

#ifdef __cplusplus
}
#endif
#endif
