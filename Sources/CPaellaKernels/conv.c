// Convolution helpers over channels-last float32 buffers: im2col (and its adjoint), depthwise convolution,
// and the transposed-convolution gather. See paella_conv.h for the exact contracts.
#include "paella_conv.h"
#include "paella_kernels.h"
#include "conv_index.h"
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

// ---- im2col ----------------------------------------------------------------------------------------------

void pk_im2col_nhwc(const float *x, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg,
                    const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end, float *col) {
    const ptrdiff_t kw = g->kernel_w, kh = g->kernel_h;
    for (ptrdiff_t row = row_begin; row < row_end; row++) {
        const ptrdiff_t b = row / g->out_h, oy = row % g->out_h;
        const float *image = x + b * g->in_h * g->in_w * channels + c0;
        for (ptrdiff_t ox = 0; ox < g->out_w; ox++) {
            for (ptrdiff_t ky = 0; ky < kh; ky++) {
                const ptrdiff_t iy = pk_conv_source_index(oy * g->stride_h - g->pad_top + ky * g->dilation_h, g->in_h, g->pad_mode);
                if (iy < 0) {  // a whole kernel row of zero padding
                    memset(col, 0, (size_t)(kw * cg) * sizeof(float));
                    col += kw * cg;
                    continue;
                }
                const float *line = image + iy * g->in_w * channels;
                for (ptrdiff_t kx = 0; kx < kw; kx++, col += cg) {
                    const ptrdiff_t ix = pk_conv_source_index(ox * g->stride_w - g->pad_left + kx * g->dilation_w, g->in_w, g->pad_mode);
                    if (ix < 0) memset(col, 0, (size_t)cg * sizeof(float));
                    else memcpy(col, line + ix * channels, (size_t)cg * sizeof(float));
                }
            }
        }
    }
}

void pk_im2col_nhwc_ref(const float *x, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg,
                        const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end, float *col) {
    const ptrdiff_t width = g->kernel_h * g->kernel_w * cg;
    for (ptrdiff_t row = row_begin; row < row_end; row++) {
        const ptrdiff_t b = row / g->out_h, oy = row % g->out_h;
        for (ptrdiff_t ox = 0; ox < g->out_w; ox++)
            for (ptrdiff_t ky = 0; ky < g->kernel_h; ky++)
                for (ptrdiff_t kx = 0; kx < g->kernel_w; kx++)
                    for (ptrdiff_t c = 0; c < cg; c++) {
                        ptrdiff_t iy = pk_conv_source_index(oy * g->stride_h - g->pad_top + ky * g->dilation_h, g->in_h, g->pad_mode);
                        ptrdiff_t ix = pk_conv_source_index(ox * g->stride_w - g->pad_left + kx * g->dilation_w, g->in_w, g->pad_mode);
                        float v = 0;
                        if (iy >= 0 && ix >= 0) v = x[((b * g->in_h + iy) * g->in_w + ix) * channels + c0 + c];
                        col[((row - row_begin) * g->out_w + ox) * width + (ky * g->kernel_w + kx) * cg + c] = v;
                    }
    }
}

void pk_col2im_nhwc_add(const float *col, ptrdiff_t channels, ptrdiff_t c0, ptrdiff_t cg,
                        const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end, float *dx) {
    for (ptrdiff_t row = row_begin; row < row_end; row++) {
        const ptrdiff_t b = row / g->out_h, oy = row % g->out_h;
        float *image = dx + b * g->in_h * g->in_w * channels + c0;
        for (ptrdiff_t ox = 0; ox < g->out_w; ox++)
            for (ptrdiff_t ky = 0; ky < g->kernel_h; ky++) {
                const ptrdiff_t iy = pk_conv_source_index(oy * g->stride_h - g->pad_top + ky * g->dilation_h, g->in_h, g->pad_mode);
                for (ptrdiff_t kx = 0; kx < g->kernel_w; kx++, col += cg) {
                    const ptrdiff_t ix = pk_conv_source_index(ox * g->stride_w - g->pad_left + kx * g->dilation_w, g->in_w, g->pad_mode);
                    if (iy < 0 || ix < 0) continue;
                    float *dst = image + (iy * g->in_w + ix) * channels;
                    for (ptrdiff_t c = 0; c < cg; c++) dst[c] += col[c];
                }
            }
    }
}

// ---- depthwise convolution -------------------------------------------------------------------------------
// For each output pixel the valid taps are collected first (source pixel and weight row); the channel loop
// then accumulates sum_t w_t[c] * src_t[c] in registers, C lanes at a time.

