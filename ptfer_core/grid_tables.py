"""The grid's tables: the tidy CSV/Parquet, and a markdown summary in the paper's layout with the evidence for
(or against) each of the paper's claims on the models run.

Both averages are always named: **relation mean** (mean of per-relation P@1: the paper's "micro") and **pooled**
(all correct over all facts). Rows that could not run (not applicable, with the reason) are listed, not averaged.
"""

from __future__ import annotations

import io
from pathlib import Path

from .files import atomic_write_bytes

COLUMNS = [
    "relation",
    "relation_type",
    "recipe",
    "method",
    "source",
    "target",
    "p_at_1",
    "n_facts",
    "n_correct",
    "seconds",
    "seed",
    "matching_loss",
    "selected_step",
    "dev_p_at_1",
    "self_cosine_min",
    "self_cosine_mean",
    "self_cosine_unnormalised_min",
    "macro_f1",
    "error",
]
# The grid's methods, in the paper's table order (the grid validates configs against this; tables sort by it).
TARGET_METHODS = ("manual", "random", "direct-tuning")  # a target's own baselines: no source model involved
GRID_METHODS = (
    "manual",
    "random",
    "direct-tuning",
    "direct-transfer",
    "discretization",
    "projector",
    "transfer",
    "self-transfer",
    "dual-source",
)


def tidy(rows: list[dict]):
    import pandas as pd

    table = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in table.columns:
            table[col] = None
    return table[COLUMNS + [c for c in table.columns if c not in COLUMNS]]


def write_tables(rows: list[dict], out: Path, config=None):
    table = tidy(rows)
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    atomic_write_bytes(out / "results.csv", buf.getvalue().encode())
    if len(table):
        pq = io.BytesIO()
        table.astype({c: "object" for c in ("error", "source", "relation_type")}).to_parquet(pq, index=False)
        atomic_write_bytes(out / "results.parquet", pq.getvalue())
    split = getattr(config, "eval_split", "test")
    atomic_write_bytes(out / "summary.md", summary_markdown(table, split).encode())
    return table


def scored(table):
    return table[table["p_at_1"].notna() & (table["n_facts"].fillna(0) > 0)] if len(table) else table


def split_by_source(table):
    """Rows of a method that reaches one target from several sources, told apart by their source ("transfer ←
    tiny:bert"): averaged under one name they gave a number no run produced (33.3 and 6.7 shown as 20.0)."""
    if not len(table) or "source" not in table.columns:
        return table
    source = table["source"].fillna("").astype(str).replace("—", "")
    recipe = table["recipe"] if "recipe" in table.columns else ""
    # relations and classification tasks are never averaged together, so sources are told apart within each kind
    kind = table["relation_type"].astype(str).eq("classification") if "relation_type" in table.columns else False
    groups = table.assign(_source=source, _recipe=recipe, _kind=kind).groupby(["_recipe", "_kind", "method", "target"])
    several = groups["_source"].transform("nunique").gt(1) & source.ne("")
    if not several.any():
        return table
    out = table.copy()
    out.loc[several, "method"] = out.loc[several, "method"].astype(str) + " ← " + source[several]
    return out


def method_order(method: str) -> tuple:
    """GRID_METHODS' order, a method told apart by its source after its own (`split_by_source`)."""
    base = str(method).split(" ← ")[0]
    return (GRID_METHODS.index(base) if base in GRID_METHODS else len(GRID_METHODS), str(method))


def averages(table, by: list[str]):
    """Per group: relation mean, pooled P@1, relations and facts counted."""
    ok = scored(table)
    if not len(ok):
        return ok
    grouped = ok.groupby(by, dropna=False)
    out = grouped.agg(
        relation_mean=("p_at_1", "mean"),
        n_correct=("n_correct", "sum"),
        n_facts=("n_facts", "sum"),
        n_relations=("relation", "nunique"),
    )
    out["pooled"] = 100.0 * out["n_correct"] / out["n_facts"].clip(lower=1)
    return out.reset_index()


