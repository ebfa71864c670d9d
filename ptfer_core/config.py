"""Small validated settings shared across the library. String enums so they round-trip through JSON/CLI/URLs."""
from __future__ import annotations

from enum import Enum


class ModelKind(str, Enum):
    MASKED = "masked"
    CAUSAL = "causal"


class Precision(str, Enum):
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


class Placement(str, Enum):
    """Where the m soft vectors sit relative to the subject [X]."""

    POSTFIX = "postfix"  # [X] v1 … vm [Y] .   (the paper's layout)
    PREFIX = "prefix"  # v1 … vm [X] [Y] .
    SPLIT = "split"  # v1 … vj [X] vj+1 … vm [Y] .
    TEMPLATE = "template"  # split, shaped like the relation's manual template: one vector per template token


class PromptInit(str, Enum):
    RANDOM = "random"
    MANUAL = "manual"
    VOCAB_SAMPLE = "vocab-sample"


class Selection(str, Enum):
    """How the transfer search picks its answer: `loss` uses no target labels (truly zero-shot)."""

    LOSS = "loss"
    DEV = "dev"


class SpaceMode(str, Enum):
    """How similarities to the anchors are taken (the paper uses plain cosines)."""

    RAW = "raw"  # cos(v, a_j): the paper
    CENTRED = "centred"  # cos(v − c, a_j − c), c = the mean of all the model's token embeddings
    # cos(v − c, a_j − c) with c = the anchors' mean, then each anchor's similarity z-scored over the anchor set:
    # removes each model's common offset (anisotropy) and the hub anchors that are near everything
    STANDARDISED = "standardised"


class Solver(str, Enum):
    """How the target vectors are found."""

    ADAM = "adam"  # the paper: gradient search from a random start, normalisation inside the loop
    LSTSQ = "lstsq"  # closed form per vector (u ∝ A⁺ r), normalised afterwards; milliseconds instead of seconds
    VOCABULARY = "vocabulary"  # the same objective over real tokens: per vector, the shared word matching best


class Method(str, Enum):
    MANUAL = "manual"
    RANDOM = "random"
    DIRECT_TUNING = "direct-tuning"
    DIRECT_TRANSFER = "direct-transfer"
    DISCRETIZATION = "discretization"
    PROJECTOR = "projector"
    TRANSFER = "transfer"


def parse_enum(enum_type: type[Enum], value, what: str):
    """Turn a string (or enum) into `enum_type`, with an error listing the valid choices."""
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)
    except ValueError:
        choices = ", ".join(e.value for e in enum_type)
        from .errors import InputError

        raise InputError(f"unknown {what} {value!r}; choose one of: {choices}") from None
