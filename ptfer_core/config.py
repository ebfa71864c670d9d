"""Every setting's vocabulary: the string enums, and the base of the settings dataclasses.

Enums are `str` subclasses so they round-trip through JSON, YAML, command lines and URLs unchanged. A settings
dataclass (`settings.py`) describes each field once, with `setting(default, help)`; the CLI options, the app's
widgets, saved prompts, presets and grid files are all derived from that one description.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
import warnings
from enum import Enum

SETTINGS_VERSION = 2  # bump when a field changes meaning; older files are migrated in `from_dict`


class ModelKind(str, Enum):
    MASKED = "masked"
    CAUSAL = "causal"


class Precision(str, Enum):
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    AUTO = "auto"  # bfloat16 where this machine computes it fast, else float32: `resolve_precision`


def resolve_precision(precision: Precision | str, device=None) -> Precision:
    """`auto` → bfloat16 on a CUDA device or a CPU with AVX-512 (native or fast bf16 kernels), else float32.

    On an AVX2-only CPU PyTorch emulates bfloat16 matmuls: measured here 0.9 GFLOP/s against 49 for float32 on
    one core, i.e. bfloat16 would make tuning ~50× slower. Explicit float32/bfloat16 are kept as asked.
    """
    precision = parse_enum(Precision, precision, "precision")
    if precision != Precision.AUTO:
        return precision
    return Precision.BFLOAT16 if _fast_bfloat16(str(device or "cpu").split(":")[0]) else Precision.FLOAT32


def _fast_bfloat16(device_type: str) -> bool:
    import os

    forced = os.environ.get("PTFER_AUTO_PRECISION")  # lets a test or a user pin what `auto` means
    if forced:
        return parse_enum(Precision, forced, "PTFER_AUTO_PRECISION") == Precision.BFLOAT16
    if device_type == "cuda":
        return True
    import torch

    return torch.backends.cpu.get_cpu_capability().startswith(("AVX512", "AMX"))


class Placement(str, Enum):
    """Where the m soft vectors sit around the input [X]."""

    POSTFIX = "postfix"  # [X] v1 … vm [Y] .   (the paper's layout)
    PREFIX = "prefix"  # v1 … vm [X] [Y] .   (after the model's own start token)
    SPLIT = "split"  # v1 … vj [X] vj+1 … vm [Y] .
    TEMPLATE = "template"  # split, shaped like the relation's manual template: one vector per template token
    PEFT = "peft"  # v1 … vm before everything, special tokens included: exactly PEFT's prompt tuning


class PromptInit(str, Enum):
    OPTIPROMPT = "optiprompt"  # N(0, initializer_range²) in the embedding weights' space, as OptiPrompt's new [V] rows
    RANDOM = "random"  # a normal fitted per dimension to the model's token embeddings
    MANUAL = "manual"  # the manual template's own tokens, in order
    VOCAB_SAMPLE = "vocab-sample"  # embeddings of randomly drawn answer-candidate words


class TuneLoss(str, Enum):
    FULL_VOCABULARY = "full-vocabulary"  # OptiPrompt: cross-entropy over the whole vocabulary at the answer slot
    CANDIDATES = "candidates"  # cross-entropy over the answer candidates only (what P@1 measures; cheaper)


class Selection(str, Enum):
    """How a search or a training run picks its answer. `loss` uses no target labels (truly zero-shot)."""

    LOSS = "loss"
    DEV = "dev"


class SpaceMode(str, Enum):
    """How similarities to the anchors are taken (the paper uses plain cosines)."""

    RAW = "raw"  # cos(v, a_j): the paper
    CENTRED = "centred"  # cos(v − c, a_j − c), c = the mean of all the model's token embeddings
    # cos(v − c, a_j − c) with c = the anchors' mean, then each anchor's similarity z-scored over the anchor set
    STANDARDISED = "standardised"


class Solver(str, Enum):
    """How the target vectors are found."""

    ADAM = "adam"  # the paper: gradient search from a random start, normalisation inside the loop
    LSTSQ = "lstsq"  # the objective's closed form (unnormalised optimum) at the source's lengths, then normalised
    REFINED = "refined"  # the closed form refined with the normalisation inside the loop (lengths drift)
    VOCABULARY = "vocabulary"  # the same objective over real tokens: per vector, the shared word matching best


class SearchInit(str, Enum):
    XAVIER = "xavier"  # the reference: Xavier-normal, std √(2/(m + d))
    NORMAL = "normal"  # unit normal


class Normalization(str, Enum):
    """Eq. 6: map the found vectors onto the target's embedding distribution."""

    GLOBAL = "global"  # the paper: one mean/std over all found values → the target embedding matrix's mean/std
    # as global, but the target spread times the source prompt's spread relative to its own model's embeddings: a
    # prompt that is 5x smaller than its model's tokens stays 5x smaller than the target's (uses no target labels)
    RELATIVE = "relative"
    PER_VECTOR = "per-vector"  # each vector standardised on its own (forces equal norms)
    NONE = "none"  # ablation: the searched vectors as they are (lstsq/refined place them at a typical target length)


