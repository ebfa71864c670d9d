"""Where a cross-model transfer carries on the real pair: relations whose answer is written in the subject.

For each relation, the share of its test facts whose object appears in the subject ('Fiat Multipla' → Fiat), next to
the transferred prompt's P@1 per direction from the grid's table; then the mean share of the relations where the
transfer scores at least `--carries` points against the others. Reads only files (no model).

    python benchmarks/answer_in_subject.py [--results assets/grid-real/results.csv] [--recipe studio] [--carries 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import mean

import pandas as pd

from ptfer_core.data import load_split

ROOT = Path(__file__).resolve().parents[1]


def answer_in_subject_share(relation: str, data_dir=None) -> float:
    facts = load_split(relation, "test", data_dir)
    return 100.0 * sum(f.object in f.subject for f in facts) / len(facts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "assets" / "grid-real" / "results.csv")
    ap.add_argument("--recipe", default="studio")
    ap.add_argument("--carries", type=float, default=5.0, help="P@1 from which a transfer counts as carrying")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    table = pd.read_csv(args.results)
    transfer = table[(table.method == "transfer") & (table.recipe == args.recipe) & table.p_at_1.notna()]
    if transfer.empty:
        raise SystemExit(f"{args.results}: no transfer cells for recipe {args.recipe!r}")
    share = {r: answer_in_subject_share(r, args.data_dir) for r in sorted(transfer.relation.unique())}
    for (source, target), cells in transfer.groupby(["source", "target"]):
        p_at_1 = dict(zip(cells.relation, cells.p_at_1))
        carries = [r for r in p_at_1 if p_at_1[r] >= args.carries]
        rest = [r for r in p_at_1 if p_at_1[r] < args.carries]
        print(f"## {source} → {target} ({args.recipe}, {len(p_at_1)} relations)")
        print("| relation | transferred P@1 | test facts with the answer in the subject |\n|---|---:|---:|")
        for r in sorted(p_at_1, key=lambda r: -p_at_1[r])[:8]:
            print(f"| {r} | {p_at_1[r]:.1f} | {share[r]:.1f} % |")
        if carries and rest:
            print(
                f"\nRelations where the transfer scores ≥ {args.carries:g}: {len(carries)}, answer in the subject in "
                f"{mean(share[r] for r in carries):.0f} % of test facts (mean); the other {len(rest)}: "
                f"{mean(share[r] for r in rest):.0f} %.\n"
            )
        else:
            print(f"\nNo split: {len(carries)} relation(s) score ≥ {args.carries:g}.\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
