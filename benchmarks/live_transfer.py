"""A live transfer as the app's "Run transfer" runs it, on warm models: time from the click to the result card.

The app's work function (`ptfer_core.compare.compare`) with the app's settings for real models (the recipe under
the CPU budget, so the grid's shipped source prompts are found), the app's prompt store roots and a baseline-score
cache: first with an empty cache (the first run of a relation on a server), then again (every later run). Models
are loaded before the clock starts (a warm server keeps them). One torch thread, as the app uses per session.

    python benchmarks/live_transfer.py --relations P36,P17,P1412 --out docs/live_transfer.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ptfer_core.compare import compare
from ptfer_core.jobs import Job
from ptfer_core.loading import load_model
from ptfer_core.paths import SHIPPED_PROMPTS
from ptfer_core.runs import PromptStore, TaskData
from ptfer_core.settings import BUDGET_MAX_DEV, BUDGET_OVERRIDES, recipe_settings


def one_run(source, target, data, settings, store, cache) -> tuple[float, dict]:
    started = time.perf_counter()
    job = Job(
        lambda job: compare(
            job, sources=[(source.name, source)], target=target, data=data, settings=settings, store=store, cache=cache
        ),
        "live",
    ).start()
    job.join(None)
    if job.error:
        raise RuntimeError(job.error)
    seconds = time.perf_counter() - started
    return seconds, {k: round(v["p_at_1"], 1) for k, v in job.result.scores.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="smollm2-135m")
    parser.add_argument("--target", default="gemma3-270m")
    parser.add_argument("--relations", default="P36,P17,P1412")
    parser.add_argument("--out", default="docs/live_transfer.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    source, target = load_model(args.source), load_model(args.target)
    settings = recipe_settings("studio", BUDGET_OVERRIDES)
    store = PromptStore(tempfile.mkdtemp(prefix="ptfer-live-"), SHIPPED_PROMPTS)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for rid in args.relations.split(","):
            data = TaskData.load(rid, max_dev=BUDGET_MAX_DEV)
            shipped = store.find(source, data, settings.tune) is not None
            first, scores = one_run(source, target, data, settings, store, Path(cache))
            again, _ = one_run(source, target, data, settings, store, Path(cache))
            row = {"relation": rid, "shipped_source_prompt": shipped, "first_s": round(first, 2)}
            rows.append({**row, "again_s": round(again, 2), "scores": scores})
            print(f"{rid}: shipped {shipped}; first run {first:.1f} s, again {again:.1f} s; {scores}", flush=True)
    Path(args.out).write_text(json.dumps({"source": args.source, "target": args.target, "runs": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
