"""The app's cached view of `ptfer_core`: models and shared objects with st.cache_resource (never mutated),
derived tables with st.cache_data (bounded). Page code calls these, never the engine's heavy functions directly.

Arguments starting with "_" are not hashed by Streamlit; each such function also takes a small hashable key
(model name, prompt digest) that identifies what the unhashed argument is.
"""

from __future__ import annotations

import gc
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from ptfer_core import data as core_data
from ptfer_core import presets
from ptfer_core.errors import DataError, InputError, PTferError
from ptfer_core.paths import REPO_ROOT
from ptfer_core.paths import data_dir as core_data_dir

from . import catalog
from .views import recorded

if TYPE_CHECKING:  # numpy and pandas load with the first page that needs them: ~1 s of a fresh home page's run
    import pandas as pd

# Threads hand the GIL over every 0.5 ms, not Python's default 5 ms. A run's torch thread needs the GIL back
# between ops, and a thread doing pure-Python work (a warm-up reading a 262k-word vocabulary, another session's page)
# kept it waiting: next to such a thread a Gemma forward pass took 4.6x its time alone at 5 ms, 1.6x at 0.5 ms, and a
# live transfer in the browser sat in its scoring for minutes (docs/benchmarks.md).
SWITCH_INTERVAL_S = 0.0005
sys.setswitchinterval(SWITCH_INTERVAL_S)
JOB_POLL_S = 0.5

CACHE_ENV = "PTFER_APP_CACHE"
THREADS_ENV = "PTFER_APP_THREADS"
UPLOAD_LIMIT_MB = 16  # a soft prompt is kilobytes; anything near this is not one


_torch_import_lock = threading.Lock()  # torch imported by two threads at once can be left half-initialised


def cpu_setup() -> None:
    """CPU settings for the calling thread (both are per-thread: call it in every worker thread), and the first
    import of torch, one thread at a time.

    Flushing denormals keeps ops on tiny values fast; one intra-op thread per run is much faster on a small shared
    CPU (the transfer search is thousands of small ops), and concurrent sessions then share the cores instead of
    oversubscribing them. $PTFER_APP_THREADS overrides the 1.
    """
    with _torch_import_lock:
        import torch

    torch.set_flush_denormal(True)
    threads = max(1, int(os.environ.get(THREADS_ENV) or 1))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# What the pages import on their first run (on this 2-core CPU: torch ~1.6 s, transformers' model code ~2.6 s, its top
# level ~0.9 s, result_card's engine ~0.6 s, pandas ~0.3 s).
PRELOAD = (
    "torch",
    "pandas",
    "transformers.modeling_utils",  # and transformers itself
    "transformers.models.bert.modeling_bert",
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.models.llama.modeling_llama",
    "transformers.models.gemma3.modeling_gemma3",
    "ptfer_core.compare",
    "ptfer_core.loading",
    "ptfer_core.toy_models",
    "ptfer_core.analysis",
    "ptfer_app.result_card",
    "ptfer_app.charts",
    "ptfer_app.results",
    "ptfer_app.transfer_settings",
    "ptfer_app.upload",
    "ptfer_app.static_charts",
    "ptfer_core.classification",
    "ptfer_core.fetch",
    "ptfer_core.jobs",
    "ptfer_core.peft_io",
    "scipy.sparse.linalg",  # the maps' PCA
    "pyarrow.pandas_compat",  # a table's first trip to the browser
    "pyarrow.vendored.version",
    "pandas.core.reshape.reshape",
    "streamlit.material_icon_names",  # checked at the first :material/…: icon
)


def preload() -> float:
    """Import what the pages use, once, at server start (`app.py`'s start-up, before the server reports healthy), so
    a fresh server's first page pays no import; returns the seconds it took."""
    import importlib

    started = time.perf_counter()
    cpu_setup()  # torch, imported under its lock
    for name in PRELOAD:
        importlib.import_module(name)
    # Streamlit asks once per process, at the first element any page draws, whether it runs in a REPL (to warn): an
    # inspect.stack() that looks up each frame's module among thousands imported, 0.08 s of the first page after a
    # start. This server is never a REPL, so the question is answered here.
    import streamlit.delta_generator

    streamlit.delta_generator._use_warning_has_been_displayed = True
    freeze_heap()
    return time.perf_counter() - started


