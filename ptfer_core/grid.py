"""The result grid: every method × ordered (source → target) pair × relation, resumable and parallelisable.

Work is split into tasks. Stage 1 tunes one source prompt per (model, relation); stage 2 runs every method
for one (relation, source→target) pair, or the target-only methods (manual, random, direct tuning) once per
(relation, target). Each finished cell is written atomically as its own JSON file under ``OUT/cells`` and
skipped on restart, so an interrupted run loses at most the work in flight. Tasks are pure functions of
(config, task), so the local and the Ray executor give identical tables for the same seed.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .artifacts import SoftPrompt, atomic_write_bytes, atomic_write_json
from .baselines import ProjectorConfig, direct_transfer, discretize, projector_prompt, random_prompt
from .config import Method, Selection
from .data import get_relation, load_relations, load_split
from .errors import InputError, PTferError
from .evaluation import Prompt, candidates_for, evaluate
from .transfer import TransferConfig, transfer_prompt
from .tuning import TuneConfig, tune_prompt

# Row labels of the results table (methods × targets, as in the paper's tables).
TARGET_ONLY = ("manual", "random", "direct-tuning")
PAIR_METHODS = ("direct-transfer", "discretization", "projector", "transfer-loss", "transfer-dev")
MULTI = ("multi-source",)
ALL_METHODS = TARGET_ONLY + PAIR_METHODS + MULTI


@dataclass
class GridConfig:
    models: list[str]
    relations: list[str] | str = "all"
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    seed: int = 0
    split_seed: int = 0
    data_dir: str | None = None
    eval_split: str = "test"
    tune: dict = field(default_factory=dict)  # TuneConfig fields
    transfer: dict = field(default_factory=dict)  # TransferConfig fields
    projector: dict = field(default_factory=dict)  # ProjectorConfig fields
    dev_every: int = 50  # for transfer-dev
    max_train_facts: int | None = None  # cap on training facts per relation when tuning (a CPU budget; None: all)

    def __post_init__(self):
        if len(self.models) < 1:
            raise InputError("a grid needs at least one model")
        unknown = sorted(set(self.methods) - set(ALL_METHODS))
        if unknown:
            raise InputError(f"unknown grid methods {unknown}; choose from {', '.join(ALL_METHODS)}")
        if self.max_train_facts is not None and self.max_train_facts < 1:
            raise InputError(f"max_train_facts must be positive (got {self.max_train_facts})")
        TuneConfig(**self.tune), TransferConfig(**self.transfer), ProjectorConfig(**self.projector)  # validate early

    @classmethod
    def from_file(cls, path: str | Path) -> "GridConfig":
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise InputError(f"grid config {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise InputError(f"grid config {path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise InputError(f"grid config {path} must be a mapping")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise InputError(f"grid config {path}: {exc}") from None

    def relation_ids(self) -> list[str]:
        known = list(load_relations(self.data_dir))
        if self.relations == "all":
            return known
        for rid in self.relations:
            get_relation(rid, self.data_dir)
        return list(self.relations)


@dataclass(frozen=True)
class Task:
    kind: str  # "tune" | "target" | "pair" | "multi"
    relation: str
    target: str
    sources: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.relation}:{'+'.join(self.sources)}>{self.target}"


def plan(config: GridConfig) -> tuple[list[Task], list[Task]]:
    """(stage-1 tuning tasks, stage-2 evaluation tasks), in a fixed order."""
    relations = config.relation_ids()
    tune = [Task("tune", r, m) for r in relations for m in config.models]
    evals: list[Task] = []
    wants_pairs = any(m in config.methods for m in PAIR_METHODS)
    for r in relations:
        for t in config.models:
            if any(m in config.methods for m in TARGET_ONLY):
                evals.append(Task("target", r, t))
            others = tuple(s for s in config.models if s != t)
            if wants_pairs:
                evals += [Task("pair", r, t, (s,)) for s in others]
            if "multi-source" in config.methods and len(others) >= 2:
                evals.append(Task("multi", r, t, others))
    return tune, evals


class _Models:
    """Per-process model cache (each Ray worker keeps its own)."""

    cache: dict = {}

    @classmethod
    def get(cls, name: str):
        from .models import load_model

        if name not in cls.cache:
            cls.cache[name] = load_model(name)
        return cls.cache[name]


def _prompt_path(out: Path, model: str, relation: str) -> Path:
    return out / "prompts" / model.replace("/", "_").replace(":", "_") / f"{relation}.safetensors"


def _safe(key: str) -> str:
    return key.replace("/", "_").replace(":", "_").replace(">", "__to__")


def _cell_path(out: Path, task: Task) -> Path:
    return out / "cells" / f"{_safe(task.key)}.json"


def transferred_path(out: Path, task: Task, method: str) -> Path:
    """Where a cell's transferred prompt (with its search trajectory) is kept, for the app and the figures."""
    return out / "transferred" / f"{_safe(task.key)}__{method}.safetensors"


