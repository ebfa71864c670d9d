"""Which models the app offers, and which data set goes with them.

Real models come from `ptfer_core.models.REGISTRY`. The built-in "tiny-demo-*" models are small random
transformers (`ptfer_core.testing.tiny_lm`) over the words of a miniature LAMA, so every page works on a
fresh machine with no weights and no data. Their numbers mean nothing; they demonstrate the mechanics.
"""
from __future__ import annotations

from dataclasses import dataclass

from ptfer_core.errors import InputError
from ptfer_core.models import REGISTRY


@dataclass(frozen=True)
class TinySpec:
    name: str
    arch: str
    width: int
    seed: int
    description: str


TINY_MODELS: dict[str, TinySpec] = {
    s.name: s
    for s in [
        TinySpec("tiny-demo-llama", "llama", 32, 0, "Tiny random Llama-style causal LM (width 32), built in"),
        TinySpec("tiny-demo-gpt2", "gpt2", 48, 1, "Tiny random GPT-2-style causal LM (width 48), built in"),
        TinySpec("tiny-demo-bert", "bert", 32, 2, "Tiny random BERT-style masked LM (width 32), built in"),
    ]
}

REAL_DEFAULT = ("smollm2-135m", "gemma3-270m", "P36")
DEMO_DEFAULT = ("tiny-demo-llama", "tiny-demo-gpt2", "P103")


def is_tiny(name: str) -> bool:
    return name in TINY_MODELS


def model_names() -> list[str]:
    """Locally fetchable models first, then the tiny demos, then hub models."""
    local = [n for n, s in REGISTRY.items() if s.local]
    hub = [n for n, s in REGISTRY.items() if not s.local]
    return local + list(TINY_MODELS) + hub


def description(name: str) -> str:
    if name in TINY_MODELS:
        return TINY_MODELS[name].description
    spec = REGISTRY.get(name)
    return spec.description if spec else name


def is_available(name: str, models_root=None) -> bool:
    """True when loading can work without a network: tiny demos, and local models already fetched."""
    if is_tiny(name):
        return True
    spec = REGISTRY.get(name)
    if spec is None or not spec.local:
        return False
    from ptfer_core.fetch import is_fetched

    return is_fetched(name, models_root)


def is_local(name: str) -> bool:
    spec = REGISTRY.get(name)
    return spec is not None and spec.local


def fetch_command(name: str) -> str:
    return f"ptfer models fetch {name}"


def label(name: str, models_root=None) -> str:
    """Short name for selectors: marks local models that still need fetching."""
    spec = REGISTRY.get(name)
    if spec is not None and spec.local and not is_available(name, models_root):
        return f"{name} (not fetched)"
    if spec is not None and not spec.local:
        return f"{name} (hub)"
    return name


def default_selection(models_root=None) -> tuple[str, str, str]:
    """(source, target, relation): the real pair when both are fetched, otherwise the built-in demo."""
    src, tgt, rel = REAL_DEFAULT
    if is_available(src, models_root) and is_available(tgt, models_root):
        return REAL_DEFAULT
    return DEMO_DEFAULT


def uses_demo_data(names: list[str]) -> bool:
    """Tiny demo models read the miniature LAMA; real models the LAMA data dir. Mixing them is an error."""
    tiny = [n for n in names if is_tiny(n)]
    if tiny and len(tiny) != len(names):
        raise InputError("the built-in tiny demo models only know the words of the miniature demo data: pair them "
                         "with each other, not with real models")
    return bool(tiny)
