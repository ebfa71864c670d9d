"""One way to run anything: tune-or-reuse the source prompts, make the target prompt by a method, score it.

`run(method, ...)` is what the CLI, the grid, the ablations and the app call. Tuned prompts go through one
`PromptStore`, keyed by everything that determines a tuned prompt: the model's identity (a hash of its weights
for local models), the task, the full tuning settings, the split seed and the training data. Changing any of
them gives a new prompt instead of a stale one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .artifacts import SoftPrompt
from .baselines import direct_transfer, discretize, projector_prompt, random_prompt
from .config import Method, Precision, parse_enum
from .data import DEFAULT_SPLIT_SEED, Fact, Task, get_task, load_split, unit_hash
from .errors import DimensionMismatchError, InputError, PromptFileError
from .evaluation import CandidateSet, EvalResult, Prompt, candidates_for, evaluate
from .models import PromptedLM
from .settings import RecipeSettings, TuneConfig, recipe_settings
from .transfer import transfer_prompt
from .tuning import resolve_layout, tune_prompt

SOURCE_METHODS = {Method.DIRECT_TRANSFER, Method.DISCRETIZATION, Method.PROJECTOR, Method.TRANSFER}


@dataclass
class TaskData:
    """A task with its deterministic train/dev/test split.

    `max_dev` caps the dev split (a seeded sample, kept in file order): every dev-based choice (tuning checks,
    the Adam search's target-dev selection, the projector's epoch) then costs at most that many examples. It is a
    CPU budget, recorded through the data fingerprint in every stored prompt's key. `max_test` caps the test split
    the same way (a scoring budget: tuned prompts do not depend on it, so their keys do not record it).
    """

    task: Task
    splits: dict[str, list[Fact]]
    split_seed: int = DEFAULT_SPLIT_SEED
    data_dir: str | None = None
    max_dev: int | None = None
    max_test: int | None = None

    @classmethod
    def load(
        cls,
        task_id: str,
        data_dir=None,
        split_seed: int = DEFAULT_SPLIT_SEED,
        max_dev: int | None = None,
        max_test: int | None = None,
    ) -> TaskData:
        task = get_task(task_id, data_dir)
        splits = {s: load_split(task_id, s, data_dir, split_seed) for s in ("train", "dev", "test")}
        for split, cap in (("dev", max_dev), ("test", max_test)):
            splits[split] = _seeded_sample(splits[split], cap, f"{split}:{split_seed}")
        return cls(task, splits, split_seed, None if data_dir is None else str(data_dir), max_dev, max_test)

    def candidates(self, lm: PromptedLM) -> CandidateSet:
        return candidates_for(lm, self.task, self.data_dir)

    @cached_property
    def fingerprint(self) -> str:
        """Which training and dev examples there are (a changed data file changes it). Computed once: SST-2 has
        67k training sentences and the app asks for it several times per rerun (splits are never edited)."""
        text = "\n".join(f"{f.uuid}\t{f.object}" for s in ("train", "dev") for f in self.splits[s])
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _seeded_sample(facts: list[Fact], cap: int | None, salt: str) -> list[Fact]:
    """At most `cap` facts, chosen by a salted hash of their ids, kept in file order (None: all)."""
    if cap is None or len(facts) <= cap:
        return facts
    chosen = {f.uuid for f in sorted(facts, key=lambda f: unit_hash(f"{salt}:{f.uuid}"))[:cap]}
    return [f for f in facts if f.uuid in chosen]


def tune_on(lm: PromptedLM, data: TaskData, tune: TuneConfig, on_step=None, should_stop=None) -> SoftPrompt:
    """Tune a prompt on the task's train split, selected on its dev split."""
    return tune_prompt(
        lm,
        data.task,
        data.splits["train"],
        data.splits["dev"],
        data.candidates(lm),
        tune,
        on_step=on_step,
        should_stop=should_stop,
    )