def paper_layout(cells, value: str = "relation_mean"):
    """Methods × targets (the paper's Tables 2-3) from one recipe's `averages(…, ["method", "target"])`."""
    pivot = cells.pivot(index="method", columns="target", values=value)
    return pivot.loc[sorted(pivot.index, key=method_order)]


def _markdown(pivot, fmt: str = "{:.1f}") -> list[str]:
    lines = ["| method | " + " | ".join(map(str, pivot.columns)) + " |", "|---|" + "---:|" * len(pivot.columns)]
    for method, row in pivot.iterrows():
        lines.append(f"| {method} | " + " | ".join("—" if v != v else fmt.format(v) for v in row) + " |")
    return lines


def precision_note(rows) -> str | None:
    """A line when the rows were scored in more than one precision (`eval_precision: auto` on machines with and
    without AVX-512): bfloat16 moves the manual template by up to 3 points on a relation."""
    if "precision" not in rows.columns or rows["precision"].dropna().nunique() < 2:
        return None
    parts = []
    for precision, group in rows.dropna(subset=["precision"]).groupby("precision"):
        tasks = sorted(group["relation"].unique(), key=lambda t: (len(str(t)), str(t)))
        shown = ", ".join(map(str, tasks)) if len(tasks) <= 4 else f"{len(tasks)} tasks"
        parts.append(f"{precision} ({shown})")
    return "Scored in more than one precision: " + "; ".join(parts) + ". Compare within one precision."


def summary_markdown(table, split: str = "test") -> str:
    if not len(table):
        return "# Results\n\nNo finished cells yet.\n"
    n_rel = table["relation"].nunique()
    # a grid of classification tasks scores accuracy over its tasks, and says so
    tasks_only = "relation_type" in table.columns and table["relation_type"].astype(str).eq("classification").all()
    if tasks_only:
        heading = f"# Results: accuracy on the {split} split over {n_rel} classification task(s)"
        terms = (
            "**task mean** = mean of per-task accuracy (named *relation mean* in the tables); **pooled** = all "
            "correct answers over all examples. Not-applicable cells are listed at the end, not averaged."
        )
    else:
        heading = f"# Results: P@1 on the {split} split over {n_rel} task(s)"
        terms = (
            "**relation mean** = mean of per-relation P@1 (the paper's and OptiPrompt's \"micro\" average); "
            "**pooled** = all correct answers over all facts. Not-applicable cells are listed at the end, not averaged."
        )
    lines = [heading, "", terms, ""]
    for recipe in sorted(table["recipe"].dropna().unique()):
        sub = split_by_source(table[table["recipe"] == recipe])
        cells = averages(sub, ["method", "target"])  # both layouts and the relation counts come from these
        if not len(cells):
            continue
        n_recipe = sub["relation"].nunique()
        over = f" ({n_recipe} of {n_rel} tasks)" if n_recipe < n_rel else ""  # a partial recipe says so
        lines += [f"## Recipe `{recipe}`: relation mean{over}", ""] + _markdown(paper_layout(cells)) + [""]
        mixed = precision_note(sub)
        if mixed:
            lines += [mixed, ""]
        if cells["n_relations"].nunique() > 1:  # a part still running: cells average different relation sets
            uneven = cells.sort_values(["method", "target"])
            lines += [
                "Cells average different numbers of relations (a grid still being built): "
                + ", ".join(f"{m} → {t}: {n}" for m, t, n in uneven[["method", "target", "n_relations"]].values),
                "",
            ]
        lines += [f"### Recipe `{recipe}`: pooled", ""] + _markdown(paper_layout(cells, "pooled")) + [""]
        by_type = averages(sub, ["relation_type", "method"])
        if len(by_type) and by_type["relation_type"].nunique() > 1:
            pivot_t = by_type.pivot(index="method", columns="relation_type", values="relation_mean")
            pivot_t = pivot_t.loc[sorted(pivot_t.index, key=method_order)]
            sizes = sub.groupby("relation_type")["relation"].nunique()
            pivot_t.columns = [f"{t} ({sizes[t]} relation{'' if sizes[t] == 1 else 's'})" for t in pivot_t.columns]
            lines += [f"### Recipe `{recipe}`: by relation type (relation mean, all targets)", ""]
            lines += _markdown(pivot_t) + [""]
    lines += claims_markdown(table)
    failed = table[table["error"].notna()]
    if len(failed):
        lines += ["## Cells that did not run", ""]
        for (method, error), group in failed.groupby(["method", "error"]):
            shown = ", ".join(sorted(set(group["relation"])))[:200]
            lines.append(f"- {method} ({len(group)}): {error} — {shown}")
    return "\n".join(lines) + "\n"


