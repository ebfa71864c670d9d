"""The result grid: every method × recipe × ordered (source → target) pair × task, resumable and parallelisable.

Work is split into cells. Stage 1 tunes one source prompt per (model, task, tuning settings) into a `PromptStore`;
stage 2 runs the methods of one (task, target, recipe[, sources]) cell. Each finished cell is written atomically
as its own JSON file under ``OUT/cells``, stamped with a hash of everything that determines it and a checksum of
its rows. On a rerun a cell is reused only when both still match: a changed setting recomputes exactly the cells
it touches, and a damaged or edited cell file is recomputed with a warning naming it, never folded into the table.
A task that cannot run for a model (no training fact has a single-token answer, say) becomes rows marked not
applicable, with the reason, and the grid goes on. Cells are pure functions of (config, cell), so the local and
the Ray executor give identical tables for the same seed.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .config import Precision, Recipe, parse_enum
from .data import file_stamp, get_task, load_relations, load_tasks
from .errors import InputError, PTferError
from .files import atomic_write_json
from .grid_tables import GRID_METHODS, TARGET_METHODS
from .paths import data_dir as resolve_data_dir
from .paths import model_dir
from .runs import PromptStore, TaskData
from .settings import SETTING_GROUPS, field_names, recipe_settings

BASELINE_METHODS = ("direct-transfer", "discretization", "projector")
CELL_FORMAT = 3


@dataclass
class GridConfig:
    models: list[str]
    relations: list[str] | str = "all"  # task ids (relations and classification tasks), or "all" (the 41 relations)
    recipes: list[str] = field(default_factory=lambda: [Recipe.STUDIO.value])
    methods: list[str] = field(default_factory=lambda: list(GRID_METHODS))
    overrides: dict = field(default_factory=dict)  # {"tune": {...}, "transfer": {...}, "projector": {...}}
    seed: int = 0
    split_seed: int = 0
    data_dir: str | None = None
    model_dir: str | None = None  # where local weights are looked for (None: $PTFER_MODEL_DIR, then the cache)
    eval_split: str = "test"
    eval_precision: str = Precision.FLOAT32.value
    max_dev: int | None = None  # cap on dev examples for every dev-based choice (a CPU budget; None: all)
    max_test: int | None = None  # cap on the examples scored (a seeded sample; a CPU budget; None: all)

    def __post_init__(self):
        if (
            not isinstance(self.models, list)
            or not self.models
            or not all(isinstance(m, str) and m for m in self.models)
        ):
            raise InputError(
                f"grid 'models' must be a list of model names (got {self.models!r}); "
                "write models: [tiny:llama] rather than models: tiny:llama"
            )
        if len(set(self.models)) != len(self.models):
            raise InputError("grid 'models' lists a model twice")
        for key in ("recipes", "methods"):
            value = getattr(self, key)
            if not isinstance(value, list) or not value:
                raise InputError(f"grid '{key}' must be a non-empty list (got {value!r})")
        unknown = sorted(set(self.methods) - set(GRID_METHODS))
        if unknown:
            raise InputError(f"unknown grid methods {unknown}; choose from {', '.join(GRID_METHODS)}")
        self.recipes = [parse_enum(Recipe, r, "recipe").value for r in self.recipes]
        self.eval_precision = parse_enum(Precision, self.eval_precision, "precision").value
        for key in ("max_dev", "max_test"):
            cap = getattr(self, key)
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise InputError(f"{key} must be a positive integer (got {cap!r})")
        if self.eval_split not in ("train", "dev", "test"):
            raise InputError(f"eval_split must be train, dev or test (got {self.eval_split!r})")
        if not isinstance(self.overrides, dict):
            raise InputError("grid 'overrides' must be a mapping of tune/transfer/projector settings")
        for group, values in self.overrides.items():
            if values is not None and not isinstance(values, dict):
                raise InputError(f"grid overrides '{group}' must be a mapping of settings (got {values!r})")
            # a typo ("epoch:") would run a day-long grid on the recipe's value: refused here, not warned about
            known = SETTING_GROUPS.get(group)
            unknown = sorted(set(values or {}) - set(field_names(known))) if known else []
            if unknown:
                raise InputError(f"grid overrides '{group}': unknown setting(s) {', '.join(unknown)}")
        for key in ("seed", "split_seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{key} must be a whole number of at least 0 (got {value!r})")
        for recipe in self.recipes:  # every setting is checked before anything runs
            self.settings_for(recipe)
        if self.relations != "all" and (
            not isinstance(self.relations, list) or not all(isinstance(r, str) for r in self.relations)
        ):
            raise InputError(f"grid 'relations' must be 'all' or a list of ids (got {self.relations!r})")
        for name in self.models:
            check_model_name(name)

    def settings_for(self, recipe: str):
        """The recipe's settings with the grid's overrides, seeded by the grid's `seed` as `ptfer transfer --seed`
        seeds them (tuning, search, projector) unless an override sets a group's seed itself: the seed had reached
        only the random baseline, while every row said it. Seed 0 is every recipe's own, so it changes nothing."""
        overrides = {group: dict(values or {}) for group, values in self.overrides.items()}
        for group in SETTING_GROUPS:
            overrides.setdefault(group, {}).setdefault("seed", self.seed)
        return recipe_settings(recipe, overrides)

    @classmethod
    def from_file(cls, path: str | Path) -> GridConfig:
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"grid config {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise InputError(f"grid config {path} is not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(raw, dict):
            raise InputError(f"grid config {path} must be a mapping")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(
                f"grid config {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**raw)

    def task_ids(self) -> list[str]:
        if self.relations == "all":
            return list(load_relations(self.data_dir))
        tasks = load_tasks(self.data_dir)
        for rid in self.relations:
            if rid not in tasks:
                get_task(rid, self.data_dir)  # raises the error that lists what exists
        return list(self.relations)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def check_model_name(name: str) -> None:
    """A clear error for a model name that cannot exist (before hours of grid)."""
    from .loading import REGISTRY
    from .model_names import is_toy
    from .toy_models import parse_toy

    if is_toy(name):
        parse_toy(name)
    elif name not in REGISTRY and not Path(name).exists() and "/" not in name:
        raise InputError(
            f"unknown model {name!r}: not a registry name ({', '.join(REGISTRY)}), a toy model "
            "(tiny:ARCH[:WIDTH[:SEED]]), a local path or a hub id (org/name)"
        )


@dataclass(frozen=True)
class Cell:
    kind: str  # "tune" | "target" | "baseline" | "transfer" | "self" | "dual"
    relation: str
    target: str
    recipe: str
    sources: tuple[str, ...] = ()
    shared_with: tuple[str, ...] = ()  # other recipes whose tuning (and projector) settings equal this one's

    @property
    def depends_on_search(self) -> bool:
        return self.kind in ("transfer", "self", "dual")

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.recipe}:{self.relation}:{'+'.join(self.sources)}>{self.target}"

    @property
    def filename(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in self.key.replace(">", "__to__"))
        return f"{safe}.json"


