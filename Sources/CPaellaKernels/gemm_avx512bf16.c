// AVX512-BF16 micro-kernel of the bfloat16 GEMM (gemm_bf16.c): the fp32 kernel's 12 x 32 tile in 24 zmm
// registers, but each step takes a pair of k values. A packed word holds two bfloat16s (k = 2p in the low half,
// 2p + 1 in the high half); vdpbf16ps multiplies the 16 pairs of one B row-pair by a broadcast pair of A and adds
// both products to the float32 accumulators: c[i][j] += a[i][2p+1] * b[2p+1][j], then += a[i][2p] * b[2p][j].
// So one instruction does the work of two fp32 FMAs, from half the bytes of B.
#if defined(__x86_64__) || defined(__i386__)
#include "gemm_kernels.h"
#include "paella_gemm.h"
#include "gemm_avx512_tile.h"
#include <immintrin.h>

#define PK_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))

// One pair step: row i of the tile accumulates the pair a[i] against the two B vectors.
#define ROW_DOT(i)                                                        \
    do {                                                                  \
        __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);             \
        c##i##0 = _mm512_dpbf16_ps(c##i##0, ai, b0);                      \
        c##i##1 = _mm512_dpbf16_ps(c##i##1, ai, b1);                      \
    } while (0)

PK_AVX512_BF16 void pk_gemm_bf16_kernel_avx512(size_t kc2, const uint32_t *a, const uint32_t *b, float *c, size_t ldc,
                                               float beta) {
    DECL_ROW(0); DECL_ROW(1); DECL_ROW(2); DECL_ROW(3); DECL_ROW(4); DECL_ROW(5);
    DECL_ROW(6); DECL_ROW(7); DECL_ROW(8); DECL_ROW(9); DECL_ROW(10); DECL_ROW(11);
    for (size_t p = 0; p < kc2; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)b), b1 = (__m512bh)_mm512_load_si512((const void *)(b + 16));
        ROW_DOT(0); ROW_DOT(1); ROW_DOT(2); ROW_DOT(3); ROW_DOT(4); ROW_DOT(5);
        ROW_DOT(6); ROW_DOT(7); ROW_DOT(8); ROW_DOT(9); ROW_DOT(10); ROW_DOT(11);
        a += PK_BF16_AVX512_MR;
        b += PK_BF16_PANEL;
    }
    __m512 vbeta = _mm512_set1_ps(beta);
    ROW_STORE(0); ROW_STORE(1); ROW_STORE(2); ROW_STORE(3); ROW_STORE(4); ROW_STORE(5);
    ROW_STORE(6); ROW_STORE(7); ROW_STORE(8); ROW_STORE(9); ROW_STORE(10); ROW_STORE(11);
}
#endif
