"""Transferability study on the real causal pair (SmolLM2-135M <-> Gemma-3-270M), both directions.

For each relation and source setting (placement x initialisation) it tunes a prompt on each model, then
transfers it to the other model with several label-free variants, and scores every baseline on the target's
test split. Every cell is cached under --out, so the script resumes where it stopped. Writes
docs/transferability.md; rows of earlier runs found in assets/results/transferability.csv that this run
did not recompute are kept, so settings and variants can be added run by run.

    python benchmarks/transferability.py                      # the full study (about an hour on 2 CPU cores)
    python benchmarks/transferability.py --relations P36 --epochs 1 --max-train 64   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ptfer_core.artifacts import SoftPrompt, atomic_write_json
from ptfer_core.baselines import discretize, projector_prompt, random_prompt
from ptfer_core.data import get_relation, load_split
from ptfer_core.evaluation import Prompt, candidates_for, evaluate
from ptfer_core.models import load_model
from ptfer_core.transfer import TransferConfig, transfer_prompt
from ptfer_core.tuning import TuneConfig, template_shape, tune_prompt

RELATIONS = ["P36", "P1376", "P103", "P37", "P364", "P176", "P140", "P1412", "P178", "P101"]
SOURCE_SETTINGS = {  # name -> TuneConfig fields
    "postfix-random": {"placement": "postfix", "init": "random"},  # the paper's recipe
    "split-manual": {"placement": "split", "init": "manual"},  # v1..v4 [X] v5, initialised from the template words
    # ... shaped like the manual template (one vector per template token, before and after [X]): starts as the template
    "template-manual": {"placement": "split", "init": "manual", "shape": "template"},
    # ... and pulled towards the token manifold while tuning, so the prompt stays word-like
    "template-manual-reg": {"placement": "split", "init": "manual", "shape": "template", "manifold_weight": 10.0},
    "prefix-manual": {"placement": "prefix", "init": "manual"},  # v1..v5 [X]
}
TRANSFER_VARIANTS = {  # name -> TransferConfig fields (all label-free: loss selection)
    "relative (paper)": {},
    "relative + nearest-token snap": {"projection": "nearest"},
    "relative + shared-word snap": {"projection": "nearest", "project_to_shared": True},
    "relative + top-8 mix": {"projection": "mix"},
    "relative + top-8 mix, alpha 0.5": {"projection": "mix", "projection_alpha": 0.5},
    "relative, centred anchors + top-8 mix": {"projection": "mix", "centre_anchors": True},
    "relative, 4 restarts": {"restarts": 4},
    "relative, least-squares solve": {"solver": "lstsq"},
    "relative, best-matching words": {"solver": "vocabulary"},
    "relative, least-squares + shared-word snap": {"solver": "lstsq", "projection": "nearest", "project_to_shared": True},
    "relative, least-squares + nearest-token snap": {"solver": "lstsq", "projection": "nearest"},
    "standardised, least-squares + shared-word snap": {"space": "standardised", "solver": "lstsq",
                                                       "projection": "nearest", "project_to_shared": True},
    "relative, 2000 steps + shared-word snap": {"steps": 2000, "projection": "nearest", "project_to_shared": True},
    "standardised": {"space": "standardised"},
    "standardised + shared-word snap": {"space": "standardised", "projection": "nearest", "project_to_shared": True},
    "standardised, best-matching words": {"space": "standardised", "solver": "vocabulary"},
    "standardised, best-matching words + CSLS": {"space": "standardised", "solver": "vocabulary", "hub_penalty": True},
}
DEFAULT_VARIANTS = ["relative (paper)", "relative + nearest-token snap", "relative + shared-word snap",
                    "relative + top-8 mix, alpha 0.5",
                    "relative, 4 restarts"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--relations", default=",".join(RELATIONS))
    ap.add_argument("--settings", default=",".join(SOURCE_SETTINGS))
    ap.add_argument("--variants", default=";".join(DEFAULT_VARIANTS), help="transfer variants, separated by ';': "
                    + "; ".join(TRANSFER_VARIANTS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-train", type=int, default=320, help="cap on training facts per relation (CPU budget)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    ap.add_argument("--out", default="runs/transferability")
    ap.add_argument("--doc", default="docs/transferability.md")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    names = args.models.split(",")
    lms = {n: load_model(n) for n in names}
    cands = {n: candidates_for(lm) for n, lm in lms.items()}
    relations = args.relations.split(",")
    settings = args.settings.split(",")
    variants = args.variants.split(";")
    unknown = [v for v in variants if v not in TRANSFER_VARIANTS] + [x for x in settings if x not in SOURCE_SETTINGS]
    if unknown:
        ap.error(f"unknown variants or settings: {unknown}")
    started = time.perf_counter()

    def cell(key: str, compute):
        path = out / "cells" / (key.replace("/", "_").replace(" ", "_").replace(",", "") + ".json")
        if path.is_file():
            return json.loads(path.read_text())
        value = compute()
        atomic_write_json(path, value)
        print(f"[{time.perf_counter() - started:7.0f}s] {key}: {value}", flush=True)
        return value

    def score(model: str, prompt, rid: str) -> dict:
        test = load_split(rid, "test")
        p = prompt if isinstance(prompt, Prompt) else prompt.as_prompt()
        r = evaluate(lms[model], p, test, cands[model])
        return {"p_at_1": r.p_at_1, "n_facts": r.n_facts, "n_correct": r.n_correct}

    def tuned(model: str, rid: str, setting: str) -> SoftPrompt:
        path = out / "prompts" / model / setting / f"{rid}.safetensors"
        if not path.is_file():
            train = load_split(rid, "train")[: args.max_train]
            fields = dict(SOURCE_SETTINGS[setting])
            if fields.pop("shape", None) == "template":
                fields["n_vectors"], fields["split_at"] = template_shape(lms[model], get_relation(rid))
            cfg = TuneConfig(epochs=args.epochs, seed=args.seed, **fields)
            prompt = tune_prompt(lms[model], get_relation(rid), train, load_split(rid, "dev"), cands[model], cfg)
            prompt.save(path)
        return SoftPrompt.load(path)

    def projector_vectors(src: str, tgt: str, prompt: SoftPrompt, rid: str) -> torch.Tensor:
        # The projector is trained once per direction (cached); its epoch is chosen per relation on target dev.
        return projector_prompt(prompt, lms[src], lms[tgt], load_split(rid, "dev"), cands[tgt]).vectors

    rows = []
    for rid in relations:
        relation = get_relation(rid)
        for tgt in names:
            rows.append({"relation": rid, "type": relation.type, "source": "", "target": tgt, "setting": "",
                         "method": "manual", **cell(f"{rid}/{tgt}/manual", lambda: score(tgt, Prompt.manual(relation), rid))})
        for setting in settings:
            for tgt in names:
                rows.append({"relation": rid, "type": relation.type, "source": "", "target": tgt, "setting": setting,
                             "method": "random", **cell(f"{rid}/{tgt}/{setting}/random", lambda: score(
                                 tgt, random_prompt(lms[tgt], tuned(tgt, rid, setting).template, rid, args.seed), rid))})
                rows.append({"relation": rid, "type": relation.type, "source": "", "target": tgt, "setting": setting,
                             "method": "direct tuning", **cell(f"{rid}/{tgt}/{setting}/direct", lambda: score(
                                 tgt, tuned(tgt, rid, setting), rid))})
            for src in names:
                for tgt in names:
                    if src == tgt:
                        continue
                    base = {"relation": rid, "type": relation.type, "source": src, "target": tgt, "setting": setting}
                    prompt = tuned(src, rid, setting)
                    def run_discretize():
                        discrete, tokens = discretize(prompt, lms[src], lms[tgt])
                        return {**score(tgt, discrete, rid), "tokens": tokens}
                    rows.append({**base, "method": "discretisation",
                                 **cell(f"{rid}/{src}>{tgt}/{setting}/discrete", run_discretize)})
                    rows.append({**base, "method": "projector", **cell(
                        f"{rid}/{src}>{tgt}/{setting}/projector",
                        lambda: score(tgt, Prompt(prompt.prompt_template, projector_vectors(src, tgt, prompt, rid)), rid))})
                    for variant in variants:
                        fields = TRANSFER_VARIANTS[variant]
                        def run_transfer():
                            t0 = time.perf_counter()
                            res = transfer_prompt([(prompt, lms[src])], lms[tgt],
                                                  TransferConfig(**{"steps": args.steps, "seed": args.seed, **fields}))
                            return {**score(tgt, res, rid), "matching_loss": res.metrics["matching_loss"],
                                    "seconds": time.perf_counter() - t0,
                                    "tokens": res.provenance.get("tokens") or res.provenance.get("projected_to", [])}
                        rows.append({**base, "method": f"transfer: {variant}",
                                     **cell(f"{rid}/{src}>{tgt}/{setting}/transfer/{variant}", run_transfer)})
        write_doc(rows, Path(args.doc), args, time.perf_counter() - started)
    write_doc(rows, Path(args.doc), args, time.perf_counter() - started)


def micro_table(table) -> "pd.DataFrame":  # noqa: F821
    """Micro P@1 per (setting, method) × direction "src → tgt"; target-only rows count for the direction's target."""
    import pandas as pd

    out = {}
    for (src, tgt), _ in table[table.source != ""].groupby(["source", "target"]):
        part = table[((table.source == src) | (table.source == "")) & (table.target == tgt)]
        # Only relations that this direction has finished, so every row averages over the same facts.
        done = set(part[part.source == src].relation)
        part = part[part.relation.isin(done)]
        grouped = part.groupby(["setting", "method"])[["n_correct", "n_facts"]].sum()
        out[f"{src} → {tgt}"] = 100 * grouped["n_correct"] / grouped["n_facts"].clip(lower=1)
    return pd.DataFrame(out)


