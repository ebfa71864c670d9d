"""Where data and model weights live. Each is overridable by argument, then environment variable."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "PTFER_DATA_DIR"
MODEL_DIR_ENV = "PTFER_MODEL_DIR"
# Tuned prompts shipped with the repository (read-only prompt-store roots): the toy demo's, and the real grids'.
SHIPPED_PROMPTS = tuple(
    REPO_ROOT / "assets" / p
    for p in ("prompts", "grid-real/prompts", "grid-classification/prompts", "grid-dbpedia/prompts")
)
# Baseline scores (manual, discretised, random) of the shipped relations on the real pair: a read-only root of the
# app's score cache (`compare.cached_eval`), so a live transfer on those relations scores only its own prompt.
SHIPPED_SCORES = REPO_ROOT / "assets" / "baseline-scores"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Explicit path > $PTFER_DATA_DIR > ../shared/data beside the repo > ./data."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    for candidate in (REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path.cwd() / "data"):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "data"


def model_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Explicit path > $PTFER_MODEL_DIR > ~/.cache/ptfer/models (where `ptfer models fetch` converts weights)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(MODEL_DIR_ENV):
        return Path(os.environ[MODEL_DIR_ENV]).expanduser()
    return Path.home() / ".cache" / "ptfer" / "models"
