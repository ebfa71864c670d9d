"""Which models the app offers, and which data set goes with them.

Real models come from the core registry (`ptfer_core.model_names.REGISTRY`). The built-in ``tiny-demo-*`` models are
toy transformers trained on a miniature LAMA (`ptfer_core.toy_models`), so every page works on a fresh machine
with no weights and no data; they are labelled as toy models wherever they appear.
"""

from __future__ import annotations

from ptfer_core.errors import InputError
from ptfer_core.model_names import DEMO_ALIASES, REGISTRY, is_toy

REAL_DEFAULT = ("smollm2-135m", "gemma3-270m", "P36")
DEMO_DEFAULT = ("tiny-demo-llama", "tiny-demo-gpt2", "P103")


def model_names() -> list[str]:
    """Locally fetchable models first, then the tiny demos, then hub models."""
    local = [n for n, s in REGISTRY.items() if s.local]
    hub = [n for n, s in REGISTRY.items() if not s.local]
    return local + list(DEMO_ALIASES) + hub


def description(name: str) -> str:
    if name in DEMO_ALIASES:
        return DEMO_ALIASES[name][1]
    spec = REGISTRY.get(name)
    return spec.description if spec else name


def is_available(name: str, models_root=None) -> bool:
    """True when loading can work without a network: toy models, and local models already fetched."""
    if is_toy(name):
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
    src, tgt, _ = REAL_DEFAULT
    if is_available(src, models_root) and is_available(tgt, models_root):
        return REAL_DEFAULT
    return DEMO_DEFAULT


def uses_demo_data(names: list[str]) -> bool:
    """Toy models read the miniature LAMA; real models the LAMA data dir. Mixing them is an error."""
    tiny = [n for n in names if is_toy(n)]
    if tiny and len(tiny) != len(names):
        raise InputError(
            "the built-in toy models only know the words of the miniature demo data: pair them "
            "with each other, not with real models"
        )
    return bool(tiny)