def freeze_heap() -> None:
    """Take every object alive now (imported modules, loaded models) out of the cyclic garbage collector's sight.

    A full collection walks every tracked object: with torch, transformers and pandas imported, one took ~0.2 s of
    this CPU, holding the GIL, so the server sent nothing meanwhile. Streamlit used to run one after every script
    run (`runner.postScriptGC`, now off in .streamlit/config.toml), and Python still runs one now and then. What is
    frozen here lives as long as the server anyway; called after start-up imports and after each model load."""
    gc.collect()
    gc.freeze()


def warm_up_defaults() -> None:
    """At server start: the warm-ups of the app's default pair (its real models load in the background, after
    WARM_UP_DELAY_S) and UMAP's compile, as the first page would otherwise start them."""
    source, target, task_id = catalog.default_selection()
    try:
        data_dir = data_dir_for([source, target])
    except PTferError:
        data_dir = None  # no LAMA data here: the pages say so; the models still load
    warm_up([source], target, task_id if data_dir else None, data_dir)
    warm_umap()


def cache_root() -> Path:
    """Where the app keeps tuned source prompts and baseline scores ($PTFER_APP_CACHE, else runs/app-cache)."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "runs" / "app-cache")


# ----------------------------------------------------------------------------- models and data

_load_lock = threading.Lock()  # one model loads at a time: loads share transformers' lazy imports and the CPU


@st.cache_resource(show_spinner=False, max_entries=6)
def load_model(name: str):
    """One shared, frozen instance per model name (PromptedLM never changes the model or tokenizer)."""
    from ptfer_core.errors import ModelLoadError
    from ptfer_core.loading import load_model as core_load

    spec = catalog.REGISTRY.get(name)
    if spec is not None and spec.local and not catalog.is_available(name):
        raise ModelLoadError(
            f"{name} is not on this machine yet. Fetch it once with `{catalog.fetch_command(name)}`, then reload."
        )
    with _load_lock:
        lm = core_load(name)
        freeze_heap()
        return lm


@st.cache_data(show_spinner=False, max_entries=32)
def model_ref(name: str):
    """A model's name and identity without loading it (enough to look up its stored prompts)."""
    from ptfer_core.loading import model_ref as core_ref

    return core_ref(name)


@st.cache_data(show_spinner=False, max_entries=32)
def model_width(name: str) -> int | None:
    """A model's embedding width from its config (no weights loaded), or None when unknown."""
    from ptfer_core.loading import config_width

    try:
        return config_width(name)
    except Exception:
        return None


_warm_lock = threading.Lock()
_warm_started: set[str] = set()
# Background warm-ups wait this long after the script run that asks for them: on a small CPU, imports and
# compiles running at once with the browser's first drawing of the page slow that drawing by seconds.
WARM_UP_DELAY_S = 4.0


_warm_queue: queue.SimpleQueue = queue.SimpleQueue()
_warm_worker: list[threading.Thread] = []


def _in_background(work) -> None:
    """Queue `work` for the one warm-up thread. It starts WARM_UP_DELAY_S after the first request and runs the queue
    in order, so warm-ups never compete with each other for the CPU."""
    _warm_queue.put(work)
    with _warm_lock:
        if not _warm_worker:
            _warm_worker.append(threading.Thread(target=_run_warm_ups, name="ptfer-warm-up", daemon=True))
            _warm_worker[0].start()


def _wait_for_runs() -> None:
    """Called by the warm-up thread between its steps: a user's run goes first (a warm-up only saves time, and it
    would take half the cores and hold the GIL for its pure-Python parts)."""
    from ptfer_core.jobs import Job

    while Job.active():
        time.sleep(JOB_POLL_S)


def _run_warm_ups() -> None:
    time.sleep(WARM_UP_DELAY_S)
    cpu_setup()
    while True:
        work = _warm_queue.get()
        _wait_for_runs()
        try:
            work()
        except Exception:
            pass  # a warm-up only saves time; the page reports any real error when it runs
        freeze_heap()  # what it imported and built (models, tables) stays for the server's life


