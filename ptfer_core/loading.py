"""Loading models by name: the registry of known models, hub ids, local directories, GGUF files, toy models.

Every failure becomes a `ModelLoadError` that says what to do: a local model that is not fetched names its fetch
command; a hub model names the hub and, when this machine is offline, says so at once instead of waiting for
network retries; a directory without weights, with truncated weights, with only a pickled ``.bin``, or without
tokenizer files is refused with its path.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ModelKind, Precision, parse_enum, resolve_precision
from .errors import ModelLoadError, NoLMHeadError
from .model_names import REGISTRY
from .models import PromptedLM

_HEAD_ARCH_SUFFIXES = ("ForMaskedLM", "ForCausalLM", "LMHeadModel", "ForPreTraining", "ForConditionalGeneration")
# Loads run one at a time: transformers' lazy imports are not thread-safe (two threads loading different models at once
# got "cannot import name 'PreTrainedTokenizerFast'"), and on a small CPU parallel loads only compete.
_load_lock = threading.RLock()


def resolve_model(name_or_path: str, models_root: Path | None = None) -> str:
    """Friendly name → location; anything else is passed through as a hub id or local path."""
    spec = REGISTRY.get(name_or_path)
    return spec.location(models_root) if spec else name_or_path


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers at all (False at once when offline is declared)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def weights_identity(location: str, gguf_file: str | None = None) -> str:
    """A short content hash of a local model's weight files (the identity stored prompts are keyed by)."""
    path = Path(location)
    files = [path / gguf_file] if gguf_file else sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not files:
        return location
    digest = hashlib.sha256()
    for f in files:  # size and the first and last MiB: enough to tell conversions apart, fast on big files
        size = f.stat().st_size
        digest.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            digest.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ModelRef:
    """A model's name and identity without its weights in memory: enough to find its stored prompts."""

    name: str
    identity: str


def model_ref(name_or_path: str, models_root: Path | None = None) -> ModelRef:
    """The identity `load_model` would give, computed without loading the model (a file hash at most)."""
    from .model_names import is_toy
    from .toy_models import parse_toy

    if is_toy(name_or_path):
        return ModelRef(name_or_path, parse_toy(name_or_path).name)
    location = resolve_model(name_or_path, models_root)
    gguf_file = None
    if location.endswith(".gguf") and os.path.isfile(location):
        location, gguf_file = os.path.dirname(location) or ".", os.path.basename(location)
    if Path(location).exists():
        return ModelRef(name_or_path, f"{name_or_path}@{weights_identity(location, gguf_file)}")
    return ModelRef(name_or_path, name_or_path)


def config_width(name_or_path: str, models_root: Path | None = None) -> int | None:
    """The input-embedding width from a model's config alone (no weights read), or None when not known here."""
    import json

    from .model_names import is_toy
    from .toy_models import parse_toy

    if is_toy(name_or_path):
        spec = parse_toy(name_or_path)
        return spec.width // 2 if spec.arch == "albert" else spec.width
    config = Path(resolve_model(name_or_path, models_root)) / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text(encoding="utf-8"))
    data = data.get("text_config", data)
    for key in ("embedding_size", "hidden_size", "n_embd", "d_model"):
        if isinstance(data.get(key), int):
            return data[key]
    return None


def load_model(
    name_or_path: str,
    *,
    kind: ModelKind | str | None = None,
    precision: Precision | str = Precision.FLOAT32,
    device: str | None = None,
    gguf_file: str | None = None,
    models_root: Path | None = None,
) -> PromptedLM:
    """Load a masked or causal LM with its tokenizer from a registry name, hub id, local directory or GGUF file."""
    with _load_lock:
        return _load(name_or_path, kind, precision, device, gguf_file, models_root)


