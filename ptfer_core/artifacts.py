"""Soft prompts on disk: ``NAME.safetensors`` (the vectors) + ``NAME.json`` (what they are and how they were made).

Never pickle. Every write goes to a temporary file in the same directory and is renamed into place, so a
crash or a bad input never leaves a half-written file or clobbers a good one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import torch

from .errors import PromptFileError
from .files import atomic_write_bytes
from .templates import PromptTemplate

FORMAT_VERSION = 1
TENSOR_KEY = "vectors"


def _json_safe(value):
    """A JSON-ready copy: non-finite floats (JSON has none) become None, dataclasses dicts, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):  # as dataclasses.asdict would
        return {f.name: _json_safe(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


@dataclass
class SoftPrompt:
    """m prompt vectors for one model and relation, with provenance and metrics."""

    vectors: torch.Tensor  # [m, d], float32
    model: str
    relation: str
    method: str
    template: str  # e.g. "[X] [V] [V] [V] [V] [V] [Y] ."
    provenance: dict = field(default_factory=dict)  # settings, seed, source prompts, versions
    metrics: dict = field(default_factory=dict)  # e.g. {"test_p_at_1": 41.2}
    trajectory: list = field(default_factory=list)  # training curve / search trajectory rows
    created: float = field(default_factory=time.time)

    def __post_init__(self):
        if not isinstance(self.vectors, torch.Tensor) or self.vectors.ndim != 2:
            raise PromptFileError("soft prompt vectors must be a 2-d tensor [m, d]")
        self.vectors = self.vectors.detach().to("cpu", torch.float32).contiguous()
        if not torch.isfinite(self.vectors).all():
            raise PromptFileError("soft prompt contains NaN or infinite values")
        parsed = PromptTemplate.parse(self.template)
        if parsed.n_soft != self.vectors.shape[0]:
            raise PromptFileError(
                f"template {self.template!r} has {parsed.n_soft} [V] slots but there are "
                f"{self.vectors.shape[0]} vectors"
            )

    @property
    def n_vectors(self) -> int:
        return self.vectors.shape[0]

    @property
    def width(self) -> int:
        return self.vectors.shape[1]

    @property
    def prompt_template(self) -> PromptTemplate:
        return PromptTemplate.parse(self.template)

    @property
    def digest(self) -> str:
        """A short hash of the vectors: names these exact numbers (caches, provenance)."""
        return hashlib.sha1(self.vectors.numpy().tobytes()).hexdigest()[:12]

    def as_prompt(self):
        from .evaluation import Prompt

        return Prompt(self.prompt_template, self.vectors, self.method)

    def metadata(self) -> dict:
        # Not dataclasses.asdict: it deep-copies the vectors first (~0.2 s in a fresh thread), only to drop them.
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "vectors"}
        meta.update(format_version=FORMAT_VERSION, shape=list(self.vectors.shape))
        return _json_safe(meta)

    # ------------------------------------------------------------------ disk

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path.safetensors`` and ``path.json`` atomically; returns the .safetensors path."""
        stem = _stem(path)
        tensor_path, meta_path = _with(stem, ".safetensors"), _with(stem, ".json")
        # Serialise both files before writing either, so a bad value fails before anything on disk changes.
        tensor_bytes, meta_bytes = self.to_bytes()
        previous = tensor_path.read_bytes() if tensor_path.is_file() else None
        atomic_write_bytes(tensor_path, tensor_bytes)
        try:
            atomic_write_bytes(meta_path, meta_bytes)
        except BaseException:
            # Never leave new vectors beside old metadata: put the previous tensor file back (or remove the new one).
            if previous is None:
                tensor_path.unlink(missing_ok=True)
            else:
                atomic_write_bytes(tensor_path, previous)
            raise
        return tensor_path

    def to_bytes(self) -> tuple[bytes, bytes]:
        """(safetensors bytes, JSON bytes): exactly what `save` writes; the same prompt always gives the same bytes."""
        from safetensors.torch import save

        meta = self.metadata()
        embedded = json.dumps(meta, sort_keys=True, allow_nan=False)
        sidecar = (json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()
        return save({TENSOR_KEY: self.vectors}, metadata={"ptfer": embedded}), sidecar

    @classmethod
    def load(cls, path: str | os.PathLike) -> SoftPrompt:
        stem = _stem(path)
        tensor_path, meta_path = _with(stem, ".safetensors"), _with(stem, ".json")
        if not tensor_path.is_file():
            raise PromptFileError(f"prompt file {tensor_path} does not exist")
        data = tensor_path.read_bytes()
        sidecar = meta_path.read_bytes() if meta_path.is_file() else None
        return cls.from_bytes(data, sidecar, name=str(tensor_path))

    @classmethod
    def from_bytes(cls, data: bytes, sidecar: bytes | None = None, name: str = "uploaded prompt") -> SoftPrompt:
        """Parse a safetensors blob; metadata from the JSON sidecar if given, else the copy embedded in the file."""
        from safetensors.torch import load

        try:
            tensors = load(data)
        except Exception as exc:
            raise PromptFileError(f"{name} is not a valid safetensors file ({str(exc)[:120]})") from None
        if TENSOR_KEY not in tensors:
            raise PromptFileError(f"{name} has no '{TENSOR_KEY}' tensor (found: {', '.join(tensors) or 'none'})")
        try:
            embedded = _embedded_metadata(data).get("ptfer")
            embedded = json.loads(embedded) if embedded is not None else None
            meta = json.loads(sidecar) if sidecar is not None else embedded
            if meta is None:
                raise KeyError("ptfer")
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise PromptFileError(f"{name}: its metadata is missing or not valid JSON ({exc})") from None
        if isinstance(meta, dict) and isinstance(embedded, dict):
            differ = [k for k in ("model", "relation", "method", "template", "shape") if meta.get(k) != embedded.get(k)]
            if differ:
                raise PromptFileError(
                    f"{name}: its .json sidecar contradicts the metadata inside the tensor file "
                    f"({', '.join(f'{k}: {meta.get(k)!r} vs {embedded.get(k)!r}' for k in differ)}); "
                    "remove the wrong .json or re-save the prompt"
                )
        if not isinstance(meta, dict):
            raise PromptFileError(f"{name}: its metadata is not a JSON object")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise PromptFileError(
                f"{name}: unsupported format_version {version!r} (this version reads {FORMAT_VERSION})"
            )
        vectors = tensors[TENSOR_KEY]
        if list(vectors.shape) != meta.get("shape"):
            raise PromptFileError(
                f"{name}: tensor shape {list(vectors.shape)} disagrees with its metadata {meta.get('shape')}"
            )
        missing = [k for k in ("model", "relation", "method", "template") if k not in meta]
        if missing:
            raise PromptFileError(f"{name}: metadata lacks {', '.join(missing)}")
        fields = {
            k: meta[k]
            for k in ("model", "relation", "method", "template", "provenance", "metrics", "trajectory", "created")
            if k in meta
        }
        try:
            return cls(vectors=vectors, **fields)
        except PromptFileError as exc:
            raise PromptFileError(f"{name}: {exc}") from None
        except Exception as exc:
            raise PromptFileError(f"{name}: {exc}") from None


def _with(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)


def _stem(path) -> Path:
    path = Path(path)
    # Only our own suffixes are stripped: "P19.gemma3-270m" is a stem, not a file with suffix ".gemma3-270m".
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def _embedded_metadata(data: bytes) -> dict:
    """The __metadata__ of a safetensors blob (its JSON header)."""
    header_len = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
