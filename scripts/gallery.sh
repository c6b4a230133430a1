#!/bin/sh
# The README's gallery: every mode of the bundled model (models/paella-small), one grid per mode in docs/gallery/.
#   scripts/gallery.sh [OUTPUT_FOLDER]
set -eu
OUT=${1:-docs/gallery}
swift build -c release --product paella
P="$(swift build -c release --show-bin-path)/paella"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
S="--seed 7 --quiet"

# An input picture for the editing modes: one scene of the shapes dataset.
"$P" dataset shapes --output "$WORK/input" --count 1 --seed 5 --split heldout >/dev/null
IN="$WORK/input/000000.png"
cp "$IN" "$OUT/input.png"

"$P" generate "a large red circle at the top left on a white background" -n 4 --grid -o "$WORK/generate.png" $S
"$P" interpolate "a large red circle in the centre on a white background" \
    "a large blue square in the centre on a white background" --frames 4 --grid -o "$WORK/interpolate.png" $S
# Each region's prompt places its object in that region, so the two conditionings agree where they meet.
"$P" compose --columns "0-32=a large yellow star on the left on a white background" \
    --columns "32-64=a large green cross on the right on a white background" -n 4 --grid -o "$WORK/compose.png" $S
"$P" inpaint "$IN" "a large orange diamond in the centre on a gray background" --rect 16,16,32,32 -n 4 --grid -o "$WORK/inpaint.png" $S
# Outpainting continues the scene, so it is asked for with the input's own caption.
"$P" outpaint "$IN" "$(cat "$WORK/input/000000.txt")" --extend right=32 -n 4 --grid -o "$WORK/outpaint.png" $S
"$P" edit "$IN" "a large blue circle in the centre on a white background" --strength 0.5 -n 4 --grid -o "$WORK/edit.png" $S
"$P" vary "$IN" -n 4 --grid -o "$WORK/vary.png" $S
for mode in generate interpolate compose inpaint outpaint edit vary; do cp "$WORK/$mode-grid.png" "$OUT/$mode.png"; done
ls "$OUT"
