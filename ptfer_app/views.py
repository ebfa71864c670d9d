"""Recorded page views of the shipped presets: what Nearest tokens, Relative space and Query compute for a preset
with their default controls, stored in the preset's folder (`views.safetensors`) by `python -m ptfer_app.record_views`.

A fresh server then draws a preset's pages without loading its models (a real model's first load is seconds; on a
machine that has not fetched the weights, the pages still show the preset), and changing a control computes live.

A recorded view is used only for exactly the call that recorded it: it is found by the function's name and its
identifying arguments (model names, prompt digests, settings, a digest of the data files it read), under this
module's VERSION. Arguments whose names start with "_" (the vectors and anchor sets that the digests name) are not
part of the key, as in Streamlit's caches; every other argument must have a role `described_call` knows. A model given
by a path has no recorded views, and a preset's views are not used where a model they name is on this machine with
weights other than those they were recorded with (`loading.model_ref`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
import sys
import threading
from pathlib import Path

from ptfer_core.files import atomic_write_bytes
from ptfer_core.model_names import REGISTRY, is_toy
from ptfer_core.presets import PRESETS_DIR

FILE = "views.safetensors"
VERSION = 1  # part of every key: raise it when a recorded function, or what it computes with, changes its result
MISSING = object()
MODEL_ARGS = ("model", "source_model", "target_model")
PLAIN_ARGS = ("prompt_key", "src_key", "tgt_key", "k", "template", "subject", "task_id", "mode", "top_k", "n_points",
              "method", "seed", "strip")  # fmt: skip
# A long list of floats is stored as an array (float32 when that loses nothing, as with a torch tensor's .tolist()).
ARRAY_LIST_MIN = 64


# ----------------------------------------------------------------------------- encoding


def _encode(value, arrays: dict):
    """`value` as JSON-able data; numpy arrays (and long float lists) go to `arrays`, named in the JSON."""
    import numpy as np
    import pandas as pd

    def array(a: np.ndarray, kind: str):
        name = f"a{len(arrays)}"
        arrays[name] = np.ascontiguousarray(a)
        return {kind: name}

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return array(value, "__array__")
    plain_frame = (
        isinstance(value, pd.DataFrame)
        and isinstance(value.index, pd.RangeIndex)
        and value.index.start == 0
        and all(isinstance(c, str) for c in value.columns)
    )  # what a frame's columns can restore: no index, string column names
    if plain_frame:
        return {"__frame__": {c: _encode(value[c].tolist(), arrays) for c in value.columns}}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        if len(value) >= ARRAY_LIST_MIN and all(type(v) is float for v in value):
            wide = np.asarray(value, dtype=np.float64)
            narrow = wide.astype(np.float32)
            return array(narrow if np.array_equal(narrow.astype(np.float64), wide) else wide, "__floats__")
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v, arrays) for k, v in value.items()}}
    raise TypeError(f"a recorded view cannot hold a {type(value).__name__}")


def _decode(data, arrays: dict):
    """The value `_encode` stored, as new objects (a page may change what it is given, as with Streamlit's caches)."""
    import numpy as np
    import pandas as pd

    if isinstance(data, list):
        return [_decode(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    (kind, body), *_ = data.items()
    if kind == "__array__":
        return np.array(arrays[body])
    if kind == "__floats__":
        return arrays[body].astype(np.float64).tolist()
    if kind == "__frame__":
        return pd.DataFrame({c: _decode(v, arrays) for c, v in body.items()})
    if kind == "__tuple__":
        return tuple(_decode(v, arrays) for v in body)
    if kind == "__dict__":
        return {k: _decode(v, arrays) for k, v in body.items()}
    raise ValueError(f"a recorded view holds an unknown kind {kind!r}")


def encode_views(views: dict[str, object], models: dict[str, str] | None = None) -> bytes:
    """Views (key → value) as one safetensors file: the arrays as tensors, the rest as JSON in its metadata, with
    the identity of each model they were computed with (`models`: name → `loading.model_ref` identity)."""
    from safetensors.numpy import save

    arrays: dict = {}
    table = {key: _encode(value, arrays) for key, value in sorted(views.items())}
    metadata = {"views": json.dumps(table), "models": json.dumps(models or {}, sort_keys=True), "version": str(VERSION)}
    return save(arrays, metadata=metadata)  # the table in order: a frame's columns, a dict's keys


def decode_views(data: bytes) -> tuple[dict[str, object], dict[str, str]]:
    """What `encode_views` stored: the views, each still encoded (`_decode` makes a fresh copy per use; the arrays
    are shared and never handed out), and the models' identities."""
    from safetensors.numpy import load

    arrays = load(data)
    # safetensors' layout: 8 bytes giving the header's length, then the header, JSON holding the metadata (the
    # numpy reader returns the tensors only)
    header_len = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
    table = json.loads(metadata.get("views", "{}"))
    return {key: (encoded, arrays) for key, encoded in table.items()}, json.loads(metadata.get("models", "{}"))


# ----------------------------------------------------------------------------- keys


def data_identity(data_dir: str) -> str:
    """A digest of the data files a view depends on: the relations' templates, the common vocabularies (answer
    candidates, anchors) and the classification tasks' class names. Not their paths, which differ per machine (the
    built-in toy models' miniature LAMA is written to a new temporary folder by each server)."""
    root = Path(data_dir)
    files = sorted([*root.glob("relations.jsonl"), *root.glob("common_vocab*.txt"), *root.glob("*/*/classes.txt")])
    stamps = tuple((path.relative_to(root).as_posix(), path.stat().st_mtime_ns, path.stat().st_size) for path in files)
    return _digest_files(str(root), stamps)


@functools.lru_cache(maxsize=32)
def _digest_files(root: str, stamps: tuple) -> str:
    """The files' contents, read again whenever one changes (their stamps are the cache's key)."""
    h = hashlib.sha256()
    for name, _, _ in stamps:
        h.update(name.encode() + b"\0" + (Path(root) / name).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def identifies_weights(name: str) -> bool:
    """A registry name (fixed, fetched weights) or a built-in toy model (built the same way everywhere)."""
    return name in REGISTRY or is_toy(name)


def view_key(function: str, arguments: dict) -> str | None:
    """The key naming one call (`arguments`: bound by name), or None when the call cannot be recognised safely.
    Stored as a digest of `described_call`: a call spells out every argument (a classification input is a whole
    sentence)."""
    described = described_call(function, arguments)
    return None if described is None else hashlib.sha256(described.encode()).hexdigest()[:32]


def described_call(function: str, arguments: dict) -> str | None:
    """One call as text: the function and its identifying arguments (no vectors, no paths); None for a call with
    a model given by a path. An argument with no known role is an error, not a guess."""
    parts = {}
    for name, value in arguments.items():
        if name.startswith("_"):
            continue
        if name in MODEL_ARGS:
            if not identifies_weights(value):
                return None
        elif name == "data_dir":
            value = data_identity(value)
        elif name == "anchor_spec":
            models, k, source, word_filter, data_dir = value
            if not all(identifies_weights(m) for m in models):
                return None
            value = [list(models), k, source, word_filter, data_identity(data_dir)]
        elif name not in PLAIN_ARGS:
            raise TypeError(f"{function}: the recorded views do not know what its argument {name!r} identifies")
        if isinstance(value, tuple):
            value = list(value)
        parts[name] = value
    return json.dumps([VERSION, function, parts], sort_keys=True)


def models_named(arguments: dict) -> list[str]:
    """The model names among a call's arguments."""
    names = [arguments[a] for a in MODEL_ARGS if a in arguments]
    return names + list(arguments["anchor_spec"][0] if "anchor_spec" in arguments else [])


@functools.lru_cache(maxsize=32)
def local_identity(name: str) -> str:
    """The identity of the weights `name` loads on this machine (its name alone when none are here)."""
    from ptfer_core.loading import model_ref

    return model_ref(name).identity


# ----------------------------------------------------------------------------- the store


class Views:
    """Every shipped preset's recorded views, read on first use; and, while recording, the calls made."""

    def __init__(self, root: Path = PRESETS_DIR):
        self.root = Path(root)
        self._views: dict | None = None
        self._lock = threading.Lock()
        self.recording: dict | None = None  # key → value, while `record_views` runs (one process, nothing else)
        self.recorded_models: set[str] = set()

    def _all(self) -> dict:
        with self._lock:
            if self._views is None:
                views = {}
                for path in sorted(self.root.glob(f"*/{FILE}")):
                    try:
                        found, models = decode_views(path.read_bytes())
                    except Exception as exc:  # a damaged file costs its views, not the pages
                        print(
                            f"ptfer: {path} is not readable ({exc}); its preset's pages compute live", file=sys.stderr
                        )
                        continue
                    # weights other than the recorded ones, on this machine: their views would not be theirs
                    if all(local_identity(n) in (n, identity) for n, identity in models.items()):
                        views.update(found)
                self._views = views
            return self._views

    def get(self, key: str):
        if self.recording is not None:  # recording computes every view afresh
            return MISSING
        found = self._all().get(key)
        return MISSING if found is None else _decode(*found)

    def add(self, key: str, value, models: list[str]) -> None:
        if self.recording is not None:
            self.recording[key] = copy.deepcopy(value)  # as it was returned: a page may change its copy
            self.recorded_models.update(models)

    def forget(self) -> None:
        """Read the files again on next use (after one was written)."""
        with self._lock:
            self._views = None


STORE = Views()


def recorded(function):
    """Serve `function`'s calls that a preset recorded from its views; note every call while recording.

    Put it outside Streamlit's cache decorator: a recorded call then neither loads a model nor runs the function."""
    signature = inspect.signature(function)
    name = function.__name__

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        key = view_key(name, bound.arguments)
        if key is not None:
            found = STORE.get(key)
            if found is not MISSING:
                return found
        value = function(*args, **kwargs)
        if key is not None:
            STORE.add(key, value, models_named(bound.arguments))
        return value

    return wrapper


def write_views(preset_dir: Path, views: dict, models: list[str] = ()) -> Path:
    """Store one preset's views, with the identities of the models they were computed with (written to a temporary
    file, then renamed into place)."""
    path = Path(preset_dir) / FILE
    atomic_write_bytes(path, encode_views(views, {n: local_identity(n) for n in sorted(set(models))}))
    STORE.forget()
    return path