def recipe_groups(config: GridConfig) -> dict[str, tuple[str, ...]]:
    """Each recipe → the recipes after it with the same tuning and projector settings (their baselines coincide)."""

    def part(recipe):
        s = config.settings_for(recipe)
        return json.dumps([s.tune.stamped(), s.projector.stamped()], sort_keys=True)

    groups: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for recipe in config.recipes:
        leader = seen.setdefault(part(recipe), recipe)
        groups[leader] = groups.get(leader, ()) + (() if leader == recipe else (recipe,))
    return groups


def plan(config: GridConfig) -> tuple[list[Cell], list[Cell]]:
    """(stage-1 tuning cells, stage-2 cells), in a fixed order: task by task. Baselines that do not depend on the
    search (manual, random, direct tuning, direct transfer, discretisation, projector) run once per group of recipes
    that tune alike; their rows are repeated for each recipe of the group."""
    tune, cells = [], []
    groups = recipe_groups(config)
    wants_baselines = any(m in config.methods for m in BASELINE_METHODS)
    for rid in config.task_ids():
        for recipe, shared in groups.items():
            for model in config.models:
                tune.append(Cell("tune", rid, model, recipe, (), shared))
            for target in config.models:
                if any(m in config.methods for m in TARGET_METHODS):
                    cells.append(Cell("target", rid, target, recipe, (), shared))
                if wants_baselines:
                    cells += [Cell("baseline", rid, target, recipe, (s,), shared) for s in config.models if s != target]
        for recipe in config.recipes:
            for target in config.models:
                if "self-transfer" in config.methods:
                    cells.append(Cell("self", rid, target, recipe, (target,)))
                if "transfer" in config.methods:
                    cells += [Cell("transfer", rid, target, recipe, (s,)) for s in config.models if s != target]
                if "dual-source" in config.methods and len(config.models) >= 2:
                    cells.append(Cell("dual", rid, target, recipe, tuple(config.models)))
    return tune, cells


