#!/bin/sh
# Runs the test suite under a sanitizer: `sh scripts/sanitize.sh address` (AddressSanitizer with LeakSanitizer) or
# `sh scripts/sanitize.sh thread` (ThreadSanitizer). Extra arguments go to `swift test` (e.g. `--filter Server`).
# Each sanitizer builds everything, dependencies included, into its own folder (.build-address, .build-thread):
# the first build took 3.5 minutes on an idle 2-core machine (18 while other builds ran); the suite then runs 3-5
# times as long as a plain `swift test`.
# The command-line tests run the instrumented `paella` too, so the binary is checked along with the library.
set -eu
cd "$(dirname "$0")/.."
kind=${1:-}
case "$kind" in
  address|thread) shift ;;
  *) echo "usage: sh scripts/sanitize.sh address|thread [swift test arguments]" >&2; exit 2 ;;
esac
here=$(pwd)
# The tests' wall-clock guards against runaway work (Tests/PaellaTestSupport/TimeGuard.swift) stretch by the
# sanitizer's usual slowdown: about 10x for AddressSanitizer, 20x for ThreadSanitizer on this code.
if [ "$kind" = address ]; then export PAELLA_TEST_TIME_SCALE=10; else export PAELLA_TEST_TIME_SCALE=20; fi
# Stop at the first report with a non-zero exit, so a finding cannot scroll past unnoticed. The leak suppressions
# name only libraries outside Paella (see the file); fast_unwind_on_malloc=0 gives full stacks through libraries
# that Open MPI loads and unloads, so that their allocations can be recognised.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:fast_unwind_on_malloc=0:detect_stack_use_after_return=0"
export LSAN_OPTIONS="suppressions=$here/scripts/sanitizers/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$here/scripts/sanitizers/tsan.supp"
exec swift test --sanitize="$kind" --scratch-path "$here/.build-$kind" "$@"
