"""`ptfer evaluate`: precision@1 of the manual template, a template text or a saved soft prompt."""

from __future__ import annotations

import time
from pathlib import Path

from ..config import Precision
from ..errors import InputError
from .common import (
    SPLIT_CHOICES,
    check_not_input,
    check_writable,
    common_options,
    format_table,
    load,
    note,
    positive_int,
    select_tasks,
)


def add_evaluate_command(subparsers) -> None:
    ev = subparsers.add_parser(
        "evaluate",
        parents=[common_options()],
        help="precision@1 of a prompt on relations or tasks",
        description="Precision@1 of the manual template, a template text or a saved soft prompt, over the answer "
        "candidates. Prints a table (with the relation mean and the pooled P@1) and writes JSON.",
    )
    ev.add_argument(
        "--model",
        required=True,
        help="registry name (see `ptfer models list`), hub id, local directory, .gguf file or tiny:ARCH",
    )
    ev.add_argument(
        "--relation",
        default=None,
        help="relation id(s) or task(s) (sst2, dbpedia), comma-separated, or 'all' (default: the "
        "prompt file's task, else all relations)",
    )
    ev.add_argument(
        "--prompt",
        default="manual",
        help="'manual' (each task's template), a saved soft prompt (.safetensors, or a PEFT adapter "
        'folder), or a template text such as "[X] was born in [Y] ."',
    )
    ev.add_argument("--split", default="test", choices=SPLIT_CHOICES, help="which examples (default: test)")
    ev.add_argument("--seed", type=int, default=None, help="split seed (default: the library's)")
    ev.add_argument("--vocab", default=None, help="common vocabulary of the relations' candidates (default: be_ro_al)")
    ev.add_argument("--precision", default=Precision.FLOAT32.value, choices=[p.value for p in Precision])
    ev.add_argument("--batch-size", type=positive_int, default=None, help="examples per forward pass")
    ev.add_argument("--template", default=None, help="with a PEFT adapter: the input template (default [X] [Y] .)")
    ev.add_argument("--out", default="results.json", help="JSON results file (default: results.json; '-' for none)")
    ev.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ev.set_defaults(func=cmd_evaluate)


def resolve_prompt(spec: str, template: str | None = None):
    """'manual' -> None; a template text -> Prompt; a PEFT adapter -> SoftPrompt; else a soft-prompt file."""
    from ..artifacts import SoftPrompt
    from ..evaluation import Prompt
    from ..peft_io import is_peft_adapter, read_peft_adapter

    if template is not None and not is_peft_adapter(spec):
        raise InputError(
            f"--template applies to a PEFT adapter only; {spec!r} is not one (a PTfer prompt file keeps its own "
            "template, and a template text is the prompt itself)"
        )
    if spec == "manual":
        return None
    if ("[X]" in spec or "[Y]" in spec or "[V]" in spec) and not Path(spec).exists():
        return Prompt.from_text(spec)
    if is_peft_adapter(spec):
        return read_peft_adapter(spec, template=template)
    return SoftPrompt.load(spec)


def cmd_evaluate(args) -> int:
    from ..artifacts import SoftPrompt
    from ..data import DEFAULT_COMMON_VOCAB, DEFAULT_SPLIT_SEED, load_split, load_tasks
    from ..evaluation import DEFAULT_BATCH_SIZE, Prompt, candidates_for, evaluate_relations
    from ..files import atomic_write_json
    from ..paths import data_dir

    seed = DEFAULT_SPLIT_SEED if args.seed is None else args.seed
    vocab = args.vocab or DEFAULT_COMMON_VOCAB
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    check_writable(args.out, "--out")
    check_not_input(args.out, args.prompt, "--out")
    tasks = load_tasks(args.data_dir)  # cheap checks first: data, tasks and the prompt, before model loading
    loaded = resolve_prompt(args.prompt, args.template)
    soft = loaded if isinstance(loaded, SoftPrompt) else None
    rids = select_tasks(args.relation, tasks, soft.relation if soft and soft.relation in tasks else None)
    if soft and soft.relation not in rids:
        note(f"note: the prompt in {args.prompt} was made for {soft.relation}; evaluating it on {', '.join(rids)}")
    facts = {rid: load_split(rid, args.split, args.data_dir, seed) for rid in rids}
    started = time.perf_counter()
    lm = load(args.model, args, args.precision)
    if soft:
        lm.check_vectors(soft.vectors, soft.prompt_template.n_soft)  # wrong width etc.: fail before any work
        if soft.model != lm.name:
            note(f"note: the prompt was made for {soft.model}; evaluating it on {lm.name}")
    candidates = {rid: candidates_for(lm, tasks[rid], args.data_dir, vocab) for rid in rids}
    empty = [rid for rid, c in candidates.items() if not len(c)]
    if empty:
        raise InputError(
            f"{lm.name} has no single-token answer candidates for {', '.join(empty)}: is its tokenizer complete?"
        )
    prompts = {
        rid: soft.as_prompt() if soft else loaded if isinstance(loaded, Prompt) else Prompt.manual(tasks[rid])
        for rid in rids
    }
    progress = (
        None
        if args.quiet
        else (
            lambda step, m: note(
                f"[{step + 1}/{len(rids)}] {m['relation']}: P@1 {m['p_at_1']:.2f} on {m['n_facts']} facts"
            )
        )
    )
    report = evaluate_relations(
        lm,
        prompts,
        facts,
        candidates,
        batch_size,
        on_step=progress,
        max_subject_tokens={rid: tasks[rid].max_input_tokens for rid in rids},
    )
    seconds = time.perf_counter() - started
    rows = [
        [rid, tasks[rid].type, res.n_facts, res.n_skipped, f"{res.p_at_1:.2f}"]
        for rid, res in report.per_relation.items()
    ]
    print(format_table(["task", "type", "facts", "skipped", "P@1"], rows, right=(2, 3, 4)))
    f1 = {rid: res.macro_f1 for rid, res in report.per_relation.items() if tasks[rid].is_classification}
    print(
        f"\nmean over relations: P@1 {report.relation_mean:.2f}; pooled over facts: P@1 {report.pooled:.2f} "
        f"({report.n_facts} examples, "
        f"{args.split} split, seed {seed}); model {lm.name} ({args.precision}), prompt {args.prompt}"
        + "".join(f"; {rid} macro-F1 {v:.2f}" for rid, v in f1.items())
    )
    if args.out and args.out != "-":
        result = {
            "model": lm.name,
            "kind": lm.kind.value,
            "precision": args.precision,
            "prompt": args.prompt,
            "prompt_label": soft.method if soft else ("manual" if loaded is None else loaded.template.text),
            "split": args.split,
            "split_seed": seed,
            "data_dir": str(data_dir(args.data_dir)),
            "vocab": vocab,
            "n_candidates": {rid: len(c) for rid, c in candidates.items()},
            "batch_size": batch_size,
            "seconds": round(seconds, 3),
            **report.as_dict(),
            **({"macro_f1": f1} if f1 else {}),
        }
        atomic_write_json(Path(args.out), result)
        note(f"wrote {args.out}")
    return 0
