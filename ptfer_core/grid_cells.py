"""The rows of one grid cell: each method of the cell run through `runs.run`, failures recorded, not raised."""

from __future__ import annotations

import time
from pathlib import Path

import torch.nn.functional as F

from .artifacts import SoftPrompt
from .config import resolve_precision
from .errors import DataError, PTferError
from .grid_tables import TARGET_METHODS
from .runs import PromptStore, TaskData, run

CELL_METHODS = {
    "target": TARGET_METHODS,
    "baseline": ("direct-transfer", "discretization", "projector"),
    "transfer": ("transfer",),
    "self": ("self-transfer",),
    "dual": ("dual-source",),
}
ENGINE_METHOD = {"self-transfer": "transfer", "dual-source": "transfer"}


def cell_rows(config, cell, store: PromptStore, out: Path, get_model) -> list[dict]:
    methods = [m for m in CELL_METHODS[cell.kind] if m in config.methods]
    settings = config.settings_for(cell.recipe)
    base = {
        "relation": cell.relation,
        "recipe": cell.recipe,
        "source": "+".join(cell.sources),
        "target": cell.target,
        "seed": config.seed,
        # what `auto` meant on the machine that scored the cell: bfloat16 with AVX-512, float32 without. A grid
        # built in parts on different machines otherwise mixes the two silently (benchmarks/grid_precision_audit.py)
        "precision": resolve_precision(config.eval_precision).value,
    }
    try:
        data = TaskData.load(cell.relation, config.data_dir, config.split_seed, config.max_dev, config.max_test)
        base["relation_type"] = data.task.type
        target = get_model(cell.target)
        sources = [get_model(s) for s in cell.sources]
        data.candidates(target)
    except PTferError as exc:
        return [{**base, "method": m, **_failed(exc, not_applicable=True)} for m in methods]
    rows = []
    for method in methods:
        started = time.perf_counter()
        try:
            result = run(
                ENGINE_METHOD.get(method, method),
                data=data,
                target=target,
                sources=sources,
                settings=settings,
                store=store,
                split=config.eval_split,
                precision=config.eval_precision,
                seed=config.seed,
            )
        except PTferError as exc:
            rows.append({**base, "method": method, **_failed(exc, not_applicable=_not_applicable(exc))})
            continue
        if not result.result.n_facts:
            reason = DataError(
                f"no {config.eval_split} example of {cell.relation} has a single-token answer of {cell.target}"
            )
            rows.append({**base, "method": method, **_failed(reason, not_applicable=True)})
            continue
        row = {
            **base,
            "method": method,
            "p_at_1": result.p_at_1,
            "n_facts": result.result.n_facts,
            "n_correct": result.result.n_correct,
            "seconds": time.perf_counter() - started,
            "error": None,
        }
        if data.task.is_classification:
            row["macro_f1"] = result.result.macro_f1
        prompt = result.prompt
        if isinstance(prompt, SoftPrompt):
            row["matching_loss"] = prompt.metrics.get("matching_loss")
            row["selected_step"] = prompt.provenance.get("selected_step")
            if method in ("transfer", "self-transfer", "dual-source"):
                prompt.save(out / "transferred" / f"{Path(cell.filename).stem}__{method}.safetensors")
        if method == "self-transfer":  # the sanity check: how much of the source prompt came back
            source = result.source_prompts[0]
            cos = F.cosine_similarity(prompt.vectors, source.vectors, dim=-1)
            row.update(self_cosine_min=float(cos.min()), self_cosine_mean=float(cos.mean()))
            before = prompt.provenance.get("cosine_to_source_before_normalisation")
            if before:
                row["self_cosine_unnormalised_min"] = min(before)
        if method == "direct-tuning" and isinstance(prompt, SoftPrompt):
            row["dev_p_at_1"] = prompt.metrics.get("dev_p_at_1")
        rows.append(row)
    return rows


def _not_applicable(exc: PTferError) -> bool:
    from .errors import DataError, DimensionMismatchError

    return isinstance(exc, (DataError, DimensionMismatchError))


def _failed(exc: PTferError, not_applicable: bool) -> dict:
    message = " ".join(str(exc).split())
    return {
        "p_at_1": None,
        "n_facts": 0,
        "n_correct": 0,
        "seconds": 0.0,
        "error": f"not applicable: {message}" if not_applicable else message,
    }
