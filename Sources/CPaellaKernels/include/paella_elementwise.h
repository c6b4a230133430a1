// CPaellaKernels: normalization, activations, softmax, dtype conversions and sampling over float buffers.
// Every fast kernel picks AVX-512, AVX2, NEON or portable code at run time from pk_active_isa() and has a
// plain reference twin (suffix _ref) that the tests compare against. Sizes are element counts; matrices are
// row-major [rows, n]. Unless a comment says otherwise, output may alias input (x == y) for in-place use.
#ifndef PAELLA_ELEMENTWISE_H
#define PAELLA_ELEMENTWISE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- Vector maths ------------------------------------------------------------------------------------------
/// y[i] = e^x[i] (<= 2 ulp, 0 for x < -104, +inf past log(FLT_MAX)).
void pk_exp(const float *x, float *y, size_t n);
void pk_exp_ref(const float *x, float *y, size_t n);
/// y[i] = log(x[i]) (<= 2 ulp; log 0 = -inf, log of a negative number = NaN).
void pk_log(const float *x, float *y, size_t n);
void pk_log_ref(const float *x, float *y, size_t n);
/// y[i] = erf(x[i]) (<= 1.2e-7 absolute).
void pk_erf(const float *x, float *y, size_t n);
void pk_erf_ref(const float *x, float *y, size_t n);

// ---- Activations -------------------------------------------------------------------------------------------
/// GELU in its exact form, PyTorch's default: y = x/2 * (1 + erf(x / sqrt 2)).
void pk_gelu(const float *x, float *y, size_t n);
void pk_gelu_ref(const float *x, float *y, size_t n);
/// dx = dy * GELU'(x), GELU'(x) = (1 + erf(x/sqrt 2))/2 + x * exp(-x^2/2)/sqrt(2 pi). dx may alias dy.
void pk_gelu_backward(const float *x, const float *dy, float *dx, size_t n);
void pk_gelu_backward_ref(const float *x, const float *dy, float *dx, size_t n);
/// SiLU (swish): y = x * sigmoid(x) = x / (1 + e^-x).
void pk_silu(const float *x, float *y, size_t n);
void pk_silu_ref(const float *x, float *y, size_t n);
/// dx = dy * SiLU'(x), SiLU'(x) = s * (1 + x * (1 - s)) with s = sigmoid(x). dx may alias dy.
void pk_silu_backward(const float *x, const float *dy, float *dx, size_t n);

// ---- Softmax over the rows of [rows, n] -----------------------------------------------------------------
/// y = exp(x - max) / sum(exp(x - max)) per row. Entries of -inf get probability 0; a row that is entirely
/// -inf (everything masked) becomes all zeros instead of NaN.
void pk_softmax(const float *x, float *y, size_t rows, size_t n);
void pk_softmax_ref(const float *x, float *y, size_t rows, size_t n);
/// y = x - max - log(sum(exp(x - max))) per row. A row that is entirely -inf stays -inf.
void pk_log_softmax(const float *x, float *y, size_t rows, size_t n);
void pk_log_softmax_ref(const float *x, float *y, size_t rows, size_t n);
/// Softmax backward from its output y: dx = y * (dy - sum(dy * y)) per row. dx may alias dy.
void pk_softmax_backward(const float *y, const float *dy, float *dx, size_t rows, size_t n);
/// Log-softmax backward from its output y: dx = dy - exp(y) * sum(dy) per row. dx may alias dy.
void pk_log_softmax_backward(const float *y, const float *dy, float *dx, size_t rows, size_t n);

// ---- Typical filtering of one row of logits (upstream Paella's utils.sample) -----------------------------
/// The per-entry part of typical filtering, for one row x[n]: p = softmax(x) (as pk_softmax), log p = log_softmax(x)
/// (as pk_log_softmax), the entropy H = -nansum(p log p), and each entry's score |-log p - H| written as its float
/// bits to score_bits (scores are >= 0, so their bits order like their values). When bucket_mass/bucket_count
/// are not NULL they receive, per bucket b = score_bits >> bucket_shift (2^(31 - bucket_shift) buckets, cleared
/// first), the summed p (in double) and the number of entries. A row that is entirely -inf gets p = 0 and
/// scores of +inf bits (NaN-free). Returns H.
float pk_typical_scores(const float *x, size_t n, float *p, uint32_t *score_bits, int bucket_shift,
                        double *bucket_mass, int32_t *bucket_count);
/// The twin: scalar loops, entropy summed in entry order.
float pk_typical_scores_ref(const float *x, size_t n, float *p, uint32_t *score_bits, int bucket_shift,
                            double *bucket_mass, int32_t *bucket_count);
/// The score threshold of one row from what pk_typical_scores wrote (p, score_bits, and the per-bucket masses and
/// counts): in ascending (score, index) order, the score of the entry at which the summed p (in double, compared as
/// float) first reaches `mass`; UINT32_MAX when it is never reached. Only the bucket where the mass is reached is
/// sorted: its entries are gathered into keys (n of scratch) as (score bits << 32 | index).
uint32_t pk_typical_threshold(const float *p, const uint32_t *score_bits, size_t n, float mass, int bucket_shift,
                              const double *bucket_mass, const int32_t *bucket_count, uint64_t *keys);
/// The twin: the bucket's entries gathered by a scalar loop.
uint32_t pk_typical_threshold_ref(const float *p, const uint32_t *score_bits, size_t n, float mass, int bucket_shift,
                                  const double *bucket_mass, const int32_t *bucket_count, uint64_t *keys);