typedef void (*depthwise_pixel_fn)(const float *const *src, const float *const *wt, ptrdiff_t taps,
                                   const float *bias, ptrdiff_t channels, float *y);

static void depthwise_pixel_portable(const float *const *src, const float *const *wt, ptrdiff_t taps,
                                     const float *bias, ptrdiff_t channels, float *y) {
    for (ptrdiff_t c = 0; c < channels; c++) y[c] = bias ? bias[c] : 0.0f;
    for (ptrdiff_t t = 0; t < taps; t++) {
        const float *s = src[t], *w = wt[t];
        for (ptrdiff_t c = 0; c < channels; c++) y[c] += w[c] * s[c];
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static void depthwise_pixel_avx2(const float *const *src, const float *const *wt, ptrdiff_t taps,
                                 const float *bias, ptrdiff_t channels, float *y) {
    ptrdiff_t c = 0;
    for (; c + 32 <= channels; c += 32) {  // four 8-lane accumulators
        __m256 a0 = bias ? _mm256_loadu_ps(bias + c) : _mm256_setzero_ps();
        __m256 a1 = bias ? _mm256_loadu_ps(bias + c + 8) : _mm256_setzero_ps();
        __m256 a2 = bias ? _mm256_loadu_ps(bias + c + 16) : _mm256_setzero_ps();
        __m256 a3 = bias ? _mm256_loadu_ps(bias + c + 24) : _mm256_setzero_ps();
        for (ptrdiff_t t = 0; t < taps; t++) {
            const float *s = src[t] + c, *w = wt[t] + c;
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w), _mm256_loadu_ps(s), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8), _mm256_loadu_ps(s + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 16), _mm256_loadu_ps(s + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 24), _mm256_loadu_ps(s + 24), a3);
        }
        _mm256_storeu_ps(y + c, a0);
        _mm256_storeu_ps(y + c + 8, a1);
        _mm256_storeu_ps(y + c + 16, a2);
        _mm256_storeu_ps(y + c + 24, a3);
    }
    for (; c + 8 <= channels; c += 8) {
        __m256 a = bias ? _mm256_loadu_ps(bias + c) : _mm256_setzero_ps();
        for (ptrdiff_t t = 0; t < taps; t++)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(wt[t] + c), _mm256_loadu_ps(src[t] + c), a);
        _mm256_storeu_ps(y + c, a);
    }
    for (; c < channels; c++) {
        float a = bias ? bias[c] : 0.0f;
        for (ptrdiff_t t = 0; t < taps; t++) a = __builtin_fmaf(wt[t][c], src[t][c], a);
        y[c] = a;
    }
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
static void depthwise_pixel_avx512(const float *const *src, const float *const *wt, ptrdiff_t taps,
                                   const float *bias, ptrdiff_t channels, float *y) {
    ptrdiff_t c = 0;
    for (; c + 64 <= channels; c += 64) {  // four 16-lane accumulators
        __m512 a0 = bias ? _mm512_loadu_ps(bias + c) : _mm512_setzero_ps();
        __m512 a1 = bias ? _mm512_loadu_ps(bias + c + 16) : _mm512_setzero_ps();
        __m512 a2 = bias ? _mm512_loadu_ps(bias + c + 32) : _mm512_setzero_ps();
        __m512 a3 = bias ? _mm512_loadu_ps(bias + c + 48) : _mm512_setzero_ps();
        for (ptrdiff_t t = 0; t < taps; t++) {
            const float *s = src[t] + c, *w = wt[t] + c;
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w), _mm512_loadu_ps(s), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + 16), _mm512_loadu_ps(s + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + 32), _mm512_loadu_ps(s + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + 48), _mm512_loadu_ps(s + 48), a3);
        }
        _mm512_storeu_ps(y + c, a0);
        _mm512_storeu_ps(y + c + 16, a1);
        _mm512_storeu_ps(y + c + 32, a2);
        _mm512_storeu_ps(y + c + 48, a3);
    }
    for (; c < channels; c += 16) {  // 16 lanes at a time, the last block masked
        const ptrdiff_t left = channels - c;
        const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512 a = bias ? _mm512_maskz_loadu_ps(m, bias + c) : _mm512_setzero_ps();
        for (ptrdiff_t t = 0; t < taps; t++)
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, wt[t] + c), _mm512_maskz_loadu_ps(m, src[t] + c), a);
        _mm512_mask_storeu_ps(y + c, m, a);
    }
}
#endif

