#!/bin/sh
# Checks the GEMM targets of issue 2 on this machine: the BLAS path (paella bench gemm --backend openblas)
# against a plain C cblas_sgemm call (bench/cblas_sgemm_bench.c), and the built-in GEMM against OpenBLAS.
# On a shared machine the load drifts, so it runs ROUNDS rounds (default 3) of everything, alternating the
# programs, and reports the median over the rounds of each median time.
# Usage: bench/compare.sh [threads...]   (default: 1 2)   Env: ROUNDS, REPEATS (per run, default 10).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rounds=${ROUNDS:-3}
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-18}  # also Paella's default (BLASLibrary.swift)
repeats=${REPEATS:-10}
if [ $# -eq 0 ]; then set -- 1 2; fi
(cd "$root" && swift build -c release --product paella >/dev/null)
paella="$root/.build/release/paella"
out=${TMPDIR:-/tmp}/paella_cblas_sgemm_bench
gcc -O2 -o "$out" "$here/cblas_sgemm_bench.c" -lopenblas
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=SkylakeX  # what Paella's loader sets too (see BLASLibrary.swift)
fi
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
r=0
while [ "$r" -lt "$rounds" ]; do
    for t in "$@"; do
        "$out" "$t" "$repeats" >>"$lines"
        "$paella" bench gemm --backend builtin --backend openblas --threads "$t" --repeats "$repeats" --json >>"$lines"
    done
    r=$((r + 1))
done
# Each line: {"name": "...", "median_ms": x, "gflops": y, "backend": "...", "threads": t, ...}
sed -E 's/.*"name": "([^"]*)", "median_ms": ([0-9.]+), "gflops": ([0-9.]+), "backend": "([^"]*)", "threads": ([0-9]+).*/\1 \5 \4 \2/' "$lines" |
sort -k1,1 -k2,2n -k3,3 -k4,4n |
awk -v rounds="$rounds" '
    { key = $1 " " $2 " " $3; n[key]++; v[key, n[key]] = $4; if (!(($1 " " $2) in seen)) { seen[$1 " " $2] = 1; order[++count] = $1 " " $2 } }
    function med(key,   c) { c = n[key]; if (c == 0) return 0; return c % 2 ? v[key, (c + 1) / 2] : (v[key, c / 2] + v[key, c / 2 + 1]) / 2 }
    END {
        printf "%-14s %7s %10s %10s %10s %12s %14s\n", "shape", "threads", "c-cblas", "openblas", "builtin", "blas/c-cblas", "builtin/openblas"
        for (i = 1; i <= count; i++) {
            split(order[i], f, " ")
            c = med(order[i] " c-cblas"); o = med(order[i] " openblas"); b = med(order[i] " builtin")
            flops = 1; split(f[1], d, "x"); flops = 2 * d[1] * d[2] * d[3]
            printf "%-14s %7s %10.1f %10.1f %10.1f %12.2f %14.2f\n", f[1], f[2], flops / c / 1e6, flops / o / 1e6, flops / b / 1e6, c / o, o / b
        }
        print "(GFLOP/s at the median over " rounds " rounds of each run'"'"'s median time; ratios of speeds)"
    }'
