// Private to the AVX-512 micro-kernels (gemm_avx512.c, gemm_avx512bf16.c): a 12 x 32 tile of C held in 24 zmm
// registers c<i>0, c<i>1 (row i, columns 0-15 and 16-31), declared and written back the same way by both.
#ifndef PAELLA_GEMM_AVX512_TILE_H
#define PAELLA_GEMM_AVX512_TILE_H

// Write row i back: C = acc (beta 0), C += acc (beta 1), else C = acc + beta * C.
#define ROW_STORE(i)                                                                        \
    do {                                                                                    \
        float *ci = c + (size_t)(i) * ldc;                                                  \
        if (beta == 0.0f) {                                                                 \
            _mm512_storeu_ps(ci, c##i##0);                                                  \
            _mm512_storeu_ps(ci + 16, c##i##1);                                             \
        } else if (beta == 1.0f) {                                                          \
            _mm512_storeu_ps(ci, _mm512_add_ps(c##i##0, _mm512_loadu_ps(ci)));              \
            _mm512_storeu_ps(ci + 16, _mm512_add_ps(c##i##1, _mm512_loadu_ps(ci + 16)));    \
        } else {                                                                            \
            _mm512_storeu_ps(ci, _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(ci), c##i##0));     \
            _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(ci + 16), c##i##1)); \
        }                                                                                   \
    } while (0)

#define DECL_ROW(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps()

#endif