class _Models:
    """Per-process model cache (each Ray actor keeps its own)."""

    cache: dict = {}

    @classmethod
    def get(cls, name: str, models_root: str | None = None):
        from .loading import load_model

        key = (name, str(model_dir(models_root)))
        if key not in cls.cache:
            cls.cache[key] = load_model(name, models_root=models_root)
        return cls.cache[key]


def cell_hash(config: GridConfig, cell: Cell) -> str:
    """Everything a cell's rows depend on: its recipe's settings (only tuning and projector ones for baselines),
    the seeds, the split scored, the precision, the methods asked for."""
    settings = config.settings_for(cell.recipe).describe()
    if not cell.depends_on_search:
        settings = {k: settings[k] for k in ("tune", "projector")}
    data_root, models_root = str(resolve_data_dir(config.data_dir).resolve()), str(model_dir(config.model_dir))
    models_stamp = _tree_stamp(models_root)  # once per cell, not once per model of the cell
    blob = {
        "cell": cell.key,
        # resolved folders and their files' stamps in the memo keys: $PTFER_DATA_DIR / $PTFER_MODEL_DIR may differ
        # between calls, and a file edited or re-fetched while the process runs is hashed again
        "data": _data_hash(
            data_root, cell.relation, config.split_seed, config.max_dev, config.max_test, _tree_stamp(data_root)
        ),
        "models": [_identity(name, models_root, models_stamp) for name in (*cell.sources, cell.target)],
        "settings": settings,
        "seed": config.seed,
        "split_seed": config.split_seed,
        "eval_split": config.eval_split,
        "eval_precision": config.eval_precision,
        "methods": sorted(config.methods),
        "max_dev": config.max_dev,
        "format": CELL_FORMAT,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]


# Both hashes are memoised per process: a grid hashes every cell (thousands for the full grid), and each would
# otherwise re-split the task's data and re-read 2 MiB of every weight file.
def _tree_stamp(root: str) -> tuple:
    """(size, mtime) of every file under `root`, in path order (~1 ms for the shared data)."""
    files = sorted(p for p in Path(root).rglob("*") if p.is_file()) if Path(root).is_dir() else []
    return tuple(zip(map(str, files), file_stamp(*files)))


