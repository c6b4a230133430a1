// The built-in single-precision GEMM: cache-blocked (GotoBLAS/BLIS style: packed panels of A and B, blocked
// for L1/L2/L3) with register-blocked SIMD micro-kernels for AVX-512, AVX2+FMA, NEON and portable C, chosen
// at run time through pk_active_isa().
//
// The C side is single-threaded on purpose: the caller (PaellaCore's BuiltinGEMM) splits C into independent
// rectangles and runs one pk_sgemm call per rectangle on its thread pool, each with its own workspace.
#ifndef PAELLA_GEMM_H
#define PAELLA_GEMM_H

#include <stddef.h>

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

/// The path of the shared library that defines `function` (from dladdr), or NULL if unknown. Used to report
/// which BLAS library was loaded.
const char *pk_gemm_library_path(const void *function);

#ifdef __cplusplus
}
#endif
#endif