def warm_up(sources: list[str], target: str, task_id: str | None = None, data_dir: str | None = None) -> None:
    """Once per server process and pair, in a background thread: load the selected real models, then fill the
    tables a transfer between them needs (`compare.warm_up`), so the first *Run transfer* neither waits for the
    models nor builds anchors and statistics (toy models load in a moment and are skipped)."""
    names = list(dict.fromkeys([*sources, target]))
    if not sources or any(catalog.is_toy(n) or not catalog.is_available(n) for n in names):
        return
    pair = "pair:" + " + ".join(sources) + " > " + target
    with _warm_lock:
        todo = [n for n in names if n not in _warm_started]
        warm_pair = pair not in _warm_started and task_id is not None
        _warm_started.update(todo + ([pair] if warm_pair else []))
    if not todo and not warm_pair:
        return

    def work():  # errors are swallowed by the warm-up thread (`_run_warm_ups`)
        lms = []
        for name in names:
            _wait_for_runs()
            lms.append(load_model(name))  # cached: the models every session shares
        if warm_pair:
            from ptfer_core.compare import warm_up as warm_tables
            from ptfer_core.runs import TaskData
            from ptfer_core.settings import BUDGET_MAX_DEV, overrides_for, recipe_settings

            by_name = dict(zip(names, lms))
            warm_tables(
                [by_name[n] for n in sources],
                by_name[target],
                TaskData.load(task_id, data_dir, max_dev=BUDGET_MAX_DEV),  # as `task_data`, off the script run
                recipe_settings(overrides=overrides_for(names)),
                pause=_wait_for_runs,
            )

    _in_background(work)


def warm_umap() -> None:
    """Compile UMAP's numba kernels in the background once per server, so the first UMAP map does not wait ~45 s."""
    with _warm_lock:
        if "umap" in _warm_started:
            return
        _warm_started.add("umap")

    def compile_umap():
        import numpy as np

        from ptfer_core.analysis import Map2D

        Map2D(np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32), "umap", 0)

    _in_background(compile_umap)


@st.cache_resource(show_spinner=False)
def demo_data_dir() -> str:
    from ptfer_core.mini_lama import write_mini_lama

    return str(write_mini_lama(Path(tempfile.mkdtemp(prefix="ptfer-mini-lama-"))))


def data_dir_for(names: list[str]) -> str:
    """Mini LAMA for the toy models, the data directory otherwise (DataError when it is missing)."""
    if catalog.uses_demo_data(names):
        return demo_data_dir()
    root = core_data_dir()
    if not (root / "relations.jsonl").is_file():
        raise DataError(
            f"The LAMA data is not in {root}. Put relations.jsonl and lama_trex/ there, or set "
            f"$PTFER_DATA_DIR to its location, then reload. The built-in toy models work without it."
        )
    return str(root)


@st.cache_data(show_spinner=False)
def tasks(data_dir: str) -> dict:
    return core_data.load_tasks(data_dir)


@st.cache_resource(show_spinner=False, max_entries=16)
def task_data(task_id: str, data_dir: str, split_seed: int = core_data.DEFAULT_SPLIT_SEED):
    from ptfer_core.runs import TaskData
    from ptfer_core.settings import BUDGET_MAX_DEV

    return TaskData.load(task_id, data_dir, split_seed, max_dev=BUDGET_MAX_DEV)


@st.cache_resource(show_spinner=False)
def prompt_store():
    """Tuned prompts: the app's cache, then the shipped ones (read-only): the demo's, and the real-model grid's."""
    from ptfer_core.paths import SHIPPED_PROMPTS
    from ptfer_core.runs import PromptStore

    return PromptStore(cache_root() / "prompts", SHIPPED_PROMPTS)


# ----------------------------------------------------------------------------- presets


@st.cache_data(show_spinner=False, ttl=60)
def preset_list() -> list[dict]:
    return presets.list_presets()


@st.cache_resource(show_spinner=False, max_entries=16)
def preset(path: str):
    """A preset's Outcome: shared read-only (pages never modify an Outcome)."""
    return presets.read_preset(path)


# ----------------------------------------------------------------------------- derived tables


# A preset's pages find these in its recorded views (`views.recorded`, outside the cache: a recorded call loads no
# model); anything else computes here, loading the models it needs on first use.


