#!/bin/sh
# A denoiser experiment for the bundled model: the recipe's stage 5 (scripts/train-paella-small.sh) with another
# denoiser configuration and options added after the recipe's (the last value of an option wins). It needs RUN's
# data, vqgan and clip folders (stages 1-3), makes RUN/start-NAME with a newly initialised denoiser of CONFIG,
# trains into RUN/denoiser-NAME, checkpoints as the recipe does, and running it again continues from the last
# checkpoint.
#   PAELLA=path/to/paella scripts/paella-small/experiment-denoiser.sh RUN_FOLDER NAME CONFIG.json [options]
# Experiments tried (results in issue 16's notes):
#   deep16   three ResBlocks instead of one on each side of the 16x16 level, where the tokens' edge codes are
#            chosen (denoiser-base.json has one each way there): 4.56M parameters, 0.23-0.25 s a batch against 0.17.
#            On the local tokenizer and the text-label CLIP, 11,000 batches (42 min): 8 steps colour 91, shape 42,
#            position 99, size 90, count 92, background 100 (base on the same, after self-correction: 84 / 34 / 98 /
#            90 / 88 / 100). It became the recipe's denoiser.json.
#   base     denoiser-base.json (the recipe's before deep16) on the local tokenizer of experiment-vqgan.sh's "pixel" run (RUN/vqgan a
#            link to RUN/vqgan-pixel): 0.18 s a batch, 33 min. eval shapes, 8 steps: colour 74, shape 7, position
#            91, size 72, count 73, background 100 (24 steps: 74 / 14 / 96 / 76 / 72 / 100); the same stage on the
#            shipped tokenizer (11,000 batches): 83 / 12 / 84 / - / 70. Truer reds and cleaner white, the same blobs.
#            With the "textlabels" CLIP of experiment-clip.sh as well (RUN/clip a link to it), 0.17 s a batch: 8 steps
#            50 / 38 / 93 / 80 / 64 / 100 at the old sampling defaults; then the recipe's self-correction stage and
#            guidance 2 gave the model shipped since (README).
set -eu
RUN=$1
NAME=$2
CONFIG=$3
shift 3
HERE=$(cd "$(dirname "$0")" && pwd)
PAELLA=${PAELLA:-paella}
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=SkylakeX; fi
START="$RUN/start-$NAME"
OUT="$RUN/denoiser-$NAME"
[ -f "$START/model.json" ] || "$PAELLA" convert --new-denoiser --denoiser-config "$CONFIG" \
    --vqgan "$RUN/vqgan/vqgan.safetensors" --vqgan-config "$RUN/vqgan/vqgan.json" \
    --clip "$RUN/clip/clip.safetensors" --clip-config "$RUN/clip/clip.json" --with-vision \
    --defaults "$HERE/defaults.json" --name "paella-small-$NAME" --output "$START" --quiet
"$PAELLA" train denoiser --model "$START" --from-scratch --data "$RUN/data" --output "$OUT" \
    $([ -f "$OUT/trainer.json" ] && echo --resume || true) --steps 11000 --batch-size 32 --lr 1e-3 --final-lr 0.05 \
    --ema 0.998 --cache-embeddings --checkpoint-every 250 --log-every 50 \
    --sample-prompt "a large red circle at the top left on a white background" "$@" --threads "${PAELLA_THREADS:-2}"
