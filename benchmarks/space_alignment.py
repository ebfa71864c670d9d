"""How well the two models' relative spaces line up, per space mode, before any prompt is involved.

For words that both models have but that are not anchors, the source embedding is encoded in the source's
relative space and matched against every shared word's encoding in the target (`analysis.word_match_rate`).
A relative transfer can only carry what this matching gets right.

    python benchmarks/space_alignment.py --source smollm2-135m --target gemma3-270m
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from ptfer_core.analysis import word_match_rate
from ptfer_core.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="smollm2-135m")
    ap.add_argument("--target", default="gemma3-270m")
    ap.add_argument("--spaces", default="raw,centred,standardised,standardised+csls",
                    help="space modes; '+csls' adds the hub penalty to the word matching")
    ap.add_argument("--n-words", type=int, default=200)
    ap.add_argument("--pool", type=int, default=4000, help="probe among this many most frequent non-anchor words")
    ap.add_argument("--anchors", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: load_model(name) for name in (args.source, args.target)}
    rows = []
    for src, tgt in [(args.source, args.target), (args.target, args.source)]:
        for space in args.spaces.split(","):
            t0 = time.perf_counter()
            mode, _, extra = space.partition("+")
            rate, pairs = word_match_rate(models[src], models[tgt], mode, args.n_words, args.pool, args.anchors,
                                          hub_penalty=extra == "csls")
            rows.append({"source": src, "target": tgt, "space": space, "match_rate": rate,
                         "seconds": time.perf_counter() - t0, "examples": pairs[:12]})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.n_words} probe words among the {args.pool} most frequent shared non-anchor words; "
          f"{args.anchors} anchors\n\n| direction | space | words matched |\n|---|---|---:|")
    for r in rows:
        print(f"| {r['source']} → {r['target']} | {r['space']} | {100 * r['match_rate']:.1f} % |")


if __name__ == "__main__":
    main()