@recorded
@st.cache_data(show_spinner=False, max_entries=64)
def nearest_table(model: str, prompt_key: str, _vectors, k: int) -> pd.DataFrame:
    """Long table: vector, rank, token, cosine."""
    import pandas as pd

    from ptfer_core.analysis import nearest_tokens

    rows = []
    for i, neighbours in enumerate(nearest_tokens(load_model(model), _vectors, k)):
        rows += [
            {"vector": f"V{i + 1}", "rank": r + 1, "token": tok, "cosine": cos}
            for r, (tok, cos) in enumerate(neighbours)
        ]
    return pd.DataFrame(rows)


@recorded
@st.cache_data(show_spinner=False, max_entries=64)
def norms(model: str, prompt_key: str, _vectors) -> dict:
    """Prompt norms, the prompt after Eq. 6's normalisation to the model, and the vocabulary's norms."""
    from ptfer_core.analysis import norm_table
    from ptfer_core.config import Normalization
    from ptfer_core.solvers import Normalizer
    from ptfer_core.transfer import target_statistics

    lm = load_model(model)
    table = norm_table(lm, _vectors)
    table["normalized_norms"] = (
        Normalizer(Normalization.GLOBAL, *target_statistics(lm))(_vectors.float()).norm(dim=-1).tolist()
    )
    return table


def anchor_spec(result, data_dir: str) -> tuple:
    """The anchor set a run used, as the hashable arguments that rebuild it (`anchors`): its models, k, source,
    filter and data directory."""
    t = result.settings.get("transfer", {})
    return (
        tuple(dict.fromkeys([*result.sources, result.target])),
        t.get("n_anchors"),
        t.get("anchor_source", "common-vocab"),
        t.get("anchor_filter", "words"),
        data_dir,
    )


@st.cache_resource(show_spinner=False, max_entries=8)
def anchors(model_names: tuple[str, ...], k: int | None, source: str, word_filter: str, data_dir: str):
    from ptfer_core.anchors import select_anchors

    return select_anchors([load_model(n) for n in dict.fromkeys(model_names)], k, source, word_filter, data_dir)


@recorded
@st.cache_data(show_spinner=False, max_entries=16)
def anchor_summary(anchor_spec: tuple) -> dict:
    """The anchor set's key (names what the maps show) and its size."""
    anchor_set = anchors(*anchor_spec)
    return {"key": anchor_set.key, "count": len(anchor_set)}


@st.cache_resource(show_spinner=False, max_entries=16)
def anchor_map(model: str, anchor_spec: tuple, mode: str, n_points: int, method: str, seed: int):
    """The 2-D map of the n anchors shown (`analysis.shown_anchor_indices`) in one model's relative space, fitted
    once: every prompt shown in it (source, transferred, other runs) is placed without refitting (a UMAP fit costs
    ~a minute on 2 cores). Read-only. Returns the map, the words shown and their indices in the anchor set."""
    from ptfer_core.analysis import Map2D, anchor_coordinates

    anchor_rel, words, shown = anchor_coordinates(load_model(model), anchors(*anchor_spec), n_points, mode)
    return Map2D(anchor_rel, method, seed), words, shown


@st.cache_data(show_spinner=False, max_entries=32)
def placed_anchors(
    model: str,
    anchor_spec: tuple,
    mode: str,
    prompt_key: str,
    _vectors,
    n_points: int,
    method: str,
    seed: int,
    indices: tuple[int, ...],
) -> dict:
    """Anchors the map does not show (a word found with *Find a token*; `indices` into the anchor set) on that map,
    not refitted: their 2-D positions ("xy") and their similarities to the prompt vectors ("sim" [n, m])."""
    from ptfer_core.analysis import anchor_rows, prompt_coordinates

    fitted, _, _ = anchor_map(model, anchor_spec, mode, n_points, method, seed)
    lm, anchor_set = load_model(model), anchors(*anchor_spec)
    return {
        "xy": fitted.place(anchor_rows(lm, anchor_set, list(indices), mode)),
        "sim": prompt_coordinates(lm, _vectors, anchor_set, mode)[:, list(indices)].T,
    }


