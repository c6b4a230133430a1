#!/bin/sh
# Scores sampling settings of a shapes model with `paella eval shapes` (generation only, held-out prompts) and
# prints one line per setting, so the defaults stored in the model's model.json can be chosen by the numbers.
#
#   scripts/tune-sampling.sh [MODEL_FOLDER] [PROMPTS]
#
# SEED (default 2) picks the held-out prompts; tune on other prompts than the eval's defaults (seed 1) so that the
# default eval stays a fair test of what was chosen.
#
# Each line: guidance, temperature (first:last), typical mass (or "off"), renoise mode (RENOISE, e.g. "start prev"), then the accuracy per attribute at 8
# steps and the mean over colour, shape, position and count. Tries every combination of the lists below.
set -eu
MODEL=${1:-models/paella-small}
PROMPTS=${2:-50}
if [ -z "${PAELLA:-}" ]; then
    swift build -c release --product paella >/dev/null
    PAELLA="$(swift build -c release --show-bin-path)/paella"
fi
GUIDANCE=${GUIDANCE:-"4 8 12"}
TEMPERATURES=${TEMPERATURES:-"1:1 1:0.5 0.7:0.2"}
TYPICAL=${TYPICAL:-"off 0.2"}
RENOISE=${RENOISE:-start}

printf '%-9s %-12s %-8s %-8s %s\n' guidance temperature typical renoise "color shape position size count background | mean"
for g in $GUIDANCE; do
    for t in $TEMPERATURES; do
        for m in $TYPICAL; do
          for n in $RENOISE; do
            if [ "$m" = off ]; then typical="--no-typical"; else typical="--typical-mass $m"; fi
            json=$("$PAELLA" eval shapes --model "$MODEL" --parts generation --steps 8 --prompts "$PROMPTS" --seed "${SEED:-2}" --batch 2 \
                --cfg "$g" --temperature "$t" $typical --renoise "$n" --json)
            # The report's generation["8"] row, in a fixed attribute order, and the mean of the four main ones.
            row=$(printf '%s' "$json" | tr -d ' \n' | sed 's/.*"generation":{"8":{\([^}]*\)}.*/\1/')
            line=""
            for a in color shape position size count background; do
                v=$(printf '%s' "$row" | tr ',' '\n' | sed -n "s/^\"$a\":\(.*\)/\1/p")
                line="$line $(awk "BEGIN { printf \"%5.1f\", $v * 100 }")"
            done
            mean=$(printf '%s\n' $line | awk 'NR==1||NR==2||NR==3||NR==5 { s += $1 } END { printf "%5.1f", s / 4 }')
            printf '%-9s %-12s %-8s %-8s %s | %s\n' "$g" "$t" "$m" "$n" "$line" "$mean"
          done
        done
    done
done
