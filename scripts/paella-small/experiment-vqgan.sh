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
#            see the whole image; without them a token depends only on the pixels near it. Failed: by step 150 the
#            encoder output had collapsed to zero, 9 dB, one code)
#   pixel    --no-mid-attention --normalization pixel
#            (LayerNorm over each pixel's channels instead of GroupNorm: 19 dB at step 100 against the recipe's 15;
#            0.75-0.8 s a step, 20 min. At step 1,500: 34.3 dB, 99% of the codebook; the analyser reads the
#            reconstructions' colour, position and count 100%, size 97.2%, shape 76.2% (the recipe's: 33.6 dB, 84.6%).
#            On 48 white-background training scenes the most common inner code is 69% of the inner tokens at step
#            200 (44% at step 1,500, the rest mostly a second white code in rings set by the distance to the object
#            and the border), against 23% for the shipped tokenizer, which uses 294 codes there. A denoiser on it
#            still drew blobs until its CLIP named shapes too (experiment-clip.sh "textlabels"): both are now the recipe's)
#   codebook2048  --codebook 2048
#            (8 colours on 4 backgrounds give 32 colour pairs, so 512 codes leave about 16 outline patterns per pair:
#            small stars, crosses and squares came back rounded, shape read back 76%. Not run to the end yet: started
#            on 2026-12-08 on a 2-core AVX2 machine (no AVX-512), where a step took 3.5 s against 0.8 s on the AVX-512
#            one, 90 minutes for the 1,500 steps, so it was stopped at step 100)
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
