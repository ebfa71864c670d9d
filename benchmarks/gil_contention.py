"""How much a pure-Python thread slows a torch forward pass, at Python's default GIL switch interval and the app's.

The app runs background warm-ups (reading a 262k-word vocabulary is pure Python) and every session's page in the
same process as a user's transfer. A torch thread releases the GIL inside each op and must get it back before the
next one; at the default 5 ms switch interval, a thread busy in Python makes it wait. This times one forward pass
of a real model (one torch thread, as the app runs) alone, then next to a thread doing pure-Python work, at each
switch interval. The app sets `ptfer_app.services.SWITCH_INTERVAL_S`.

    python benchmarks/gil_contention.py --model gemma3-270m
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import torch

from ptfer_core.loading import load_model


def busy_in_python(stop: threading.Event) -> None:
    while not stop.is_set():
        [str(i) for i in range(10_000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--positions", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    lm = load_model(args.model)
    x = torch.randn(args.rows, args.positions, lm.width)

    def forward() -> float:
        with torch.no_grad():
            started = time.perf_counter()
            lm.model(inputs_embeds=x)
            return time.perf_counter() - started

    forward()
    alone = min(forward() for _ in range(args.repeats))
    print(f"{args.model}, one forward pass of {args.rows}x{args.positions} positions, one torch thread")
    print(f"alone: {alone:.2f} s")
    default = sys.getswitchinterval()
    for interval in (0.005, 0.0005):
        sys.setswitchinterval(interval)
        stop = threading.Event()
        thread = threading.Thread(target=busy_in_python, args=(stop,))
        thread.start()
        time.sleep(0.2)
        took = min(forward() for _ in range(args.repeats))
        stop.set()
        thread.join()
        print(f"next to a busy Python thread, interval {interval * 1e3:g} ms: {took:.2f} s ({took / alone:.1f}x)")
    sys.setswitchinterval(default)


if __name__ == "__main__":
    main()
