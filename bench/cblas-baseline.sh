#!/bin/sh
# Builds bench/cblas_sgemm_bench.c against OpenBLAS and prints its JSON lines for 1 and 2 threads (or the
# thread counts given as arguments). Compare with: swift run -c release paella bench gemm --json
# Needs: apt-get install libopenblas-dev (Debian/Ubuntu).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/paella_cblas_sgemm_bench
gcc -O2 -o "$out" "$here/cblas_sgemm_bench.c" -lopenblas
repeats=${REPEATS:-10}
if [ $# -eq 0 ]; then set -- 1 2; fi
for t in "$@"; do
    "$out" "$t" "$repeats"
done
