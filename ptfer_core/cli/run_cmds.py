"""`ptfer tune` and `ptfer transfer`: thin layers over `runs.run` and the prompt store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..config import Method, Precision
from ..errors import DataError, InputError
from .common import (
    add_settings_options,
    check_not_input,
    check_writable,
    check_writable_dir,
    comma_list,
    common_options,
    format_table,
    load,
    note,
    select_tasks,
    settings_from_args,
)


def _task_options(parser) -> None:
    parser.add_argument(
        "--relation",
        required=True,
        help="relation id(s) or task(s) (sst2, dbpedia), comma-separated, or 'all' (the 41 relations)",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/dev/test split (default 0)")
    parser.add_argument(
        "--prompt-dir",
        default="prompts",
        help="where tuned prompts are stored and reused, keyed by every setting (default: prompts/)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def add_tune_command(subparsers) -> None:
    tune = subparsers.add_parser(
        "tune",
        parents=[common_options()],
        help="tune soft prompts on a model (OptiPrompt)",
        description="Tune m soft vectors per task on the model's train split; the dev check "
        "with the best dev P@1 is kept and stored under --prompt-dir.",
    )
    tune.add_argument("--model", required=True, help="the model to tune on")
    _task_options(tune)
    add_settings_options(tune, groups=("tune",))
    tune.add_argument("--out", default="tune-results.json", help="JSON results ('-' for none)")
    tune.set_defaults(func=cmd_tune)


def _progress(args, what: str):
    if args.quiet:
        return None

    def report(step, m):
        if m.get("epoch_end") and m.get("dev_p_at_1") is not None:
            note(f"  tune {what}: step {step}/{m['total_steps']} dev P@1 {m['dev_p_at_1']:.1f}")
        elif "loss" in m and not m.get("epoch_end") and step % 250 == 0 and "epoch" not in m:
            note(f"  search {what}: step {step} loss {m['loss']:.5f}")

    return report


def _prepare(args):
    """What `tune` and `transfer` check before any model loads: writable outputs, known tasks, valid settings."""
    from ..data import load_tasks

    check_writable(args.out, "--out")
    check_not_input(args.out, getattr(args, "source_prompt", None), "--out")
    check_writable_dir(args.prompt_dir, "--prompt-dir")
    rids = select_tasks(args.relation, load_tasks(args.data_dir))
    return rids, settings_from_args(args)


def _write_results(args, payload: dict) -> None:
    if args.out != "-":
        from ..files import atomic_write_json

        atomic_write_json(Path(args.out), payload)


def cmd_tune(args) -> int:
    from ..evaluation import evaluate
    from ..runs import PromptStore, TaskData

    rids, settings = _prepare(args)
    lm = load(args.model, args)
    store = PromptStore(args.prompt_dir)
    rows, results = [], {}
    for rid in rids:
        try:
            data = TaskData.load(rid, args.data_dir, args.split_seed)
            reused = store.find(lm, data, settings.tune) is not None
            prompt = store.get_or_tune(
                lm, data, settings.tune, recipe=settings.recipe.value, on_step=_progress(args, f"{lm.name} {rid}")
            )
        except DataError as exc:
            skipped(rid, exc, rids, rows, results, 5)
            continue
        test = evaluate(
            lm,
            prompt.as_prompt(),
            data.splits["test"],
            data.candidates(lm),
            max_subject_tokens=data.task.max_input_tokens,
        )
        path = store.path(lm, data, settings.tune)
        dev = prompt.metrics.get("dev_p_at_1")
        results[rid] = {
            "file": str(path),
            "reused": reused,
            "dev_p_at_1": dev,
            "test_p_at_1": test.p_at_1,
            "n_test": test.n_facts,
            "seconds": prompt.provenance.get("seconds"),
        }
        rows.append(
            [
                rid,
                "—" if dev is None else f"{dev:.2f}",
                f"{test.p_at_1:.2f}",
                "reused" if reused else "tuned",
                str(path),
            ]
        )
    print(format_table(["task", "dev P@1", "test P@1", "", "prompt"], rows, right=(1, 2)))
    _write_results(
        args,
        {
            "model": lm.name,
            "model_identity": lm.identity,
            **settings.describe(),
            "split_seed": args.split_seed,
            "relations": results,
        },
    )
    return exit_code(results)


def skipped(rid: str, exc: Exception, rids: list, rows: list, results: dict, columns: int) -> None:
    """A task of several that cannot run: said, recorded, and the others go on (one of 41 relations without a
    training example had ended the command with nothing written for the rest). A single task's error is raised."""
    if len(rids) == 1:
        raise exc
    note(f"error: {rid}: {exc} (skipped; the other tasks go on)")
    results[rid] = {"error": str(exc)}
    rows.append([rid] + ["—"] * (columns - 2) + ["skipped: see the error above"])


def exit_code(results: dict) -> int:
    """1 when a task was skipped (`skipped`), else 0."""
    return 1 if any("error" in r for r in results.values()) else 0