def run_task(config_dict: dict, task: Task, out: str) -> dict:
    """Run one task unless its output exists; returns {"task": key, "rows": [...], "skipped": bool}."""
    config, out = GridConfig(**config_dict), Path(out)
    if task.kind == "tune":
        path = _prompt_path(out, task.target, task.relation)
        if path.is_file():
            return {"task": task.key, "rows": [], "skipped": True}
        lm = _Models.get(task.target)
        relation = get_relation(task.relation, config.data_dir)
        train, dev = (load_split(task.relation, s, config.data_dir, config.split_seed) for s in ("train", "dev"))
        train = train[: config.max_train_facts]  # the split's order is already a seeded shuffle
        prompt = tune_prompt(lm, relation, train, dev, candidates_for(lm, data_dir=config.data_dir),
                             TuneConfig(**{"seed": config.seed, **config.tune}))
        prompt.save(path)
        return {"task": task.key, "rows": [], "skipped": False}
    cell = _cell_path(out, task)
    if cell.is_file():
        return {"task": task.key, "rows": json.loads(cell.read_text())["rows"], "skipped": True}
    rows = _evaluate_task(config, task, out)
    atomic_write_json(cell, {"task": task.key, "rows": rows})
    return {"task": task.key, "rows": rows, "skipped": False}


def _evaluate_task(config: GridConfig, task: Task, out: Path) -> list[dict]:
    target = _Models.get(task.target)
    relation = get_relation(task.relation, config.data_dir)
    cands = candidates_for(target, data_dir=config.data_dir)
    dev, test = (load_split(task.relation, s, config.data_dir, config.split_seed) for s in ("dev", config.eval_split))
    rows = []

    def score(method: str, prompt, started: float, **extra):
        as_prompt = prompt if isinstance(prompt, Prompt) else prompt.as_prompt()
        result = evaluate(target, as_prompt, test, cands)
        rows.append({"relation": task.relation, "relation_type": relation.type, "source": "+".join(task.sources),
                     "target": task.target, "method": method, "p_at_1": result.p_at_1, "n_facts": result.n_facts,
                     "n_correct": result.n_correct, "seconds": time.perf_counter() - started, "seed": config.seed,
                     **extra})

    def method_error(method: str, exc: PTferError):
        rows.append({"relation": task.relation, "relation_type": relation.type, "source": "+".join(task.sources),
                     "target": task.target, "method": method, "p_at_1": None, "n_facts": 0, "n_correct": 0,
                     "seconds": 0.0, "seed": config.seed, "error": str(exc)})

    tuned_template = TuneConfig(**config.tune).resolved(target, relation).template.text
    if task.kind == "target":
        if "manual" in config.methods:
            t = time.perf_counter()
            score("manual", Prompt.manual(relation), t)
        if "random" in config.methods:
            t = time.perf_counter()
            score("random", random_prompt(target, tuned_template, relation.id, config.seed), t)
        if "direct-tuning" in config.methods:
            t = time.perf_counter()
            score("direct-tuning", SoftPrompt.load(_prompt_path(out, task.target, task.relation)), t)
        return rows

    sources = [(SoftPrompt.load(_prompt_path(out, s, task.relation)), _Models.get(s)) for s in task.sources]
    transfer_base = {"seed": config.seed, **config.transfer}
    if task.kind == "multi":
        t = time.perf_counter()
        prompt = transfer_prompt(sources, target, TransferConfig(**transfer_base))
        prompt.save(transferred_path(out, task, "multi-source"))
        score("multi-source", prompt, t)
        return rows
    (source_prompt, source_lm), = sources
    for method in config.methods:
        t = time.perf_counter()
        try:
            if method == "direct-transfer":
                score(method, direct_transfer(source_prompt, target), t)
            elif method == "discretization":
                prompt, tokens = discretize(source_prompt, source_lm, target)
                score(method, prompt, t, tokens=" ".join(tokens))
            elif method == "projector":
                score(method, projector_prompt(source_prompt, source_lm, target, dev, cands,
                                               ProjectorConfig(**{"seed": config.seed, **config.projector})), t)
            elif method in ("transfer-loss", "transfer-dev"):
                selection = Selection.LOSS if method == "transfer-loss" else Selection.DEV
                cfg = TransferConfig(**{**transfer_base, "selection": selection, "dev_every": config.dev_every})
                prompt = transfer_prompt(sources, target, cfg, dev=dev, candidates=cands)
                prompt.save(transferred_path(out, task, method))
                score(method, prompt, t, matching_loss=prompt.metrics["matching_loss"])
        except PTferError as exc:  # e.g. direct transfer across widths: recorded, not fatal
            method_error(method, exc)
    return rows


