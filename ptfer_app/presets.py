"""Presets: finished transfers stored as files, so the Home page opens them instantly (no model needed).

Format (one directory per preset, under ``assets/presets/<id>/``)::

    preset.json            {"format": "ptfer-preset", "version": 1, "id", "title", "description", "sources", "target",
                            "relation": {id, label, template, type, description}, "settings", "scores",
                            "per_fact", "discretized_tokens", "timings", "created", "prompts": {role: file stem}}
    source-0.safetensors   + source-0.json   the tuned source prompt(s)      (ptfer_core.artifacts.SoftPrompt)
    transfer.safetensors   + transfer.json   the transferred target prompt
    discretization.safetensors + .json       the discretisation baseline (optional)

Write one with `write_preset(outcome, ...)` (after `pipeline.run_transfer`), or from the shell::

    python -m ptfer_app.presets --source smollm2-135m --target gemma3-270m --relation P36 --id smollm2-gemma-capital

No Streamlit here: the lead's scripts can call this directly.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from ptfer_core.artifacts import SoftPrompt, atomic_write_json
from ptfer_core.config import Solver, SpaceMode
from ptfer_core.data import Relation
from ptfer_core.errors import PromptFileError
from ptfer_core.paths import REPO_ROOT

from .pipeline import Outcome, RunSettings

FORMAT, VERSION = "ptfer-preset", 1
PRESETS_DIR = REPO_ROOT / "assets" / "presets"


def write_preset(outcome: Outcome, preset_id: str, title: str, description: str = "",
                 root: Path | str = PRESETS_DIR) -> Path:
    """Store `outcome` as ``root/preset_id/``; replaces an existing preset of that id atomically."""
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
        atomic_write_json(staging / "preset.json", {
            "format": FORMAT, "version": VERSION, "id": preset_id, "title": title, "description": description,
            "sources": outcome.sources, "target": outcome.target, "relation": asdict(outcome.relation),
            "settings": outcome.settings, "scores": outcome.scores, "per_fact": outcome.per_fact,
            "discretized_tokens": outcome.discretized_tokens,
            "timings": {k: round(v, 3) for k, v in outcome.timings.items()}, "created": time.time(),
            "prompts": prompts,
        })
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
    """Load a preset directory into an `Outcome`; PromptFileError if it is damaged."""
    import json

    path = Path(path)
    try:
        meta = json.loads((path / "preset.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PromptFileError(f"preset {path.name}: preset.json is missing or not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise PromptFileError(f"preset {path.name}: not a {FORMAT} v{VERSION} file")
    try:
        prompts = meta["prompts"]
        sources = [SoftPrompt.load(path / prompts[k]) for k in sorted(p for p in prompts if p.startswith("source-"))]
        transferred = SoftPrompt.load(path / prompts["transfer"])
        discretized = SoftPrompt.load(path / prompts["discretization"]) if "discretization" in prompts else None
        return Outcome(sources=meta["sources"], target=meta["target"], relation=Relation(**meta["relation"]),
                       settings=meta.get("settings", {}), source_prompts=sources, transferred=transferred,
                       scores=meta.get("scores", {}), per_fact=meta.get("per_fact", []), discretized=discretized,
                       discretized_tokens=meta.get("discretized_tokens"), timings=meta.get("timings", {}),
                       origin=f"preset:{meta['id']}", title=meta.get("title", meta["id"]))
    except (KeyError, TypeError) as exc:
        raise PromptFileError(f"preset {path.name}: incomplete ({exc})") from None


def list_presets(root: Path | str = PRESETS_DIR) -> list[dict]:
    """Summaries of the valid presets under `root` (id, title, description, sources, target, relation, scores), sorted:
    real models first, then by title."""
    import json

    out = []
    root = Path(root)
    if not root.is_dir():
        return out
    for meta_path in sorted(root.glob("*/preset.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("format") != FORMAT:
            continue
        out.append({k: meta.get(k) for k in ("id", "title", "description", "sources", "target", "relation", "scores",
                                             "settings", "timings")} | {"path": str(meta_path.parent)})
    from .catalog import is_tiny

    return sorted(out, key=lambda m: (is_tiny(m["target"] or ""), m["title"] or ""))


# ----------------------------------------------------------------------------- making one from scratch


def make_preset(sources: list[str], target: str, relation_id: str, preset_id: str, title: str, description: str = "",
                settings: RunSettings | None = None, root: Path | str = PRESETS_DIR, data_dir=None, log=print) -> Path:
    """Load the models, run the app's pipeline once (tuning the sources if needed) and store the result."""
    from ptfer_core.anchors import select_anchors
    from ptfer_core.data import get_relation
    from ptfer_core.evaluation import candidates_for

    from . import catalog, pipeline
    from .jobs import Job
    from .models import load

    settings = settings or RunSettings()
    names = list(sources) + [target]
    if catalog.uses_demo_data(names) and data_dir is None:
        from ptfer_core.testing import write_mini_lama

        data_dir = write_mini_lama(tempfile.mkdtemp(prefix="ptfer-mini-lama-"))
    lms = {n: load(n) for n in dict.fromkeys(names)}
    relation = get_relation(relation_id, data_dir)
    splits = pipeline.relation_splits(relation_id, data_dir)
    candidates = {n: candidates_for(lm, data_dir=data_dir) for n, lm in lms.items()}
    pipeline.check_enough_facts(relation, splits, candidates)
    anchors = select_anchors(list(lms.values()), settings.n_anchors)
    known = [p for m in list_presets(root) for p in read_preset(m["path"]).source_prompts]

    def work(job):
        return pipeline.run_transfer(job, sources=[(n, lms[n]) for n in sources], target=lms[target],
                                     relation=relation, splits=splits, candidates=candidates, settings=settings,
                                     anchors=anchors, known_prompts=known)

    job = Job(work, "preset", setup=pipeline.cpu_setup).start()
    shown = 0
    while not job.join(2.0):
        snap = job.snapshot()
        for line in snap["log"][shown:]:
            log(line)
        shown = len(snap["log"])
        if snap["phase"]:
            log(f"  {snap['phase']['name']}: step {snap['phase']['step']}/{snap['phase']['total']}")
    if job.error:
        raise RuntimeError(job.error + ("\n" + job.detail if job.detail else ""))
    outcome = job.result
    path = write_preset(outcome, preset_id, title, description, root)
    log(f"preset {preset_id} written to {path}: " + ", ".join(f"{k} {v['p_at_1']:.1f}" for k, v in outcome.scores.items()))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write an app preset (a finished transfer) under assets/presets/.")
    parser.add_argument("--source", action="append", required=True, help="source model (repeat for multi-source)")
    parser.add_argument("--target", required=True)
    parser.add_argument("--relation", required=True)
    parser.add_argument("--id", required=True, help="preset id (directory name)")
    parser.add_argument("--title", help="card title on the Home page")
    parser.add_argument("--description", default="")
    parser.add_argument("--steps", type=int, default=RunSettings.steps)
    parser.add_argument("--tune-epochs", type=int, default=RunSettings.tune_epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-anchors", type=int, default=RunSettings.n_anchors, help="0: every shared word")
    parser.add_argument("--top-k", type=int, default=0, help="0: keep all similarities")
    parser.add_argument("--selection", choices=["loss", "dev"], default="loss")
    parser.add_argument("--no-normalize", action="store_true")
    parser.add_argument("--space", choices=[s.value for s in SpaceMode], default=RunSettings.space,
                        help="how similarities to the anchors are taken (raw: the paper)")
    parser.add_argument("--solver", choices=[s.value for s in Solver], default=RunSettings.solver)
    parser.add_argument("--projection", choices=["none", "nearest", "shared", "mix"], default=RunSettings.projection,
                        help="shared: the nearest word the models share")
    parser.add_argument("--init", choices=["random", "manual", "vocab-sample"], default=RunSettings.tune_init,
                        help="source prompt initialisation")
    parser.add_argument("--placement", choices=["postfix", "prefix", "split", "template"], default=RunSettings.placement)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on small CPUs)")
    parser.add_argument("--root", default=str(PRESETS_DIR))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    import os

    from .pipeline import THREADS_ENV, cpu_setup

    os.environ[THREADS_ENV] = str(args.threads)
    cpu_setup()
    settings = RunSettings(steps=args.steps, tune_epochs=args.tune_epochs, seed=args.seed, n_anchors=args.n_anchors or None,
                           top_k=args.top_k or None, selection=args.selection, normalize=not args.no_normalize,
                           space=args.space, solver=args.solver, projection=args.projection, tune_init=args.init,
                           placement=args.placement)
    title = args.title or f"{' + '.join(args.source)} → {args.target}, {args.relation}"
    make_preset(args.source, args.target, args.relation, args.id, title, args.description, settings, args.root,
                args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
