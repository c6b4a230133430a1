// AVX-512 micro-kernel of the built-in GEMM: a 12 x 32 tile of C held in 24 zmm registers.
// Each step p of the k loop loads one row of the packed B panel (32 floats = 2 zmm) and, for each of the 12
// rows i, broadcasts a[p*12+i] and does two fused multiply-adds: c[i][0:32] += a[i][p] * b[p][0:32].
// 24 FMAs against 2 vector loads and 12 broadcasts per step keep both FMA ports busy; 24 + 2 + 1 registers
// of the 32 are live.
#if defined(__x86_64__) || defined(__i386__)
#include "gemm_kernels.h"
#include "gemm_avx512_tile.h"
#include <immintrin.h>

#define PK_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

// One k step: row i of the tile accumulates a[i] * (b0, b1).
#define ROW_FMA(i)                                                   \
    do {                                                             \
        __m512 ai = _mm512_set1_ps(a[i]);                            \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);                  \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);                  \
    } while (0)

PK_AVX512 void pk_gemm_kernel_avx512(size_t kc, const float *a, const float *b, float *c, size_t ldc, float beta) {
    DECL_ROW(0); DECL_ROW(1); DECL_ROW(2); DECL_ROW(3); DECL_ROW(4); DECL_ROW(5);
    DECL_ROW(6); DECL_ROW(7); DECL_ROW(8); DECL_ROW(9); DECL_ROW(10); DECL_ROW(11);
    for (size_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3); ROW_FMA(4); ROW_FMA(5);
        ROW_FMA(6); ROW_FMA(7); ROW_FMA(8); ROW_FMA(9); ROW_FMA(10); ROW_FMA(11);
        a += PK_GEMM_AVX512_MR;
        b += PK_GEMM_AVX512_NR;
    }
    __m512 vbeta = _mm512_set1_ps(beta);
    ROW_STORE(0); ROW_STORE(1); ROW_STORE(2); ROW_STORE(3); ROW_STORE(4); ROW_STORE(5);
    ROW_STORE(6); ROW_STORE(7); ROW_STORE(8); ROW_STORE(9); ROW_STORE(10); ROW_STORE(11);
}
#endif
