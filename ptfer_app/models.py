"""Build a model by name (no caching here; `services.load_model` caches it for the app)."""
from __future__ import annotations

from ptfer_core.errors import ModelLoadError
from ptfer_core.models import REGISTRY, PromptedLM

from . import catalog


def load(name: str) -> PromptedLM:
    """A tiny built-in demo model, a fetched local model, or a hub id; ModelLoadError with the fix otherwise."""
    if catalog.is_tiny(name):
        from ptfer_core.testing import MINI_WORDS, tiny_lm

        spec = catalog.TINY_MODELS[name]
        return tiny_lm(spec.arch, MINI_WORDS, width=spec.width, seed=spec.seed, name=name)
    spec = REGISTRY.get(name)
    if spec is not None and spec.local and not catalog.is_available(name):
        raise ModelLoadError(f"{name} is not on this machine yet. Fetch it once with `{catalog.fetch_command(name)}` "
                             f"(or `python -c \"from ptfer_core.fetch import fetch; fetch('{name}')\"`), then reload.")
    from ptfer_core.models import load_model

    return load_model(name)


def demo_data_dir(root) -> str:
    """Write the miniature LAMA (3 relations, ~56 facts) that the tiny demo models know into `root`."""
    from ptfer_core.testing import write_mini_lama

    return str(write_mini_lama(root))
