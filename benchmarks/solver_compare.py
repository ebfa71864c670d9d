"""The closed-form transfer (least squares) against the paper's Adam search, on the same source prompts.

For every relation with a tuned prompt on both models (e.g. the real grid's `OUT/prompts`), in both
directions: wall time, matching loss and target test P@1 of each solver, the cosine between their answers,
and each followed by the label-free shared-word snap (the study's best variant). Prints a markdown table and
writes the rows as JSON.

    python benchmarks/solver_compare.py --prompts runs/grid-real-10/prompts
    python benchmarks/solver_compare.py --prompts runs/transferability/prompts --subfolder template-manual
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ptfer_core.artifacts import SoftPrompt
from ptfer_core.data import load_split
from ptfer_core.evaluation import candidates_for, evaluate
from ptfer_core.models import load_model
from ptfer_core.transfer import TransferConfig, transfer_prompt

VARIANTS = {  # name -> TransferConfig fields; the paper's search settings otherwise
    "adam": {"solver": "adam"},
    "lstsq": {"solver": "lstsq"},
    "adam + shared-word snap": {"solver": "adam", "projection": "nearest", "project_to_shared": True},
    "lstsq + shared-word snap": {"solver": "lstsq", "projection": "nearest", "project_to_shared": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--prompts", default="runs/grid-real-10/prompts",
                    help="folder with MODEL/[SUBFOLDER/]RELATION.safetensors")
    ap.add_argument("--subfolder", default="", help="e.g. template-manual for the study's prompts")
    ap.add_argument("--relations", default=None, help="comma-separated (default: every relation tuned on all models)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/solver_compare.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    folder = Path(args.prompts)
    if args.relations:
        relations = args.relations.split(",")
    else:
        per_model = [{p.stem for p in (folder / n.replace(":", "_") / args.subfolder).glob("*.safetensors")}
                     for n in names]
        relations = sorted(set.intersection(*per_model), key=lambda r: int(r[1:]))
    if not relations:
        ap.error(f"no relation has a prompt for every model under {folder}")
    lms = {n: load_model(n) for n in names}
    cands = {n: candidates_for(lm) for n, lm in lms.items()}
    rows = []
    for rid in relations:
        test = load_split(rid, "test")
        for src in names:
            prompt = SoftPrompt.load(folder / src.replace(":", "_") / args.subfolder / f"{rid}.safetensors")
            for tgt in [n for n in names if n != src]:
                answers = {}
                for variant, fields in VARIANTS.items():
                    t0 = time.perf_counter()
                    out = transfer_prompt([(prompt, lms[src])], lms[tgt], TransferConfig(steps=args.steps, **fields))
                    seconds = time.perf_counter() - t0
                    answers[variant] = out.vectors
                    result = evaluate(lms[tgt], out.as_prompt(), test, cands[tgt])
                    rows.append({"relation": rid, "source": src, "target": tgt, "variant": variant, "seconds": seconds,
                                 "matching_loss": out.metrics["matching_loss"], "p_at_1": result.p_at_1,
                                 "n_correct": result.n_correct, "n_facts": result.n_facts})
                    print(json.dumps(rows[-1]), flush=True)
                agreement = F.cosine_similarity(answers["adam"], answers["lstsq"]).mean().item()
                for row in rows[-len(VARIANTS):]:  # one figure per direction and relation
                    row["cos_adam_lstsq"] = agreement
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    print(summary(rows, relations))


def summary(rows: list[dict], relations: list[str]) -> str:
    import pandas as pd

    table = pd.DataFrame(rows)
    lines = [f"Relations: {', '.join(relations)}. Micro P@1 on the target's test split; times and losses are means.", "",
             "| direction | variant | seconds | matching loss | cos(adam, lstsq) | micro P@1 |",
             "|---|---|---:|---:|---:|---:|"]
    for (src, tgt), part in table.groupby(["source", "target"], sort=False):
        for variant in VARIANTS:
            v = part[part.variant == variant]
            lines.append(f"| {src} → {tgt} | {variant} | {v.seconds.mean():.3f} | {v.matching_loss.mean():.4f} | "
                         f"{v.cos_adam_lstsq.mean():.3f} | {100 * v.n_correct.sum() / max(1, v.n_facts.sum()):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
