"""Presets: finished comparisons stored as files, so the app's Home page opens them instantly (no model needed).

Format (one directory per preset, under ``assets/presets/<id>/``)::

    preset.json            {"format": "ptfer-preset", "version": 2, "id", "title", "description", "story", "sources",
                            "target", "task": {id, label, template, type, ...}, "settings" (recipe, overrides, every
                            setting, method, weights), "scores", "per_fact", "discretized_tokens", "timings",
                            "created", "prompts": {role: file stem}, "notes"}
    source-0.safetensors   + source-0.json   the tuned source prompt(s)      (artifacts.SoftPrompt)
    transfer.safetensors   + transfer.json   the transferred target prompt
    discretization.safetensors + .json       the discretisation baseline

Write one with `write_preset(outcome, ...)` after `compare.compare`, or from the shell::

    python -m ptfer_core.presets --source smollm2-135m --target gemma3-270m --relation P36 --id smollm2-gemma-capital
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .config import TaskKind
from .data import Task
from .errors import PromptFileError
from .files import atomic_write_json
from .paths import REPO_ROOT, SHIPPED_PROMPTS

if TYPE_CHECKING:  # reading and writing need the engine (torch); listing presets does not
    from .compare import Outcome

FORMAT, VERSION = "ptfer-preset", 2
PRESETS_DIR = REPO_ROOT / "assets" / "presets"


def write_preset(
    outcome: Outcome,
    preset_id: str,
    title: str,
    description: str = "",
    story: str = "",
    root: Path | str = PRESETS_DIR,
    order: int = 0,
) -> Path:
    """Store `outcome` as ``root/preset_id/``; replaces an existing preset of that id atomically. `order` places its
    card on the Home page (lower first; real models before toy ones whatever the order)."""
    root = Path(root)
    final = root / preset_id
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{preset_id}."))
    try:
        prompts = {}
        for i, prompt in enumerate(outcome.source_prompts):
            prompt.save(staging / f"source-{i}")
            prompts[f"source-{i}"] = f"source-{i}"
        outcome.transferred.save(staging / "transfer")
        prompts["transfer"] = "transfer"
        if outcome.discretized is not None:
            outcome.discretized.save(staging / "discretization")
            prompts["discretization"] = "discretization"
        atomic_write_json(
            staging / "preset.json",
            {
                "format": FORMAT,
                "version": VERSION,
                "id": preset_id,
                "title": title,
                "description": description,
                "story": story,
                "order": order,
                "sources": outcome.sources,
                "target": outcome.target,
                "task": {
                    **{k: v for k, v in asdict(outcome.task).items() if k != "sources"},
                    "kind": outcome.task.kind.value,
                },
                "settings": outcome.settings,
                "scores": outcome.scores,
                "per_fact": outcome.per_fact,
                "discretized_tokens": outcome.discretized_tokens,
                "timings": {k: round(v, 3) for k, v in outcome.timings.items()},
                "created": time.time(),
                "prompts": prompts,
                "notes": outcome.notes,
            },
        )
        staging.chmod(0o755)
        for f in staging.iterdir():
            f.chmod(0o644)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def read_preset(path: Path | str) -> Outcome:
    """Load a preset directory into an `Outcome`; PromptFileError if it is damaged or of another version."""
    from .artifacts import SoftPrompt
    from .compare import Outcome

    path = Path(path)
    try:
        meta = json.loads((path / "preset.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PromptFileError(f"preset {path.name}: preset.json is missing or not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise PromptFileError(
            f"preset {path.name}: not a {FORMAT} v{VERSION} file (made by another version of "
            "PTfer Studio: make it again with `python -m ptfer_core.presets`)"
        )
    try:
        prompts = meta["prompts"]
        sources = [SoftPrompt.load(path / prompts[k]) for k in sorted(p for p in prompts if p.startswith("source-"))]
        transferred = SoftPrompt.load(path / prompts["transfer"])
        discretized = SoftPrompt.load(path / prompts["discretization"]) if "discretization" in prompts else None
        task = dict(meta["task"])
        task = Task(
            **{
                **task,
                "kind": TaskKind(task.get("kind", "relation")),
                "classes": tuple(task.get("classes") or ()),
                "label_words": tuple(tuple(w) for w in task.get("label_words") or ()),
            }
        )
        return Outcome(
            sources=meta["sources"],
            target=meta["target"],
            task=task,
            settings=meta.get("settings", {}),
            source_prompts=sources,
            transferred=transferred,
            scores=meta.get("scores", {}),
            per_fact=meta.get("per_fact", []),
            discretized=discretized,
            discretized_tokens=meta.get("discretized_tokens"),
            timings=meta.get("timings", {}),
            origin=f"preset:{meta['id']}",
            title=meta.get("title", meta["id"]),
            notes=meta.get("notes", []),
            story=meta.get("story") or "",
        )
    except (KeyError, TypeError) as exc:
        raise PromptFileError(f"preset {path.name}: incomplete ({exc})") from None


def list_presets(root: Path | str = PRESETS_DIR) -> list[dict]:
    """Summaries of the presets under `root` in this version's format, real models first, then by title."""
    from .model_names import is_toy

    out = []
    root = Path(root)
    if not root.is_dir():
        return out
    for meta_path in sorted(root.glob("*/preset.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            continue
        out.append(
            {
                k: meta.get(k)
                for k in (
                    "id",
                    "title",
                    "description",
                    "story",
                    "sources",
                    "target",
                    "task",
                    "scores",
                    "settings",
                    "timings",
                    "order",
                )
            }
            | {"path": str(meta_path.parent)}
        )
    return sorted(out, key=lambda m: (is_toy(m["target"] or ""), m["order"] or 0, m["title"] or ""))


# ----------------------------------------------------------------------------- making one from scratch


def make_preset(
    sources: list[str],
    target: str,
    task_id: str,
    preset_id: str,
    title: str,
    description: str = "",
    story: str = "",
    settings=None,
    method: str = "transfer",
    root: Path | str = PRESETS_DIR,
    data_dir=None,
    store_root: Path | None = None,
    log=print,
    order: int = 0,
) -> Path:
    """Load the models, run one comparison (tuning the sources if needed) and store it as a preset."""
    from .compare import check_enough_facts, compare
    from .jobs import Job
    from .loading import load_model
    from .mini_lama import write_mini_lama
    from .model_names import is_toy
    from .runs import PromptStore, TaskData
    from .settings import BUDGET_MAX_DEV, overrides_for, recipe_settings

    names = list(dict.fromkeys([*sources, target]))
    if settings is None:  # as the app runs these models
        settings = recipe_settings(overrides=overrides_for(names))
    if all(map(is_toy, names)) and data_dir is None:
        data_dir = str(write_mini_lama(tempfile.mkdtemp(prefix="ptfer-mini-lama-")))
    lms = {n: load_model(n) for n in names}
    data = TaskData.load(task_id, data_dir, max_dev=BUDGET_MAX_DEV)  # the app's budget: its shipped prompts match
    check_enough_facts(data, lms)
    # Shipped sources (the demo's, the real grid's) are found; new ones go where the app finds them.
    store = PromptStore(store_root or SHIPPED_PROMPTS[0], SHIPPED_PROMPTS[1:])

    def work(job):
        return compare(
            job,
            sources=[(n, lms[n]) for n in sources],
            target=lms[target],
            data=data,
            settings=settings,
            method=method,
            store=store,
        )

    job = Job(work, "preset").start()
    shown = 0
    while not job.join(2.0):
        snap = job.snapshot()
        for line in snap["log"][shown:]:
            log(line)
        shown = len(snap["log"])
    if job.error:
        raise RuntimeError(job.error + ("\n" + job.detail if job.detail else ""))
    path = write_preset(job.result, preset_id, title, description, story, root, order)
    log(
        f"preset {preset_id} written to {path}: "
        + ", ".join(f"{k} {v['p_at_1']:.1f}" for k, v in job.result.scores.items())
    )
    return path


def main(argv=None) -> int:
    from .cli.common import add_settings_options, settings_from_args
    from .settings import overrides_for

    parser = argparse.ArgumentParser(description="Write an app preset (a finished comparison) under assets/presets/.")
    parser.add_argument("--source", action="append", required=True, help="source model (repeat for multi-source)")
    parser.add_argument("--target", required=True)
    parser.add_argument("--relation", required=True, help="relation id or task (sst2, dbpedia)")
    parser.add_argument("--id", required=True, help="preset id (directory name)")
    parser.add_argument("--title", help="card title on the Home page")
    parser.add_argument("--description", default="")
    parser.add_argument("--story", default="", help="a paragraph for teachers: what this preset shows and why")
    parser.add_argument("--order", type=int, default=0, help="place of its card on the Home page (lower first)")
    parser.add_argument("--method", default="transfer", choices=["transfer", "direct-transfer"])
    parser.add_argument("--root", default=str(PRESETS_DIR))
    parser.add_argument("--data-dir", default=None)
    add_settings_options(parser)
    args = parser.parse_args(argv)
    title = args.title or f"{' + '.join(args.source)} → {args.target}, {args.relation}"
    make_preset(
        args.source,
        args.target,
        args.relation,
        args.id,
        title,
        args.description,
        args.story,
        settings_from_args(args, overrides_for([*args.source, args.target])),
        args.method,
        args.root,
        args.data_dir,
        order=args.order,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
