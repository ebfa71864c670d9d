"""The faithful reproduction and the exact solver on the real models (issue: reproduce the paper faithfully).

Part 1, self-transfer (source = target, the grey diagonal of the paper's Table 3), per model and relation: the
tuned source prompt's test P@1, then the prompt carried back through the relative space by
  - the reference's Adam search (``paper-zero-shot``: 2,000 steps, Xavier start, Eq. 6 in the loop, lowest loss),
  - the project's default (``studio``: the closed form at the source vectors' relative lengths, then Eq. 6 with the
    source prompt's own spread, ``normalization=relative``),
  - the closed form with the paper's global Eq. 6,
  - the closed form refined by L-BFGS with the global Eq. 6 inside the loop (``refined``),
with each vector's cosine to the source before normalisation (min over vectors), test P@1 and seconds.
Source prompts are the grid's shipped ones (`--source-recipe studio`, default) or the `paper` recipe's (OptiPrompt
start), read from the grid's prompt store when it has them, else tuned here with the same settings.

Part 2 (`--cross`), cross-model transfer in both directions of the same source prompts with the transfer of the
recipes `paper` (Adam, best target dev P@1 every 50 steps), `paper-zero-shot` (the same search, lowest loss: reused
from it) and `studio`: test P@1 per relation, the relation mean and the pooled average, seconds per transfer.
Part 3, the grid's cross-model rows (assets/grid-real/results.csv) summarised the same way.

    python benchmarks/recipes.py --out docs/recipes.json     # 7 relations × 2 models, ~25 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ptfer_core.evaluation import evaluate
from ptfer_core.loading import load_model
from ptfer_core.runs import PromptStore, TaskData, run
from ptfer_core.settings import recipe_settings

SOLVERS = {
    "Adam (paper-zero-shot)": ("paper-zero-shot", {}),
    "closed form, relative Eq. 6 (studio default)": ("studio", {}),
    "closed form, global Eq. 6": ("studio", {"normalization": "global"}),
    "refined, global Eq. 6": ("studio", {"solver": "refined", "normalization": "global"}),
}


def self_transfer(
    models: list[str], relations: list[str], store: PromptStore, max_train: int, max_dev: int, source_recipe: str
) -> list[dict]:
    rows = []
    for name in models:
        lm = load_model(name)
        for rid in relations:
            data = TaskData.load(rid, max_dev=max_dev)
            base = recipe_settings(source_recipe, {"tune": {"max_train": max_train}})
            source = store.get_or_tune(lm, data, base.tune, recipe=source_recipe)
            source_score = evaluate(
                lm, source.as_prompt(), data.splits["test"], data.candidates(lm), precision="auto"
            ).p_at_1
            for label, (recipe, transfer) in SOLVERS.items():
                settings = recipe_settings(recipe, {"transfer": transfer})
                started = time.perf_counter()
                out = run(
                    "transfer", data=data, target=lm, sources=[lm], settings=settings, given_prompts=[source],
                    precision="auto",
                )  # fmt: skip
                seconds = time.perf_counter() - started
                before = out.prompt.provenance.get("cosine_to_source_before_normalisation") or [float("nan")]
                after = torch.nn.functional.cosine_similarity(out.prompt.vectors, source.vectors, dim=-1)
                rows.append(
                    {
                        "model": name,
                        "relation": rid,
                        "type": data.task.type,
                        "solver": label,
                        "source_recipe": source_recipe,
                        "source_p_at_1": source_score,
                        "p_at_1": out.p_at_1,
                        "n_test": out.result.n_facts,
                        "cosine_before_min": min(before),
                        "cosine_after_min": float(after.min()),
                        "matching_loss": out.prompt.metrics["matching_loss"],
                        "seconds": seconds,
                    }
                )
                print(
                    f"{name} {rid} {label}: source {source_score:.1f} -> {out.p_at_1:.1f}, cos before "
                    f"{min(before):.4f} after {float(after.min()):.4f}, {seconds:.1f} s",
                    flush=True,
                )
    return rows


CROSS_RECIPES = ("paper", "paper-zero-shot", "studio")


def cross_transfer(
    models: list[str], relations: list[str], store: PromptStore, max_train: int, max_dev: int, source_recipe: str
) -> dict:
    """Each source prompt carried into the other model by each recipe's transfer; P@1 on the target's test facts."""
    lms = {name: load_model(name) for name in models}
    rows = []
    for rid in relations:
        data = TaskData.load(rid, max_dev=max_dev)
        tune = recipe_settings(source_recipe, {"tune": {"max_train": max_train}}).tune
        for source_name, target_name in ((a, b) for a in models for b in models if a != b):
            source = store.get_or_tune(lms[source_name], data, tune, recipe=source_recipe)
            for recipe in CROSS_RECIPES:
                started = time.perf_counter()
                out = run(
                    "transfer", data=data, target=lms[target_name], sources=[lms[source_name]],
                    settings=recipe_settings(recipe), given_prompts=[source], precision="auto",
                )  # fmt: skip
                rows.append(
                    {
                        "relation": rid,
                        "direction": f"{source_name} → {target_name}",
                        "recipe": recipe,
                        "p_at_1": out.p_at_1,
                        "n_correct": out.result.n_correct,
                        "n_test": out.result.n_facts,
                        "seconds": time.perf_counter() - started,
                    }
                )
                print(f"{rid} {source_name} → {target_name} {recipe}: {out.p_at_1:.1f} ({rows[-1]['seconds']:.1f} s)")
    averages = {}
    for row in rows:
        averages.setdefault(f"{row['recipe']}: {row['direction']}", []).append(row)
    return {
        "rows": rows,
        "averages": {
            key: {
                "relation_mean": sum(r["p_at_1"] for r in group) / len(group),
                "pooled": 100 * sum(r["n_correct"] for r in group) / sum(r["n_test"] for r in group),
                "seconds_per_transfer": sum(r["seconds"] for r in group) / len(group),
                "relations": len(group),
            }
            for key, group in averages.items()
        },
    }


def cross_model(results_csv: Path) -> dict:
    """Relation mean and pooled P@1 per recipe × direction for the transfer rows, with seconds per transfer."""
    import pandas as pd

    table = pd.read_csv(results_csv)
    ok = table[table["p_at_1"].notna() & (table["n_facts"] > 0)]
    out = {}
    for (recipe, method, source, target), group in ok.groupby(["recipe", "method", "source", "target"]):
        if method not in ("transfer", "self-transfer", "dual-source", "manual", "discretization", "direct-tuning"):
            continue
        out.setdefault(recipe, {})[f"{method}: {source or '-'} → {target}"] = {
            "relation_mean": float(group["p_at_1"].mean()),
            "pooled": float(100 * group["n_correct"].sum() / group["n_facts"].sum()),
            "relations": int(group["relation"].nunique()),
            "seconds_per_cell": float(group["seconds"].mean()),
        }
    return out


def markdown(report: dict) -> str:
    """The report as the tables quoted in docs/benchmarks.md."""
    short = {"smollm2-135m": "SmolLM2", "gemma3-270m": "Gemma"}
    rows = report["self_transfer"]
    solvers = list(dict.fromkeys(r["solver"] for r in rows))
    lines = [
        "Self-transfer, test P@1 (min cosine to the source before Eq. 6, seconds):",
        "",
        "| model | relation | type | n | source | " + " | ".join(solvers) + " |",
        "|---|---|---|---:|---:|" + "---:|" * len(solvers),
    ]
    for (model, rid), group in _grouped(rows, ("model", "relation")).items():
        by = {r["solver"]: r for r in group}
        first = group[0]
        cells = [f"{by[s]['p_at_1']:.1f} ({by[s]['cosine_before_min']:.4f}, {by[s]['seconds']:.0f} s)" for s in solvers]
        lines.append(
            f"| {short.get(model, model)} | {rid} | {first['type']} | {first['n_test']} | "
            f"{first['source_p_at_1']:.1f} | " + " | ".join(cells) + " |"
        )
    lines += ["", "Within 2 points of the source prompt:"]
    for s in solvers:
        ok = [abs(r["p_at_1"] - r["source_p_at_1"]) <= 2 for r in rows if r["solver"] == s]
        worst = min(r["p_at_1"] - r["source_p_at_1"] for r in rows if r["solver"] == s)
        lines.append(f"- {s}: {sum(ok)} of {len(ok)} (worst {worst:+.1f})")
    cross = report.get("cross_transfer")
    if cross:
        lines += ["", "Cross-model transfer of the same source prompts, test P@1:", ""]
        directions = list(dict.fromkeys(r["direction"] for r in cross["rows"]))
        lines.append("| recipe | " + " | ".join(f"{d}: relation mean / pooled / s" for d in directions) + " |")
        lines.append("|---|" + "---:|" * len(directions))
        for recipe in CROSS_RECIPES:
            cells = []
            for d in directions:
                a = cross["averages"].get(f"{recipe}: {d}")
                cells.append(
                    f"{a['relation_mean']:.1f} / {a['pooled']:.1f} / {a['seconds_per_transfer']:.0f}" if a else "—"
                )
            lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _grouped(rows: list[dict], keys: tuple[str, ...]) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--relations", default="P36,P17,P1412,P19,P103,P106,P1376")
    parser.add_argument("--store", default="assets/grid-real/prompts", help="where the grid keeps its tuned prompts")
    parser.add_argument("--results", default="assets/grid-real/results.csv")
    parser.add_argument(
        "--source-recipe", default="studio", help="whose tuning made the source prompts (studio: the shipped ones)"
    )
    parser.add_argument("--max-train", type=int, default=200)
    parser.add_argument("--max-dev", type=int, default=100)
    parser.add_argument("--out", default="docs/recipes.json")
    parser.add_argument("--cross", action="store_true", help="also transfer across the models with each recipe")
    parser.add_argument("--skip-self", action="store_true", help="keep part 1 from the existing --out file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models, relations = args.models.split(","), args.relations.split(",")
    store = PromptStore(args.store)
    budget = (args.max_train, args.max_dev, args.source_recipe)
    if args.skip_self and Path(args.out).is_file():
        report = {"self_transfer": json.loads(Path(args.out).read_text(encoding="utf-8"))["self_transfer"]}
    else:
        report = {"self_transfer": self_transfer(models, relations, store, *budget)}
    if args.cross:
        report["cross_transfer"] = cross_transfer(models, relations, store, *budget)
    if Path(args.results).is_file():
        report["grid_cross_model"] = cross_model(Path(args.results))
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
