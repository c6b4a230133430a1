// Winograd F(2x2, 3x3) for 3x3, stride-1 convolutions padded by one zero on each side (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2015). Each 2x2 tile of output pixels comes from the 4x4 input
// tile around it:
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A        per input channel, summed over input channels
// with the standard matrices
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// The sum over input channels of the 16 element-wise products is 16 matrix products, one per tile position xi:
//   M[xi] (tiles x cout) = V[xi] (tiles x cin) * U[xi] (cin x cout),
// so the multiplies are 16 * cin * cout per tile of 4 outputs against 9 * cin * cout per output pixel for the
// direct convolution: 2.25 times fewer. The transforms add and subtract only (G's halves are exact), so the result
// differs from the direct sum by float32 rounding alone.
//
// Tiles are taken in blocks of WINOGRAD_BLOCK (input transform into V, 16 GEMMs through pk_sgemm, output transform
// from M), which bounds the memory V and M take (16 * WINOGRAD_BLOCK * (cin + cout) floats a thread; 4.3 MB at 128
// channels, mostly in the last-level cache). A tile's result does not depend on the block it falls in, so
// any split of the tiles between threads gives the same bits.
#include "paella_conv.h"
#include "paella_gemm.h"
#include "paella_kernels.h"
#include "gemm_kernels.h"
#include <string.h>

// Tiles per block: a multiple of every GEMM micro-tile height (4, 6, 8, 12). Each of a block's 16 GEMMs packs its
// [cin, cout] matrix of U again, once per WINOGRAD_BLOCK rows: at 96 tiles that copying was 11% of a VQGAN decode.
#define WINOGRAD_BLOCK 264

size_t pk_winograd3x3_weights_floats(size_t cin, size_t cout) { return 16 * cin * cout; }

void pk_winograd3x3_weights(const float *restrict kernel, size_t cin, size_t cout, float *restrict u) {
    // Per input channel, the 9 kernel rows and 16 rows of U are contiguous over output channels: the loop over co
    // vectorises.
    for (size_t ci = 0; ci < cin; ci++) {
        const float *g[9];
        float *out[16];
        for (int tap = 0; tap < 9; tap++) g[tap] = kernel + ((size_t)tap * cin + ci) * cout;
        for (int xi = 0; xi < 16; xi++) out[xi] = u + ((size_t)xi * cin + ci) * cout;
        for (size_t co = 0; co < cout; co++) {
            float t[4][3];
            for (int kx = 0; kx < 3; kx++) {  // t = G g
                const float g0 = g[kx][co], g1 = g[3 + kx][co], g2 = g[6 + kx][co];
                t[0][kx] = g0;
                t[1][kx] = 0.5f * (g0 + g1 + g2);
                t[2][kx] = 0.5f * (g0 - g1 + g2);
                t[3][kx] = g2;
            }
            for (int r = 0; r < 4; r++) {     // U = t G^T
                out[4 * r][co] = t[r][0];
                out[4 * r + 1][co] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
                out[4 * r + 2][co] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
                out[4 * r + 3][co] = t[r][2];
            }
        }
    }
}

size_t pk_conv2d_winograd3x3_workspace_floats(size_t cin, size_t cout) {
    return 16 * WINOGRAD_BLOCK * (cin + cout) + pk_sgemm_workspace_floats(WINOGRAD_BLOCK, cout, cin) + cin + 16;
}

// The 16 transformed values of `count` tiles' channels: v[(xi * block + t) * cin + c] = (B^T d B)[xi] for tile t.
// src[t][16] point at each tile's 16 input pixels (or at zeros). The arithmetic of one channel c, shared by the
// portable loop and the AVX2 version's tail (d = src[t], out = v + t * cin, plane = block * cin).
#define INPUT_TRANSFORM_CHANNEL                                                                                \
    for (int s = 0; s < 4; s++) { /* B^T d, column s */                                                        \
        const float d0 = d[s][c], d1 = d[4 + s][c], d2 = d[8 + s][c], d3 = d[12 + s][c];                       \
        m[0][s] = d0 - d2; m[1][s] = d1 + d2; m[2][s] = d2 - d1; m[3][s] = d1 - d3;                            \
    }                                                                                                          \
    for (int r = 0; r < 4; r++) { /* then times B, row r */                                                    \
        out[(size_t)(4 * r + 0) * plane + c] = m[r][0] - m[r][2];                                              \
        out[(size_t)(4 * r + 1) * plane + c] = m[r][1] + m[r][2];                                              \
        out[(size_t)(4 * r + 2) * plane + c] = m[r][2] - m[r][1];                                              \
        out[(size_t)(4 * r + 3) * plane + c] = m[r][1] - m[r][3];                                              \
    }

