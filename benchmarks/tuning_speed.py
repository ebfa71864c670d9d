"""Prompt-tuning throughput and accuracy on the real models (issue: tuning fast enough for the full grid).

Measured in one run, interleaved, on one CPU thread:

* step timings (facts/s of one training step, median of several):
  - ``old fp32``: the step before this change: the loaded model (SDPA attention), float32, every position of
    every fact, cross-entropy over the answer candidates;
  - ``OptiPrompt-style``: float32, the whole vocabulary's logits at every position (an HF forward with labels);
  - ``fast fp32``: eager attention + the prefix key/value cache (exact), full-vocabulary loss at the answer slot;
  - ``fast bf16``: the same on a bfloat16 twin (vectors, gradients and optimiser stay float32);
* GFLOP/s of the fast bf16 step against this machine's bf16 matmul peak (2048², measured in the same run);
* final source dev/test P@1 of full tuning runs: fp32 vs bf16 with the studio recipe's start, and the paper
  recipe (OptiPrompt's start, float32);
* the peer: huggingface/peft prompt tuning (5 virtual tokens before the input, sampled-vocabulary start,
  AdamW lr 3e-3, batch 16, 3 epochs on 320 facts of P103) against ``ptfer tune --placement peft`` with the same
  data, start and schedule, test P@1 and seconds of tuning.

    python benchmarks/tuning_speed.py --relations P36,P103 --out docs/tuning_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ptfer_core.evaluation import evaluate, scorable_facts
from ptfer_core.loading import load_model
from ptfer_core.runs import TaskData
from ptfer_core.settings import TuneConfig, recipe_settings
from ptfer_core.templates import PromptTemplate
from ptfer_core.tuning import tune_prompt


def matmul_peak(dtype, size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def step_functions(lm, data: TaskData, batch: int = 16):
    """{name: (callable doing one training step on one batch, facts per step, tokens processed per step)}."""
    cands = data.candidates(lm)
    kept, gold = scorable_facts(data.splits["train"], cands)
    kept, gold = kept[:batch], torch.tensor(gold[:batch])
    template = PromptTemplate.soft(5)
    vectors = torch.nn.Parameter(torch.randn(5, lm.width) * 0.05)
    encoded = lm.encode(template, [f.subject for f in kept])
    full_targets = cands.token_ids[gold]
    steps = {}

    def old_fp32():
        logits = lm.answer_logits(encoded, vectors, cands.token_ids, lm.model)
        F.cross_entropy(logits, gold).backward()

    # OptiPrompt-style: each row is its prompt followed by the gold answer token; HF's causal-LM loss computes the
    # whole vocabulary's logits at every position and scores the answer (labels -100 elsewhere).
    rows = [
        encoded.input_ids[b, : int(encoded.answer_positions[b]) + 1].tolist() + [int(full_targets[b])]
        for b in range(len(kept))
    ]
    length = max(map(len, rows))
    ids = torch.tensor([r + [0] * (length - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
    labels = torch.full_like(ids, -100)
    for b, r in enumerate(rows):
        labels[b, len(r) - 1] = r[-1]

    def optiprompt_style():
        embeds = lm._embeds(ids, encoded.soft_positions, vectors, torch.float32)
        lm.model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss.backward()

    tokens_full = int(encoded.attention_mask.sum())
    steps["old fp32 (SDPA, all positions, candidate loss)"] = (old_fp32, len(kept), tokens_full)
    steps["OptiPrompt-style fp32 (full-vocabulary logits everywhere)"] = (optiprompt_style, len(kept), tokens_full)
    for precision in ("float32", "bfloat16"):
        model = lm.compute_model(precision, for_training=True)
        cached = lm.with_prefix(encoded, model)
        span = (
            int((cached.answer_positions - cached.prefix.lengths + 1).sum())
            if cached.prefix is not None
            else tokens_full
        )

        def fast(model=model, cached=cached):
            logits = lm.answer_logits(cached, vectors, None, model)
            F.cross_entropy(logits, full_targets).backward()

        steps[f"fast {precision} (eager, prefix cache, full-vocabulary loss at the answer)"] = (fast, len(kept), span)
    return steps, vectors


def time_steps(steps: dict, repeats: int) -> dict[str, float]:
    """Median seconds per step, the sides interleaved so background load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for fn, _, _ in steps.values():
        fn()  # warm-up: compute twins, prefix caches, kernels
    for _ in range(repeats):
        for name, (fn, _, _) in steps.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def body_params(lm) -> int:
    """Parameters a token's forward touches (the transformer body, not the embedding table)."""
    emb = lm.model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in lm.model.parameters()) - emb


def tune_run(lm, data, config: TuneConfig) -> dict:
    started = time.perf_counter()
    prompt = tune_prompt(lm, data.task, data.splits["train"], data.splits["dev"], data.candidates(lm), config)
    seconds = time.perf_counter() - started
    test = evaluate(lm, prompt.as_prompt(), data.splits["test"], data.candidates(lm))
    return {
        "dev_p_at_1": prompt.metrics.get("dev_p_at_1"),
        "test_p_at_1": test.p_at_1,
        "n_test": test.n_facts,
        "seconds": seconds,
        "selected_step": prompt.provenance["selected_step"],
    }


