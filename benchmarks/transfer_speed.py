"""Wall time of the search and of tuning, each against the reference procedure, measured in one run.

1. Transfer: `loss` selection with early stopping (ours) vs `dev` selection evaluating target dev P@1
   every 50 steps over 2000 steps (the reference PTfer procedure). Both start from the same source prompt.
2. Tuning: our step (candidate-row loss at the answer position) vs an OptiPrompt-style step (full-vocabulary
   logits at every position, loss over the full vocabulary), same batches, same number of steps.
3. Peak resident memory of the process.

    python benchmarks/transfer_speed.py --source smollm2-135m --target gemma3-270m --relation P103
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ptfer_core.artifacts import SoftPrompt
from ptfer_core.data import get_relation, load_split
from ptfer_core.evaluation import candidates_for, evaluate, scorable_facts
from ptfer_core.models import load_model
from ptfer_core.transfer import TransferConfig, transfer_prompt
from ptfer_core.tuning import TuneConfig, initial_vectors, tune_prompt


def optiprompt_style_step(lm, template, subjects, gold_token_ids, vectors, optimizer):
    """Reference-style step: full forward through the LM head at every position, full-vocabulary loss."""
    batch = lm.encode(template, subjects)
    embeds = lm.prompt_embeddings(batch, vectors)
    logits = lm.model(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits  # [B, L, V]
    answer = logits[torch.arange(len(subjects)), batch.answer_positions]
    loss = F.cross_entropy(answer.float(), gold_token_ids)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def transfer_timings(args, src, tgt, relation, train, dev, test, cs, ct, report: dict) -> None:
    """1. One transfer with loss selection (early stopping) vs dev selection every 50 steps over 2000 steps."""
    prompt = SoftPrompt.load(args.prompt) if args.prompt else tune_prompt(
        src, relation, train[:320], dev, cs, TuneConfig(epochs=args.tune_epochs))
    for name, cfg in [("loss", TransferConfig(steps=2000, selection="loss", patience=200)),
                      ("dev-every-50", TransferConfig(steps=2000, selection="dev", dev_every=50, patience=None))]:
        t0 = time.perf_counter()
        result = transfer_prompt([(prompt, src)], tgt, cfg, dev=dev, candidates=ct)
        seconds = time.perf_counter() - t0
        report[f"transfer_{name}"] = {"seconds": seconds, "steps_run": result.provenance["steps_run"],
                                      "test_p_at_1": evaluate(tgt, result.as_prompt(), test, ct).p_at_1}
        print(name, report[f"transfer_{name}"], flush=True)
    report["transfer_speedup"] = report["transfer_dev-every-50"]["seconds"] / report["transfer_loss"]["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="smollm2-135m")
    ap.add_argument("--target", default="gemma3-270m")
    ap.add_argument("--relation", default="P103")
    ap.add_argument("--prompt", help="source prompt file (else tuned here for --tune-epochs)")
    ap.add_argument("--tune-epochs", type=int, default=1)
    ap.add_argument("--tune-steps", type=int, default=10, help="steps timed for each tuning loop")
    ap.add_argument("--tuning-only", action="store_true", help="time only the tuning step (e.g. on the larger head)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    ap.add_argument("--out", default="runs/transfer_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    src, tgt = load_model(args.source), load_model(args.target)
    relation = get_relation(args.relation)
    train, dev, test = (load_split(args.relation, s) for s in ("train", "dev", "test"))
    cs, ct = candidates_for(src), candidates_for(tgt)
    report = {"source": args.source, "target": args.target, "relation": args.relation}
    if not args.tuning_only:
        transfer_timings(args, src, tgt, relation, train, dev, test, cs, ct, report)

    # 2. tuning step time: ours vs OptiPrompt-style, same batches, interleaved so load hits both equally
    kept, gold = scorable_facts(train, cs)
    config = TuneConfig()
    template = config.template
    ours_t = ref_t = 0.0
    vec_a = torch.nn.Parameter(initial_vectors(src, relation, config))
    vec_b = torch.nn.Parameter(vec_a.detach().clone())
    opt_a, opt_b = torch.optim.AdamW([vec_a], lr=3e-3), torch.optim.AdamW([vec_b], lr=3e-3)
    gold_ids = cs.token_ids[torch.tensor(gold)]
    for step in range(args.tune_steps):
        start = step * 16 % max(1, len(kept) - 16)
        idx = list(range(start, start + 16))
        subjects = [kept[i].subject for i in idx]
        t0 = time.perf_counter()
        logits = src.answer_logits(src.encode(template, subjects), vec_a, cs.token_ids)
        loss = F.cross_entropy(logits, torch.tensor([gold[i] for i in idx]))
        opt_a.zero_grad(set_to_none=True)
        loss.backward()
        opt_a.step()
        ours_t += time.perf_counter() - t0
        t0 = time.perf_counter()
        optiprompt_style_step(src, template, subjects, gold_ids[idx], vec_b, opt_b)
        ref_t += time.perf_counter() - t0
    report["tuning_step_seconds"] = {"ours": ours_t / args.tune_steps, "optiprompt_style": ref_t / args.tune_steps}
    report["tuning_speedup"] = ref_t / ours_t
    report["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
