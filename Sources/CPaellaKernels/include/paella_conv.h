// CPaellaKernels: convolution helpers over channels-last (NHWC) float32 buffers.
// im2col feeds the general convolution's GEMM, the depthwise kernel is the v1 denoiser's hot loop, and the
// transposed-convolution gather turns a GEMM's columns back into an image. Each fast kernel has a _ref twin.
#ifndef PAELLA_CONV_H
#define PAELLA_CONV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// How a convolution reads outside the image: zeros, or the mirror image without repeating the edge
/// (PyTorch ReflectionPad2d: index -1 reads 1, index H reads H-2; needs padding < size).
typedef enum {
    PK_PAD_ZEROS = 0,
    PK_PAD_REFLECT = 1,
} pk_pad_mode;

/// The geometry of one 2-D convolution over [batch, in_h, in_w, C] images.
/// Forward convolution: input pixel of output (oy, ky) is iy = oy * stride_h - pad_top + ky * dilation_h.
/// Transposed convolution: input pixel iy lands on output oy = iy * stride_h - pad_top + ky * dilation_h.
/// Bottom/right padding is implied by out_h/out_w.
typedef struct {
    ptrdiff_t batch;
    ptrdiff_t in_h, in_w;
    ptrdiff_t out_h, out_w;
    ptrdiff_t kernel_h, kernel_w;
    ptrdiff_t stride_h, stride_w;
    ptrdiff_t dilation_h, dilation_w;
    ptrdiff_t pad_top, pad_left;
    pk_pad_mode pad_mode;
} pk_conv_geometry;

/// Lowers output rows [row_begin, row_end) of the flattened (batch, out_y) index into GEMM columns.
/// x is [batch, in_h, in_w, channels]; channels [c0, c0 + cg) are read (one convolution group).
/// col receives [(row - row_begin) * out_w + ox][ky][kx][cg] (row-major, kernel_h * kernel_w * cg wide).
void pk_im2col_nhwc(const float *x, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg,
                    const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end, float *col);
void pk_im2col_nhwc_ref(const float *x, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg,
                        const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end, float *col);

/// The adjoint of pk_im2col_nhwc (used by the input gradient): adds every column entry back onto the input
/// pixel it was read from (reflected reads add to the mirrored pixel; zero-padding reads are dropped).
/// dx is [batch, in_h, in_w, channels] and is accumulated into, channels [c0, c0 + cg). Single-threaded:
/// different rows may touch the same input pixel.
void pk_col2im_nhwc_add(const float *col, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg,
                        const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end, float *dx);

/// Depthwise convolution (groups == channels, one filter per channel) for output rows [row_begin, row_end)
/// of the flattened (batch, out_y) index: y[b, oy, ox, c] = bias[c] + sum_{ky,kx} w[ky, kx, c] * x[b, iy, ix, c].
/// x is [batch, in_h, in_w, C], w is [kernel_h, kernel_w, C], bias is [C] or NULL, y is [batch, out_h, out_w, C].
/// Vectorized over channels.
void pk_depthwise_conv2d_nhwc(const float *x, ptrdiff_t channels, const float *w, const float *bias,
                              const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end, float *y);
void pk_depthwise_conv2d_nhwc_ref(const float *x, ptrdiff_t channels, const float *w, const float *bias,
                                  const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end, float *y);

/// Transposed convolution, second half: gathers GEMM columns into output rows [row_begin, row_end) of the
/// flattened (batch, out_y) index. col is [batch, in_h, in_w][ky][kx][cg] (the product x * W for one group);
/// y is [batch, out_h, out_w, out_channels] and channels [c0, c0 + cg) of the rows are overwritten with
/// bias[c0 + c] (bias may be NULL) plus the sum of every column entry that lands there.
void pk_col2im_transposed_nhwc(const float *col, ptrdiff_t cg, const float *bias, const pk_conv_geometry *g,
                               ptrdiff_t out_channels, ptrdiff_t c0, ptrdiff_t row_begin, ptrdiff_t row_end,
                               float *y);
/// Twin written as PyTorch defines it: every input pixel scatters its kernel-sized patch onto the output.
void pk_col2im_transposed_nhwc_ref(const float *col, ptrdiff_t cg, const float *bias, const pk_conv_geometry *g,
                                   ptrdiff_t out_channels, ptrdiff_t c0, ptrdiff_t row_begin, ptrdiff_t row_end,
                                   float *y);