def merge_earlier(table, earlier_csv: Path):
    """This run's rows plus the earlier runs' rows (from the app table) for cells this run did not compute."""
    import pandas as pd

    if not earlier_csv.is_file():
        return table
    earlier = pd.read_csv(earlier_csv, keep_default_na=False, na_values=[""])
    earlier["setting"] = earlier["setting"].fillna("")
    earlier["source"] = earlier["source"].fillna("")
    prefix = earlier["setting"].where(earlier["setting"] == "", earlier["setting"] + " · ")
    earlier["method"] = [m[len(p):] if p and m.startswith(p) else m for m, p in zip(earlier["method"], prefix)]
    key = ["relation", "source", "target", "setting", "method"]
    fresh = set(map(tuple, table[key].astype(str).values))
    kept = earlier[[tuple(k) not in fresh for k in earlier[key].astype(str).values]]
    return pd.concat([kept, table], ignore_index=True)


def write_doc(rows: list[dict], doc: Path, args, seconds: float) -> None:
    import pandas as pd

    from ptfer_core.artifacts import atomic_write_bytes, atomic_write_json

    table = merge_earlier(pd.DataFrame(rows), Path("assets/results/transferability.csv"))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(args.out) / "results.csv", index=False)
    # For the app: one tidy table (setting folded into the method label) and the micro-averaged summary.
    assets = Path("assets/results")
    app_table = table.assign(method=[f"{st} · {m}" if st else m for st, m in zip(table.setting, table.method)])
    atomic_write_bytes(assets / "transferability.csv", app_table.drop(columns=["tokens"], errors="ignore")
                       .to_csv(index=False).encode())
    summary = micro_table(table)
    n_rel = table.relation.nunique()
    atomic_write_json(assets / "transferability-summary.json", {
        "relations": sorted(table.relation.unique()), "doc": "docs/transferability.md",
        "micro_p_at_1": {d: {f"{st} · {m}" if st else m: round(v, 2) for (st, m), v in col.dropna().items()}
                         for d, col in summary.items()}})
    lines = ["# Transferability on the real causal pair (SmolLM2-135M ↔ Gemma-3-270M)", "",
             f"Command: `python benchmarks/transferability.py --relations {args.relations} --settings {args.settings} "
             f"--epochs {args.epochs} --max-train {args.max_train} --steps {args.steps} --seed {args.seed}` "
             f"(this invocation: {seconds / 60:.0f} min on a 2-core CPU; finished cells are reused). Test split of the "
             "seeded 60/20/20 split; candidates = common vocabulary ∩ single tokens of the target; micro-averaged P@1 "
             f"(all correct / all facts). Source prompts: {args.epochs} epochs on at most {args.max_train} training "
             "facts per relation (CPU budget), best epoch on the source's dev split. Every transfer variant selects by "
             "matching loss (no target labels); the projector is chosen on target dev as in the paper. Settings: "
             + "; ".join(f"`{k}` = {v}" for k, v in SOURCE_SETTINGS.items()) + ".", "",
             f"## Summary: micro-averaged P@1 over {n_rel} relations", "",
             "| setting | method | " + " | ".join(summary.columns) + " |", "|---|---|" + "---:|" * len(summary.columns)]
    for (setting, method), r in summary.iterrows():
        lines.append(f"| {setting or '(any)'} | {method} | " + " | ".join("" if v != v else f"{v:.1f}" for v in r) + " |")
    lines.append("")
    for setting in [s for s in table["setting"].unique() if s]:
        sub = table[(table["setting"].isin([setting, ""]))]
        lines += [f"## Source setting: {setting}", ""]
        for (src, tgt), _ in sub[sub.source != ""].groupby(["source", "target"]):
            part = sub[((sub.source == src) & (sub.target == tgt)) | ((sub.source == "") & (sub.target == tgt))]
            part = part[part.relation.isin(set(part[part.source == src].relation))]
            pivot = part.pivot_table(index="method", columns="relation", values="p_at_1", aggfunc="first")
            micro = part.groupby("method")[["n_correct", "n_facts"]].sum()
            pivot["micro"] = 100 * micro["n_correct"] / micro["n_facts"].clip(lower=1)
            lines += [f"### {src} → {tgt}", "", "| method | " + " | ".join(pivot.columns) + " |",
                      "|---|" + "---:|" * len(pivot.columns)]
            for method, r in pivot.sort_values("micro", ascending=False).iterrows():
                lines.append(f"| {method} | " + " | ".join("" if v != v else f"{v:.1f}" for v in r) + " |")
            lines.append("")
    marker = "<!-- notes: kept when the script rewrites this file -->"
    notes = doc.read_text().split(marker, 1)[1] if doc.is_file() and marker in doc.read_text() else "\n"
    atomic_write_bytes(doc, ("\n".join(lines) + "\n" + marker + notes).encode())


if __name__ == "__main__":
    main()
