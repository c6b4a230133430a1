// Umbrella header of the CPaellaKernels module. Listing the headers here (rather than letting SwiftPM use the
// whole include folder as an umbrella directory) makes a new header invalidate the clang module cache.
#include "paella_kernels.h"
#include "paella_conv.h"
#include "paella_elementwise.h"
#include "paella_gemm.h"
