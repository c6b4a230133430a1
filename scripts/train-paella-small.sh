#!/bin/sh
# Trains the bundled model (models/paella-small) from scratch with Paella's own trainers, as it was made:
# the shapes dataset, a small f4 VQGAN, a small CLIP, then a small v1-architecture denoiser on top of them.
#
#   scripts/train-paella-small.sh [RUN_FOLDER] [MODEL_FOLDER]
#
# RUN_FOLDER (default runs/paella-small) receives the data, checkpoints and logs; every stage resumes when
# its checkpoint exists (rerun the script after an interruption). MODEL_FOLDER (default models/paella-small)
# receives the final float16 model folder. Each stage's settings are in this file and in scripts/paella-small/.
set -eu

RUN=${1:-runs/paella-small}
MODEL=${2:-models/paella-small}
HERE=$(cd "$(dirname "$0")" && pwd)
# PAELLA names a built binary to use instead (a copy, so that rebuilding the checkout during a run changes nothing).
if [ -z "${PAELLA:-}" ]; then
    swift build -c release --product paella
    PAELLA="$(swift build -c release --show-bin-path)/paella"
fi
THREADS=${PAELLA_THREADS:-2}
# Debian's OpenBLAS runs its AVX-512 kernels only on CPUs it recognises; Paella asks for them when
# OPENBLAS_CORETYPE is unset, but some machine images preset it (Haswell here, which made the denoiser stage
# 1.4x slower: 0.37 against 0.27 s a batch). The recipe's times assume the AVX-512 kernels.
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=SkylakeX; fi
mkdir -p "$RUN"

# Resume a stage when its checkpoint exists.
resume() { [ -f "$1/trainer.json" ] && echo --resume || true; }

# 1. Data: 30,000 captioned 64x64 scenes (held-out attribute combinations never appear).
[ -f "$RUN/data/metadata.jsonl" ] || "$PAELLA" dataset shapes --output "$RUN/data" --count 30000 --seed 1 --threads "$THREADS"

# 2. Tokenizer: f4 (16x16 tokens for 64x64 images), 512 codes, nearest-neighbour quantizer with dead-code restarts
# (placed k-means++-style on the worst-served encoder outputs). Squared error only, object pixels weighted 5x
# (objects are ~5% of the pixels), peak rate 2e-3, 48,000 images seen (1,500 steps of 32): about 0.8 s a step (20 min;
# `paella bench train-vqgan` times one). Local tokens: no attention in the middle and a LayerNorm over each pixel's
# channels in place of GroupNorm, so a token depends only on the pixels near it (taming's encoder, whose attention
# and GroupNorm see the whole image, spread a flat white background over hundreds of codes chosen by where the
# object was, and the denoiser could not learn the edge codes that carry an object's outline). The options are in
# scripts/paella-small/vqgan.args, which the tokenizer experiments (scripts/paella-small/experiment-vqgan.sh) start from.
"$PAELLA" train vqgan --data "$RUN/data" --output "$RUN/vqgan" $(resume "$RUN/vqgan") $(cat "$HERE/paella-small/vqgan.args") \
    --threads "$THREADS"

# 3. CLIP: text tower 96 wide x 3 blocks (context 32; its 49,408-token embedding is most of the shipped weights),
# vision tower 128 wide x 3 blocks on 8x8 patches, 64-d embeddings; batch 128 (more in-batch negatives), half of each batch scene/twin pairs that differ in one colour,
# shape or position (hard negatives: they teach the towers the attributes a denoiser must tell apart), peak rate
# 1e-3, 2,000 steps: about 0.4 s a step (14 min). A linear head on the caption embeddings alone (--label-weight 0.1
# --label-text-only, not shipped) asks them to name every object's shape, colour, cell and size: contrastive pairs
# alone left shapes almost alike in the text embedding (the vision tower barely sees them at 8x8 patches), so the
# denoiser could not know which shape was asked for. The options are in scripts/paella-small/clip.args, which the
# CLIP experiments (scripts/paella-small/experiment-clip.sh) start from.
"$PAELLA" train clip --data "$RUN/data" --output "$RUN/clip" $(resume "$RUN/clip") $(cat "$HERE/paella-small/clip.args") \
    --threads "$THREADS"