def _paired(table, method_a: str, method_b: str, by: str = "method", **match) -> tuple[float, float, int] | None:
    """Means of two methods (or two values of another column `by`) over the relations both have scores for, so a
    partial grid compares like with like."""
    sub = scored(table)
    for k, v in match.items():
        sub = sub[sub[k] == v]
    a = sub[sub[by] == method_a].groupby("relation")["p_at_1"].mean()
    b = sub[sub[by] == method_b].groupby("relation")["p_at_1"].mean()
    both = a.index.intersection(b.index)
    if not len(both):
        return None
    return float(a[both].mean()), float(b[both].mean()), len(both)


def _versus(a: float, b: float) -> str:
    """'>', '<' or '=' between two means as printed (one decimal), so a claim never reads '> 0.0 (0.0)'."""
    a, b = round(a, 1), round(b, 1)
    return ">" if a > b else "<" if a < b else "="


def claims_markdown(table) -> list[str]:
    """Which of the paper's claims hold here, each with its numbers (relation means per target)."""
    lines = [
        "## Which of the paper's claims hold here",
        "",
        "Each comparison averages over the relations both sides have (n), so a partial grid compares like with like.",
        "",
    ]
    targets = sorted(table["target"].dropna().unique())
    for recipe in sorted(table["recipe"].dropna().unique()):
        for target in targets:
            where = {"recipe": recipe, "target": target}
            parts = []
            for other in ("discretization", "projector", "manual", "random"):
                pair = _paired(table, "transfer", other, **where)
                if pair is not None:
                    t, o, n = pair
                    parts.append(f"{_versus(t, o)} {other} {o:.1f} (transferred {t:.1f}, n={n})")
            if not parts:
                continue
            lines.append(f"- `{recipe}` → {target}: transferred " + "; ".join(parts))
            pair = _paired(table, "dual-source", "transfer", **where)
            if pair is not None:
                dual, single, n = pair
                duals = table[(table.recipe == recipe) & (table.target == target) & (table.method == "dual-source")]
                # The paper's dual rows combine two *other* models; with only two models that is moot.
                if any(target in sources.split("+") for sources in duals["source"].dropna()):
                    lines.append(
                        f"  - dual-source {dual:.1f} vs single-source {single:.1f} (n={n}): not the paper's claim "
                        f"here: the dual cells' sources include {target} itself (its own prompt, self-transfer), "
                        "which needs no transfer; the paper's dual rows combine two other models"
                    )
                else:
                    lines.append(
                        f"  - dual-source {dual:.1f} vs single-source {single:.1f} (n={n}): "
                        f"{'holds' if _versus(dual, single) == '>' else 'does not hold'} (dual > single)"
                    )
            pair = _paired(table, "self-transfer", "direct-tuning", **where)
            if pair is not None:
                selfed, tuned, n = pair
                cos = scored(
                    table[(table.recipe == recipe) & (table.target == target) & (table.method == "self-transfer")]
                )
                lines.append(
                    f"  - self-transfer {selfed:.1f} vs the tuned prompt itself {tuned:.1f} (n={n}; per-vector "
                    f"cosine to the source: min {cos['self_cosine_min'].min():.4f})"
                )
    for target in targets:
        pair = _paired(table, "paper", "paper-zero-shot", by="recipe", method="transfer", target=target)
        if pair is not None:
            dev, loss, n = pair
            lines.append(
                f"- loss vs dev selection → {target}: zero-shot (loss) {loss:.1f} vs target-dev {dev:.1f} "
                f"(n={n}; {'within' if abs(dev - loss) <= 2 else 'not within'} 2 points)"
            )
    return lines + [""]
