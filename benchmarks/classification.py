"""The paper's Table 6 (classification transfer) on the real pair, read from the classification grid's cells.

The numbers come from one pipeline, the grid (`ptfer grid --config grids/real-classification.yaml`), so every cell
is resumable and recorded with its settings; this script lays them out as the paper does: methods (transferred
once per recipe) × direction, accuracy with the number of test examples, macro-F1, and the seconds per cell.

    ptfer grid --config grids/real-classification.yaml --out assets/grid-classification --threads 1
    ptfer grid --config grids/real-dbpedia.yaml --out assets/grid-dbpedia --threads 2
    python benchmarks/classification.py --results assets/grid-classification/results.csv \
        assets/grid-dbpedia/results.csv --out docs/classification.md

`--out` rewrites only what follows the line `<!-- generated -->` (the hand-written account of how the cells were
made stays above it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ptfer_core.files import atomic_write_bytes

MARKER = "<!-- generated -->"
ORDER = ["manual", "random", "direct-tuning", "discretization", "projector", "transfer"]


def table_6(results: pd.DataFrame) -> tuple[str, list[str]]:
    ok = results[results["p_at_1"].notna() & (results["n_facts"] > 0)].copy()
    # Target-only methods (manual, random, direct tuning) belong to every direction that ends at their target.
    rows, lines = [], []
    for task in sorted(ok["relation"].unique()):
        sub = ok[ok.relation == task]
        pairs = sorted({(s, t) for s, t in zip(sub.source, sub.target) if isinstance(s, str) and s})
        header = "| method | recipe | " + " | ".join(f"{s} → {t}" for s, t in pairs) + " |"
        lines += [f"## {task}: accuracy % (macro-F1 %, test examples, seconds per cell)", "", header]
        lines.append("|---|---|" + "---:|" * len(pairs))
        recipes = sorted(sub.recipe.unique())
        # manual and random do not depend on the recipe: one row; the rest once per recipe (its own tuned prompts)
        plan = [(m, "—") for m in ("manual", "random")] + [
            (m, r) for r in recipes for m in ORDER if m not in ("manual", "random")
        ]
        for method, recipe in plan:
            msub = sub[sub.method == method]
            if recipe != "—":
                msub = msub[msub.recipe == recipe]
            if not len(msub):
                continue
            cells = []
            for s, t in pairs:
                pick = msub[msub.target == t]
                if method in ("discretization", "projector", "transfer"):
                    pick = pick[pick.source == s]
                if not len(pick):
                    cells.append("—")
                    continue
                r = pick.iloc[0]
                cells.append(
                    f"{r['p_at_1']:.1f} ({r.get('macro_f1', float('nan')):.1f}, n={int(r['n_facts'])}, "
                    f"{r['seconds']:.0f} s)"
                )
                rows.append({"task": task, "method": method, "recipe": recipe, "direction": f"{s} → {t}",
                             "accuracy": float(r["p_at_1"]), "n": int(r["n_facts"])})  # fmt: skip
            lines.append(f"| {method} | {recipe} | " + " | ".join(cells) + " |")
        lines.append("")
    verdicts = []
    frame = pd.DataFrame(rows)
    for (task, direction), group in frame.groupby(["task", "direction"]) if len(frame) else []:
        acc = {(m, r): a for m, r, a in zip(group.method, group.recipe, group.accuracy)}
        manual = acc.get(("manual", "—"))
        for (method, recipe), value in acc.items():
            if method != "transfer":
                continue
            said = [f"transferred ({recipe}) {value:.1f}"]
            for name, other in (("manual", manual), ("discretisation", acc.get(("discretization", recipe)))):
                if other is not None:
                    said.append(f"{'beats' if value > other else 'does not beat'} {name} {other:.1f}")
            verdicts.append(f"- {task}, {direction}: " + ", ".join(said))
    return "\n".join(lines), verdicts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", nargs="+", default=["assets/grid-classification/results.csv"])
    parser.add_argument("--out", default=None, help="also write the markdown here, below its generated marker")
    args = parser.parse_args(argv)
    missing = [p for p in args.results if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"error: {missing[0]} does not exist; run the grid first (see this script's doc)")
    text, verdicts = table_6(pd.concat([pd.read_csv(p) for p in args.results], ignore_index=True))
    report = text + "\n## Does the transferred prompt beat manual and discretisation?\n\n" + "\n".join(verdicts) + "\n"
    print(report)
    if args.out:
        out = Path(args.out)
        old = out.read_text(encoding="utf-8") if out.is_file() else ""
        kept = old.split(MARKER)[0] if MARKER in old else ""
        atomic_write_bytes(out, (kept + MARKER + "\n\n" + report if kept else report).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
