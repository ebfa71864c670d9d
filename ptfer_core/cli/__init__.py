"""The `ptfer` command line: thin argparse subcommands over the library.

    ptfer models list | fetch [NAME ...]           ptfer data info
    ptfer evaluate --model M --relation P19|sst2|all --prompt manual|FILE|ADAPTER|"TEMPLATE"
    ptfer tune --model M --relation R [--recipe paper|paper-zero-shot|studio] [settings ...]
    ptfer transfer --source M[,M2] --target T --relation R [--method ...] [--recipe ...] [settings ...]
    ptfer grid --config grids/real-causal.yaml     ptfer ablate --source M --target T --relation R
    ptfer export --format peft PROMPT OUT_DIR

Each family lives in its own module as `add_<name>_command(subparsers)` plus `cmd_<name>(args) -> int`. Every
`PTferError` is printed as one line, ``error: ...``, on stderr, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..errors import PTferError
from .common import common_options  # noqa: F401 - the parent parser new subcommands reuse
from .evaluate import add_evaluate_command
from .export import add_export_command
from .grid_cmds import add_ablate_command, add_grid_command
from .info import add_data_command, add_models_command
from .run_cmds import add_transfer_command, add_tune_command

EXIT_USAGE = 2  # argparse's own status for bad usage; also used for every PTferError
COMMANDS: list[Callable] = [
    add_models_command,
    add_data_command,
    add_evaluate_command,
    add_tune_command,
    add_transfer_command,
    add_grid_command,
    add_ablate_command,
    add_export_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptfer", description="PTfer Studio: zero-shot continuous prompt transfer (Wu, Wu & Mou, ICLR 2024)."
    )
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


def _tolerate_narrow_terminals() -> None:
    # Tables and messages use "→" and "—": on an ASCII locale print "?" rather than crash after the work is done.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") != "utf8":
            stream.reconfigure(errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    _tolerate_narrow_terminals()
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