/// Implicit-GEMM convolution (the built-in GEMM reading the lowered input straight from x, with no im2col buffer)
/// for output pixels [pixel_begin, pixel_end) of the flattened (batch, out_y, out_x) index, one group:
///   y[p - pixel_begin][o] = beta * y[...][o] + sum over (ky, kx, ci) of x[pixel tap (ky, kx) of p reads][c0 + ci]
///                                                                       * kernel[(ky * kernel_w + kx) * cg + ci][o]
/// for o < n, where kernel has row stride ldk and y row stride ldy. The same floats as pk_im2col_nhwc followed by
/// pk_sgemm (same packing, blocking and micro-kernel). workspace: pk_conv2d_gemm_workspace_floats(pixel_end -
/// pixel_begin, n, kernel_h * kernel_w * cg, cg) floats or NULL.
/// Single-threaded, like pk_sgemm.
void pk_conv2d_gemm_nhwc(const float *x, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg, const pk_conv_geometry *g,
                         ptrdiff_t pixel_begin, ptrdiff_t pixel_end, const float *kernel, size_t ldk, size_t n,
                         float beta, float *y, size_t ldy, float *workspace);

/// The kernel gradient of one group through the same implicit GEMM: rows [row_begin, row_end) of
///   dk[r][o] = beta * dk[r][o] + sum over every output pixel p of col[p][r] * dy[p][o]      (o < n)
/// where col is pk_im2col_nhwc's matrix of all batch * out_h * out_w pixels, read straight from x; dy has row stride
/// lddy and dk row stride lddk. The same floats as pk_im2col_nhwc followed by pk_sgemm with A transposed.
/// workspace: pk_conv2d_gemm_workspace_floats(row_end - row_begin, n, pixels, cg) floats or NULL.
void pk_conv2d_gemm_kernel_gradient_nhwc(const float *x, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg,
                                         const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end,
                                         const float *dy, size_t lddy, size_t n, float beta, float *dk, size_t lddk,
                                         float *workspace);
/// Workspace of the two implicit GEMMs above for a product of m x n outputs over depth k.
size_t pk_conv2d_gemm_workspace_floats(size_t m, size_t n, size_t k, size_t cg);

/// pk_conv2d_gemm_nhwc with bfloat16 weights: the kernel matrix [kernel_h * kernel_w * cg, n] packed by pk_bf16_pack
/// (paella_gemm.h), output columns from panel `panel_begin` on; the input is rounded to bfloat16 as it is packed and
/// the products are summed in float32. workspace: pk_conv2d_gemm_bf16_workspace_floats(pixel_end - pixel_begin,
/// kernel_h * kernel_w * cg, cg) floats or NULL.
void pk_conv2d_gemm_bf16_nhwc(const float *x, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg, const pk_conv_geometry *g,
                              ptrdiff_t pixel_begin, ptrdiff_t pixel_end, const uint32_t *packed, size_t panel_begin,
                              size_t n, float beta, float *y, size_t ldy, float *workspace);
size_t pk_conv2d_gemm_bf16_workspace_floats(size_t m, size_t k, size_t cg);

/// Winograd F(2x2, 3x3) (conv_winograd.c) for a 3x3 convolution with stride 1, dilation 1, one group and one zero of
/// padding on each side, so the output is h x w like the input. The kernel [9 * cin, cout] (rows (ky * 3 + kx) * cin
/// + ci, as pk_conv2d_gemm_nhwc reads it) is first transformed into u: 16 matrices [cin, cout]
/// (pk_winograd3x3_weights_floats(cin, cout) floats).
size_t pk_winograd3x3_weights_floats(size_t cin, size_t cout);
void pk_winograd3x3_weights(const float *kernel, size_t cin, size_t cout, float *u);
/// y = conv(x) + beta * y for the 2x2 output tiles [tile_begin, tile_end) of the batch, numbered image by image,
/// row by row (an image has ((h + 1) / 2) * ((w + 1) / 2) tiles); x [batch, h, w, cin] and y [batch, h, w, cout]
/// channels-last. Equals the direct convolution up to float32 rounding; a tile's result is the same whatever range
/// it is computed in. Single-threaded; workspace: pk_conv2d_winograd3x3_workspace_floats(cin, cout) floats.
size_t pk_conv2d_winograd3x3_workspace_floats(size_t cin, size_t cout);
void pk_conv2d_winograd3x3_nhwc(const float *x, size_t h, size_t w, size_t cin, const float *u, size_t cout,
                                size_t tile_begin, size_t tile_end, float beta, float *y, float *workspace);

#ifdef __cplusplus
}
#endif
#endif
