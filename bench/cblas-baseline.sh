#!/bin/sh
# Builds bench/cblas_sgemm_bench.c against OpenBLAS and prints its JSON lines (one per shape) for 1 and 2
# threads, or for the thread counts given as arguments. REPEATS (default 10) sets the timed repetitions.
# Compare with: swift run -c release paella bench gemm --backend openblas --threads 1 --threads 2 --json
#
# Like Paella's BLAS loader, this sets OPENBLAS_CORETYPE=SkylakeX when it is unset on an AVX-512 CPU, because
# OpenBLAS releases older than the CPU (Debian 12 ships 0.3.21) take new Xeons for a "Prescott" and run SSE3
# kernels; both sides then run the same kernels. Set OPENBLAS_CORETYPE yourself to compare something else.
# Needs: apt-get install libopenblas-dev (Debian/Ubuntu).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/paella_cblas_sgemm_bench
gcc -O2 -o "$out" "$here/cblas_sgemm_bench.c" -lopenblas
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=SkylakeX
fi
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}" >&2
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-18}  # also Paella's default (BLASLibrary.swift)
repeats=${REPEATS:-10}
if [ $# -eq 0 ]; then set -- 1 2; fi
for t in "$@"; do
    "$out" "$t" "$repeats"
done
