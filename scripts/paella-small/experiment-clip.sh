#!/bin/sh
# A CLIP experiment for the bundled model: the recipe's CLIP stage (scripts/paella-small/clip.args) with options
# added after it, which override the recipe's (the last value of an option wins). It trains into RUN/clip-NAME,
# checkpoints as the recipe does, and running it again continues from the last checkpoint.
#   PAELLA=path/to/paella scripts/paella-small/experiment-clip.sh RUN_FOLDER NAME [options]
# Experiments tried (results in issue 16's notes and the README):
#   patch4       --patch 4 --vision-width 96 --steps 1200 --checkpoint-every 100
#                (shape told apart 81%, shape-caption cosine 0.94, but position collapsed: 60%, cosine 1.00)
#   shape-twins  --twin-changes shape,shape,shape,color,position
#                (shape told apart 75%, cosine 0.95; colour 0.83, position 0.77: no better than the recipe's)
#   labels       --label-weight 0.1
#                (a label head on both embeddings naming each scene's shapes, colours, cells and what sits in each
#                cell; retrieval 100% both ways, but shape told apart 51%, cosine 0.94; colour 0.78, position 0.71.
#                At --label-weight 1.0 the towers collapsed within 100 steps: contrastive loss stuck at log 128)
#   textlabels   --label-weight 0.1 --label-text-only
#                (the head on the caption embeddings alone: retrieval 100% both ways; the text probe of eval shapes
#                reads shape from reworded captions 82% of the time (the recipe's: 39%), size 90% (61%); the
#                shape-caption cosine fell to 0.86 (0.96); images tell shape captions apart less: 62% (74%).
#                A denoiser trained on it with the recipe's settings still drew no shapes: 8 steps colour 68%,
#                shape 20%, position 85%, count 66% (the shipped model: 79, 20, 88, 58). With the "pixel" tokenizer of
#                experiment-vqgan.sh instead, the shapes came: both went into the recipe (see the README).)
# Vision-tower runs with the text tower frozen (`--from RUN/clip --freeze-text`, on the text-label CLIP above, so a
# denoiser trained on its captions stays valid; not through this script, whose options start a new run):
#   vision1      1,500 steps at 5e-4, twins 0.5 (shape,shape,color,position), label head on both embeddings at 0.1
#                (shape captions told apart 66% (62%), colour 96% (100%), position 99% (98%))
#   vision2      3,000 steps at 1e-3, twins 0.75 (shape,shape,shape,color,position), label weight 0.3: shape 77%,
#                colour 100%, position 100%, retrieval 100% both ways: the recipe's stage 3b (clip-vision.args)
set -eu
RUN=$1
NAME=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
PAELLA=${PAELLA:-paella}
OUT="$RUN/clip-$NAME"
"$PAELLA" train clip --data "$RUN/data" --output "$OUT" $([ -f "$OUT/trainer.json" ] && echo --resume || true) \
    $(cat "$HERE/clip.args") "$@" --threads "${PAELLA_THREADS:-2}"