def _load(name_or_path, kind, precision, device, gguf_file, models_root) -> PromptedLM:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    from .model_names import is_toy
    from .toy_models import load_toy

    if is_toy(name_or_path):
        return load_toy(name_or_path)
    precision = parse_enum(Precision, precision, "precision")
    location = resolve_model(name_or_path, models_root)
    if location.endswith(".gguf") and gguf_file is None and os.path.isfile(location):
        location, gguf_file = os.path.dirname(location) or ".", os.path.basename(location)
    spec = REGISTRY.get(name_or_path)
    if spec and spec.local and not Path(location).is_dir():
        raise ModelLoadError(
            f"model {name_or_path!r} is not fetched yet: run `ptfer models fetch {name_or_path}` "
            f"(expected it in {location})"
        )
    local = Path(location).exists()
    if local:
        _check_local_dir(Path(location), name_or_path, gguf_file)
    elif not hub_reachable():
        what = (
            "a Hugging Face hub model and needs internet"
            if spec
            else "not a known name, a local path or a toy model; as a hub id it would need internet"
        )
        raise ModelLoadError(
            f"cannot load model {name_or_path!r}: it is {what}, but the hub cannot be reached from "
            f"this machine (offline). Known here: {', '.join(REGISTRY)}, or tiny:ARCH toy models"
        )
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    config = _guarded(lambda: AutoConfig.from_pretrained(location, **extra), name_or_path, "its config")
    archs = list(getattr(config, "architectures", None) or [])
    if archs and not any(a.endswith(_HEAD_ARCH_SUFFIXES) for a in archs):
        raise NoLMHeadError(
            f"model {name_or_path!r} ({', '.join(archs)}) has no language-modelling head; "
            "use a checkpoint saved with its masked-LM or causal-LM head"
        )
    if kind is None and any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        kind = ModelKind.CAUSAL
    kind = parse_enum(ModelKind, kind, "model kind") if kind else None
    dtype = torch.bfloat16 if resolve_precision(precision, device) == Precision.BFLOAT16 else torch.float32
    loaders = {ModelKind.MASKED: AutoModelForMaskedLM, ModelKind.CAUSAL: AutoModelForCausalLM}
    errors = []
    safe = {} if gguf_file else {"use_safetensors": True}  # never unpickle a .bin
    for candidate in [kind] if kind else [ModelKind.MASKED, ModelKind.CAUSAL]:
        try:
            model, info = loaders[candidate].from_pretrained(
                location, dtype=dtype, output_loading_info=True, **safe, **extra
            )
        except ValueError as exc:  # the config type has no such head class
            errors.append(str(exc).splitlines()[0][:200])
            continue
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load the weights of {name_or_path!r}: {_first_line(exc)} (a model directory "
                "needs complete model.safetensors files; pickled .bin weights are refused)"
            ) from None
        missing = [k for k in info.get("missing_keys", []) if not k.startswith(model.base_model_prefix + ".")]
        if missing:
            raise NoLMHeadError(
                f"model {name_or_path!r} has no trained {candidate.value}-LM head "
                f"(missing weights: {', '.join(sorted(missing)[:4])})"
            )
        break
    else:
        raise NoLMHeadError(f"model {name_or_path!r} cannot be loaded as a masked or causal LM: {'; '.join(errors)}")
    if spec and spec.local and not gguf_file:
        tokenizer = _guarded(lambda: fetched_tokenizer(Path(location)), name_or_path, "its tokenizer")
    else:
        tokenizer = _guarded(lambda: AutoTokenizer.from_pretrained(location, **extra), name_or_path, "its tokenizer")
    if tokenizer("hello world", add_special_tokens=False)["input_ids"] == []:
        raise ModelLoadError(f"the tokenizer of {name_or_path!r} turns text into no tokens: its files are incomplete")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    identity = f"{name_or_path}@{weights_identity(location, gguf_file)}" if local else name_or_path
    return PromptedLM(model.to(device), tokenizer, name=name_or_path, kind=candidate, identity=identity)


SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "sep_token", "cls_token")


def fetched_tokenizer(folder: Path):
    """The tokenizer of a model `ptfer models fetch` wrote, straight from its tokenizer.json: AutoTokenizer parses
    that file in Python and rebuilds it (in a fresh process, Gemma's 262k vocabulary: 4.7 s, not 2.4; SmolLM2: 2.1 s,
    not 0.8; `benchmarks/tokenizer_load.py`), and the fetched files are exactly what such a tokenizer saved. Only
    for fetched models: a hub tokenizer class may change its tokenizer.json's behaviour in Python.
    `tests/test_real.py` checks both fetched models give the same ids, tokens and special ids on every LAMA text as
    AutoTokenizer."""
    import json

    from transformers import PreTrainedTokenizerFast
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    named = tokenizer_class_from_name(config.get("tokenizer_class") or "PreTrainedTokenizerFast")
    return PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"),
        padding_side=getattr(named, "padding_side", "right"),  # Gemma's class pads on the left
        model_max_length=config.get("model_max_length", int(1e30)),
        **{k: config[k] for k in SPECIAL_TOKENS if config.get(k)},
    )


def _check_local_dir(path: Path, name: str, gguf_file: str | None) -> None:
    if gguf_file or path.is_file():
        return
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a model directory: it has no config.json")
    if not list(path.glob("*.safetensors")):
        pickled = [p.name for p in path.glob("*.bin")]
        hint = (
            f" (found {', '.join(pickled)}: pickled weights are refused, convert them to safetensors)"
            if pickled
            else ""
        )
        raise ModelLoadError(f"model directory {path} has no .safetensors weights{hint}")
    if not any(
        (path / f).is_file()
        for f in (
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.txt",
            "spiece.model",
            "tokenizer.model",
            "vocab.json",
        )
    ):
        raise ModelLoadError(f"model directory {path} has no tokenizer files (tokenizer.json, vocab.txt, ...)")


def _guarded(load, name: str, what: str):
    try:
        return load()
    except Exception as exc:
        raise ModelLoadError(f"cannot load {what} of {name!r}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
