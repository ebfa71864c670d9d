"""The app's cached view of `ptfer_core`: models and shared objects with st.cache_resource (never mutated),
derived tables with st.cache_data. Page code calls these, never the engine's heavy functions directly.

Arguments starting with "_" are not hashed by Streamlit; each such function also takes a small hashable key
(model name, prompt digest) that identifies what the unhashed argument is.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from ptfer_core import data as core_data
from ptfer_core.errors import DataError
from ptfer_core.paths import data_dir as core_data_dir

from . import catalog, models, presets


# ----------------------------------------------------------------------------- models and data


@st.cache_resource(show_spinner=False, max_entries=6)
def load_model(name: str):
    """One shared, frozen instance per model name (PromptedLM never changes the model or tokenizer)."""
    return models.load(name)


_warm_lock = threading.Lock()
_warm_started: set[str] = set()


def warm_up(names: list[str]) -> None:
    """Start loading the selected real models in a background thread, once per server process, so the first
    transfer does not wait for them (tiny models build in a moment and are skipped)."""
    with _warm_lock:
        todo = [n for n in dict.fromkeys(names)
                if n not in _warm_started and not catalog.is_tiny(n) and catalog.is_available(n)]
        _warm_started.update(todo)
    if todo:
        def load_all():
            for name in todo:
                try:
                    load_model(name)
                except Exception:  # noqa: BLE001 - a failure shows up, with its message, when a page needs the model
                    pass

        threading.Thread(target=load_all, name="ptfer-warm-up", daemon=True).start()


@st.cache_resource(show_spinner=False)
def demo_data_dir() -> str:
    return models.demo_data_dir(Path(tempfile.mkdtemp(prefix="ptfer-mini-lama-")))


def data_dir_for(names: list[str]) -> str:
    """Mini LAMA for the tiny demo models, the LAMA data directory otherwise (DataError when it is missing)."""
    if catalog.uses_demo_data(names):
        return demo_data_dir()
    root = core_data_dir()
    if not (root / "relations.jsonl").is_file():
        raise DataError(f"The LAMA data is not in {root}. Put relations.jsonl and lama_trex/ there, or set "
                        f"$PTFER_DATA_DIR to its location, then reload. The tiny demo models work without it.")
    return str(root)


@st.cache_data(show_spinner=False)
def relations(data_dir: str) -> dict:
    return core_data.load_relations(data_dir)


@st.cache_data(show_spinner=False)
def splits(relation_id: str, data_dir: str) -> dict:
    from .pipeline import relation_splits

    return relation_splits(relation_id, data_dir)


def candidates(lm, data_dir: str):
    from ptfer_core.evaluation import candidates_for

    return candidates_for(lm, data_dir=data_dir)  # built once per model, kept in lm.cache


@st.cache_resource(show_spinner=False, max_entries=8)
def anchors(model_names: tuple[str, ...], k: int | None):
    from ptfer_core.anchors import select_anchors

    return select_anchors([load_model(n) for n in dict.fromkeys(model_names)], k)


# ----------------------------------------------------------------------------- presets


@st.cache_data(show_spinner=False, ttl=60)
def preset_list() -> list[dict]:
    return presets.list_presets()


@st.cache_resource(show_spinner=False, max_entries=16)
def preset(path: str):
    """A preset's Outcome: shared read-only (pages never modify an Outcome)."""
    return presets.read_preset(path)


def preset_source_prompts() -> list:
    out = []
    for meta in preset_list():
        try:
            out += preset(meta["path"]).source_prompts
        except Exception:  # noqa: BLE001 - a damaged preset only loses its cached prompts
            continue
    return out


# ----------------------------------------------------------------------------- derived tables


@st.cache_data(show_spinner=False, max_entries=64)
def nearest_table(model: str, prompt_key: str, _vectors, k: int) -> pd.DataFrame:
    """Long table: vector, rank, token, cosine."""
    from ptfer_core.analysis import nearest_tokens

    rows = []
    for i, neighbours in enumerate(nearest_tokens(load_model(model), _vectors, k)):
        rows += [{"vector": f"V{i + 1}", "rank": r + 1, "token": tok, "cosine": cos} for r, (tok, cos) in enumerate(neighbours)]
    return pd.DataFrame(rows)


@st.cache_data(show_spinner=False, max_entries=64)
def norms(model: str, prompt_key: str, _vectors) -> dict:
    """Prompt norms, the prompt normalised to the model's embedding statistics, and the vocabulary's norms."""
    from ptfer_core.analysis import norm_table
    from ptfer_core.transfer import normalize_to, target_statistics

    lm = load_model(model)
    table = norm_table(lm, _vectors)
    mean, std = target_statistics(lm)
    table["normalized_norms"] = normalize_to(_vectors.float(), mean, std).norm(dim=-1).tolist()
    return table


@st.cache_data(show_spinner=False, max_entries=32)
def relative_map(model: str, anchor_models: tuple[str, ...], k: int, prompt_key: str, _vectors, n_points: int,
                 method: str, seed: int) -> dict:
    """2-D map of the first n anchors and the prompt vectors in one model's relative space."""
    from ptfer_core.analysis import project_2d, relative_coordinates

    lm = load_model(model)
    anchor_rel, prompt_rel, words = relative_coordinates(lm, _vectors, anchors(anchor_models, k), n_points)
    xy = project_2d(np.vstack([anchor_rel, prompt_rel]), method, seed, fit_rows=len(anchor_rel))
    # similarity of each shown anchor to each prompt vector = the prompt's relative encoding at that anchor
    return {"anchor_xy": xy[: len(anchor_rel)], "prompt_xy": xy[len(anchor_rel):], "words": words,
            "anchor_sim": prompt_rel[:, : len(words)].T}


@st.cache_data(show_spinner=False, max_entries=32)
def fingerprints(source_model: str, target_model: str, anchor_models: tuple[str, ...], k: int, src_key: str, _src,
                 tgt_key: str, _tgt) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Relative encodings (cosine to every anchor) of the source prompt and of the transferred prompt."""
    from ptfer_core.anchors import relative_encoding

    aset = anchors(anchor_models, k)
    src, _ = relative_encoding(_src.float(), aset.embeddings(load_model(source_model)).cpu())
    tgt, _ = relative_encoding(_tgt.float(), aset.embeddings(load_model(target_model)).cpu())
    return src.numpy(), tgt.numpy(), list(aset.words)


@st.cache_data(show_spinner=False, max_entries=256)
def top_answers(model: str, prompt_key: str, template: str, _vectors, subject: str, data_dir: str, k: int = 5):
    from ptfer_core.evaluation import Prompt, top_k
    from ptfer_core.templates import PromptTemplate

    lm = load_model(model)
    prompt = Prompt(PromptTemplate.parse(template), _vectors)
    return [(p.word, p.probability) for p in top_k(lm, prompt, subject, candidates(lm, data_dir), k)]


@st.cache_data(show_spinner=False)
def vectors_from_upload(data: bytes, sidecar: bytes | None, name: str):
    from ptfer_core.artifacts import SoftPrompt

    return SoftPrompt.from_bytes(data, sidecar, name=name)