# ----------------------------------------------------------------------------- executors


def run_grid(config: GridConfig, out: str | Path, executor: str = "local", ray_address: str | None = None,
             on_step=None, should_stop=None) -> "pandas.DataFrame":  # noqa: F821
    """Run (or resume) the grid; write results.csv, results.parquet and summary.md under `out`; return the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", asdict(config))
    stage1, stage2 = plan(config)
    needs_prompts = {(t.relation, s) for t in stage2 for s in t.sources} | {
        (t.relation, t.target) for t in stage2 if t.kind == "target" and "direct-tuning" in config.methods}
    stage1 = [t for t in stage1 if (t.relation, t.target) in needs_prompts]
    total = len(stage1) + len(stage2)
    done = [0]

    def progress(result):
        done[0] += 1
        if on_step:
            on_step(done[0], {"task": result["task"], "skipped": result["skipped"], "total_steps": total})

    config_dict = asdict(config)
    rows: list[dict] = []
    if executor == "local":
        # Relation by relation (its prompts, then its cells), so an interrupted run leaves whole relations done.
        by_relation: dict[str, list[Task]] = {}
        for task in stage1 + stage2:  # the plan's relation order; within a relation, tuning first
            by_relation.setdefault(task.relation, []).append(task)
        for tasks in by_relation.values():
            for task in tasks:
                if should_stop and should_stop():
                    return _write_tables(rows, out)
                result = run_task(config_dict, task, str(out))
                rows += result["rows"]
                progress(result)
    elif executor == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(run_task)
        for stage in (stage1, stage2):
            pending = {remote.remote(config_dict, task, str(out)): task for task in stage}
            results = {}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(ready[0])
                results[task.key] = ray.get(ready[0])
                progress(results[task.key])
            for task in stage:  # keep the local order so both executors write identical tables
                rows += results[task.key]["rows"]
    else:
        raise InputError(f"unknown executor {executor!r}; choose local or ray")
    return _write_tables(rows, out)


def _write_tables(rows: list[dict], out: Path):
    import io

    import pandas as pd

    table = pd.DataFrame(rows)
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    atomic_write_bytes(out / "results.csv", buf.getvalue().encode())
    if len(table):
        pq = io.BytesIO()
        table.to_parquet(pq, index=False)
        atomic_write_bytes(out / "results.parquet", pq.getvalue())
    atomic_write_bytes(out / "summary.md", summary_markdown(table).encode())
    return table


def micro_average(table) -> "pandas.DataFrame":  # noqa: F821
    """Micro-averaged P@1 (all correct / all facts) per method × target (rows × columns)."""
    ok = table[table["p_at_1"].notna()] if len(table) else table
    if not len(ok):
        return ok
    grouped = ok.groupby(["method", "target"])[["n_correct", "n_facts"]].sum()
    grouped["p_at_1"] = 100.0 * grouped["n_correct"] / grouped["n_facts"].clip(lower=1)
    pivot = grouped["p_at_1"].unstack("target")
    order = [m for m in ALL_METHODS if m in pivot.index]
    return pivot.loc[order]


def summary_markdown(table) -> str:
    if not len(table):
        return "# Results\n\nNo finished cells yet.\n"
    pivot = micro_average(table)
    n_rel = table["relation"].nunique()
    lines = [f"# Results: micro-averaged P@1 over {n_rel} relations (test split, seeded 60/20/20)", "",
             "| method | " + " | ".join(pivot.columns) + " |", "|---|" + "---|" * len(pivot.columns)]
    for method, row in pivot.iterrows():
        lines.append(f"| {method} | " + " | ".join("—" if v != v else f"{v:.1f}" for v in row) + " |")
    return "\n".join(lines) + "\n"
