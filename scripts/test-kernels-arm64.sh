#!/bin/sh
# The C kernels (Sources/CPaellaKernels) on arm64 without ARM hardware: builds Tests/KernelDriver/kernel_driver.c,
# which runs every kernel against its reference twin at every instruction-set level the CPU has, natively (x86-64:
# AVX-512, AVX2, portable) and cross-compiled for aarch64, run under qemu-aarch64 (NEON, portable). Each build is
# made with GCC and, when the Swift toolchain's clang is on PATH, with that clang at -O0 and -O2 too (SwiftPM builds
# the kernels with it, -O0 in debug). Fails on any kernel outside its tolerance, or on a level with no cases.
# Installs the Debian packages gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user when they are missing and
# it runs as root; takes a minute or two.
#   scripts/test-kernels-arm64.sh
set -eu
cd "$(dirname "$0")/.."
started=$(date +%s)

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null \
    || [ ! -e /usr/aarch64-linux-gnu/lib/libc.so.6 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test-kernels-arm64: the aarch64 cross compiler or qemu-aarch64 is missing; run as root, or install gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user first." >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Waits for a package manager that another job holds rather than failing at once.
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SOURCES="Tests/KernelDriver/kernel_driver.c $(ls Sources/CPaellaKernels/*.c)"
FLAGS="-std=gnu11 -Wall -Wextra -I Sources/CPaellaKernels/include"
NATIVE_CLANG=""
if command -v clang >/dev/null; then NATIVE_CLANG=clang; fi

# run_driver LABEL RUNNER COMPILER ARGS...: builds the driver with COMPILER ARGS and runs it through RUNNER (empty
# for a native binary), keeping its output in $WORK/LABEL.txt.
run_driver() {
    label=$1 runner=$2
    shift 2
    # shellcheck disable=SC2086
    "$@" $FLAGS $SOURCES -lm -ldl -o "$WORK/$label"
    echo "== $label"
    # shellcheck disable=SC2086
    if ! $runner "$WORK/$label" >"$WORK/$label.txt" 2>&1; then
        cat "$WORK/$label.txt"
        echo "test-kernels-arm64: $label failed (the FAIL lines above name the kernel, shape and worst error)." >&2
        exit 1
    fi
    cat "$WORK/$label.txt"
}

QEMU="qemu-aarch64 -L /usr/aarch64-linux-gnu"
run_driver native-gcc-O2 "" cc -O2
if [ -n "$NATIVE_CLANG" ]; then run_driver native-clang-O0 "" clang -O0; fi
# GCC's build on an emulated Cortex-A53, a plain ARMv8.0-A core, shows that the kernels need nothing newer; the
# others run on qemu's default CPU, which has every extension qemu knows.
run_driver arm64-gcc-O2-cortex-a53 "qemu-aarch64 -cpu cortex-a53 -L /usr/aarch64-linux-gnu" aarch64-linux-gnu-gcc -O2
if [ -n "$NATIVE_CLANG" ]; then
    for opt in -O0 -O2; do run_driver "arm64-clang$opt" "$QEMU" clang --target=aarch64-linux-gnu "$opt"; done
fi

# Every aarch64 build must have run cases at the NEON level, all passed.
neon_lines=$(grep -h '^neon ' "$WORK"/arm64-*.txt || true)
if [ -z "$neon_lines" ]; then
    echo "test-kernels-arm64: no aarch64 build reported a NEON level; check that qemu-aarch64 runs the driver." >&2
    exit 1
fi
echo "test-kernels-arm64: NEON under qemu-aarch64:"
for f in "$WORK"/arm64-*.txt; do
    echo "  $(basename "$f" .txt): $(grep '^neon ' "$f" | sed 's/^neon *//')"
done
echo "test-kernels-arm64: passed in $(($(date +%s) - started)) s"
