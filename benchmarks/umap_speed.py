"""Relative space's UMAP on a real model's anchors: seconds to fit the map of the first n anchors, after numba's
compile, with the checkout's `analysis.Map2D` (run it from a worktree to time another commit).

    .venv/bin/python benchmarks/umap_speed.py --anchors 1000,2000   (Gemma-3-270M, ~1 min)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ptfer_core.analysis import Map2D, anchor_coordinates  # noqa: E402
from ptfer_core.anchors import select_anchors  # noqa: E402
from ptfer_core.loading import load_model  # noqa: E402
from ptfer_core.paths import data_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--anchors", default="1000,2000", help="comma list of anchor counts")
    args = ap.parse_args()
    lm = load_model(args.model)
    anchors = select_anchors([lm], None, "common-vocab", "words", str(data_dir()))
    Map2D(np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32), "umap", 0)  # numba's compile, once
    for n in (int(x) for x in args.anchors.split(",")):
        rows, _, _ = anchor_coordinates(lm, anchors, n, "raw")
        started = time.perf_counter()
        Map2D(rows, "umap", 0)
        print(f"UMAP of {n} {args.model} anchors × {rows.shape[1]}: {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
