"""Evaluation throughput of the manual LAMA templates on the real models, against two naive evaluations.

Measured in one process, interleaved relation by relation, so that whatever else runs on the machine slows
every side alike:

* optimized   ``ptfer_core.evaluation.evaluate``: answer position only, candidate rows only, token-length
              batching, no autograd; float32 and bfloat16, on every fact.
* naive (i)   one fact at a time, ``model(input_ids).logits`` (full vocabulary at every position), float32,
              argmax over the candidate columns of the answer position.
* naive (ii)  the same with batches of 8 (right-padded, the last real position gathered), float32: how the
              reference research code evaluates.

The naive paths are too slow to run on ~29k facts on a laptop-class CPU, so they run on a fixed random sample
of facts (``--naive-sample``, seed ``--seed``); their facts/s is compared to the optimized facts/s over all
facts. On the sample, the naive predictions are also checked against the optimized ones.

Also measured: the matmul peak of this machine (2048x2048 @ 2048x2048, float32 and bfloat16, several times
during the run), the achieved GFLOP/s of the transformer body (2 x non-embedding parameters x tokens / time)
and whether bfloat16 keeps pooled P@1 (all correct over all facts) within 0.5 point of float32.

Quick run:  .venv/bin/python benchmarks/eval_throughput.py --relations P19,P36 --max-facts 64 --naive-sample 20
Full run (the one in docs/benchmarks.md; one torch thread is faster on a machine shared with other work):
            .venv/bin/python benchmarks/eval_throughput.py --threads 1
Re-render the markdown from a saved run:  .venv/bin/python benchmarks/eval_throughput.py --render runs/<file>.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from ptfer_core.data import load_relations, load_split, split_of
from ptfer_core.evaluation import Prompt, candidates_for, evaluate, iter_batches, scorable_facts
from ptfer_core.loading import load_model

ROOT = Path(__file__).resolve().parent.parent
NOTES_MARKER = "<!-- notes: everything below this line is kept when the script rewrites the file -->"


# ----------------------------------------------------------------------------- measurements


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5, rounds: int = 3) -> float:
    """Best GFLOP/s of n x n @ n x n over `rounds` rounds of `reps` products."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def body_params(lm) -> int:
    """Parameters of the transformer body: everything in the base model except the input embeddings."""
    embedding = {id(p) for p in lm.model.get_input_embeddings().parameters()}
    return sum(p.numel() for p in lm.model.base_model.parameters() if id(p) not in embedding)


def token_counts(lm, prompt, facts, batch_size) -> tuple[int, int]:
    """(real tokens, padded tokens) the optimized path feeds the body for these facts."""
    real = padded = 0
    for _, batch in iter_batches(lm, prompt, [f.subject for f in facts], batch_size):
        real += int(batch.attention_mask.sum())
        padded += batch.input_ids.numel()
    return real, padded


def naive_texts(lm, relation, facts) -> list[str]:
    """The filled template as plain text: up to [Y] for a causal LM, [Y] -> mask token for a masked LM."""
    template = relation.template
    if lm.kind.value == "causal":
        prefix = template.split("[Y]")[0].rstrip()
        return [prefix.replace("[X]", f.subject) for f in facts]
    return [template.replace("[X]", f.subject).replace("[Y]", lm.tokenizer.mask_token) for f in facts]


def naive_predict(lm, relation, facts, candidates, batch_size: int) -> list[str]:
    """Reference-style evaluation: full forward with full-vocabulary logits at every position, then pick."""
    tok = lm.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    cand = candidates.token_ids
    preds: list[str] = []
    texts = naive_texts(lm, relation, facts)
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tok(texts[start : start + batch_size], return_tensors="pt", padding=True)
            logits = lm.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits  # [B, L, V]
            if lm.kind.value == "causal":
                pos = enc["attention_mask"].sum(dim=1) - 1
            else:
                pos = (enc["input_ids"] == tok.mask_token_id).int().argmax(dim=1)
            answer = logits[torch.arange(len(pos)), pos][:, cand]
            preds += [candidates.words[i] for i in answer.argmax(dim=-1).tolist()]
    return preds


class Clock:
    """Accumulated seconds and facts of one timed side."""

    def __init__(self):
        self.seconds = 0.0
        self.facts = 0

    def run(self, fn, n_facts):
        t = time.perf_counter()
        out = fn()
        self.last = time.perf_counter() - t
        self.seconds += self.last
        self.facts += n_facts
        return out

    @property
    def rate(self) -> float:
        return self.facts / self.seconds if self.seconds else 0.0


