// AVX2 + FMA micro-kernel of the bfloat16 GEMM (gemm_bf16.c), for CPUs without AVX512-BF16: the weights stay packed
// as bfloat16 pairs (half the memory of float32), and each pair step widens one panel row-pair to float32 in
// registers (a bfloat16 is the top half of a float32: the low half of a word shifted up 16 bits, the high half
// with its low 16 bits cleared) and multiplies it with fused multiply-adds. The driver hands this kernel A as
// float32 values already rounded to bfloat16 (BF16_A_FLOATS layout: a[2 (p mr + i)] = A[i][2p], a[2 (p mr + i) + 1] =
// A[i][2p + 1]), so the broadcasts need no widening.
//
// The product of two bfloat16s is exact in float32, so an FMA rounds only its addition, as vdpbf16ps and the
// portable kernel do: taking the high (odd k) product first and then the low one, this kernel gives the portable
// kernel's results bit for bit (denormal inputs aside, which vdpbf16ps flushes).
//
// Tile: 3 rows x 32 columns = 12 ymm accumulators; one 8-column group of B widened into 2 registers at a time, and
// one broadcast: 15 of the 16 registers.
#if defined(__x86_64__) || defined(__i386__)
#include "gemm_kernels.h"
#include "paella_gemm.h"
#include <immintrin.h>

#define PK_AVX2 __attribute__((target("avx2,fma")))

// Group g (columns 8g ... 8g + 7) of the pair step: widen its words, then both products for each row.
#define GROUP(g)                                                                                       \
    do {                                                                                               \
        __m256i w = _mm256_load_si256((const __m256i *)(b + 8 * (g)));                                 \
        __m256 lo = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));                                     \
        __m256 hi = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(w, 16), 16));              \
        c0##g = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 1), hi, c0##g);                                \
        c0##g = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 0), lo, c0##g);                                \
        c1##g = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 3), hi, c1##g);                                \
        c1##g = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 2), lo, c1##g);                                \
        c2##g = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 5), hi, c2##g);                                \
        c2##g = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 4), lo, c2##g);                                \
    } while (0)

#define STORE(i, g)                                                                                    \
    do {                                                                                               \
        float *ci = c + (size_t)(i) * ldc + 8 * (g);                                                   \
        _mm256_storeu_ps(ci, beta == 0.0f ? c##i##g : _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(ci), c##i##g)); \
    } while (0)

PK_AVX2 void pk_gemm_bf16_kernel_avx2(size_t kc2, const uint32_t *words, const uint32_t *b, float *c, size_t ldc,
                                      float beta) {
    const float *a = (const float *)words;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    for (size_t p = 0; p < kc2; p++) {
        GROUP(0); GROUP(1); GROUP(2); GROUP(3);
        a += 2 * PK_BF16_AVX2_MR;
        b += PK_BF16_PANEL;
    }
    const __m256 vbeta = _mm256_set1_ps(beta);
    STORE(0, 0); STORE(0, 1); STORE(0, 2); STORE(0, 3);
    STORE(1, 0); STORE(1, 1); STORE(1, 2); STORE(1, 3);
    STORE(2, 0); STORE(2, 1); STORE(2, 2); STORE(2, 3);
}
#endif
