"""`ptfer grid` (the full result table) and `ptfer ablate` (the paper's analysis figures)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from .common import check_writable_dir, comma_list, common_options, load, note, positive_int, quiet_transformers


def add_grid_command(subparsers) -> None:
    grid = subparsers.add_parser(
        "grid",
        parents=[common_options()],
        help="run (or resume) the full result grid",
        description="Every method × recipe × ordered model pair × task, resumable; writes "
        "results.csv/.parquet and summary.md under --out.",
    )
    grid.add_argument("--config", required=True, help="grid YAML, e.g. grids/real-causal.yaml")
    grid.add_argument("--out", default="runs/grid", help="output directory (default: runs/grid)")
    grid.add_argument("--executor", default="local", choices=["local", "ray"])
    grid.add_argument("--ray-address", default=None, help="existing Ray cluster (default: start a local one)")
    grid.add_argument(
        "--relations",
        default=None,
        help="comma-separated task ids overriding the config's (e.g. to run part of a grid first)",
    )
    grid.add_argument(
        "--recipes",
        default=None,
        help="comma-separated recipes overriding the config's (cells are keyed by their own settings, so a part run "
        "this way is reused by the full config)",
    )
    grid.add_argument(
        "--assemble-only",
        action="store_true",
        help="write the tables from the config's cells already finished; run nothing (a grid built in parts)",
    )
    grid.set_defaults(func=cmd_grid)


def cmd_grid(args) -> int:
    from tqdm import tqdm

    from ..grid import GridConfig, run_grid

    config = GridConfig.from_file(args.config)
    if args.data_dir:
        config = replace(config, data_dir=args.data_dir)
    if args.model_dir:
        config = replace(config, model_dir=str(Path(args.model_dir).expanduser().resolve()))  # as workers see it
    if args.ray_address and args.executor != "ray":
        raise InputError("--ray-address applies to --executor ray only")
    whole = config
    # A part runs cells of the config's own grid: a task or recipe outside it ran, then fell out of the tables.
    if args.relations is not None and args.relations.strip() != "all":
        config = replace(config, relations=part_of("--relations", comma_list(args.relations), whole.task_ids()))
    if args.recipes is not None:
        config = replace(config, recipes=comma_list(args.recipes))  # replace() validates them like the config's
        part_of("--recipes", config.recipes, whole.recipes)
    config.task_ids()  # unknown task ids fail here, before anything runs
    check_writable_dir(args.out, "--out")
    quiet_transformers()
    bar = tqdm(desc="grid", unit="cell", file=sys.stderr)

    def progress(step, m):
        bar.total = m["total_steps"]
        bar.set_postfix_str(m["task"] + (" (cached)" if m["skipped"] else ""))
        bar.update(1)

    table = run_grid(
        whole if args.assemble_only else config,  # assembling reads the whole config's cells once, not a part's first
        args.out,
        executor=args.executor,
        ray_address=args.ray_address,
        on_step=progress,
        compute=not args.assemble_only,
        tables_for=whole,  # a part (--relations, --recipes) adds its cells to the folder's full tables
    )
    bar.close()
    print((Path(args.out) / "summary.md").read_text(encoding="utf-8"))
    note(f"{len(table)} result rows in {args.out}/results.csv")
    return 0


def part_of(option: str, chosen: list[str], allowed: list[str]) -> list[str]:
    """`chosen`, refused when empty or when it names something outside `allowed`."""
    if not chosen:
        raise InputError(f"{option} is empty")
    outside = [x for x in chosen if x not in allowed]
    if outside:
        raise InputError(
            f"{option} names {', '.join(outside)}, which the config's grid does not have ({', '.join(allowed)}); "
            "a part runs cells of the config's own grid"
        )
    return chosen


def add_ablate_command(subparsers) -> None:
    ab = subparsers.add_parser(
        "ablate",
        parents=[common_options()],
        help="the paper's analyses (loss vs accuracy, normalisation, anchors, prompt length) as figures",
        description="Matching loss vs target dev P@1 along the Adam search (with and without normalisation), and "
        "target P@1 against the anchor count and the prompt length, for one source -> target pair; "
        "writes HTML, PNG and plotly JSON figures plus CSV tables under --out. Resumable through --work.",
    )
    ab.add_argument("--source", help="source model")
    ab.add_argument("--target", help="target model")
    ab.add_argument("--relation", help="comma-separated relation ids")
    ab.add_argument("--anchors", default="512,1024,2048,4096,all", help="anchor counts to sweep ('all': every anchor)")
    ab.add_argument("--lengths", default="1,3,5,10", help="prompt lengths to sweep")
    ab.add_argument("--steps", type=positive_int, default=2000)
    ab.add_argument("--dev-every", type=positive_int, default=100, help="resolution of the loss-vs-accuracy curves")
    ab.add_argument("--epochs", type=positive_int, default=3, help="source tuning epochs")
    ab.add_argument("--max-train", type=positive_int, default=320, help="cap on training facts per relation")
    ab.add_argument("--seed", type=int, default=0)
    ab.add_argument("--work", default="runs/ablations", help="cache of finished points and tuned prompts")
    ab.add_argument("--out", default="assets/figures", help="where figures and tables go (default: assets/figures)")
    ab.add_argument("--no-png", action="store_true", help="HTML and JSON only (PNG needs kaleido and a Chromium)")
    ab.add_argument(
        "--toy-anchors",
        action="store_true",
        help="every shared token as an anchor, no top-K (for toy models, whose vocabulary is tiny)",
    )
    ab.add_argument(
        "--redraw",
        action="store_true",
        help="redraw the figures from the tables already under --out, computing nothing (no models needed)",
    )
    ab.add_argument("--quiet", action="store_true")
    ab.set_defaults(func=cmd_ablate)


def cmd_ablate(args) -> int:
    import pandas as pd

    from ..ablations import AblationConfig, ablation_figures, read_tables, run_ablations, save_figures
    from ..files import atomic_write_bytes

    if args.redraw:
        written = save_figures(ablation_figures(read_tables(args.out)), args.out, png=not args.no_png)
        note(f"redrew {len(written)} figure files under {args.out} from its tables")
        return 0
    missing = [f"--{a}" for a in ("source", "target", "relation") if not getattr(args, a)]
    if missing:
        raise InputError(f"ptfer ablate needs {', '.join(missing)} (or --redraw to redraw saved tables)")

    try:
        anchors = [None if a.strip() == "all" else int(a) for a in args.anchors.split(",")]
        lengths = [int(m) for m in args.lengths.split(",")]
    except ValueError:
        raise InputError("--anchors and --lengths take comma-separated integers ('all' allowed for anchors)") from None
    check_writable_dir(args.out, "--out")
    check_writable_dir(args.work, "--work")
    config = AblationConfig(
        relations=args.relation.split(","),
        anchor_counts=anchors,
        prompt_lengths=lengths,
        steps=args.steps,
        dev_every=args.dev_every,
        max_train_facts=args.max_train,
        tune={"epochs": args.epochs},
        seed=args.seed,
        data_dir=args.data_dir,
        transfer={"anchor_source": "frequency", "anchor_filter": "all", "top_k": None} if args.toy_anchors else {},
    )
    source, target = load(args.source, args), load(args.target, args)
    progress = None if args.quiet else (lambda step, m: note(f"[{step}/{m['total_steps']}] {m['point']}"))
    tables = run_ablations(source, target, config, Path(args.work) / f"{source.name}__{target.name}", on_step=progress)
    out = Path(args.out)
    for kind, rows in tables.items():
        atomic_write_bytes(out / f"ablation_{kind}.csv", pd.DataFrame(rows).to_csv(index=False).encode())
    written = save_figures(ablation_figures(tables), out, png=not args.no_png)
    note(f"wrote {len(written)} figure files and 3 tables under {out}")
    return 0