# ----------------------------------------------------------------------------- the run


def machine_description() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = (
            int(
                next(
                    l
                    for l in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines()
                    if l.startswith("MemTotal")
                ).split()[1]
            )
            / 2**20
        )
    except (OSError, StopIteration):
        mem = 0.0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def select_relations(spec: str, data_dir) -> list:
    relations = load_relations(data_dir)
    if spec == "all":
        return list(relations.values())
    ids = [r.strip() for r in spec.split(",") if r.strip()]
    missing = [r for r in ids if r not in relations]
    if missing:
        raise SystemExit(f"unknown relation(s): {', '.join(missing)}")
    return [relations[r] for r in ids]


def run(args) -> dict:
    torch.manual_seed(0)
    default_threads = torch.get_num_threads()
    peak_all_threads = {
        "threads": default_threads,
        "float32": matmul_peak(torch.float32),
        "bfloat16": matmul_peak(torch.bfloat16),
    }
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_description()
    relations = select_relations(args.relations, args.data_dir)
    facts = {}
    for rel in relations:
        fs = load_split(rel.id, args.split, args.data_dir)
        facts[rel.id] = fs[: args.max_facts] if args.max_facts else fs

    peaks = {"float32": [], "bfloat16": []}

    def measure_peak():
        peaks["float32"].append(matmul_peak(torch.float32))
        peaks["bfloat16"].append(matmul_peak(torch.bfloat16))

    measure_peak()
    models = {}
    for name in args.models:
        t = time.perf_counter()
        lm32 = load_model(name, precision="float32", models_root=args.model_dir)
        lm16 = load_model(name, precision="bfloat16", models_root=args.model_dir) if args.bf16 else None
        load_s = time.perf_counter() - t
        cands = candidates_for(lm32, data_dir=args.data_dir)
        cands16 = candidates_for(lm16, data_dir=args.data_dir) if lm16 else None
        scorable = [(rid, f) for rid, fs in facts.items() for f in scorable_facts(fs, cands)[0]]
        rng = random.Random(args.seed)
        sample = rng.sample(scorable, min(args.naive_sample, len(scorable)))
        by_rel: dict[str, list] = {}
        for rid, f in sample:
            by_rel.setdefault(rid, []).append(f)
        models[name] = {
            "lm32": lm32,
            "lm16": lm16,
            "cands": cands,
            "cands16": cands16,
            "sample": by_rel,
            "load_s": load_s,
            "clocks": {k: Clock() for k in ("opt_fp32", "opt_bf16", "naive_b1", "naive_b8", "opt_fp32_sample")},
            "results32": {},
            "results16": {},
            "naive_b1": {},
            "naive_b8": {},
            "tokens": [0, 0],
            "matched": {"float32": [], "bfloat16": []},
            "body_params": body_params(lm32),
            "n_sample": len(sample),
        }
        print(
            f"{name}: {lm32!r}, {len(cands)} candidates, body {models[name]['body_params'] / 1e6:.1f}M params, "
            f"naive sample {len(sample)} facts",
            file=sys.stderr,
            flush=True,
        )

    t_start = time.perf_counter()
    for step, rel in enumerate(relations):
        prompt = Prompt.manual(rel)
        for name, m in models.items():
            sample = m["sample"].get(rel.id, [])
            sides = [
                (
                    "opt_fp32",
                    lambda: m["results32"].__setitem__(
                        rel.id, evaluate(m["lm32"], prompt, facts[rel.id], m["cands"], args.batch_size)
                    ),
                    len(facts[rel.id]),
                ),
                (
                    "naive_b1",
                    lambda: m["naive_b1"].__setitem__(rel.id, naive_predict(m["lm32"], rel, sample, m["cands"], 1)),
                    len(sample),
                ),
                (
                    "naive_b8",
                    lambda: m["naive_b8"].__setitem__(
                        rel.id, naive_predict(m["lm32"], rel, sample, m["cands"], args.naive_batch)
                    ),
                    len(sample),
                ),
            ]
            if m["lm16"] is not None:
                sides.append(
                    (
                        "opt_bf16",
                        lambda: m["results16"].__setitem__(
                            rel.id, evaluate(m["lm16"], prompt, facts[rel.id], m["cands16"], args.batch_size)
                        ),
                        len(facts[rel.id]),
                    )
                )
            if sample:  # the optimized path on exactly the naive sample, for a like-for-like check
                sides.append(
                    (
                        "opt_fp32_sample",
                        lambda: evaluate(m["lm32"], prompt, sample, m["cands"], args.batch_size),
                        len(sample),
                    )
                )
            shift = step % len(sides)  # rotate the order so no side always runs first
            before = {
                "float32": matmul_peak(torch.float32, reps=2, rounds=1),
                "bfloat16": matmul_peak(torch.bfloat16, reps=4, rounds=1),
            }
            for key, fn, n in sides[shift:] + sides[:shift]:
                m["clocks"][key].run(fn, n)
            after = {
                "float32": matmul_peak(torch.float32, reps=2, rounds=1),
                "bfloat16": matmul_peak(torch.bfloat16, reps=4, rounds=1),
            }
            kept = m["results32"][rel.id].kept
            real, padded = token_counts(m["lm32"], prompt, kept, args.batch_size)
            m["tokens"][0] += real
            m["tokens"][1] += padded
            # Time-matched efficiency: this relation's body GFLOP/s over the matmul rate measured around it.
            for prec, key in (("float32", "opt_fp32"), ("bfloat16", "opt_bf16")):
                secs = m["clocks"][key].last if m["clocks"][key].facts else 0.0
                if secs > 0.5:
                    gflops = 2 * m["body_params"] * padded / secs / 1e9
                    m["matched"][prec].append(gflops / ((before[prec] + after[prec]) / 2))
        done = step + 1
        if done % 10 == 0 and done < len(relations):
            measure_peak()
        elapsed = time.perf_counter() - t_start
        rates = "  ".join(
            f"{n}: opt {m['clocks']['opt_fp32'].rate:.1f}/s b1 {m['clocks']['naive_b1'].rate:.1f}/s"
            for n, m in models.items()
        )
        print(f"[{done}/{len(relations)}] {rel.id} {elapsed:.0f}s  {rates}", file=sys.stderr, flush=True)
    measure_peak()
    out = summarise(args, relations, facts, models, peaks, time.perf_counter() - t_start, machine)
    out["peak_gflops_all_threads_at_start"] = peak_all_threads
    return out