def peft_run(lm, data, epochs: int, max_train: int, lr: float, seed: int) -> dict:
    """huggingface/peft prompt tuning on the same facts; scored with PTfer's `peft` placement (the same forward)."""
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    from ptfer_core.evaluation import Prompt
    from ptfer_core.peft_io import peft_template
    from ptfer_core.tuning import training_facts

    torch.manual_seed(seed)
    cands = data.candidates(lm)
    kept = training_facts(data.splits["train"], cands, TuneConfig(max_train=max_train), seed)
    model = get_peft_model(
        lm.model,
        PromptTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=5, prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB
        ),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    tok = lm.tokenizer
    started = time.perf_counter()
    for _ in range(epochs):
        for start in range(0, len(kept), 16):
            rows = kept[start : start + 16]
            enc = tok([f.subject for f in rows], return_tensors="pt", padding=True, add_special_tokens=True)
            out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            last = enc["attention_mask"].sum(1) - 1 + 5  # the last real position, after the 5 virtual tokens
            logits = out.logits[torch.arange(len(rows)), last]
            gold = cands.token_ids[torch.tensor([cands.index[f.object] for f in rows])]
            loss = F.cross_entropy(logits, gold)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - started
    vectors = model.prompt_encoder["default"].embedding.weight.detach().clone()
    lm.model.requires_grad_(False)
    test = evaluate(lm, Prompt(PromptTemplate.parse(peft_template(5)), vectors), data.splits["test"], cands)
    return {"test_p_at_1": test.p_at_1, "n_test": test.n_facts, "seconds": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--relations", default="P36,P103")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-train", type=int, default=200, help="training cap of the accuracy runs")
    parser.add_argument("--skip-tuning", action="store_true", help="step timings only")
    parser.add_argument("--out", default="docs/tuning_speed.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = {
        "peak_gflops": {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)},
        "models": {},
    }
    print(
        f"matmul peak (1 thread): fp32 {report['peak_gflops']['float32']:.0f}, bf16 "
        f"{report['peak_gflops']['bfloat16']:.0f} GFLOP/s"
    )
    for name in args.models.split(","):
        lm = load_model(name)
        for rid in args.relations.split(","):
            data = TaskData.load(rid, max_dev=100)
            steps, _ = step_functions(lm, data)
            timed = time_steps(steps, args.repeats)
            old = timed[next(iter(timed))]
            rows = {}
            for label, seconds in timed.items():
                _, facts, tokens = steps[label]
                flops = 2 * 2 * body_params(lm) * tokens  # forward + input-gradient backward through the body
                rows[label] = {
                    "seconds_per_step": seconds,
                    "facts_per_s": facts / seconds,
                    "speedup_vs_old": old / seconds,
                    "gflops": flops / seconds / 1e9,
                    "tokens": tokens,
                }
                print(
                    f"{name} {rid} {label}: {facts / seconds:.1f} facts/s, x{old / seconds:.2f} vs old fp32, "
                    f"{flops / seconds / 1e9:.0f} GFLOP/s"
                )
            entry = {"steps": rows}
            if not args.skip_tuning:
                studio = recipe_settings("studio", {"tune": {"max_train": args.max_train}}).tune
                paper = recipe_settings("paper", {"tune": {"max_train": args.max_train}}).tune
                entry["tuning"] = {
                    "studio bf16": tune_run(lm, data, studio),
                    "studio fp32": tune_run(
                        lm, data, TuneConfig.from_dict({**studio.to_dict(), "precision": "float32"})
                    ),
                    "paper (OptiPrompt start, fp32)": tune_run(lm, data, paper),
                }
                for label, r in entry["tuning"].items():
                    print(
                        f"  tune {label}: dev {r['dev_p_at_1']:.1f} test {r['test_p_at_1']:.1f} in {r['seconds']:.0f} s"
                    )
            report["models"].setdefault(name, {})[rid] = entry
    if not args.skip_tuning and "smollm2-135m" in args.models:
        lm = load_model("smollm2-135m")
        data = TaskData.load("P103", max_dev=100)
        ours_config = TuneConfig(
            placement="peft",
            init="vocab-sample",
            epochs=3,
            max_train=320,
            lr=3e-3,
            dev_checks_per_epoch=1,
            dev_before_training=False,
            dropout=False,
            shuffle=True,
        )
        report["peer"] = {
            "peft (SAMPLE_VOCAB, fp32)": peft_run(lm, data, 3, 320, 3e-3, 0),
            "ptfer tune --placement peft --init vocab-sample": tune_run(lm, data, ours_config),
        }
        for label, r in report["peer"].items():
            print(f"peer {label}: test {r['test_p_at_1']:.1f} in {r['seconds']:.0f} s")
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
