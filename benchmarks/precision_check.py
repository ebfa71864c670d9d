"""What `precision=auto` picks on this machine, and why: one-thread matmul GFLOP/s in float32 and bfloat16.

python benchmarks/precision_check.py
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ptfer_core.config import resolve_precision


def gflops(dtype, size: int, repeats: int) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "float32_gflops": round(gflops(torch.float32, args.size, args.repeats), 1),
        "bfloat16_gflops": round(gflops(torch.bfloat16, args.size, args.repeats), 1),
        "auto_resolves_to": resolve_precision("auto").value,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