// y = A^T M A (+ beta * y) for `count` tiles, from m[(xi * block + t) * cout + co]; dst[t][4] point at each tile's
// 2x2 output pixels, NULL where a pixel falls outside the image. Whole tiles (the rule) take loops without a branch
// per channel, which vectorise; C is not read when beta is 0.
#define TILE_OUTPUT(co)                                                                                        \
    const float m00 = in[(co)], m01 = in[plane + (co)], m02 = in[2 * plane + (co)], m03 = in[3 * plane + (co)]; \
    const float m10 = in[4 * plane + (co)], m11 = in[5 * plane + (co)], m12 = in[6 * plane + (co)], m13 = in[7 * plane + (co)]; \
    const float m20 = in[8 * plane + (co)], m21 = in[9 * plane + (co)], m22 = in[10 * plane + (co)], m23 = in[11 * plane + (co)]; \
    const float m30 = in[12 * plane + (co)], m31 = in[13 * plane + (co)], m32 = in[14 * plane + (co)], m33 = in[15 * plane + (co)]; \
    const float a0 = m00 + m10 + m20, a1 = m01 + m11 + m21, a2 = m02 + m12 + m22, a3 = m03 + m13 + m23;       \
    const float b0 = m10 - m20 - m30, b1 = m11 - m21 - m31, b2 = m12 - m22 - m32, b3 = m13 - m23 - m33;       \
    const float y0 = a0 + a1 + a2, y1 = a1 - a2 - a3, y2 = b0 + b1 + b2, y3 = b1 - b2 - b3

#define OUTPUT_TRANSFORM_BODY                                                                                  \
    for (size_t t = 0; t < count; t++) {                                                                       \
        float *const *out = dst[t];                                                                            \
        const float *in = m + t * cout;                                                                        \
        const size_t plane = block * cout;                                                                     \
        if (out[0] && out[1] && out[2] && out[3]) {                                                            \
            float *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3];                                      \
            if (beta == 0.0f) {                                                                                \
                for (size_t co = 0; co < cout; co++) {                                                         \
                    TILE_OUTPUT(co);                                                                           \
                    o0[co] = y0; o1[co] = y1; o2[co] = y2; o3[co] = y3;                                        \
                }                                                                                              \
            } else {                                                                                           \
                for (size_t co = 0; co < cout; co++) {                                                         \
                    TILE_OUTPUT(co);                                                                           \
                    o0[co] = y0 + beta * o0[co]; o1[co] = y1 + beta * o1[co];                                  \
                    o2[co] = y2 + beta * o2[co]; o3[co] = y3 + beta * o3[co];                                  \
                }                                                                                              \
            }                                                                                                  \
        } else {                                                                                               \
            for (size_t co = 0; co < cout; co++) {                                                             \
                TILE_OUTPUT(co);                                                                               \
                const float yq[4] = {y0, y1, y2, y3};                                                          \
                for (int q = 0; q < 4; q++)                                                                    \
                    if (out[q]) out[q][co] = beta == 0.0f ? yq[q] : yq[q] + beta * out[q][co];                 \
            }                                                                                                  \
        }                                                                                                      \
    }

