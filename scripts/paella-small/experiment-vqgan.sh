#!/bin/sh
# A tokenizer experiment for the bundled model: the recipe's VQGAN stage (scripts/paella-small/vqgan.args) with
# options added after it, which override the recipe's (the last value of an option wins). It trains into
# RUN/vqgan-NAME from RUN/data, checkpoints as the recipe does, and running it again continues from the last
# checkpoint. `paella eval shapes --parts reconstruction` on a model folder made with it gives the tokenizer gate.
#   PAELLA=path/to/paella scripts/paella-small/experiment-vqgan.sh RUN_FOLDER NAME [options]
# Experiments tried (results in issue 16's notes):
#   local    --no-mid-attention --normalization none
#            (purely convolutional encoder and decoder: the shipped tokenizer spreads a flat white background over
#            dozens of codes whose choice follows the object's position, because its middle attention and GroupNorm
#            see the whole image; without them a token depends only on the pixels near it)
set -eu
RUN=$1
NAME=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
PAELLA=${PAELLA:-paella}
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=SkylakeX; fi
OUT="$RUN/vqgan-$NAME"
"$PAELLA" train vqgan --data "$RUN/data" --output "$OUT" $([ -f "$OUT/trainer.json" ] && echo --resume || true) \
    $(cat "$HERE/vqgan.args") "$@" --threads "${PAELLA_THREADS:-2}"
