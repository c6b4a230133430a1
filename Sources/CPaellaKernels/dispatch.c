// Run-time instruction-set detection for the kernels, and the usable core count.
#define _GNU_SOURCE
#include "paella_kernels.h"
#include <stdatomic.h>
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif

int pk_kernels_optimized(void) {
#if defined(__OPTIMIZE__)
    return 1;
#else
    return 0;
#endif
}

int pk_available_cores(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static pk_isa detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return PK_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return PK_ISA_AVX2;
    return PK_ISA_PORTABLE;
#elif defined(__aarch64__)
    return PK_ISA_NEON;
#else
    return PK_ISA_PORTABLE;
#endif
}

// Atomic because every kernel call reads them from whatever thread it runs on while the first call may be storing
// them (found by ThreadSanitizer). Relaxed order is enough: each is one int, and every thread computes the same value.
static _Atomic int detected = -1;
static _Atomic int active = -1;
// A level forced for one thread only (-1: none). The thread pool hands it to its workers for the loops that
// thread starts, so tests can run every level without changing the kernels of concurrent work.
static _Thread_local int thread_level = -1;

pk_isa pk_detected_isa(void) {
    int level = atomic_load_explicit(&detected, memory_order_relaxed);
    if (level < 0) {
        level = (int)detect();
        atomic_store_explicit(&detected, level, memory_order_relaxed);
    }
    return (pk_isa)level;
}

pk_isa pk_active_isa(void) {
    if (thread_level >= 0) return (pk_isa)thread_level;
    int level = atomic_load_explicit(&active, memory_order_relaxed);
    if (level < 0) {
        // Only if still unset: a level forced meanwhile by pk_force_isa wins.
        int unset = -1;
        level = (int)pk_detected_isa();
        if (!atomic_compare_exchange_strong_explicit(&active, &unset, level, memory_order_relaxed, memory_order_relaxed)) level = unset;
    }
    return (pk_isa)level;
}

// `isa` if this CPU can run it, else the detected level.
static pk_isa runnable(pk_isa isa) {
    pk_isa best = pk_detected_isa();
    // NEON and the x86 levels are different families: only "portable" is common to both.
    int ok = (isa == PK_ISA_PORTABLE) || (isa == best) ||
             (best == PK_ISA_AVX512 && isa == PK_ISA_AVX2);
    return ok ? isa : best;
}

pk_isa pk_force_isa(pk_isa isa) {
    int level = (int)runnable(isa);
    atomic_store_explicit(&active, level, memory_order_relaxed);
    return (pk_isa)level;
}

int pk_thread_isa(void) { return thread_level; }

int pk_set_thread_isa(int isa) {
    int previous = thread_level;
    thread_level = isa < 0 ? -1 : (int)runnable((pk_isa)isa);
    return previous;
}

const char *pk_isa_name(pk_isa isa) {
    switch (isa) {
    case PK_ISA_AVX512: return "avx512";
    case PK_ISA_AVX2: return "avx2";
    case PK_ISA_NEON: return "neon";
    default: return "portable";
    }
}