class PromptStore:
    """Tuned prompts on disk, one file pair per key; read-only extra roots (e.g. shipped prompts) are searched too."""

    def __init__(self, root: str | Path, extra_roots: Sequence[str | Path] = ()):
        self.root = Path(root)
        self.extra_roots = [Path(r) for r in extra_roots]

    @staticmethod
    def key(lm, data: TaskData, tune: TuneConfig) -> dict:
        """`lm` is a PromptedLM or a loading.ModelRef: only its name and identity are read."""
        return {
            "model": lm.identity,
            "task": data.task.id,
            "tune": tune.stamped(),
            "split_seed": data.split_seed,
            "data": data.fingerprint,
        }

    def path(self, lm, data: TaskData, tune: TuneConfig, root: Path | None = None) -> Path:
        key = self.key(lm, data, tune)
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in lm.name)
        return (root or self.root) / safe / data.task.id / f"tuned-{digest}.safetensors"

    def find(self, lm, data: TaskData, tune: TuneConfig) -> SoftPrompt | None:
        key = self.key(lm, data, tune)
        for root in [self.root, *self.extra_roots]:
            path = self.path(lm, data, tune, root)
            if not path.is_file():
                continue
            try:
                prompt = SoftPrompt.load(path)
            except PromptFileError:
                continue  # a damaged entry is tuned again
            if prompt.provenance.get("store_key") == key:
                return prompt
        return None

    def get_or_tune(
        self,
        lm: PromptedLM,
        data: TaskData,
        tune: TuneConfig,
        *,
        recipe: str | None = None,
        on_step=None,
        should_stop=None,
    ) -> SoftPrompt:
        found = self.find(lm, data, tune)
        if found is not None:
            return found
        prompt = tune_on(lm, data, tune, on_step, should_stop)
        if prompt.provenance.get("stopped_early"):
            return prompt  # a cancelled tuning is used once, never stored
        prompt.provenance.update(store_key=self.key(lm, data, tune), recipe=recipe)
        prompt.save(self.path(lm, data, tune))
        return prompt


@dataclass
class RunResult:
    method: Method
    prompt: SoftPrompt | Prompt  # what the target is queried with
    result: EvalResult  # on the scored split
    split: str
    source_prompts: list[SoftPrompt] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def p_at_1(self) -> float:
        return self.result.p_at_1


def check_source_prompt(prompt: SoftPrompt, lm: PromptedLM, task: Task) -> list[str]:
    """Refuse a source prompt made for another task or of another width; a note when only the model name differs."""
    if prompt.relation != task.id:
        raise InputError(
            f"the source prompt was made for {prompt.relation}, not {task.id}: give a prompt for "
            f"{task.id}, or leave it out to tune one"
        )
    if prompt.width != lm.width:
        raise DimensionMismatchError(
            f"the source prompt has width {prompt.width} (made on {prompt.model}), but {lm.name} has width {lm.width}"
        )
    if prompt.model != lm.name:
        return [f"the source prompt was made on {prompt.model}; it is used as {lm.name}'s (same width)"]
    return []


def source_prompts_for(
    sources: Sequence[PromptedLM],
    data: TaskData,
    settings: RecipeSettings,
    store: PromptStore | None,
    given: Sequence[SoftPrompt | None] | None = None,
    on_step=None,
    should_stop=None,
) -> tuple[list[SoftPrompt], list[str]]:
    """One tuned prompt per source model: the given one (checked), else from the store, else tuned now."""
    prompts, notes = [], []
    given = list(given or [None] * len(sources))
    if len(given) != len(sources):
        raise InputError(f"{len(given)} source prompt(s) for {len(sources)} source model(s)")
    for lm, prompt in zip(sources, given):
        if prompt is None:
            prompt = tuned_prompt(lm, data, settings, store, on_step, should_stop)
        notes += check_source_prompt(prompt, lm, data.task)
        prompts.append(prompt)
    return prompts, notes


def tuned_prompt(
    lm, data: TaskData, settings: RecipeSettings, store: PromptStore | None, on_step=None, should_stop=None
) -> SoftPrompt:
    """The model's tuned prompt: from the store (tuned and stored there when missing), or tuned now without one."""
    if store is None:
        return tune_on(lm, data, settings.tune, on_step, should_stop)
    return store.get_or_tune(
        lm, data, settings.tune, recipe=settings.recipe.value, on_step=on_step, should_stop=should_stop
    )


