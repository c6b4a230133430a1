#!/usr/bin/env bash
# Coverage-guided fuzzing of Paella's parsers with libFuzzer and the address sanitizer (Fuzz/README.md).
#
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]    one target for SECONDS (0: no time limit)
#   scripts/fuzz.sh all SECONDS [libFuzzer options...]       every target in turn, SECONDS each
#   scripts/fuzz.sh list                                     the target names
#
# Builds Fuzz/ (release, instrumented) in Fuzz/.build when needed. Inputs found to add coverage are kept in
# Fuzz/.build/corpus/TARGET (the committed seeds in Fuzz/Corpus/TARGET are read, never written); a crash, a hang
# over 1 s or an allocation over the target's limit is written to Fuzz/.build/artifacts/TARGET/ and makes the
# script exit non-zero. Example of a long run: scripts/fuzz.sh tar 0 -runs=1000000
set -euo pipefail
cd "$(dirname "$0")/.."

# Each target with the largest single allocation its documented limits allow, in MiB (-malloc_limit_mb): a bigger
# one is a finding. safetensors: the 100 MB header cap; zip and checkpoint: ZipArchive.maxInflatedBytes (2 GiB);
# png and jpeg: ImageLimits.default (2^28 pixels of 4 bytes); gzip: Gzip's 1 GiB; tar: the 1 GiB member cap
# (TarArchive.defaultMaxMemberBytes); the others have no byte limit of their own and get the RSS limit.
declare -A malloc_limit=(
    [safetensors]=128 [zip]=2048 [pickle]=2048 [checkpoint]=2048 [png]=1024 [jpeg]=1024 [gzip]=1024 [tar]=1024
    [tokenizer]=2048 [config]=2048 [server-json]=2048 [server-multipart]=2048
)
targets=(safetensors zip pickle checkpoint png jpeg gzip tar tokenizer config server-json server-multipart)

usage() { echo "usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer options...]; targets: ${targets[*]}" >&2; exit 2; }
[ "${1:-}" = list ] && { printf '%s\n' "${targets[@]}"; exit 0; }
[ $# -ge 2 ] || usage
target=$1 seconds=$2
shift 2
[[ $seconds =~ ^[0-9]+$ ]] || usage
if [ "$target" != all ] && [ -z "${malloc_limit[$target]:-}" ]; then usage; fi

build=(swift build --package-path Fuzz --scratch-path Fuzz/.build -c release
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing)
"${build[@]}" >&2
binary="$("${build[@]}" --show-bin-path)/PaellaFuzz"

run() {
    local name=$1
    shift
    mkdir -p "Fuzz/.build/corpus/$name" "Fuzz/.build/artifacts/$name"
    echo "== fuzz $name" >&2
    PAELLA_FUZZ_TARGET=$name "$binary" "Fuzz/.build/corpus/$name" "Fuzz/Corpus/$name" \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb="${malloc_limit[$name]}" \
        -artifact_prefix="Fuzz/.build/artifacts/$name/" -print_final_stats=1 "$@"
}

if [ "$target" = all ]; then
    failed=()
    for name in "${targets[@]}"; do run "$name" "$@" || failed+=("$name"); done
    if [ ${#failed[@]} -gt 0 ]; then echo "fuzz: findings in ${failed[*]} (see Fuzz/.build/artifacts/)" >&2; exit 1; fi
else
    run "$target" "$@"
fi