static depthwise_pixel_fn depthwise_pixel_for_active_isa(void) {
#if defined(__x86_64__)
    switch (pk_active_isa()) {
    case PK_ISA_AVX512: return depthwise_pixel_avx512;
    case PK_ISA_AVX2: return depthwise_pixel_avx2;
    default: break;
    }
#endif
    return depthwise_pixel_portable;  // NEON: the compiler vectorizes the portable loops
}

void pk_depthwise_conv2d_nhwc(const float *x, ptrdiff_t channels, const float *w, const float *bias,
                              const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end, float *y) {
    const depthwise_pixel_fn pixel = depthwise_pixel_for_active_isa();
    const ptrdiff_t max_taps = g->kernel_h * g->kernel_w;
    const float *src[max_taps > 0 ? max_taps : 1];
    const float *wt[max_taps > 0 ? max_taps : 1];
    for (ptrdiff_t row = row_begin; row < row_end; row++) {
        const ptrdiff_t b = row / g->out_h, oy = row % g->out_h;
        const float *image = x + b * g->in_h * g->in_w * channels;
        float *out = y + row * g->out_w * channels;
        for (ptrdiff_t ox = 0; ox < g->out_w; ox++, out += channels) {
            ptrdiff_t taps = 0;
            for (ptrdiff_t ky = 0; ky < g->kernel_h; ky++) {
                const ptrdiff_t iy = pk_conv_source_index(oy * g->stride_h - g->pad_top + ky * g->dilation_h, g->in_h, g->pad_mode);
                if (iy < 0) continue;
                for (ptrdiff_t kx = 0; kx < g->kernel_w; kx++) {
                    const ptrdiff_t ix = pk_conv_source_index(ox * g->stride_w - g->pad_left + kx * g->dilation_w, g->in_w, g->pad_mode);
                    if (ix < 0) continue;
                    src[taps] = image + (iy * g->in_w + ix) * channels;
                    wt[taps] = w + (ky * g->kernel_w + kx) * channels;
                    taps++;
                }
            }
            pixel(src, wt, taps, bias, channels, out);
        }
    }
}

void pk_depthwise_conv2d_nhwc_ref(const float *x, ptrdiff_t channels, const float *w, const float *bias,
                                  const pk_conv_geometry *g, ptrdiff_t row_begin, ptrdiff_t row_end, float *y) {
    for (ptrdiff_t row = row_begin; row < row_end; row++) {
        const ptrdiff_t b = row / g->out_h, oy = row % g->out_h;
        for (ptrdiff_t ox = 0; ox < g->out_w; ox++)
            for (ptrdiff_t c = 0; c < channels; c++) {
                float sum = bias ? bias[c] : 0.0f;
                for (ptrdiff_t ky = 0; ky < g->kernel_h; ky++)
                    for (ptrdiff_t kx = 0; kx < g->kernel_w; kx++) {
                        ptrdiff_t iy = pk_conv_source_index(oy * g->stride_h - g->pad_top + ky * g->dilation_h, g->in_h, g->pad_mode);
                        ptrdiff_t ix = pk_conv_source_index(ox * g->stride_w - g->pad_left + kx * g->dilation_w, g->in_w, g->pad_mode);
                        if (iy < 0 || ix < 0) continue;
                        sum += w[(ky * g->kernel_w + kx) * channels + c] * x[((b * g->in_h + iy) * g->in_w + ix) * channels + c];
                    }
                y[((b * g->out_h + oy) * g->out_w + ox) * channels + c] = sum;
            }
    }
}

// ---- transposed convolution: columns -> image ----------------------------------------------------------
// Output pixel oy receives tap ky of input pixel iy when oy = iy * stride - pad + ky * dilation, i.e. when
// t = oy + pad - ky * dilation is a non-negative multiple of the stride with t / stride < in_h. Gathering per
// output row (instead of scattering per input pixel) lets threads own disjoint output rows.

