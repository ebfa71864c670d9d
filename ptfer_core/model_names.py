"""Which model names exist: the registry of real models and the built-in toy models' names.

Torch-free on purpose: the app's first page and the CLI's listings read these names without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .paths import model_dir


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # hub id, or a directory name under the model dir for locally fetched models
    description: str
    local: bool = False  # True: obtained by `ptfer models fetch`, lives under the model dir

    def location(self, models_root: Path | None = None) -> str:
        return str(model_dir(models_root) / self.source) if self.local else self.source


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("bert-base-cased", "bert-base-cased", "BERT base, cased (masked LM, 768)"),
        ModelSpec("bert-large-cased", "bert-large-cased", "BERT large, cased (masked LM, 1024)"),
        ModelSpec("roberta-base", "roberta-base", "RoBERTa base (masked LM, 768)"),
        ModelSpec("roberta-large", "roberta-large", "RoBERTa large (masked LM, 1024)"),
        ModelSpec("albert-base-v2", "albert-base-v2", "ALBERT base v2 (masked LM, 128-d embeddings)"),
        ModelSpec("albert-large-v2", "albert-large-v2", "ALBERT large v2 (masked LM, 128-d embeddings)"),
        ModelSpec("gpt2", "gpt2", "GPT-2 small (causal LM, 768)"),
        ModelSpec("smollm2-135m", "smollm2-135m", "SmolLM2-135M-Instruct (causal LM, 576), local", local=True),
        ModelSpec("gemma3-270m", "gemma3-270m", "Gemma-3-270M (causal LM, 640), local", local=True),
    ]
}


# ----------------------------------------------------------------------------- toy models

TOY_PREFIX = "tiny:"
# Toy models share ~120 words: every shared token is an anchor, and nothing is masked.
TOY_TRANSFER_OVERRIDES = {"anchor_source": "frequency", "anchor_filter": "all", "top_k": None}


@dataclass(frozen=True)
class ToySpec:
    arch: str
    width: int = 32
    seed: int = 0
    trained: bool = False  # trained on the miniature LAMA's facts (a few seconds, seeded)

    @property
    def name(self) -> str:
        return f"{TOY_PREFIX}{self.arch}:{self.width}:{self.seed}" + (":trained" if self.trained else "")


# The app's demo models: aliases of three toy models, so one naming scheme covers both.
DEMO_ALIASES: dict[str, tuple[ToySpec, str]] = {
    "tiny-demo-llama": (
        ToySpec("llama", 32, 0, True),
        "Tiny Llama-style causal LM (width 32) trained on the miniature LAMA: a built-in toy model",
    ),
    "tiny-demo-gpt2": (
        ToySpec("gpt2", 48, 1, True),
        "Tiny GPT-2-style causal LM (width 48) trained on the miniature LAMA: a built-in toy model",
    ),
    "tiny-demo-bert": (
        ToySpec("bert", 32, 2, True),
        "Tiny BERT-style masked LM (width 32) trained on the miniature LAMA: a built-in toy model",
    ),
}


def is_toy(name: str) -> bool:
    return name.startswith(TOY_PREFIX) or name in DEMO_ALIASES
