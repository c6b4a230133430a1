// Internal to CPaellaKernels: where a convolution tap reads, shared by im2col (conv.c) and the implicit-GEMM
// convolution's packing (gemm.c), so that both read exactly the same pixels.
#ifndef PAELLA_CONV_INDEX_H
#define PAELLA_CONV_INDEX_H

#include "paella_conv.h"

// Maps a possibly out-of-range coordinate to the pixel it reads, or -1 for "zero" (zero padding).
// Reflection mirrors about the edge pixel without repeating it: -1 -> 1, n -> n - 2.
static inline ptrdiff_t pk_conv_source_index(ptrdiff_t i, ptrdiff_t n, pk_pad_mode mode) {
    if (i >= 0 && i < n) return i;
    if (mode != PK_PAD_REFLECT) return -1;
    if (i < 0) i = -i;
    if (i >= n) i = 2 * n - 2 - i;
    return (i >= 0 && i < n) ? i : -1;  // padding >= size is rejected by the caller; never read out of bounds
}

#endif