def add_transfer_command(subparsers) -> None:
    tr = subparsers.add_parser(
        "transfer",
        parents=[common_options()],
        help="transfer prompts from source model(s) to a target, or a baseline",
        description="Tune (or reuse) a prompt on each source model, turn it into a target prompt with --method, save "
        "it and print its test P@1. Several sources (M1,M2) give multi-source transfer.",
    )
    tr.add_argument("--source", required=True, help="source model(s), comma-separated")
    tr.add_argument("--target", required=True, help="target model")
    tr.add_argument("--method", default=Method.TRANSFER.value, choices=[m.value for m in Method])
    _task_options(tr)
    tr.add_argument(
        "--source-prompt",
        default=None,
        help="use this saved source prompt (.safetensors, or a PEFT adapter folder/zip) instead of tuning "
        "one; one source, one relation",
    )
    tr.add_argument(
        "--template", default=None, help="with a PEFT adapter: its input template (default: [V]… [S][X] [Y] .)"
    )
    tr.add_argument("--weights", default=None, help="multi-source blend weights, comma-separated (default: equal)")
    tr.add_argument(
        "--precision",
        default=Precision.FLOAT32.value,
        choices=[p.value for p in Precision],
        help="arithmetic of the scoring forward passes",
    )
    add_settings_options(tr)
    tr.add_argument("--out", default="transfer-results.json", help="JSON results ('-' for none)")
    tr.set_defaults(func=cmd_transfer)


def cmd_transfer(args) -> int:
    from ..artifacts import SoftPrompt
    from ..runs import PromptStore, TaskData, run
    from .evaluate import resolve_prompt

    rids, settings = _prepare(args)
    source_names = comma_list(args.source)
    weights = None
    if args.weights:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise InputError("--weights takes comma-separated numbers, one per source") from None
    given = None
    if args.template is not None and not args.source_prompt:
        raise InputError("--template applies to a PEFT adapter given as --source-prompt")
    if args.source_prompt:
        if len(source_names) != 1 or len(rids) != 1:
            raise InputError("--source-prompt works with exactly one --source and one --relation")
        given = resolve_prompt(args.source_prompt, args.template)
        if not isinstance(given, SoftPrompt):
            raise InputError(f"--source-prompt {args.source_prompt} is not a soft prompt file or PEFT adapter")
        if given.relation == "unknown":  # a PEFT adapter without PTfer metadata: the relation asked for
            given.relation = rids[0]
    sources = [load(n, args) for n in source_names]
    target = load(args.target, args)
    store = PromptStore(args.prompt_dir)
    rows, results = [], {}
    for rid in rids:
        try:
            data = TaskData.load(rid, args.data_dir, args.split_seed)
            out = run(
                args.method,
                data=data,
                target=target,
                sources=sources,
                settings=settings,
                store=store,
                given_prompts=[given] if given else None,
                weights=weights,
                precision=args.precision,
                seed=settings.tune.seed,
                on_step=_progress(args, rid),
            )
        except DataError as exc:
            skipped(rid, exc, rids, rows, results, 5)
            continue
        for text in out.notes:
            note(f"note: {text}")
        entry = {"p_at_1": out.p_at_1, "n_facts": out.result.n_facts, "seconds": round(out.seconds, 3)}
        if data.task.is_classification:
            entry["macro_f1"] = out.result.macro_f1
        if isinstance(out.prompt, SoftPrompt):
            # Named by everything the prompt depends on: a run with other settings wrote over the last one's file,
            # whose results JSON still described it.
            made_from = {
                "settings": settings.describe(),
                "split_seed": args.split_seed,
                "data": data.fingerprint,
                "target": target.identity,
                "sources": [(lm.identity, p.digest) for lm, p in zip(sources, out.source_prompts)],
                "weights": weights,
            }
            digest = hashlib.sha1(json.dumps(made_from, sort_keys=True, default=str).encode()).hexdigest()[:12]
            tag = f"{args.method}-from-{'+'.join(source_names)}-{settings.recipe.value}-{digest}"
            safe = "".join(c if c.isalnum() or c in "-_+" else "_" for c in tag)
            path = (
                Path(args.prompt_dir)
                / "transferred"
                / "".join(c if c.isalnum() or c in "-_" else "_" for c in target.name)
                / f"{rid}.{safe}.safetensors"
            )
            out.prompt.save(path)
            entry.update(file=str(path), metrics=out.prompt.metrics)
        results[rid] = entry
        rows.append([rid, data.task.type, out.result.n_facts, f"{out.p_at_1:.2f}", f"{out.seconds:.1f}"])
    print(format_table(["task", "type", "facts", "P@1", "seconds"], rows, right=(2, 3, 4)))
    scored = [r for r in results.values() if r.get("n_facts")]
    mean = sum(r["p_at_1"] for r in scored) / max(1, len(scored))
    total = sum(r["n_facts"] for r in scored)
    pooled = sum(r["p_at_1"] * r["n_facts"] for r in scored) / max(1, total)
    print(
        f"\nmean over {len(scored)} relations: P@1 {mean:.2f}; pooled over facts: P@1 {pooled:.2f} ({total} facts); "
        f"{args.method} "
        f"{'+'.join(source_names)} -> {target.name} (recipe {settings.recipe.value})"
    )
    _write_results(
        args,
        {
            "sources": source_names,
            "target": target.name,
            "method": args.method,
            **settings.describe(),
            "p_at_1_relation_mean": mean,
            "p_at_1_pooled": pooled,
            "relations": results,
        },
    )
    return exit_code(results)
