"""Is a tuned prompt a function of its settings and seed? Tunes one prompt several times in one process (with a draw
from torch's global generator in between, and two tunings at once in threads) and prints each run's dev and test
P@1 and its largest difference from the first run's vectors.

    .venv/bin/python benchmarks/determinism.py                        # the toy pair (seconds)
    .venv/bin/python benchmarks/determinism.py --model smollm2-135m --relation P103 --epochs 3 --max-train 320 \
        --init vocab-sample --placement prefix      # the PEFT comparison's settings (minutes)

Dropout (on by default, as OptiPrompt) drew its masks from torch's global generator until `ptfer_core.seeding`:
there, the same seed gave dev P@1 91.7, then 75.0, then 83.3 on the toy model.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-demo-gpt2")
    ap.add_argument("--relation", default="P103")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--init", default="random", help="the start vectors (TuneConfig.init)")
    ap.add_argument("--placement", default="postfix", help="where the vectors sit (TuneConfig.placement)")
    ap.add_argument("--data-dir", default=None, help="default: the miniature LAMA for tiny-demo models, else shared")
    args = ap.parse_args()

    import torch

    from ptfer_core.evaluation import evaluate
    from ptfer_core.loading import load_model
    from ptfer_core.mini_lama import write_mini_lama
    from ptfer_core.runs import TaskData
    from ptfer_core.settings import TuneConfig
    from ptfer_core.tuning import tune_prompt

    data_dir = args.data_dir
    if data_dir is None and args.model.startswith("tiny"):
        import tempfile

        data_dir = str(write_mini_lama(Path(tempfile.mkdtemp()) / "lama"))
    lm = load_model(args.model)
    data = TaskData.load(args.relation, data_dir)
    cands = data.candidates(lm)
    config = TuneConfig(
        n_vectors=3 if args.model.startswith("tiny") else 5,
        epochs=args.epochs,
        lr=0.05 if args.model.startswith("tiny") else 3e-3,
        batch_size=8 if args.model.startswith("tiny") else 16,
        max_train=args.max_train,
        init=args.init,
        placement=args.placement,
        precision="float32",
        seed=0,
    )
    print(f"{args.model} {args.relation}: dropout {config.dropout}, seed {config.seed}, {args.epochs} epochs")

    def tuned():
        return tune_prompt(lm, data.task, data.splits["train"], data.splits["dev"], cands, config)

    runs = {"first": tuned()}
    runs["again"] = tuned()
    torch.rand(1)
    runs["after a global draw"] = tuned()
    both: dict = {}
    threads = [threading.Thread(target=lambda k=k: both.__setitem__(k, tuned())) for k in ("thread 1", "thread 2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs.update(both)
    first = runs["first"].vectors
    for label, prompt in runs.items():
        test = evaluate(lm, prompt.as_prompt(), data.splits["test"], cands).p_at_1
        diff = (prompt.vectors - first).abs().max().item()
        print(
            f"  {label:20s} dev P@1 {prompt.metrics.get('dev_p_at_1', float('nan')):5.1f}  test P@1 {test:5.1f}  "
            f"max |vectors - first| {diff:.3g}"
        )


if __name__ == "__main__":
    main()
