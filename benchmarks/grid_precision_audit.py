"""Which precision each recipe's rows of a grid were scored in: the manual template, re-scored here in float32 and
in bfloat16 on every relation and target, against the grid's manual rows per recipe.

The grid config's `eval_precision: auto` means bfloat16 on a CPU with AVX-512 and float32 on one without, so a grid
built in parts on different machines can hold rows of both (the manual template's score is the same prompt every
time: any difference between recipes is the precision).

    .venv/bin/python benchmarks/grid_precision_audit.py assets/grid-real   (~6 min on 2 cores, real models)
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ptfer_core.evaluation import Prompt, evaluate  # noqa: E402
from ptfer_core.loading import load_model  # noqa: E402
from ptfer_core.runs import TaskData  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grid", type=Path, help="a grid folder with results.csv and config.json")
    args = ap.parse_args()
    table = pd.read_csv(args.grid / "results.csv")
    manual = table[(table.method == "manual") & table.n_correct.notna() & (table.n_facts > 0)]
    config = pd.read_json(args.grid / "config.json", typ="series")
    matches: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    for target in sorted(manual.target.unique()):
        lm = load_model(target)
        for relation in sorted(manual[manual.target == target].relation.unique()):
            data = TaskData.load(relation, None, int(config.split_seed), config.max_dev, config.max_test)
            test, candidates = data.splits[config.eval_split], data.candidates(lm)
            correct = {
                p: evaluate(lm, Prompt.manual(data.task), test, candidates, precision=p).n_correct
                for p in ("float32", "bfloat16")
            }
            rows = manual[(manual.target == target) & (manual.relation == relation)]
            for recipe, n in zip(rows.recipe, rows.n_correct):
                same = [p for p, c in correct.items() if c == n]
                key = "both" if len(same) == 2 else same[0] if same else "neither"
                matches[(recipe, target)][key] += 1
            print(relation, target, correct, dict(zip(rows.recipe, rows.n_correct)), flush=True)
    print("\n| recipe | target | relations matching float32 only | bfloat16 only | both | neither |")
    print("|---|---|---:|---:|---:|---:|")
    for (recipe, target), c in sorted(matches.items()):
        print(f"| {recipe} | {target} | {c['float32']} | {c['bfloat16']} | {c['both']} | {c['neither']} |")


if __name__ == "__main__":
    main()