class Projection(str, Enum):
    """What to do with the found vectors afterwards (uses no labels, so transfer stays zero-shot)."""

    NONE = "none"  # the paper
    NEAREST = "nearest"  # snap each vector to its nearest target token (cosine)
    NEAREST_SHARED = "nearest-shared"  # snap to the nearest word both models share
    MIX = "mix"  # similarity-weighted mix of the top-n target tokens


class AnchorSource(str, Enum):
    COMMON_VOCAB = "common-vocab"  # the reference: the common-vocabulary file's words, file order
    FREQUENCY = "frequency"  # every shared word-initial token, ordered by a token-id frequency proxy


class AnchorFilter(str, Enum):
    WORDS = "words"  # alphabetic whole words only
    ALL = "all"  # any word-initial token spelled the same in every vocabulary


class Method(str, Enum):
    MANUAL = "manual"
    RANDOM = "random"
    DIRECT_TUNING = "direct-tuning"
    DIRECT_TRANSFER = "direct-transfer"
    DISCRETIZATION = "discretization"
    PROJECTOR = "projector"
    TRANSFER = "transfer"


# How the app names the methods `compare.compare` scores.
METHOD_LABELS = {
    "transfer": "Transferred",
    "direct-transfer": "Direct transfer",
    "manual": "Manual template",
    "discretization": "Discretisation",
    "random": "Random prompt",
}


class Recipe(str, Enum):
    """A named, complete set of tuning and transfer settings (see `settings.recipe_settings`)."""

    PAPER = "paper"  # the reference code, faithfully: OptiPrompt tuning, Adam search, target-dev selection
    PAPER_ZERO_SHOT = "paper-zero-shot"  # the same, selected by the lowest matching loss (no target labels)
    STUDIO = "studio"  # PTfer Studio's default: the paper's objective solved exactly, zero-shot


class TaskKind(str, Enum):
    RELATION = "relation"  # a LAMA T-REx relation: the answer is one word of the common vocabulary
    CLASSIFICATION = "classification"  # a label, predicted through its label word(s)


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


# ----------------------------------------------------------------------------- settings dataclasses


def setting(default, help: str, *, label: str | None = None, cli: bool = True, minimum=None, maximum=None):
    """A settings field with its help text (and optional bounds), the one description every interface reads."""
    meta = {"help": help, "label": label, "cli": cli, "minimum": minimum, "maximum": maximum}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@functools.cache
def _type_hints(cls) -> dict:
    """A settings class's resolved annotations: resolving them costs ~3 ms, and the app builds settings per rerun."""
    return typing.get_type_hints(cls)


