// Helper for PaellaCore's run-time BLAS loading: which shared library a loaded function lives in.
// (dladdr and Dl_info need _GNU_SOURCE on glibc, which Swift's Glibc module does not expose.)
#define _GNU_SOURCE
#include "paella_gemm.h"
#include <dlfcn.h>

const char *pk_gemm_library_path(const void *function) {
    Dl_info info;
    if (!function || dladdr(function, &info) == 0) return NULL;
    return info.dli_fname;
}
