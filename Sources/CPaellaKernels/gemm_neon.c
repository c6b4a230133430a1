// NEON micro-kernel of the built-in GEMM (arm64): an 8 x 12 tile of C held in 24 q registers.
// Each k step loads one row of the packed B panel (12 floats = 3 q) and the 8 packed A values (2 q) and
// accumulates c[i][0:12] += a[i][p] * b[p][0:12] with by-lane fused multiply-adds: 24 FMAs per 5 loads,
// 24 + 3 + 2 of the 32 registers live.
#if defined(__aarch64__)
#include "gemm_kernels.h"
#include <arm_neon.h>

#define ROW_FMA(i, av, lane)                                         \
    do {                                                             \
        c##i##0 = vfmaq_laneq_f32(c##i##0, b0, av, lane);            \
        c##i##1 = vfmaq_laneq_f32(c##i##1, b1, av, lane);            \
        c##i##2 = vfmaq_laneq_f32(c##i##2, b2, av, lane);            \
    } while (0)

#define ROW_STORE(i)                                                                  \
    do {                                                                              \
        float *ci = c + (size_t)(i) * ldc;                                            \
        if (beta == 0.0f) {                                                           \
            vst1q_f32(ci, c##i##0); vst1q_f32(ci + 4, c##i##1); vst1q_f32(ci + 8, c##i##2); \
        } else {                                                                      \
            vst1q_f32(ci, vfmaq_n_f32(c##i##0, vld1q_f32(ci), beta));                 \
            vst1q_f32(ci + 4, vfmaq_n_f32(c##i##1, vld1q_f32(ci + 4), beta));         \
            vst1q_f32(ci + 8, vfmaq_n_f32(c##i##2, vld1q_f32(ci + 8), beta));         \
        }                                                                             \
    } while (0)

#define DECL_ROW(i) float32x4_t c##i##0 = vdupq_n_f32(0), c##i##1 = vdupq_n_f32(0), c##i##2 = vdupq_n_f32(0)

void pk_gemm_kernel_neon(size_t kc, const float *a, const float *b, float *c, size_t ldc, float beta) {
    DECL_ROW(0); DECL_ROW(1); DECL_ROW(2); DECL_ROW(3);
    DECL_ROW(4); DECL_ROW(5); DECL_ROW(6); DECL_ROW(7);
    for (size_t p = 0; p < kc; p++) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
        float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        ROW_FMA(0, a0, 0); ROW_FMA(1, a0, 1); ROW_FMA(2, a0, 2); ROW_FMA(3, a0, 3);
        ROW_FMA(4, a1, 0); ROW_FMA(5, a1, 1); ROW_FMA(6, a1, 2); ROW_FMA(7, a1, 3);
        a += PK_GEMM_NEON_MR;
        b += PK_GEMM_NEON_NR;
    }
    ROW_STORE(0); ROW_STORE(1); ROW_STORE(2); ROW_STORE(3);
    ROW_STORE(4); ROW_STORE(5); ROW_STORE(6); ROW_STORE(7);
}
#endif