# 3b. The vision tower again, with the text tower frozen (`--freeze-text`: caption embeddings, and so the denoiser
# trained on them, stay exactly as stage 3 left them): 3,000 steps at 1e-3, three quarters of each batch scene/twin
# pairs (shape changes weighted 3:1:1), and a label head on both embeddings at weight 0.3, which asks the image
# embedding to name each object's shape. Stage 3's vision tower told an image's caption from the one with the shape
# changed 62% of the time (`paella eval shapes`); this one 77%. About 0.35 s a step (18 min). It serves `paella vary`.
"$PAELLA" train clip --data "$RUN/data" --output "$RUN/clip-vision" \
    $([ -f "$RUN/clip-vision/trainer.json" ] && echo --resume || echo --from "$RUN/clip") \
    $(cat "$HERE/paella-small/clip-vision.args") --threads "$THREADS"

# 4. A model folder with the trained VQGAN and CLIP and a newly initialised denoiser.
"$PAELLA" convert --new-denoiser --denoiser-config "$HERE/paella-small/denoiser.json" \
    --vqgan "$RUN/vqgan/vqgan.safetensors" --vqgan-config "$RUN/vqgan/vqgan.json" \
    --clip "$RUN/clip-vision/clip.safetensors" --clip-config "$RUN/clip-vision/clip.json" --with-vision \
    --defaults "$HERE/paella-small/defaults.json" --name paella-small --output "$RUN/start" --force --quiet

# 5. The denoiser, with the Paella recipe (label smoothing 0.1, 10% unconditional batches, AdamW, OneCycleLR's
# warm-up) but a rate that anneals linearly to 5% of its peak by the last step (upstream's keeps the peak to the
# end, which a run this short cannot afford), and a moving average of the weights (decay 0.998), which the model
# file holds. The 64x64 scenes need no crop, so each image is encoded by the VQGAN once (the first 2 minutes).
# The network (denoiser.json, 4.56M parameters) has three ResBlocks on each side of the 16x16 level, where the
# tokens that carry an object's outline are chosen; the one before (denoiser-base.json) had one each way, and with
# everything else the same it scored 84 / 34 / 88 on colour / shape / count against 94 / 41 / 91 (`eval shapes`).
# 11,000 batches of 32 at 0.23-0.25 s a batch on the quiet machine: about 44 min, the longest stage.
"$PAELLA" train denoiser --model "$RUN/start" --from-scratch --data "$RUN/data" --output "$RUN/denoiser" \
    $(resume "$RUN/denoiser") --steps 11000 --batch-size 32 --lr 1e-3 --final-lr 0.05 --ema 0.998 --cache-embeddings \
    --checkpoint-every 250 --log-every 50 --sample-prompt "a large red circle at the top left on a white background" \
    --threads "$THREADS"

# 5b. Self-correction: 4,000 more batches from stage 5's averaged weights (rate 3e-4 falling to 5% of it), half of
# them on the model's own draws, renoised (`--self-correction`, docs/training.md): a network trained only on
# upstream's noise trusts every plausible token, so while sampling it keeps the stray tokens its first steps drew.
# About 0.27 s a batch (a self-corrected batch costs one more forward pass): 18 min.
"$PAELLA" train denoiser --model "$RUN/denoiser" --data "$RUN/data" --output "$RUN/denoiser-sc" \
    $(resume "$RUN/denoiser-sc") --steps 4000 --batch-size 32 --lr 3e-4 --final-lr 0.05 --ema 0.998 --self-correction 0.5 \
    --cache-embeddings --checkpoint-every 250 --log-every 50 \
    --sample-prompt "a large red circle at the top left on a white background" --threads "$THREADS"

# 6. The shipped folder: float16 weights, CLIP with its vision tower (variations).
"$PAELLA" convert --denoiser "$RUN/denoiser-sc/denoiser.safetensors" --denoiser-config "$HERE/paella-small/denoiser.json" \
    --vqgan "$RUN/vqgan/vqgan.safetensors" --vqgan-config "$RUN/vqgan/vqgan.json" \
    --clip "$RUN/clip-vision/clip.safetensors" --clip-config "$RUN/clip-vision/clip.json" --with-vision \
    --defaults "$HERE/paella-small/defaults.json" --dtype f16 --name paella-small --output "$MODEL" --force --quiet
du -sh "$MODEL"
