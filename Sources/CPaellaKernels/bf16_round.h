// Private to the kernels: float32 -> bfloat16 rounding, one element (convert.c's reference and the bfloat16 GEMM's
// packing use the same rule, so the GEMM rounds exactly as pk_f32_to_bf16 does).
#ifndef PAELLA_BF16_ROUND_H
#define PAELLA_BF16_ROUND_H

#include <stdint.h>
#include <string.h>

// Rounded to nearest with ties to even; NaN stays a (quiet) NaN.
static inline uint16_t pk_bf16_round_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x0040u);  // quiet NaN
    // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even; a carry may ripple into the
    // exponent, which is the correct rounding up (to infinity at the top).
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

#endif