/// y[j] = score_bits[j] > threshold_bits ? -inf : x[j] (the filtered logits). y may alias x.
void pk_typical_apply(const float *x, const uint32_t *score_bits, uint32_t threshold_bits, float *y, size_t n);
void pk_typical_apply_ref(const float *x, const uint32_t *score_bits, uint32_t threshold_bits, float *y, size_t n);

// ---- Layer norm over the last dimension of [rows, n] ------------------------------------------------------
/// y = (x - mean) * rstd * weight + bias per row, with rstd = 1/sqrt(var + eps) and the biased variance (as
/// torch.nn.functional.layer_norm). weight and bias may be NULL (1 and 0); mean and rstd (length rows) may be
/// NULL, else they receive the statistics the backward pass needs. Two passes in float per row.
void pk_layer_norm(const float *x, float *y, size_t rows, size_t n, const float *weight, const float *bias,
                   float eps, float *mean, float *rstd);
/// The twin: the same formula with the statistics accumulated in double.
void pk_layer_norm_ref(const float *x, float *y, size_t rows, size_t n, const float *weight, const float *bias,
                       float eps, float *mean, float *rstd);
/// Layer norm backward for rows [rows, n] given the forward's mean and rstd. Writes dx (may alias dy) and
/// ADDS this block's contributions to dweight and dbias (length n; either may be NULL; weight may be NULL):
///   xhat = (x - mean) * rstd,  g = dy * weight,
///   dx = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat)),  dweight += sum_rows dy * xhat,  dbias += sum_rows dy.
void pk_layer_norm_backward(const float *dy, const float *x, const float *mean, const float *rstd,
                            const float *weight, size_t rows, size_t n, float *dx, float *dweight, float *dbias);

// ---- Group norm, channels-last [batch, hw, c] with `groups` groups of c/groups channels ----------------------
/// Whole group norm on one thread: statistics over hw x c/groups per (batch, group), then
/// y = (x - mean) * rstd * weight[c] + bias[c], then SiLU if silu != 0 (VQGAN's GroupNorm -> swish).
/// weight/bias may be NULL; mean/rstd (length batch*groups) may be NULL. Statistics are summed in double.
void pk_group_norm(const float *x, float *y, size_t batch, size_t hw, size_t c, size_t groups, float eps,
                   const float *weight, const float *bias, int silu, float *mean, float *rstd);
void pk_group_norm_ref(const float *x, float *y, size_t batch, size_t hw, size_t c, size_t groups, float eps,
                       const float *weight, const float *bias, int silu, float *mean, float *rstd);
/// Building blocks that let a caller split group norm over threads by rows of [rows, c]:
/// sums[j] += sum over rows of x[r, j] (double accumulators, length c).
void pk_channel_sums(const float *x, size_t rows, size_t c, double *sums);
void pk_channel_sums_ref(const float *x, size_t rows, size_t c, double *sums);
/// sums[j] += sum over rows of (x[r, j] - center[j])^2.
void pk_channel_centered_squares(const float *x, size_t rows, size_t c, const float *center, double *sums);
void pk_channel_centered_squares_ref(const float *x, size_t rows, size_t c, const float *center, double *sums);
/// y[r, j] = x[r, j] * scale[j] + shift[j], then SiLU if silu != 0.
void pk_channel_affine(const float *x, float *y, size_t rows, size_t c, const float *scale, const float *shift,
                       int silu);
void pk_channel_affine_ref(const float *x, float *y, size_t rows, size_t c, const float *scale, const float *shift,
                           int silu);

// ---- Conversions between storage types and float32 -----------------------------------------------------------
/// bfloat16 -> float32 (exact: the 16 bits become the top half).
void pk_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void pk_bf16_to_f32_ref(const uint16_t *src, float *dst, size_t n);
/// IEEE half -> float32 (exact, subnormals included; F16C on x86).
void pk_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void pk_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n);
/// float32 -> bfloat16, round to nearest even; NaN stays a (quiet) NaN.
void pk_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void pk_f32_to_bf16_ref(const float *src, uint16_t *dst, size_t n);
/// float32 -> IEEE half, round to nearest even; overflow gives +-inf, NaN stays NaN.
void pk_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void pk_f32_to_f16_ref(const float *src, uint16_t *dst, size_t n);

// ---- Sampling over the rows of [rows, n] ------------------------------------------------------------------
/// Gumbel-max sampling as upstream Paella's utils.gumbel_sample: per row,
///   out[r] = argmax_j ( logits[r,j] / max(temperature, 1e-10) + g[r,j] ),  g = -log(-log(u[r,j] + 1e-20) + 1e-20),
/// with u uniform in [0, 1). The first index wins ties (as torch.argmax); NaN scores are never chosen, and a
/// row with no finite-or-+inf score returns 0.
void pk_gumbel_argmax(const float *logits, const float *u, size_t rows, size_t n, float temperature, int32_t *out);
void pk_gumbel_argmax_ref(const float *logits, const float *u, size_t rows, size_t n, float temperature,
                          int32_t *out);
/// out[r] = argmax_j x[r, j], first index on ties, NaN never chosen, 0 for a row without a candidate.
void pk_argmax(const float *x, size_t rows, size_t n, int32_t *out);
void pk_argmax_ref(const float *x, size_t rows, size_t n, int32_t *out);

#ifdef __cplusplus
}
#endif
#endif