static void input_transform(const float *const (*src)[16], size_t count, size_t cin, size_t block, float *v) {
    const size_t plane = block * cin;
    for (size_t t = 0; t < count; t++) {
        const float *const *d = src[t];
        float *out = v + t * cin;
        for (size_t c = 0; c < cin; c++) {
            float m[4][4];
            INPUT_TRANSFORM_CHANNEL
        }
    }
}
static void output_transform(const float *m, float *const (*dst)[4], size_t count, size_t cout, size_t block, float beta) {
    OUTPUT_TRANSFORM_BODY
}
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
// The input transform 8 channels at a time (the compiler does not vectorise the portable body: 16 input and 16
// output streams are too many for its run-time alias checks); the channels past the last 8 go through the scalar
// body's arithmetic.
__attribute__((target("avx2,fma"))) static void input_transform_avx2(const float *const (*src)[16], size_t count, size_t cin,
                                                                     size_t block, float *v) {
    const size_t plane = block * cin, whole = cin / 8 * 8;
    for (size_t t = 0; t < count; t++) {
        const float *const *d = src[t];
        float *out = v + t * cin;
        for (size_t c = 0; c < whole; c += 8) {
            __m256 m[4][4];
            for (int s = 0; s < 4; s++) {  // B^T d, column s
                const __m256 d0 = _mm256_loadu_ps(d[s] + c), d1 = _mm256_loadu_ps(d[4 + s] + c);
                const __m256 d2 = _mm256_loadu_ps(d[8 + s] + c), d3 = _mm256_loadu_ps(d[12 + s] + c);
                m[0][s] = _mm256_sub_ps(d0, d2);
                m[1][s] = _mm256_add_ps(d1, d2);
                m[2][s] = _mm256_sub_ps(d2, d1);
                m[3][s] = _mm256_sub_ps(d1, d3);
            }
            for (int r = 0; r < 4; r++) {  // then times B, row r
                _mm256_storeu_ps(out + (size_t)(4 * r + 0) * plane + c, _mm256_sub_ps(m[r][0], m[r][2]));
                _mm256_storeu_ps(out + (size_t)(4 * r + 1) * plane + c, _mm256_add_ps(m[r][1], m[r][2]));
                _mm256_storeu_ps(out + (size_t)(4 * r + 2) * plane + c, _mm256_sub_ps(m[r][2], m[r][1]));
                _mm256_storeu_ps(out + (size_t)(4 * r + 3) * plane + c, _mm256_sub_ps(m[r][1], m[r][3]));
            }
        }
        for (size_t c = whole; c < cin; c++) {
            float m[4][4];
            INPUT_TRANSFORM_CHANNEL
        }
    }
}
__attribute__((target("avx2,fma"))) static void output_transform_avx2(const float *m, float *const (*dst)[4], size_t count,
                                                                      size_t cout, size_t block, float beta) {
    OUTPUT_TRANSFORM_BODY
}
#endif

void pk_conv2d_winograd3x3_nhwc(const float *x, size_t h, size_t w, size_t cin, const float *u, size_t cout,
                                size_t tile_begin, size_t tile_end, float beta, float *y, float *workspace) {
    const size_t tiles_h = (h + 1) / 2, tiles_w = (w + 1) / 2, per_image = tiles_h * tiles_w;
    float *v = workspace, *m = v + 16 * WINOGRAD_BLOCK * cin, *gemm_space = m + 16 * WINOGRAD_BLOCK * cout;
    float *zeros = gemm_space + pk_sgemm_workspace_floats(WINOGRAD_BLOCK, cout, cin);
    memset(zeros, 0, cin * sizeof(float));
#if defined(__x86_64__) || defined(__i386__)
    const int avx2 = pk_isa_runs_avx2(pk_active_isa());
#endif
    const float *src[WINOGRAD_BLOCK][16];
    float *dst[WINOGRAD_BLOCK][4];
    for (size_t first = tile_begin; first < tile_end; first += WINOGRAD_BLOCK) {
        const size_t count = tile_end - first < WINOGRAD_BLOCK ? tile_end - first : WINOGRAD_BLOCK;
        for (size_t t = 0; t < count; t++) {
            const size_t tile = first + t, image = tile / per_image, within = tile % per_image;
            const ptrdiff_t oy = (ptrdiff_t)(within / tiles_w) * 2, ox = (ptrdiff_t)(within % tiles_w) * 2;
            for (int r = 0; r < 4; r++)
                for (int s = 0; s < 4; s++) {
                    const ptrdiff_t iy = oy - 1 + r, ix = ox - 1 + s;
                    src[t][4 * r + s] = iy < 0 || ix < 0 || iy >= (ptrdiff_t)h || ix >= (ptrdiff_t)w
                        ? zeros : x + ((image * h + (size_t)iy) * w + (size_t)ix) * cin;
                }
            for (int q = 0; q < 4; q++) {
                const size_t py = (size_t)oy + (size_t)(q / 2), px = (size_t)ox + (size_t)(q % 2);
                dst[t][q] = py < h && px < w ? y + ((image * h + py) * w + px) * cout : NULL;
            }
        }
#if defined(__x86_64__) || defined(__i386__)
        if (avx2) input_transform_avx2(src, count, cin, WINOGRAD_BLOCK, v);
        else
#endif
            input_transform(src, count, cin, WINOGRAD_BLOCK, v);
        for (size_t xi = 0; xi < 16; xi++)
            pk_sgemm(0, 0, count, cout, cin, 1.0f, v + xi * WINOGRAD_BLOCK * cin, cin, u + xi * cin * cout, cout, 0.0f,
                     m + xi * WINOGRAD_BLOCK * cout, cout, gemm_space);
#if defined(__x86_64__) || defined(__i386__)
        if (avx2) output_transform_avx2(m, dst, count, cout, WINOGRAD_BLOCK, beta);
        else
#endif
            output_transform(m, dst, count, cout, WINOGRAD_BLOCK, beta);
    }
}
