"""Baseline scores (manual, discretised, random) of every shipped relation on the real pair, both directions, as
the app's *Run transfer* computes them: written to assets/baseline-scores/, a read-only root of the app's score
cache (`compare.cached_eval`), so a live transfer on a shipped relation scores only its own prompt.

    .venv/bin/python grids/ship-baseline-scores.py                 (every relation with shipped source prompts)
    .venv/bin/python grids/ship-baseline-scores.py --relations P36,P17

Each score is keyed by the target's weights hash, the task, the test facts, the precision and the baseline's
inputs (template, seed, source prompt digest): a changed model, split or prompt misses the shipped score and is
computed as before. One torch thread, as the app runs.
"""

from __future__ import annotations

import argparse
import time

import torch

from ptfer_core.compare import compare_and_wait
from ptfer_core.errors import PTferError
from ptfer_core.loading import load_model
from ptfer_core.paths import REPO_ROOT, SHIPPED_PROMPTS, SHIPPED_SCORES
from ptfer_core.runs import PromptStore, TaskData
from ptfer_core.settings import BUDGET_MAX_DEV, overrides_for, recipe_settings

PAIR = ("smollm2-135m", "gemma3-270m")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relations", default=None, help="comma list (default: every relation in assets/grid-real)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lms = {name: load_model(name) for name in PAIR}
    settings = recipe_settings(overrides=overrides_for(list(PAIR)))  # the app's default
    store = PromptStore(SHIPPED_PROMPTS[0], SHIPPED_PROMPTS[1:])  # finds only: every source here is shipped
    shipped = sorted(p.name for p in (REPO_ROOT / "assets" / "grid-real" / "prompts" / PAIR[0]).iterdir())
    for rid in args.relations.split(",") if args.relations else shipped:
        data = TaskData.load(rid, max_dev=BUDGET_MAX_DEV)
        for source, target in (PAIR, PAIR[::-1]):
            if store.find(lms[source], data, settings.tune) is None:
                print(f"{rid} {source} → {target}: no shipped source prompt for these settings; skipped")
                continue
            started = time.perf_counter()
            try:
                outcome = compare_and_wait(
                    sources=[(source, lms[source])],
                    target=lms[target],
                    data=data,
                    settings=settings,
                    store=store,
                    cache=SHIPPED_SCORES,
                )
            except PTferError as exc:
                raise PTferError(f"{rid} {source} → {target}: {exc}") from None
            scores = {k: round(v["p_at_1"], 1) for k, v in outcome.scores.items()}
            print(f"{rid} {source} → {target}: {time.perf_counter() - started:.0f} s {scores}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