def micro(results: dict, keep=lambda f: True) -> tuple[float, int]:
    n = correct = 0
    for res in results.values():
        for fact, pred in zip(res.kept, res.predictions):
            if keep(fact):
                n += 1
                correct += pred == fact.object
    return (100.0 * correct / n if n else 0.0), n


def summarise(args, relations, facts, models, peaks, wall_s, machine) -> dict:
    peak = {k: {"max": max(v), "median": statistics.median(v), "samples": v} for k, v in peaks.items()}
    out = {
        "machine": machine,
        "command": args.command,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k not in ("command",)},
        "n_relations": len(relations),
        "n_facts": sum(len(f) for f in facts.values()),
        "wall_s": wall_s,
        "peak_gflops": peak,
        "models": {},
    }
    out["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    for name, m in models.items():
        c = m["clocks"]
        p32, n32 = micro(m["results32"])
        t32, nt = micro(m["results32"], lambda f: split_of(f.uuid) == "test")
        macro32 = statistics.mean(r.p_at_1 for r in m["results32"].values() if r.n_facts) if m["results32"] else 0.0
        entry = {
            "description": repr(m["lm32"]),
            "load_s": m["load_s"],
            "body_params": m["body_params"],
            "candidates": len(m["cands"]),
            "facts_scored": n32,
            "facts_skipped": sum(r.n_skipped for r in m["results32"].values()),
            "rates": {k: c[k].rate for k in c},
            "seconds": {k: c[k].seconds for k in c},
            "facts": {k: c[k].facts for k in c},
            "speedup_vs_naive_b1": c["opt_fp32"].rate / c["naive_b1"].rate if c["naive_b1"].rate else None,
            "speedup_vs_naive_b8": c["opt_fp32"].rate / c["naive_b8"].rate if c["naive_b8"].rate else None,
            "tokens_real": m["tokens"][0],
            "tokens_padded": m["tokens"][1],
            "p_at_1": {
                "float32": {"micro_all": p32, "micro_test": t32, "macro_all": macro32, "n_all": n32, "n_test": nt}
            },
            "per_relation_fp32": {rid: {"p_at_1": r.p_at_1, "n": r.n_facts} for rid, r in m["results32"].items()},
        }
        gflop_real = 2 * m["body_params"] * m["tokens"][0] / 1e9
        gflop_padded = 2 * m["body_params"] * m["tokens"][1] / 1e9
        body = {
            "float32": {
                "gflops_real_tokens": gflop_real / c["opt_fp32"].seconds,
                "gflops_padded_tokens": gflop_padded / c["opt_fp32"].seconds,
            }
        }
        body["float32"]["fraction_of_peak"] = body["float32"]["gflops_padded_tokens"] / peak["float32"]["max"]
        body["float32"]["fraction_of_peak_real_tokens"] = body["float32"]["gflops_real_tokens"] / peak["float32"]["max"]
        if m["lm16"] is not None:
            p16, n16 = micro(m["results16"])
            t16, _ = micro(m["results16"], lambda f: split_of(f.uuid) == "test")
            pairs = [
                (a, b)
                for rid in m["results32"]
                for a, b in zip(m["results32"][rid].predictions, m["results16"][rid].predictions)
            ]
            entry["p_at_1"]["bfloat16"] = {"micro_all": p16, "micro_test": t16, "n_all": n16}
            entry["bf16_minus_fp32_points"] = p16 - p32
            entry["bf16_within_half_point"] = abs(p16 - p32) <= 0.5
            entry["bf16_prediction_agreement"] = 100.0 * sum(a == b for a, b in pairs) / len(pairs) if pairs else None
            entry["speedup_bf16_vs_naive_b1"] = c["opt_bf16"].rate / c["naive_b1"].rate if c["naive_b1"].rate else None
            entry["speedup_bf16_vs_naive_b8"] = c["opt_bf16"].rate / c["naive_b8"].rate if c["naive_b8"].rate else None
            body["bfloat16"] = {
                "gflops_real_tokens": gflop_real / c["opt_bf16"].seconds,
                "gflops_padded_tokens": gflop_padded / c["opt_bf16"].seconds,
            }
            body["bfloat16"]["fraction_of_peak"] = body["bfloat16"]["gflops_padded_tokens"] / peak["bfloat16"]["max"]
            body["bfloat16"]["fraction_of_peak_real_tokens"] = (
                body["bfloat16"]["gflops_real_tokens"] / peak["bfloat16"]["max"]
            )
        for prec in body:
            ratios = m["matched"][prec]
            body[prec]["time_matched_fraction_median"] = statistics.median(ratios) if ratios else None
            body[prec]["time_matched_n"] = len(ratios)
        entry["body"] = body
        # Naive vs optimized predictions on the sample (same model, float32).
        opt_pred = {f.uuid: p for r in m["results32"].values() for f, p in zip(r.kept, r.predictions)}
        agree = total = correct_b1 = 0
        for rid, sample in m["sample"].items():
            for f, p1, p8 in zip(sample, m["naive_b1"].get(rid, []), m["naive_b8"].get(rid, [])):
                total += 1
                agree += (p1 == opt_pred.get(f.uuid)) and (p8 == p1)
                correct_b1 += p1 == f.object
        entry["naive_sample"] = {
            "n": total,
            "agreement_with_optimized": 100.0 * agree / total if total else None,
            "naive_p_at_1": 100.0 * correct_b1 / total if total else None,
        }
        out["models"][name] = entry
    return out


# ----------------------------------------------------------------------------- report


def markdown(res: dict) -> str:
    mach, s = res["machine"], res["settings"]
    pk = res["peak_gflops"]
    lines = [
        "# Evaluation throughput",
        "",
        "Generated by `benchmarks/eval_throughput.py`; the raw numbers are in `runs/` (not committed).",
        "",
        f"- Command: `{res['command']}`",
        f"- Date: {res['date']}; wall time {res['wall_s'] / 60:.1f} min",
        f"- Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB, torch {mach['torch']} "
        f"({mach['torch_threads']} threads), Python {mach['python']}; load average at start "
        f"{_fmt_load(mach.get('load_average_start'))}, at end {_fmt_load(mach.get('load_average_end'))} "
        "(the machine was shared with other work, so all sides were interleaved relation by relation)",
        f"- Data: {res['n_relations']} relations, split `{s['split']}`, {res['n_facts']} facts"
        + (f" (at most {s['max_facts']} per relation)" if s["max_facts"] else "")
        + "; manual LAMA templates, candidates = the BERT/RoBERTa/ALBERT common vocabulary words that are single tokens of the model",
        f"- Optimized path: `ptfer_core.evaluation.evaluate`, batch {s['batch_size']}, on every fact. "
        f"Naive paths: float32, `model(input_ids).logits` over the full vocabulary at every position, on a fixed random "
        f"sample of {s['naive_sample']} scorable facts per model (seed {s['seed']}), batch 1 (i) and batch {s['naive_batch']} (ii).",
        "",
        "## Facts per second",
        "",
        "| model | optimized fp32 | optimized bf16 | naive (i) batch 1 | naive (ii) batch 8 | fp32 speed-up vs (i) (target >= 5x) | fp32 speed-up vs (ii) (target >= 2x) | bf16 vs (i) | bf16 vs (ii) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in res["models"].items():
        r = m["rates"]
        lines.append(
            f"| {name} | {r['opt_fp32']:.1f} | {_f(r.get('opt_bf16') or None)} | {r['naive_b1']:.2f} | {r['naive_b8']:.2f} | "
            f"{_x(m['speedup_vs_naive_b1'])} | {_x(m['speedup_vs_naive_b8'])} | {_x(m.get('speedup_bf16_vs_naive_b1'))} | "
            f"{_x(m.get('speedup_bf16_vs_naive_b8'))} |"
        )
    lines += [
        "",
        "Optimized fp32 on exactly the naive sample (few facts per relation, so small batches): "
        + ", ".join(f"{n} {m['rates']['opt_fp32_sample']:.1f} facts/s" for n, m in res["models"].items())
        + ". Naive predictions agree with the optimized ones on "
        + ", ".join(
            f"{m['naive_sample']['agreement_with_optimized']:.1f}% ({n}, {m['naive_sample']['n']} facts)"
            for n, m in res["models"].items()
            if m["naive_sample"]["n"]
        )
        + ".",
        "",
    ]
    lines += [
        "## Transformer-body GFLOP/s against the measured matmul peak",
        "",
        f"Peak (2048x2048 matmul, best of the {len(pk['float32']['samples'])} measurements taken during the run; median in brackets): "
        f"float32 {pk['float32']['max']:.0f} GFLOP/s ({pk['float32']['median']:.0f}), "
        f"bfloat16 {pk['bfloat16']['max']:.0f} GFLOP/s ({pk['bfloat16']['median']:.0f}), with the run's "
        f"{mach['torch_threads']} torch thread(s). For reference, with torch's default "
        f"{res['peak_gflops_all_threads_at_start']['threads']} threads at the start: float32 "
        f"{res['peak_gflops_all_threads_at_start']['float32']:.0f}, bfloat16 {res['peak_gflops_all_threads_at_start']['bfloat16']:.0f} GFLOP/s.",
        "Body FLOPs = 2 x non-embedding parameters x tokens (attention score FLOPs, the candidate head and tokenisation are "
        "not counted but their time is). 'padded' counts every token fed, 'real' only non-padding tokens.",
        "",
        "| model | body params | tokens real / padded | fp32 GFLOP/s real (padded) | fp32 % of peak, real (padded) (target >= 40%) | fp32 time-matched % | bf16 GFLOP/s real (padded) | bf16 % of peak, real (padded) | bf16 time-matched % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in res["models"].items():
        b32, b16 = m["body"]["float32"], m["body"].get("bfloat16")
        lines.append(
            f"| {name} | {m['body_params'] / 1e6:.1f}M | {m['tokens_real']} / {m['tokens_padded']} | "
            f"{b32['gflops_real_tokens']:.1f} ({b32['gflops_padded_tokens']:.1f}) | "
            f"{100 * b32['fraction_of_peak_real_tokens']:.0f}% ({100 * b32['fraction_of_peak']:.0f}%) | {_pct(b32)} | "
            + (
                f"{b16['gflops_real_tokens']:.1f} ({b16['gflops_padded_tokens']:.1f}) | "
                f"{100 * b16['fraction_of_peak_real_tokens']:.0f}% ({100 * b16['fraction_of_peak']:.0f}%) | {_pct(b16)} |"
                if b16
                else "- | - | - |"
            )
        )
    lines += [
        "",
        "'% of peak' divides the run's average body GFLOP/s by the best matmul rate seen during the run; "
        "'time-matched %' is the median over relations of (that relation's body GFLOP/s on padded tokens) / "
        "(the matmul rate measured right before and after it), which cancels most of the slow-down caused by other "
        "work on the machine.",
    ]
    split = s["split"]
    test_col = split != "test"  # with --split all (or train/dev) also show the test part alone
    lines += [
        "",
        "## Precision@1 of the manual templates",
        "",
        f"Pooled P@1 (all correct over all scored facts) of the `{split}` split (object is a single-token candidate of the model; "
        "the split is the deterministic 60/20/20 one, seed 0, by uuid); macro = mean over relations.",
        "",
        f"| model | facts scored | fp32 pooled P@1 ({split}) | "
        + ("fp32 pooled P@1 (test part) | " if test_col else "")
        + "fp32 macro P@1 | bf16 pooled P@1 | bf16 - fp32 | within 0.5 point | prediction agreement |",
        "| --- | ---: | ---: | " + ("---: | " if test_col else "") + "---: | ---: | ---: | :---: | ---: |",
    ]
    for name, m in res["models"].items():
        f32, b16 = m["p_at_1"]["float32"], m["p_at_1"].get("bfloat16")
        lines.append(
            f"| {name} | {f32['n_all']} | {f32['micro_all']:.2f} | "
            + (f"{f32['micro_test']:.2f} | " if test_col else "")
            + f"{f32['macro_all']:.2f} | "
            + (
                f"{b16['micro_all']:.2f} | {m['bf16_minus_fp32_points']:+.2f} | {'yes' if m['bf16_within_half_point'] else 'no'} | "
                f"{m['bf16_prediction_agreement']:.1f}% |"
                if b16
                else "- | - | - | - |"
            )
        )
    return "\n".join(lines) + "\n"


def _pct(body: dict) -> str:
    v = body.get("time_matched_fraction_median")
    return "-" if v is None else f"{100 * v:.0f}% (n={body['time_matched_n']})"


def _fmt_load(load) -> str:
    return "/".join(f"{x:.1f}" for x in load) if load else "n/a"


def _f(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _x(v) -> str:
    return "-" if v is None else f"{v:.1f}x"


def write_doc(path: Path, text: str) -> None:
    notes = ""
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        if NOTES_MARKER in old:
            notes = old.split(NOTES_MARKER, 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n" + NOTES_MARKER + (notes or "\n"), encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    p.add_argument("--relations", default="all", help="'all' or a comma-separated list of relation ids")
    p.add_argument("--max-facts", type=int, default=0, help="at most this many facts per relation (0: all)")
    p.add_argument(
        "--split",
        default="test",
        choices=["all", "train", "dev", "test"],
        help="facts of the optimized runs (default: test)",
    )
    p.add_argument("--naive-sample", type=int, default=300, help="facts per model for the naive evaluations")
    p.add_argument("--naive-batch", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64, help="batch size of the optimized path")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bfloat16 run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model-dir", default=None)
    p.add_argument(
        "--doc", default=None, help="markdown output (default: docs/benchmarks.md for a full run, else runs/)"
    )
    p.add_argument("--json", default=None, help="JSON output (default: runs/eval_throughput-<time>.json)")
    p.add_argument(
        "--render",
        default=None,
        metavar="JSON",
        help="only rewrite --doc (default docs/benchmarks.md) from a saved JSON",
    )
    args = p.parse_args(argv)
    if args.render:
        doc = Path(args.doc) if args.doc else ROOT / "docs" / "benchmarks.md"
        write_doc(doc, markdown(json.loads(Path(args.render).read_text(encoding="utf-8"))))
        print(f"wrote {doc}", file=sys.stderr)
        return 0
    args.command = ".venv/bin/python benchmarks/eval_throughput.py" + (
        "" if not (argv or sys.argv[1:]) else " " + " ".join(argv or sys.argv[1:])
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    full = args.relations == "all" and not args.max_facts
    res = run(args)
    json_path = Path(args.json) if args.json else ROOT / "runs" / f"eval_throughput-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    doc = (
        Path(args.doc)
        if args.doc
        else (ROOT / "docs" / "benchmarks.md" if full else ROOT / "runs" / f"eval_throughput-{stamp}.md")
    )
    text = markdown(res)
    write_doc(doc, text)
    print(text)
    print(f"wrote {json_path} and {doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
