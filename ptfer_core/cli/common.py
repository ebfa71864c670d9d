"""What every subcommand shares: data/model options, settings options derived from the settings dataclasses,
output helpers, and the early checks that keep results from being lost (an unwritable --out fails before work)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..config import Precision, Recipe
from ..errors import InputError
from ..settings import RECIPE_HELP, ProjectorConfig, TransferConfig, TuneConfig, recipe_settings

SPLIT_CHOICES = ("test", "dev", "train", "all")
# CLI spellings of settings fields whose plain names collide between groups or read better otherwise.
FLAG_NAMES = {
    ("transfer", "lr"): "search-lr",
    ("transfer", "seed"): None,
    ("projector", "seed"): None,
    ("tune", "seed"): None,
    ("transfer", "n_anchors"): "anchors",
    ("tune", "precision"): "tune-precision",
}
GROUPS = (("tune", TuneConfig, ""), ("transfer", TransferConfig, ""), ("projector", ProjectorConfig, "projector-"))


def note(message: str) -> None:
    """Progress and remarks go to stderr, so stdout holds only the result."""
    print(message, file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def default_threads() -> int:
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def common_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data-dir",
        default=None,
        help="data directory (default: $PTFER_DATA_DIR, else ../shared/data beside the repository)",
    )
    parent.add_argument(
        "--model-dir",
        default=None,
        help="where fetched models live (default: $PTFER_MODEL_DIR, else ~/.cache/ptfer/models)",
    )
    parent.add_argument(
        "--threads",
        type=positive_int,
        default=default_threads(),
        help="CPU threads for torch (default: half the cores, at most 8)",
    )
    return parent


EXPLICIT_NONE = object()  # a flag given as 'none' (argparse's None means "not given")


def _value_parser(row: dict):
    kind = row["type"]

    def parse(text: str):
        if row["optional"] and text.lower() in ("none", "all", "null"):
            return EXPLICIT_NONE
        try:
            return kind(text) if kind in (int, float) else text
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None

    return parse


def add_settings_options(parser: argparse.ArgumentParser, groups: Sequence[str] = ("tune", "transfer", "projector")):
    """One option per settings field (help and choices from the dataclass), default None = the recipe's value."""
    parser.add_argument(
        "--recipe",
        default=Recipe.STUDIO.value,
        choices=[r.value for r in Recipe],
        help="a complete set of settings; flags below override single values. "
        + "; ".join(f"{r.value}: {h}" for r, h in RECIPE_HELP.items()),
    )
    parser.add_argument("--seed", type=int, default=None, help="seeds tuning, the search and the projector")
    for group, cls, prefix in GROUPS:
        if group not in groups:
            continue
        box = parser.add_argument_group(f"{group} settings (default: the recipe's)")
        for row in cls.describe():
            if not row["cli"]:
                continue
            name = FLAG_NAMES.get((group, row["name"]), prefix + row["name"].replace("_", "-"))
            if name is None:
                continue
            dest = f"{group}__{row['name']}"
            if row["type"] is bool:
                box.add_argument(
                    f"--{name}", dest=dest, action=argparse.BooleanOptionalAction, default=None, help=row["help"]
                )
            else:
                box.add_argument(
                    f"--{name}",
                    dest=dest,
                    default=None,
                    choices=row["choices"],
                    type=None if row["choices"] else _value_parser(row),
                    help=row["help"] + (" ('none' for none)" if row["optional"] else ""),
                )
    parser.add_argument("--no-normalize", action="store_true", help="shorthand for --normalization none (ablation)")


def settings_from_args(args, base_overrides: dict | None = None):
    """The recipe's settings (with `base_overrides` under them, e.g. a CPU budget) and every flag the user gave on
    top; notes name each flag that overrides the recipe."""
    overrides: dict[str, dict] = {g: dict(v) for g, v in (base_overrides or {}).items()}
    for key, value in vars(args).items():
        if "__" in key and value is not None:
            group, name = key.split("__", 1)
            overrides.setdefault(group, {})[name] = None if value is EXPLICIT_NONE else value
    if getattr(args, "no_normalize", False):
        if overrides.get("transfer", {}).get("normalization") not in (None, "none"):
            raise InputError("--no-normalize contradicts --normalization; give one of them")
        overrides.setdefault("transfer", {})["normalization"] = "none"
    if args.seed is not None:
        for group in ("tune", "transfer", "projector"):
            overrides.setdefault(group, {})["seed"] = args.seed
    settings = recipe_settings(args.recipe, overrides)
    base = recipe_settings(args.recipe)
    for group, changed in settings.overrides.items():
        for name, value in changed.items():
            if name == "seed":
                continue
            before = getattr(getattr(base, group), name)
            note(
                f"note: {group} setting {name}={value} overrides recipe {args.recipe}'s "
                f"{before.value if hasattr(before, 'value') else before}"
            )
    return settings


def check_writable(path: str | None, what: str) -> None:
    """Fail before any computation when a result file cannot be written (its folder missing rights, a folder)."""
    if path is None or path == "-":
        return
    if not path.strip():  # "" passed, then the rename after all the work failed (or nothing was written)
        raise InputError(f"{what} is empty; give a file name, or '-' for none")
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{what} {path} is a directory; give a file name")
    folder = target.parent if str(target.parent) else Path(".")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise InputError(f"{what} {path} cannot be written ({probe} is not a writable folder)")


def check_not_input(out: str | None, prompt: str | None, what: str) -> None:
    """Refuse a results file that is the prompt file read, or its JSON sidecar: written over, the prompt no longer
    loaded ("sidecar contradicts …")."""
    if out is None or out == "-" or not prompt or not prompt.endswith(".safetensors"):
        return
    ours = {Path(prompt).resolve(), Path(prompt).with_suffix(".json").resolve()}
    if Path(out).resolve() in ours:
        raise InputError(f"{what} {out} would overwrite the prompt {prompt} (its own file); give another file name")


def check_writable_dir(path: str, what: str) -> None:
    if not path or not str(path).strip():
        raise InputError(f"{what} is empty; give a folder")
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder")
    probe = target
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{what} {path} cannot be made: {probe} is a file")
    if not os.access(probe, os.W_OK):
        raise InputError(f"{what} {path} cannot be written")


def format_table(headers: Sequence[str], rows: Iterable[Sequence], right: Sequence[int] = ()) -> str:
    """A plain-text table; columns whose index is in `right` are right-aligned."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line([str(h) for h in headers]), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def comma_list(text: str) -> list[str]:
    """`a, b,,c` → ["a", "b", "c"]: the items of a comma-separated option, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def select_tasks(spec: str | None, tasks: dict, default: str | None = None) -> list[str]:
    """'all' (the LAMA relations), comma-separated ids, or the default; a DataError naming unknown ids."""
    from ..errors import DataError

    spec = spec or default or "all"
    if spec == "all":
        return [t for t, task in tasks.items() if not task.is_classification]
    ids = comma_list(spec)
    if not ids:
        raise InputError("--relation is empty; give a relation id such as P19, a task such as sst2, or 'all'")
    unknown = [r for r in ids if r not in tasks]
    if unknown:
        raise DataError(f"unknown relation or task {', '.join(map(repr, unknown))} (known: {', '.join(tasks)})")
    return ids


def quiet_transformers() -> None:
    """No weight-loading progress bars: stderr carries our own progress lines."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:
        pass


def load(name: str, args, precision: str = Precision.FLOAT32.value):
    from ..loading import load_model

    quiet_transformers()
    return load_model(name, precision=precision, models_root=args.model_dir)
