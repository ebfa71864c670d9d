"""A live transfer as the app's "Run transfer" runs it, on warm models: time from the click to the result card.

The app's work function (`ptfer_core.compare.compare`) with the app's settings for real models (the recipe under
the CPU budget, so the grid's shipped source prompts are found), the app's prompt store roots, its shipped baseline
scores (assets/baseline-scores) and an empty baseline-score cache: first run of each relation on the server, then
again (every later run). A warm server has loaded the models and run the app's background warm-up
(`compare.warm_up`, timed separately) before anyone clicks; `--cold-tables` skips that warm-up and
`--no-shipped-scores` the shipped scores, to show what each saves. One torch thread, as the app uses per session.

    python benchmarks/live_transfer.py --relations P36,P17,P1412 --out docs/live_transfer.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from ptfer_core.compare import compare_and_wait, warm_up
from ptfer_core.loading import load_model
from ptfer_core.paths import SHIPPED_PROMPTS, SHIPPED_SCORES
from ptfer_core.runs import PromptStore, TaskData
from ptfer_core.settings import BUDGET_MAX_DEV, BUDGET_OVERRIDES, recipe_settings


def one_run(source, target, data, settings, store, cache, shipped=()) -> tuple[float, dict, dict]:
    started = time.perf_counter()
    outcome = compare_and_wait(
        sources=[(source.name, source)],
        target=target,
        data=data,
        settings=settings,
        store=store,
        cache=cache,
        shipped_scores=shipped,
    )
    seconds = time.perf_counter() - started
    parts = {k: round(v, 2) for k, v in outcome.timings.items()}
    return seconds, {k: round(v["p_at_1"], 1) for k, v in outcome.scores.items()}, parts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="smollm2-135m")
    parser.add_argument("--target", default="gemma3-270m")
    parser.add_argument("--relations", default="P36,P17,P1412")
    parser.add_argument("--out", default="docs/live_transfer.json")
    parser.add_argument("--cold-tables", action="store_true", help="skip the server's background warm-up")
    parser.add_argument("--no-shipped-scores", action="store_true", help="ignore assets/baseline-scores")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    source, target = load_model(args.source), load_model(args.target)
    settings = recipe_settings("studio", BUDGET_OVERRIDES)
    store = PromptStore(tempfile.mkdtemp(prefix="ptfer-live-"), SHIPPED_PROMPTS)
    relations = args.relations.split(",")
    warm_up_s = None
    if not args.cold_tables:  # what services.warm_up does in the background for the sidebar's pair and relation
        started = time.perf_counter()
        warm_up([source], target, TaskData.load(relations[0], max_dev=BUDGET_MAX_DEV), settings)
        warm_up_s = round(time.perf_counter() - started, 2)
        print(f"background warm-up (before any click): {warm_up_s:.1f} s", flush=True)
    shipped_scores = () if args.no_shipped_scores else (SHIPPED_SCORES,)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for rid in relations:
            data = TaskData.load(rid, max_dev=BUDGET_MAX_DEV)
            shipped = store.find(source, data, settings.tune) is not None
            first, scores, first_parts = one_run(source, target, data, settings, store, Path(cache), shipped_scores)
            again, _, again_parts = one_run(source, target, data, settings, store, Path(cache), shipped_scores)
            row = {"relation": rid, "shipped_source_prompt": shipped, "first_s": round(first, 2)}
            row |= {"again_s": round(again, 2), "scores": scores, "first_parts_s": first_parts}
            rows.append({**row, "again_parts_s": again_parts})
            print(f"{rid}: shipped {shipped}; first run {first:.1f} s {first_parts}, again {again:.1f} s "
                  f"{again_parts}; {scores}", flush=True)  # fmt: skip
    meta = {"source": args.source, "target": args.target, "warm_up_s": warm_up_s}
    meta |= {"shipped_scores": bool(shipped_scores)}
    meta |= {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_average": os.getloadavg()}
    Path(args.out).write_text(json.dumps({**meta, "runs": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
