"""Loading a fetched model's tokenizer: AutoTokenizer against `loading.fetched_tokenizer`, and `load_model` whole.

Each measurement in a fresh Python process (transformers imported before the clock starts), the two ways in turn
(A B, B A, ...), median of `--rounds`. Needs the real models (`ptfer models fetch`).

    .venv/bin/python benchmarks/tokenizer_load.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = {
    "AutoTokenizer": "from transformers import AutoTokenizer as T; load = lambda: T.from_pretrained(FOLDER)",
    "fetched_tokenizer": "from ptfer_core.loading import fetched_tokenizer; load = lambda: fetched_tokenizer(FOLDER)",
    "load_model (whole)": "from ptfer_core.loading import load_model; load = lambda: load_model(NAME)",
}
TIMED = """import time, transformers, torch
from pathlib import Path
from ptfer_core.loading import resolve_model
NAME = {name!r}; FOLDER = Path(resolve_model(NAME))
{code}
start = time.perf_counter(); load(); print(time.perf_counter() - start)
"""


def once(name: str, way: str) -> float:
    out = subprocess.run([sys.executable, "-c", TIMED.format(name=name, code=CODE[way])], capture_output=True,
                         text=True, cwd=ROOT, check=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="gemma3-270m,smollm2-135m")
    args = ap.parse_args()
    from ptfer_core.fetch import is_fetched

    for name in args.models.split(","):
        if not is_fetched(name):
            sys.exit(f"tokenizer_load: {name} is not fetched (ptfer models fetch {name})")
        times: dict[str, list[float]] = {way: [] for way in CODE}
        for r in range(args.rounds):
            for way in list(CODE)[:: -1 if r % 2 else 1]:
                times[way].append(once(name, way))
        for way, values in times.items():
            print(f"{name:14s} {way:20s} median {statistics.median(values):.2f} s (min {min(values):.2f}, "
                  f"max {max(values):.2f}, {args.rounds} fresh processes)")  # fmt: skip


if __name__ == "__main__":
    main()