static inline __attribute__((always_inline))
void col2im_transposed_body(const float *col, ptrdiff_t cg, const float *bias, const pk_conv_geometry *g,
                            ptrdiff_t out_channels, ptrdiff_t c0, ptrdiff_t row_begin, ptrdiff_t row_end,
                            float *y) {
    const ptrdiff_t taps = g->kernel_h * g->kernel_w;
    for (ptrdiff_t row = row_begin; row < row_end; row++) {
        const ptrdiff_t b = row / g->out_h, oy = row % g->out_h;
        for (ptrdiff_t ox = 0; ox < g->out_w; ox++) {
            float *restrict out = y + (row * g->out_w + ox) * out_channels + c0;
            for (ptrdiff_t c = 0; c < cg; c++) out[c] = bias ? bias[c0 + c] : 0.0f;
            for (ptrdiff_t ky = 0; ky < g->kernel_h; ky++) {
                const ptrdiff_t ty = oy + g->pad_top - ky * g->dilation_h;
                if (ty < 0 || ty % g->stride_h != 0 || ty / g->stride_h >= g->in_h) continue;
                const ptrdiff_t iy = ty / g->stride_h;
                for (ptrdiff_t kx = 0; kx < g->kernel_w; kx++) {
                    const ptrdiff_t tx = ox + g->pad_left - kx * g->dilation_w;
                    if (tx < 0 || tx % g->stride_w != 0 || tx / g->stride_w >= g->in_w) continue;
                    const ptrdiff_t ix = tx / g->stride_w;
                    const float *restrict src = col + (((b * g->in_h + iy) * g->in_w + ix) * taps + ky * g->kernel_w + kx) * cg;
                    for (ptrdiff_t c = 0; c < cg; c++) out[c] += src[c];
                }
            }
        }
    }
}

#if defined(__x86_64__)
// The same loop compiled for wider vectors (the compiler vectorizes the channel loops).
__attribute__((target("avx2,fma")))
static void col2im_transposed_avx2(const float *col, ptrdiff_t cg, const float *bias, const pk_conv_geometry *g,
                                   ptrdiff_t out_channels, ptrdiff_t c0, ptrdiff_t row_begin, ptrdiff_t row_end, float *y) {
    col2im_transposed_body(col, cg, bias, g, out_channels, c0, row_begin, row_end, y);
}
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
static void col2im_transposed_avx512(const float *col, ptrdiff_t cg, const float *bias, const pk_conv_geometry *g,
                                     ptrdiff_t out_channels, ptrdiff_t c0, ptrdiff_t row_begin, ptrdiff_t row_end, float *y) {
    col2im_transposed_body(col, cg, bias, g, out_channels, c0, row_begin, row_end, y);
}
#endif

void pk_col2im_transposed_nhwc(const float *col, ptrdiff_t cg, const float *bias, const pk_conv_geometry *g,
                               ptrdiff_t out_channels, ptrdiff_t c0, ptrdiff_t row_begin, ptrdiff_t row_end,
                               float *y) {
#if defined(__x86_64__)
    switch (pk_active_isa()) {
    case PK_ISA_AVX512: col2im_transposed_avx512(col, cg, bias, g, out_channels, c0, row_begin, row_end, y); return;
    case PK_ISA_AVX2: col2im_transposed_avx2(col, cg, bias, g, out_channels, c0, row_begin, row_end, y); return;
    default: break;
    }
#endif
    col2im_transposed_body(col, cg, bias, g, out_channels, c0, row_begin, row_end, y);
}

void pk_col2im_transposed_nhwc_ref(const float *col, ptrdiff_t cg, const float *bias, const pk_conv_geometry *g,
                                   ptrdiff_t out_channels, ptrdiff_t c0, ptrdiff_t row_begin, ptrdiff_t row_end,
                                   float *y) {
    for (ptrdiff_t row = row_begin; row < row_end; row++)
        for (ptrdiff_t ox = 0; ox < g->out_w; ox++)
            for (ptrdiff_t c = 0; c < cg; c++)
                y[(row * g->out_w + ox) * out_channels + c0 + c] = bias ? bias[c0 + c] : 0.0f;
    for (ptrdiff_t b = 0; b < g->batch; b++)
        for (ptrdiff_t iy = 0; iy < g->in_h; iy++)
            for (ptrdiff_t ix = 0; ix < g->in_w; ix++)
                for (ptrdiff_t ky = 0; ky < g->kernel_h; ky++)
                    for (ptrdiff_t kx = 0; kx < g->kernel_w; kx++) {
                        ptrdiff_t oy = iy * g->stride_h - g->pad_top + ky * g->dilation_h;
                        ptrdiff_t ox = ix * g->stride_w - g->pad_left + kx * g->dilation_w;
                        ptrdiff_t row = b * g->out_h + oy;
                        if (oy < 0 || oy >= g->out_h || ox < 0 || ox >= g->out_w || row < row_begin || row >= row_end) continue;
                        for (ptrdiff_t c = 0; c < cg; c++)
                            y[(row * g->out_w + ox) * out_channels + c0 + c] +=
                                col[(((b * g->in_h + iy) * g->in_w + ix) * g->kernel_h * g->kernel_w + ky * g->kernel_w + kx) * cg + c];
                    }
}
