// Private to the built-in GEMM (gemm*.c): the micro-kernel contract and the per-ISA kernels.
//
// A micro-kernel computes one mr x nr tile of C from packed operands:
//   a: the packed strip of op(A), k-major: a[p * mr + i] = alpha * op(A)[i][p]   (alpha folded in by packing)
//   b: the packed panel of op(B), k-major: b[p * nr + j] = op(B)[p][j]
//   c[i * ldc + j] = sum_p a[p * mr + i] * b[p * nr + j] + beta * c[i * ldc + j], except that beta == 0
//   writes the sum without reading C (so NaN in C does not propagate).
// Both packed buffers are 64-byte aligned and zero-padded to whole strips/panels.
#ifndef PAELLA_GEMM_KERNELS_H
#define PAELLA_GEMM_KERNELS_H

#include <stddef.h>

typedef void (*pk_gemm_kernel_fn)(size_t kc, const float *a, const float *b, float *c, size_t ldc, float beta);

#if defined(__x86_64__) || defined(__i386__)
#define PK_GEMM_AVX512_MR 12
#define PK_GEMM_AVX512_NR 32
void pk_gemm_kernel_avx512(size_t kc, const float *a, const float *b, float *c, size_t ldc, float beta);
#define PK_GEMM_AVX2_MR 6
#define PK_GEMM_AVX2_NR 16
void pk_gemm_kernel_avx2(size_t kc, const float *a, const float *b, float *c, size_t ldc, float beta);
#endif

#if defined(__aarch64__)
#define PK_GEMM_NEON_MR 8
#define PK_GEMM_NEON_NR 12
void pk_gemm_kernel_neon(size_t kc, const float *a, const float *b, float *c, size_t ldc, float beta);
#endif

#endif