class Settings:
    """Mixin for settings dataclasses: validation from field metadata, JSON round trip with a version stamp."""

    def _check_fields(self) -> None:
        """Coerce enum fields from strings, check each value's type (a grid file's YAML reads `1e-3` as a string and
        `10.0` as a float) and its numeric bounds; subclasses call it from __post_init__."""
        from .errors import InputError

        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            kind = base_type(hints[f.name])
            enum_type = enum_of(hints[f.name])
            if enum_type is not None:
                setattr(self, f.name, parse_enum(enum_type, value, f.name.replace("_", " ")))
                continue
            if kind not in (int, float, bool):
                continue
            value = _typed(f.name, value, kind)
            setattr(self, f.name, value)
            if kind is bool:
                continue
            low, high = f.metadata.get("minimum"), f.metadata.get("maximum")
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = " and ".join(
                    b
                    for b in (
                        f"at least {low}" if low is not None else "",
                        f"at most {high}" if high is not None else "",
                    )
                    if b
                )
                raise InputError(f"{f.name} must be {bounds} (got {value})")

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, Enum) else list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict | None, *, where: str = "settings", version: int = SETTINGS_VERSION):
        """Build from a dict; unknown keys are dropped with a warning naming them (never silently, never fatal).

        A stamped dict's own `settings_version` wins over `version`; pass version=1 for files older than stamps.
        """
        from .errors import InputError

        data = dict(data or {})
        version = data.pop("settings_version", version)
        if version < SETTINGS_VERSION:
            data = cls.migrate(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(f"{where}: ignoring unknown {cls.__name__} keys {', '.join(unknown)}", stacklevel=2)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise InputError(f"{where}: {exc}") from None

    @classmethod
    def migrate(cls, data: dict) -> dict:
        """Map settings saved before version stamps onto today's fields (override per class)."""
        return data

    def stamped(self) -> dict:
        return {**self.to_dict(), "settings_version": SETTINGS_VERSION}

    @classmethod
    def describe(cls) -> list[dict]:
        """One entry per field: name, default, help, choices (for enums), type; what CLIs and UIs are built from."""
        hints = _type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            enum_type = enum_of(hints[f.name])
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append(
                {
                    "name": f.name,
                    "default": default.value if isinstance(default, Enum) else default,
                    "help": f.metadata.get("help", ""),
                    "label": f.metadata.get("label"),
                    "choices": [e.value for e in enum_type] if enum_type else None,
                    "type": base_type(hints[f.name]),
                    "optional": type(None) in typing.get_args(hints[f.name]),
                    "cli": f.metadata.get("cli", True),
                    "minimum": f.metadata.get("minimum"),
                    "maximum": f.metadata.get("maximum"),
                }
            )
        return rows


def _typed(name: str, value, kind: type):
    """`value` as a `kind` (int, float or bool) setting, or an InputError naming the field: a whole number, a finite
    number (inf passed the bounds and wrote an unreadable JSON after the run), true or false."""
    import math
    import numbers

    from .errors import InputError

    if kind is bool:
        if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":  # numpy's too
            return bool(value)
        raise InputError(f"{name} must be true or false (got {value!r})")
    number = value
    if isinstance(value, str):
        try:  # a whole number exactly (float() rounds 20 digits), else a decimal one
            number = int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                raise InputError(f"{name} must be a number (got {value!r})") from None
    if isinstance(number, bool) or not isinstance(number, numbers.Real):  # numpy's numbers too
        raise InputError(f"{name} must be a number (got {value!r})")
    if isinstance(number, numbers.Integral):
        # a Python int stays one, in a float field too: saved settings and their hashes keep writing 0, not 0.0
        return int(number)
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number (got {value!r})")
    if kind is int:
        if number != int(number):
            raise InputError(f"{name} must be a whole number (got {value!r})")
        return int(number)
    return float(number)


def enum_of(hint) -> type[Enum] | None:
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return candidate
    return None


def base_type(hint):
    """int for `int | None`, Enum class for enums, etc."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (
        args[0]
        if args and typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None))
        else hint
    )
