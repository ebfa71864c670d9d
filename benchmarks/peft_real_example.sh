#!/usr/bin/env bash
# Issue 17's real example: a PEFT-placement prompt tuned on SmolLM2 (P103), exported as a PEFT PROMPT_TUNING adapter,
# re-imported as the source prompt of a zero-shot transfer to Gemma-3-270M, with P@1 at each step.
#   bash benchmarks/peft_real_example.sh [RELATION] [OUT_DIR]
set -euo pipefail
relation="${1:-P103}"
out="${2:-runs/peft-example}"
ptfer=".venv/bin/ptfer"
mkdir -p "$out"
$ptfer tune --model smollm2-135m --relation "$relation" --placement peft --max-train 200 --threads 1 \
  --prompt-dir "$out/prompts" --out "$out/tune.json"
prompt="$(find "$out/prompts" -name '*.safetensors' | head -n 1)"
$ptfer export --format peft "$prompt" "$out/adapter"
# The adapter evaluates like the prompt it came from (same model, same facts) ...
$ptfer evaluate --model smollm2-135m --relation "$relation" --prompt "$out/adapter" --threads 1 --out "$out/adapter-eval.json"
# ... and carries over to Gemma zero-shot (the studio default: refined solver, Eq. 6).
$ptfer transfer --source smollm2-135m --target gemma3-270m --relation "$relation" --source-prompt "$out/adapter" \
  --threads 1 --prompt-dir "$out/prompts" --out "$out/transfer.json"
