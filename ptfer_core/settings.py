"""The settings of tuning, transfer and the projector baseline, each field described once, and the named recipes.

The dataclass defaults are the `studio` recipe (PTfer Studio's own); `RECIPES` holds what each other recipe
changes. `recipe_settings(recipe, overrides)` is the only way the CLI, the grid and the app build settings, so a
saved prompt's recipe name plus its recorded overrides reproduce it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import (
    AnchorFilter,
    AnchorSource,
    Normalization,
    Placement,
    Precision,
    Projection,
    PromptInit,
    Recipe,
    SearchInit,
    Selection,
    Settings,
    Solver,
    SpaceMode,
    TuneLoss,
    parse_enum,
    setting,
)
from .errors import InputError


@dataclass
class TuneConfig(Settings):
    """OptiPrompt-style tuning of m soft vectors; the model stays frozen."""

    n_vectors: int = setting(5, "soft prompt length m", label="Prompt vectors", minimum=1, maximum=64)
    placement: Placement = setting(Placement.POSTFIX, "where the vectors sit around [X]", label="Placement")
    split_at: int | None = setting(None, "split placement: vectors before [X] (default m − 1)", cli=False, minimum=0)
    init: PromptInit = setting(PromptInit.RANDOM, "how the vectors start", label="Initialisation")
    loss: TuneLoss = setting(
        TuneLoss.FULL_VOCABULARY,
        "cross-entropy over the whole vocabulary (OptiPrompt) or "
        "over the answer candidates only (faster, what P@1 measures)",
        label="Tuning loss",
    )
    epochs: int = setting(10, "passes over the training facts", label="Epochs", minimum=1, maximum=1000)
    lr: float = setting(3e-3, "AdamW learning rate (peak, after linear warm-up)", label="Learning rate", minimum=1e-9)
    batch_size: int = setting(16, "facts per step", minimum=1, maximum=4096)
    warmup: float = setting(0.1, "fraction of steps with a linearly rising learning rate", minimum=0.0, maximum=0.99)
    weight_decay: float = setting(0.0, "AdamW weight decay (OptiPrompt: 0)", minimum=0.0)
    dropout: bool = setting(True, "the model's dropout on while tuning, as OptiPrompt (weights still frozen)")
    dev_checks_per_epoch: int = setting(
        3, "source dev P@1 checks per epoch; the best check is kept", minimum=1, maximum=100
    )
    dev_before_training: bool = setting(True, "also check the starting vectors (they win if training never helps)")
    shuffle: bool = setting(False, "reshuffle the training facts every epoch (OptiPrompt keeps file order)")
    max_train: int | None = setting(None, "cap on training facts (a CPU budget; none: all)", minimum=1)
    manifold_weight: float = setting(0.0, "pull towards the nearest token embedding (0: off)", minimum=0.0)
    precision: Precision = setting(
        Precision.AUTO,
        "arithmetic of the frozen model while tuning (vectors and optimiser stay float32); auto: bfloat16 where "
        "the machine computes it fast (a GPU, an AVX-512 CPU), else float32",
        label="Tuning precision",
    )
    seed: int = setting(0, "seeds the start vectors and the shuffle", minimum=0)

    def __post_init__(self):
        self._check_fields()
        if self.split_at is not None and self.placement != Placement.SPLIT:
            raise InputError("split_at only applies to placement='split'")
        if self.split_at is not None and self.split_at > self.n_vectors:
            raise InputError(f"split_at={self.split_at} must lie in 0..{self.n_vectors}")

    @classmethod
    def migrate(cls, data: dict) -> dict:
        # Before version 2: the candidate loss, AdamW decay 0.01, one dev check per epoch, a seeded shuffle.
        return {
            "loss": "candidates",
            "weight_decay": 0.01,
            "dropout": False,
            "dev_checks_per_epoch": 1,
            "dev_before_training": False,
            "shuffle": True,
            "precision": "float32",
            "init": "random",
            **data,
        }


@dataclass
class TransferConfig(Settings):
    """The relative-space transfer: anchors, the space, the solver and what is done with its answer."""

    anchor_source: AnchorSource = setting(AnchorSource.COMMON_VOCAB, "which words are anchors", label="Anchors from")
    n_anchors: int | None = setting(
        None, "number of anchors k (none: every candidate word)", label="Anchors k", minimum=1
    )
    anchor_filter: AnchorFilter = setting(
        AnchorFilter.WORDS, "frequency anchors: whole words only, or any shared word-initial token"
    )
    top_k: int | None = setting(
        None, "keep each source vector's K largest similarities (none: all)", label="Top-K", minimum=1
    )
    space: SpaceMode = setting(SpaceMode.RAW, "how similarities to the anchors are taken", label="Relative space")
    solver: Solver = setting(Solver.LSTSQ, "how the target vectors are found", label="Solver")
    steps: int = setting(
        2000, "search steps (adam) or refinement steps (refined)", label="Search steps", minimum=1, maximum=100_000
    )
    lr: float = setting(5e-3, "Adam learning rate of the search", minimum=1e-9)
    search_init: SearchInit = setting(SearchInit.XAVIER, "start of the Adam search")
    normalization: Normalization = setting(
        Normalization.RELATIVE,
        "Eq. 6: map the answer onto the target's embedding distribution",
        label="Normalisation",
    )
    selection: Selection = setting(
        Selection.LOSS,
        "keep the step with the lowest matching loss (zero-shot) or the best target dev P@1 (peeks at target labels)",
        label="Selection",
    )
    dev_every: int = setting(50, "selection=dev: check target dev P@1 every N steps", minimum=1)
    patience: int | None = setting(None, "stop when the loss has not improved for N steps (none: never)", minimum=1)
    min_delta: float = setting(1e-7, "improvement that resets the patience counter", cli=False, minimum=0.0)
    restarts: int = setting(
        1, "independent Adam starts searched side by side; the lowest loss wins", minimum=1, maximum=64
    )
    projection: Projection = setting(
        Projection.NONE, "afterwards, pull vectors onto target tokens (label-free)", label="Projection"
    )
    projection_top_n: int = setting(8, "projection=mix: tokens mixed", minimum=1)
    projection_alpha: float = setting(1.0, "1: the projection only; 0: the found vector only", minimum=0.0, maximum=1.0)
    hub_penalty: bool = setting(False, "solver=vocabulary: CSLS, so words near everything stop winning every vector")
    seed: int = setting(0, "seeds the search start", minimum=0)

    def __post_init__(self):
        self._check_fields()
        if self.hub_penalty and self.solver != Solver.VOCABULARY:
            raise InputError("hub_penalty re-scores candidate words: it needs solver='vocabulary'")
        if self.solver not in (Solver.ADAM,) and self.selection == Selection.DEV:
            raise InputError(
                f"selection='dev' picks among search steps; the {self.solver.value} solver has one answer: "
                "use selection='loss' with it"
            )

    @classmethod
    def migrate(cls, data: dict) -> dict:
        data = dict(data)
        if data.pop("centre_anchors", False) and data.get("space", "raw") == "raw":
            data["space"] = "centred"
        if "normalize" in data:
            data["normalization"] = "per-vector" if data.pop("normalize") else "none"
        if data.pop("project_to_shared", False) and data.get("projection") == "nearest":
            data["projection"] = "nearest-shared"
        # Before version 2: frequency anchors (8,192), no top-K, Adam lr 1e-2 from a unit-normal start, patience.
        return {
            "anchor_source": "frequency",
            "n_anchors": 8192,
            "top_k": None,
            "lr": 1e-2,
            "search_init": "normal",
            "patience": 200,
            "solver": "adam",
            **data,
        }

    @property
    def needs_dev(self) -> bool:
        return self.selection == Selection.DEV


@dataclass
class ProjectorConfig(Settings):
    """The neural-projector baseline: a 2-layer MLP from source to target embeddings, trained on shared words."""

    hidden: int = setting(768, "hidden width", minimum=1)
    epochs: int = setting(10, "passes over the shared words; the epoch best on target dev is kept", minimum=1)
    lr: float = setting(5e-3, "Adam learning rate (paper, A.2)", minimum=1e-9)
    batch_size: int = setting(16, "word pairs per step", minimum=1)
    seed: int = setting(0, "seeds the initialisation and the shuffle", minimum=0)

    def __post_init__(self):
        self._check_fields()


# ----------------------------------------------------------------------------- recipes

# What each recipe changes relative to the dataclass defaults (which are the `studio` recipe).
# OptiPrompt's tiny start vectors make bfloat16 tuning unstable (measured: benchmarks/tuning_speed.py), so the
# paper's recipe tunes in float32; both use the exact fast paths (eager attention, the prefix cache).
_PAPER_TUNE = {"init": PromptInit.OPTIPROMPT.value, "precision": Precision.FLOAT32.value}
SETTING_GROUPS = {"tune": TuneConfig, "transfer": TransferConfig, "projector": ProjectorConfig}  # a recipe's parts

RECIPES: dict[Recipe, dict[str, dict]] = {
    Recipe.STUDIO: {"tune": {}, "transfer": {}, "projector": {}},
    Recipe.PAPER: {
        "tune": _PAPER_TUNE,
        "transfer": {
            "solver": Solver.ADAM.value,
            "normalization": Normalization.GLOBAL.value,
            "selection": Selection.DEV.value,
            "top_k": 8192,
        },
        "projector": {},
    },
    Recipe.PAPER_ZERO_SHOT: {
        "tune": _PAPER_TUNE,
        "transfer": {"solver": Solver.ADAM.value, "normalization": Normalization.GLOBAL.value, "top_k": 8192},
        "projector": {},
    },
}

# The CPU budget of the shipped real-model prompts and of grids/real-causal.yaml (a test keeps the two equal): at
# most 200 training facts per relation, and 100 dev facts for every dev-based choice, both seeded samples. The app
# runs real models under the same budget, so its default settings find the shipped prompts instead of tuning.
BUDGET_OVERRIDES = {"tune": {"max_train": 200}}
BUDGET_MAX_DEV = 100


def overrides_for(models) -> dict:
    """What a run on these models puts under its recipe (the app, the preset maker): anchors that fit the toy
    vocabulary for the built-in toy models, else the CPU budget above."""
    from .model_names import TOY_TRANSFER_OVERRIDES, is_toy

    return {"transfer": dict(TOY_TRANSFER_OVERRIDES)} if any(map(is_toy, models)) else BUDGET_OVERRIDES


RECIPE_HELP = {
    Recipe.PAPER: "the reference code: OptiPrompt tuning, every common-vocabulary anchor with a top-8,192 mask, Adam "
    "from a Xavier start (lr 5e-3, 2,000 steps), Eq. 6 inside the loop, best target dev P@1 every 50 steps",
    Recipe.PAPER_ZERO_SHOT: "the paper's recipe, kept by the lowest matching loss: no target labels",
    Recipe.STUDIO: "tuning from token-like start vectors (bfloat16 where the machine computes it fast), then the "
    "paper's objective solved exactly in closed form, then Eq. 6 with the source prompt's own spread relative to its "
    "model's tokens (self-transfer gives the source prompt back), zero-shot",
}


@dataclass(frozen=True)
class RecipeSettings:
    recipe: Recipe
    tune: TuneConfig
    transfer: TransferConfig
    projector: ProjectorConfig
    overrides: dict  # {"tune": {...}, "transfer": {...}, "projector": {...}}: what differs from the recipe

    def describe(self) -> dict:
        return {
            "recipe": self.recipe.value,
            "overrides": self.overrides,
            "tune": self.tune.stamped(),
            "transfer": self.transfer.stamped(),
            "projector": self.projector.stamped(),
        }


def recipe_settings(recipe: Recipe | str = Recipe.STUDIO, overrides: dict | None = None) -> RecipeSettings:
    """The recipe's settings with `overrides` ({"tune": {...}, "transfer": {...}, "projector": {...}}) on top.

    An override that sets a value the recipe already has is dropped, so `overrides` lists only real differences.
    """
    recipe = parse_enum(Recipe, recipe, "recipe")
    overrides = overrides or {}
    unknown = set(overrides) - set(SETTING_GROUPS)
    if unknown:
        raise InputError(f"unknown settings group(s) {sorted(unknown)}; use tune, transfer or projector")
    built, kept = {}, {}
    for group, cls in SETTING_GROUPS.items():
        base = cls.from_dict(RECIPES[recipe][group], where=f"recipe {recipe.value}")
        given = dict(overrides.get(group) or {})
        merged = cls.from_dict({**base.to_dict(), **given}, where=f"{group} settings")
        real = {k: v for k, v in merged.to_dict().items() if k in given and base.to_dict()[k] != v}
        built[group], kept[group] = merged, real
    if built["tune"].placement == Placement.TEMPLATE and "n_vectors" in kept["tune"]:
        # the manual template's words set how many vectors there are; the number asked for was recorded, not used
        raise InputError("n_vectors does not apply to placement 'template': the manual template's words set it")
    return RecipeSettings(
        recipe, built["tune"], built["transfer"], built["projector"], {g: v for g, v in kept.items() if v}
    )


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