def make_prompt(
    method: Method | str,
    *,
    data: TaskData,
    target: PromptedLM,
    sources: Sequence[PromptedLM] = (),
    source_prompts: Sequence[SoftPrompt] = (),
    settings: RecipeSettings,
    store: PromptStore | None = None,
    weights: Sequence[float] | None = None,
    seed: int = 0,
    on_step=None,
    should_stop=None,
) -> SoftPrompt | Prompt:
    """The target's prompt by `method` (source prompts already in hand for the methods that need them)."""
    method = parse_enum(Method, method, "method")
    task = data.task
    if method in SOURCE_METHODS and not source_prompts:
        raise InputError(f"method {method.value!r} needs a source prompt")
    if method == Method.MANUAL:
        return Prompt.manual(task)
    if method == Method.RANDOM:
        layout = source_prompts[0].template if source_prompts else resolve_layout(settings.tune, target, task)[1].text
        return random_prompt(target, layout, task.id, seed)
    if method == Method.DIRECT_TUNING:
        return tuned_prompt(target, data, settings, store, on_step, should_stop)
    first, first_lm = source_prompts[0], sources[0]
    if method == Method.DIRECT_TRANSFER:
        return direct_transfer(first, target)
    if method == Method.DISCRETIZATION:
        return discretize(first, first_lm, target)[0]
    if method == Method.PROJECTOR:
        return projector_prompt(
            first,
            first_lm,
            target,
            data.splits["dev"],
            data.candidates(target),
            settings.projector,
            should_stop,
            task.max_input_tokens,
            cache_dir=None if store is None else store.root / "projectors",
        )
    return transfer_prompt(
        list(zip(source_prompts, sources)),
        target,
        settings.transfer,
        weights=list(weights) if weights else None,
        dev=data.splits["dev"],
        candidates=data.candidates(target),
        data_dir=data.data_dir,
        max_subject_tokens=task.max_input_tokens,
        on_step=on_step,
        should_stop=should_stop,
    )


def anchor_shortfall(prompt: SoftPrompt | Prompt, settings: RecipeSettings) -> list[str]:
    """A note when the models share fewer anchor words than the settings ask for (all of them are used then); the
    run's settings still show the number asked for."""
    asked = settings.transfer.n_anchors
    used = prompt.provenance.get("n_anchors") if isinstance(prompt, SoftPrompt) else None
    if asked is None or used is None or used >= asked:
        return []
    return [f"the models share {used:,} anchor words, fewer than the {asked:,} asked for: all {used:,} are used"]


def check_method_inputs(
    method: Method,
    sources: Sequence[PromptedLM],
    given_prompts: Sequence[SoftPrompt | None] | None,
    weights: Sequence[float] | None,
) -> None:
    """Refuse inputs the method would ignore: a discretised or projected prompt of two sources was the first
    source's alone, labelled with both."""
    if method in SOURCE_METHODS and method != Method.TRANSFER and len(sources) > 1:
        raise InputError(
            f"method {method.value!r} takes one source model, not {len(sources)}: only 'transfer' matches several"
        )
    if weights and method != Method.TRANSFER:
        raise InputError(f"source weights blend several sources in method 'transfer'; {method.value!r} uses none")
    if method not in SOURCE_METHODS and any(p is not None for p in given_prompts or ()):
        raise InputError(f"method {method.value!r} uses no source prompt; leave the source prompt out")


def run(
    method: Method | str,
    *,
    data: TaskData,
    target: PromptedLM,
    sources: Sequence[PromptedLM] = (),
    settings: RecipeSettings | None = None,
    store: PromptStore | None = None,
    given_prompts: Sequence[SoftPrompt | None] | None = None,
    weights: Sequence[float] | None = None,
    split: str = "test",
    precision: Precision | str = Precision.FLOAT32,
    seed: int = 0,
    on_step=None,
    should_stop=None,
) -> RunResult:
    """Tune or reuse the source prompt(s), make the target prompt by `method`, and score it on `split`."""
    method = parse_enum(Method, method, "method")
    settings = settings or recipe_settings()
    if split not in data.splits:
        raise InputError(f"unknown split {split!r}; choose one of: {', '.join(data.splits)}")
    check_method_inputs(method, sources, given_prompts, weights)
    started = time.perf_counter()
    prompts, notes = ([], [])
    if method in SOURCE_METHODS:
        if not sources:
            raise InputError(f"method {method.value!r} needs at least one source model")
        prompts, notes = source_prompts_for(sources, data, settings, store, given_prompts, on_step, should_stop)
    out = make_prompt(
        method,
        data=data,
        target=target,
        sources=sources,
        source_prompts=prompts,
        settings=settings,
        store=store,
        weights=weights,
        seed=seed,
        on_step=on_step,
        should_stop=should_stop,
    )
    notes += anchor_shortfall(out, settings)
    as_prompt = out if isinstance(out, Prompt) else out.as_prompt()
    result = evaluate(
        target,
        as_prompt,
        data.splits[split],
        data.candidates(target),
        precision=precision,
        max_subject_tokens=data.task.max_input_tokens,
    )
    if isinstance(out, SoftPrompt):
        out.provenance.setdefault("recipe", settings.recipe.value)
        out.provenance.setdefault("overrides", settings.overrides)
        out.metrics[f"{split}_p_at_1"] = result.p_at_1
    return RunResult(method, out, result, split, prompts, time.perf_counter() - started, notes)
