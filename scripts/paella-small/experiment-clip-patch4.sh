#!/bin/sh
# Experiment (not yet the recipe): a CLIP whose vision tower reads 4x4 patches instead of 8x8.
# Why: the shipped CLIP (patch 8) embeds captions that differ only in shape almost alike (cosine 0.99 between
# "a large red circle ..." and "a large red square ...", 1.00 between triangle and diamond, while colours sit
# at 0.6-0.9 and positions at 0.3), so the denoiser it conditions cannot tell shapes apart and draws one
# average blob for all six. Finer patches should let the vision tower see outlines, which the contrastive loss
# (with scene/twin pairs) then pushes into the text embedding. About 1.9 s a step here (1,200 steps: 38 min);
# it checkpoints every 100 steps, and running the script again continues from the last checkpoint.
#   scripts/paella-small/experiment-clip-patch4.sh RUN_FOLDER [extra options]
set -eu
RUN=$1
shift
PAELLA=${PAELLA:-paella}
"$PAELLA" train clip --data "$RUN/data" --output "$RUN/clip-patch4" \
    $([ -f "$RUN/clip-patch4/trainer.json" ] && echo --resume || true) --steps 1200 --batch-size 128 --twins 0.5 \
    --embed-dim 64 --text-width 96 --text-layers 3 --text-heads 4 --context 32 --vision-width 96 --vision-layers 3 \
    --head-width 32 --patch 4 --lr 1e-3 --log-every 25 --checkpoint-every 100 --threads "${PAELLA_THREADS:-2}" "$@"
