"""PEFT round trips, measured: max-abs difference between PTfer's answer-position logits and those of
``PeftModel.from_pretrained`` on the exported adapter, per tiny architecture (fp32 and PTfer's bf16 path), and on
SmolLM2-135M for an adapter folder given with --adapter (e.g. the one benchmarks/peft_real_example.sh writes).

    python benchmarks/peft_roundtrip.py [--adapter runs/peft-example/adapter]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from ptfer_core.artifacts import SoftPrompt
from ptfer_core.mini_lama import MINI_WORDS
from ptfer_core.peft_io import peft_template, read_peft_adapter, write_peft_adapter
from ptfer_core.toy_models import tiny_lm

SUBJECTS = ["France", "Town3 Town4", "Person1 Person2 Person3", "Eibenstock", "Simcoe Composite School"]


def peft_logits(lm, adapter_dir: Path, subjects: list[str]) -> torch.Tensor:
    from peft import PeftModel

    model = PeftModel.from_pretrained(lm.model, str(adapter_dir)).eval()
    n = model.peft_config["default"].num_virtual_tokens
    rows = []
    for subject in subjects:
        text = subject if lm.kind.value == "causal" else f"{subject} {lm.tokenizer.mask_token} ."
        ids = lm.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits[0]
        if lm.kind.value == "causal":
            rows.append(logits[-1])
        else:
            rows.append(logits[n + int((ids["input_ids"][0] == lm.tokenizer.mask_token_id).nonzero()[0, 0])])
    model.unload() if hasattr(model, "unload") else None  # prompt tuning leaves the base weights untouched
    return torch.stack(rows)


def differences(lm, prompt: SoftPrompt, adapter: Path) -> dict:
    theirs = peft_logits(lm, adapter, SUBJECTS)
    encoded = lm.encode(prompt.prompt_template, SUBJECTS)
    ours = lm.answer_logits(encoded, prompt.vectors)
    fast = lm.answer_logits(encoded, prompt.vectors, model=lm.compute_model("bfloat16"))
    spread = float(theirs.max() - theirs.min())
    return {
        "fp32_max_abs": float((ours - theirs).abs().max()),
        "bf16_max_abs": float((fast - theirs).abs().max()),
        "logit_range": spread,
        "same_top1": bool((ours.argmax(-1) == theirs.argmax(-1)).all()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", type=Path, help="a SmolLM2-135M PEFT adapter folder to check as well")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("llama", "gpt2", "bert"):
            lm = tiny_lm(arch, MINI_WORDS, seed=3)
            vectors = torch.randn(4, lm.width, generator=torch.Generator().manual_seed(0)) * 0.5
            prompt = SoftPrompt(vectors, lm.name, "P36", "tuned", peft_template(4))
            out = write_peft_adapter(prompt, Path(tmp) / arch, kind=lm.kind, base_model="toy")
            print(f"tiny {arch}: {differences(lm, prompt, out)}", flush=True)
    if args.adapter:
        from ptfer_core.loading import load_model

        lm = load_model("smollm2-135m")
        prompt = read_peft_adapter(args.adapter)
        print(f"smollm2-135m {args.adapter}: {differences(lm, prompt, args.adapter)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