@st.cache_data(show_spinner=False, max_entries=8)
def anchor_words(anchor_spec: tuple) -> list[str]:
    """Every anchor word, in order (*Find a token* looks beyond the ones shown)."""
    return list(anchors(*anchor_spec).words)


@recorded
@st.cache_data(show_spinner=False, max_entries=32)
def relative_map(
    model: str, anchor_spec: tuple, mode: str, prompt_key: str, _vectors, n_points: int, method: str, seed: int
) -> dict:
    """2-D map of the n anchors shown and the prompt vectors in one model's relative space (the run's own space)."""
    from ptfer_core.analysis import prompt_coordinates

    fitted, words, shown = anchor_map(model, anchor_spec, mode, n_points, method, seed)
    prompt_rel = prompt_coordinates(load_model(model), _vectors, anchors(*anchor_spec), mode)
    return {
        "anchor_xy": fitted.xy,
        "prompt_xy": fitted.place(prompt_rel),
        "words": words,
        "shown": shown,  # the words' indices in the anchor set
        "anchor_sim": prompt_rel[:, shown].T,
        "explained": fitted.explained,
    }


@recorded
@st.cache_data(show_spinner=False, max_entries=32)
def fingerprint_view(
    source_model: str,
    target_model: str,
    anchor_spec: tuple,
    mode: str,
    top_k: int | None,
    src_key: str,
    _src,
    tgt_key: str,
    _tgt,
    strip: int,
) -> dict:
    """The fingerprint of each prompt vector (`analysis.fingerprint_summary`): the source prompt's (top-K) encoding
    against the transferred prompt's on the same entries, in the run's space."""
    from ptfer_core.analysis import fingerprint_summary, fingerprints

    anchor_set = anchors(*anchor_spec)
    src, tgt, _ = fingerprints(load_model(source_model), _src, load_model(target_model), _tgt, anchor_set, mode, top_k)
    return fingerprint_summary(src, tgt, list(anchor_set.words), strip)


@recorded
@st.cache_data(show_spinner=False, max_entries=256)
def top_answers(
    model: str, prompt_key: str, template: str, _vectors, subject: str, task_id: str, data_dir: str, k: int = 5
):
    from ptfer_core.evaluation import Prompt, candidates_for, top_k
    from ptfer_core.templates import PromptTemplate

    lm = load_model(model)
    task = tasks(data_dir)[task_id]
    prompt = Prompt(PromptTemplate.parse(template), _vectors)
    return [
        (p.word, p.probability)
        for p in top_k(lm, prompt, subject, candidates_for(lm, task, data_dir), k, task.max_input_tokens)
    ]


@recorded
@st.cache_data(show_spinner=False, max_entries=64)
def template_tokens(model: str, template: str, subject: str) -> list[str] | None:
    """The tokens `model` reads for a template with its subject filled in, up to the answer's position; None when
    the input cannot be encoded (e.g. longer than the model reads: the answers already say why)."""
    from ptfer_core.templates import PromptTemplate

    lm = load_model(model)
    try:
        encoded = lm.encode(PromptTemplate.parse(template), [subject])
    except PTferError:
        return None
    return lm.tokenizer.convert_ids_to_tokens(encoded.input_ids[0, : int(encoded.answer_positions[0]) + 1].tolist())


@st.cache_data(show_spinner=False, max_entries=8, ttl=3600)
def prompt_from_upload(data: bytes, sidecar: bytes | None, name: str):
    """An uploaded prompt (safetensors, its JSON, or a PEFT adapter zip), bounded in size and in cache entries."""
    from ptfer_core.artifacts import SoftPrompt

    if len(data) + len(sidecar or b"") > UPLOAD_LIMIT_MB << 20:
        raise InputError(f"{name} is larger than {UPLOAD_LIMIT_MB} MB: a soft prompt is a few kilobytes")
    if name.endswith(".zip"):
        from ptfer_core.peft_io import read_peft_adapter

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "adapter.zip"
            path.write_bytes(data)
            try:
                prompt = read_peft_adapter(path)
            except PTferError as exc:  # named by the upload, not by the server's temporary copy
                raise type(exc)(str(exc).replace(str(path), name)) from None
            prompt.provenance["imported_from"] = name
            return prompt
    return SoftPrompt.from_bytes(data, sidecar, name=name)
