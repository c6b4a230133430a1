// AVX2 + FMA micro-kernel of the built-in GEMM: a 6 x 16 tile of C held in 12 ymm registers.
// Each k step loads one row of the packed B panel (16 floats = 2 ymm), broadcasts a[p*6+i] for each of the
// 6 rows and accumulates c[i][0:16] += a[i][p] * b[p][0:16]: 12 FMAs per 2 loads and 6 broadcasts, with
// 12 + 2 + 1 of the 16 registers live (the classic Haswell shape).
#if defined(__x86_64__) || defined(__i386__)
#include "gemm_kernels.h"
#include <immintrin.h>

#define PK_AVX2 __attribute__((target("avx2,fma")))

#define ROW_FMA(i)                                                   \
    do {                                                             \
        __m256 ai = _mm256_broadcast_ss(a + (i));                    \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                  \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);                  \
    } while (0)

#define ROW_STORE(i)                                                                        \
    do {                                                                                    \
        float *ci = c + (size_t)(i) * ldc;                                                  \
        if (beta == 0.0f) {                                                                 \
            _mm256_storeu_ps(ci, c##i##0);                                                  \
            _mm256_storeu_ps(ci + 8, c##i##1);                                              \
        } else if (beta == 1.0f) {                                                          \
            _mm256_storeu_ps(ci, _mm256_add_ps(c##i##0, _mm256_loadu_ps(ci)));              \
            _mm256_storeu_ps(ci + 8, _mm256_add_ps(c##i##1, _mm256_loadu_ps(ci + 8)));      \
        } else {                                                                            \
            _mm256_storeu_ps(ci, _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(ci), c##i##0));     \
            _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(ci + 8), c##i##1)); \
        }                                                                                   \
    } while (0)

#define DECL_ROW(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps()

PK_AVX2 void pk_gemm_kernel_avx2(size_t kc, const float *a, const float *b, float *c, size_t ldc, float beta) {
    DECL_ROW(0); DECL_ROW(1); DECL_ROW(2); DECL_ROW(3); DECL_ROW(4); DECL_ROW(5);
    for (size_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3); ROW_FMA(4); ROW_FMA(5);
        a += PK_GEMM_AVX2_MR;
        b += PK_GEMM_AVX2_NR;
    }
    __m256 vbeta = _mm256_set1_ps(beta);
    ROW_STORE(0); ROW_STORE(1); ROW_STORE(2); ROW_STORE(3); ROW_STORE(4); ROW_STORE(5);
}
#endif
