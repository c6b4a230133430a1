// CPaellaKernels: the hot loops of Paella for Swift, as free functions over buffers with explicit sizes.
// Every fast kernel has a plain reference twin (suffix _ref) that the tests compare against.
#ifndef PAELLA_KERNELS_H
#define PAELLA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- CPU features and dispatch -------------------------------------------------------------------------
typedef enum {
    PK_ISA_PORTABLE = 0,
    PK_ISA_AVX2 = 1,     // AVX2 + FMA + F16C
    PK_ISA_AVX512 = 2,   // AVX-512 F/BW/DQ/VL
    PK_ISA_NEON = 3,
} pk_isa;

/// The best instruction set this CPU supports (detected once).
pk_isa pk_detected_isa(void);
/// The instruction set the kernels use now on this thread (its own forced level, else the process's: detected,
/// or forced lower by pk_force_isa).
pk_isa pk_active_isa(void);
/// Forces the kernels of the whole process onto an instruction set no better than the detected one (PAELLA_ISA);
/// returns the one in use.
pk_isa pk_force_isa(pk_isa isa);
/// This thread's own forced level, or -1 when it follows the process's.
int pk_thread_isa(void);
/// Forces the kernels this thread runs (and that ThreadPool workers run for its loops) onto `isa`, or back to
/// the process's level with -1; a level the CPU cannot run becomes the detected one. Returns the previous value
/// of pk_thread_isa(), for restoring it. Tests use this to cover every level without disturbing concurrent work.
int pk_set_thread_isa(int isa);
/// Cores this process may run on (its CPU affinity mask, else the online processors).
int pk_available_cores(void);
/// 1 when these kernels were compiled with optimisation (release builds), 0 at -O0 (SwiftPM's debug builds),
/// where the built-in GEMM is several times slower than any BLAS library.
int pk_kernels_optimized(void);
/// Human-readable name of an instruction set ("avx512", "avx2", "neon", "portable").
const char *pk_isa_name(pk_isa isa);

#ifdef __cplusplus
}
#endif
#endif