@lru_cache(maxsize=256)
def _data_hash(
    root: str, task_id: str, split_seed: int, max_dev: int | None, max_test: int | None, _stamp: tuple
) -> str:
    """Every example of every split (an edited or other data folder recomputes the cell instead of reusing it)."""
    try:
        data = TaskData.load(task_id, root, split_seed, max_dev, max_test)
    except PTferError as exc:  # the cell records why it cannot run; the hash need only be stable
        return f"unavailable: {exc}"
    text = "\n".join(f"{s}\t{f.uuid}\t{f.subject}\t{f.object}" for s, facts in data.splits.items() for f in facts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@lru_cache(maxsize=64)
def _identity(name: str, models_root: str, _stamp: tuple) -> str:
    from .loading import model_ref

    try:  # a hash of the local weights: a re-fetched other revision recomputes
        return model_ref(name, Path(models_root)).identity
    except PTferError:
        return name


def rows_checksum(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:20]


def read_cell(path: Path, cell: Cell, expected_hash: str) -> list[dict] | None:
    """The cell's rows if the file is whole and still describes this cell under these settings, else None
    (with a warning naming the file when it exists but cannot be trusted)."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        ok = (
            isinstance(saved, dict)
            and saved.get("task") == cell.key
            and isinstance(saved.get("rows"), list)
            and saved.get("checksum") == rows_checksum(saved["rows"])
            and saved["rows"]
        )
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        ok = False
    if not ok:
        warnings.warn(f"grid cell {path} is damaged or was edited; recomputing it", stacklevel=2)
        return None
    if saved.get("settings_hash") != expected_hash:
        return None  # made under other settings: recomputed (the new file replaces it)
    return saved["rows"]


def run_cell(config_dict: dict, cell: Cell, out: str) -> dict:
    """Run one cell unless a trustworthy result exists; returns {"task": key, "rows": [...], "skipped": bool}."""
    config, out = GridConfig(**config_dict), Path(out)
    store = PromptStore(out / "prompts")
    if cell.kind == "tune":
        try:
            data = TaskData.load(cell.relation, config.data_dir, config.split_seed, config.max_dev, config.max_test)
            settings = config.settings_for(cell.recipe)
            lm = _Models.get(cell.target, config.model_dir)
            if store.find(lm, data, settings.tune) is not None:
                return {"task": cell.key, "rows": [], "skipped": True}
            store.get_or_tune(lm, data, settings.tune, recipe=cell.recipe)
        except PTferError:
            pass  # recorded as not applicable by the cells that need this prompt
        return {"task": cell.key, "rows": [], "skipped": False}
    path = out / "cells" / cell.filename
    expected = cell_hash(config, cell)
    rows = read_cell(path, cell, expected)
    if rows is not None:
        return {"task": cell.key, "rows": rows, "skipped": True}
    rows = evaluate_cell(config, cell, store, out)
    atomic_write_json(
        path, {"task": cell.key, "settings_hash": expected, "checksum": rows_checksum(rows), "rows": rows}
    )
    return {"task": cell.key, "rows": rows, "skipped": False}


def evaluate_cell(config: GridConfig, cell: Cell, store: PromptStore, out: Path) -> list[dict]:
    from .grid_cells import cell_rows

    return cell_rows(config, cell, store, out, lambda name: _Models.get(name, config.model_dir))


# ----------------------------------------------------------------------------- executors


def with_shared(rows: list[dict], cell: Cell) -> list[dict]:
    """A baseline cell's rows, repeated for every recipe that shares them."""
    return rows + [{**row, "recipe": other} for other in cell.shared_with for row in rows]


def clean_orphans(out: Path) -> int:
    """Remove temporary files left by a killed run (atomic writes that never reached their rename)."""
    count = 0
    for tmp in out.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count


def run_grid(
    config: GridConfig,
    out: str | Path,
    executor: str = "local",
    ray_address: str | None = None,
    on_step=None,
    should_stop=None,
    compute: bool = True,
    tables_for: GridConfig | None = None,
):
    """Run (or resume) the grid; write results.csv, results.parquet and summary.md under `out`; return the table.

    `compute=False` only assembles the tables from the cells already finished (a grid still being built in parts);
    the cells not run yet are counted, not computed. `tables_for`: the wider config a part run belongs to; its
    finished cells are what the tables then cover, so the folder never shows only the part that ran last."""
    from .grid_tables import write_tables

    def finish(rows: list[dict]):
        if tables_for is not None and tables_for != config:
            return run_grid(tables_for, out, compute=False)
        atomic_write_json(out / "config.json", config.as_dict())  # the config these tables were assembled for
        return write_tables(rows, out, config)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean_orphans(out)
    stage1, stage2 = plan(config)
    groups = recipe_groups(config)
    leader = {r: lead for lead, shared in groups.items() for r in (lead, *shared)}
    needed = {(c.relation, s, leader[c.recipe]) for c in stage2 for s in c.sources} | {
        (c.relation, c.target, c.recipe) for c in stage2 if c.kind == "target" and "direct-tuning" in config.methods
    }
    stage1 = [c for c in stage1 if (c.relation, c.target, c.recipe) in needed]
    total = len(stage1) + len(stage2)
    done = [0]

    def progress(result):
        done[0] += 1
        if on_step:
            on_step(done[0], {"task": result["task"], "skipped": result["skipped"], "total_steps": total})

    config_dict = config.as_dict()
    rows: list[dict] = []
    if not compute:
        pending = 0
        for cell in stage2:
            found = read_cell(out / "cells" / cell.filename, cell, cell_hash(config, cell))
            pending += found is None
            rows += with_shared(found or [], cell)
        if on_step:
            on_step(len(stage2), {"task": f"{pending} cell(s) not run yet", "skipped": True, "total_steps": total})
        return finish(rows)
    if executor == "local":
        by_task: dict[str, list[Cell]] = {}
        for cell in stage1 + stage2:  # task by task (its prompts, then its cells): a stop leaves whole tasks done
            by_task.setdefault(cell.relation, []).append(cell)
        for cells in by_task.values():
            for cell in cells:
                if should_stop and should_stop():
                    return finish(rows)
                result = run_cell(config_dict, cell, str(out))
                rows += with_shared(result["rows"], cell)
                progress(result)
    elif executor == "ray":
        from .grid_ray import run_on_ray

        rows = run_on_ray(config_dict, stage1, stage2, str(out), ray_address, progress)
    else:
        raise InputError(f"unknown executor {executor!r}; choose local or ray")
    return finish(rows)
