#!/usr/bin/env bash
# Runs grids/real-causal.yaml in parts that each finish whole: one relation at a time, the project's recipe first
# (its solver is a closed form, not 2,000 Adam steps), then the paper's two recipes. Every part writes its cells and tuned
# prompts under $OUT (default assets/grid-real, kept in the repository so later sessions resume where this one
# stopped); a killed part loses at most its cell in flight. $THREADS: torch threads per part (default 1). At the end,
# the full config assembles every cell:
#   ptfer grid --config grids/real-causal.yaml --out assets/grid-real --threads 1
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-assets/grid-real}
PTFER=${PTFER:-.venv/bin/ptfer}
# Relation types interleaved (1-1, N-1, N-M), so an unfinished run still covers each type; $RELATIONS picks some.
RELATIONS=${RELATIONS:-"P36 P17 P1412 P19 P103 P106 P1376 P20 P27 P101 P279 P37 P47 P413 P449 P463 P138 P364 P527 P176 P530
P407 P178 P30 P131 P108 P136 P39 P264 P276 P937 P140 P1303 P127 P190 P1001 P31 P495 P159 P740 P361"}
for recipes in ${RECIPE_PARTS:-studio paper,paper-zero-shot}; do
  for relation in $RELATIONS; do
    echo "== $(date -u +%H:%M:%S) $recipes $relation"
    ${TIMER:-} "$PTFER" grid --config grids/real-causal.yaml --out "$OUT" --threads "${THREADS:-1}" --relations "$relation" \
      --recipes "$recipes" > /dev/null  # the folder's tables then cover every finished cell, this part's included
  done
done
