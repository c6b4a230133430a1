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

#include "paella_conv.h"
#include "paella_kernels.h"
#include <stddef.h>
#include <stdint.h>

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


// Where the driver gets the rows of A from: `pack` writes rows [row, row + rows) x depth [p, p + kc) of alpha * A in
// pack_a's strip layout. A stored matrix is one source; the implicit-GEMM convolution's lowered input is another.
typedef struct a_source a_source;
struct a_source {
    void (*pack)(const a_source *source, size_t row, size_t rows, size_t p, size_t kc, float alpha, int mr, float *dst);
    int trans;            // stored matrix: op(A) = A or A transposed
    const float *a;       // stored matrix: A
    size_t lda;           // stored matrix: its row stride
    const float *x;       // convolution: the NHWC input
    size_t channels, c0, cg; // convolution: its channels, and the group's [c0, c0 + cg)
    const pk_conv_geometry *g; // convolution: its geometry
    const float *zeros;   // convolution: cg zeros, what zero padding reads
    size_t first_pixel;   // convolution: the output pixel that row 0 of A stands for
    size_t first_column;  // kernel gradient: the column of the lowered input that row 0 of A stands for
};

// The two sources: a stored matrix (`trans`, `a`, `lda`) and the implicit-GEMM convolution's lowered input.
void pk_pack_matrix_rows(const a_source *s, size_t row, size_t rows, size_t p, size_t kc, float alpha, int mr, float *dst);
void pk_pack_conv_rows(const a_source *s, size_t row, size_t rows, size_t p, size_t kc, float alpha, int mr, float *dst);

// The bfloat16 GEMM's micro-kernels (gemm_bf16.c): the contract above on words that each hold a pair of k values
// as bfloat16 (k = 2p in the low half, 2p + 1 in the high half), accumulated in float32:
//   a: a[p * mr + i] = (A[i][2p], A[i][2p+1]);  b: one panel, b[p * PK_BF16_PANEL + j] = (B[2p][j], B[2p+1][j]);
//   c[i * ldc + j] = sum over p of both products + beta * c[i * ldc + j] (beta == 0: C only written), for
//   i < mr, j < PK_BF16_PANEL. kc2 counts pairs.
typedef void (*pk_bf16_kernel_fn)(size_t kc2, const uint32_t *a, const uint32_t *b, float *c, size_t ldc, float beta);
#if defined(__x86_64__) || defined(__i386__)
#define PK_BF16_AVX512_MR 12
void pk_gemm_bf16_kernel_avx512(size_t kc2, const uint32_t *a, const uint32_t *b, float *c, size_t ldc, float beta);
// The AVX2 one reads A as float32 values rounded to bfloat16, two per pair step and row (gemm_avx2bf16.c): `a` points
// at a[2 (p * mr + i) + h] = A[i][2p + h].
#define PK_BF16_AVX2_MR 3
void pk_gemm_bf16_kernel_avx2(size_t kc2, const uint32_t *a, const uint32_t *b, float *c, size_t ldc, float beta);
#endif

// Whether code compiled for AVX2 + FMA may run at level `isa` (AVX-512 CPUs have both).
static inline int pk_isa_runs_avx2(pk_isa isa) { return isa == PK_ISA_AVX2 || isa == PK_ISA_AVX512; }

// Shared by both GEMM drivers.
static inline size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }
static inline size_t min_size(size_t a, size_t b) { return a < b ? a : b; }
/// C = beta * C (the whole result when there is nothing to multiply); beta == 0 clears C without reading it.
void pk_gemm_scale_c(size_t m, size_t n, float beta, float *c, size_t ldc);

#endif
