"""One transfer side by side with its baselines: what the app's *Run transfer* does and what presets store.

`compare(job, ...)` gets the source prompt(s) (an uploaded one, a stored one, or tuned now), makes the target
prompt (relative-space or direct transfer), and scores it on the target's test split next to the manual template,
discretisation and a random prompt, keeping each test fact's answers. Baseline scores do not depend on the search
settings, so they are cached on disk. It reports to `job` (`jobs.Job`: begin/report/note/should_stop) and returns
None when cancelled. Built from `runs` (no second copy of the pipeline).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import SoftPrompt
from .config import Method, Precision
from .data import Task
from .errors import DimensionMismatchError, InputError
from .evaluation import EvalResult, Prompt, evaluate, scorable_facts
from .files import atomic_write_json
from .models import PromptedLM
from .runs import PromptStore, TaskData, anchor_shortfall, check_source_prompt, make_prompt, tuned_prompt
from .settings import RecipeSettings

BASELINES = ("manual", "discretization", "random")
SCORING_PRECISION = Precision.FLOAT32  # every score compare shows, and part of every cached baseline score's key
MIN_FACTS = {"train": 4, "test": 3}  # scorable facts needed to tune, and for a P@1 worth showing


@dataclass
class Outcome:
    """A finished comparison: the prompts, their scores on the target test split, and how they were made."""

    sources: list[str]
    target: str
    task: Task
    settings: dict  # RecipeSettings.describe() plus "method" and "weights"
    source_prompts: list[SoftPrompt]
    transferred: SoftPrompt
    scores: dict = field(default_factory=dict)  # method -> {"p_at_1", "n_facts", "n_correct"[, "macro_f1"]}
    per_fact: list = field(default_factory=list)  # test examples with each prompt's top-1 answer
    discretized: SoftPrompt | None = None
    discretized_tokens: list | None = None
    timings: dict = field(default_factory=dict)
    origin: str = "live"  # "live" | "preset:<id>"
    title: str = ""
    notes: list = field(default_factory=list)
    story: str = ""  # a preset's paragraph for teachers (what it shows and why); live runs have none

    @property
    def method(self) -> str:
        return self.transferred.method

    @property
    def pair_label(self) -> str:
        return f"{' + '.join(self.sources)} → {self.target}"

    @property
    def recovered_template(self) -> bool:
        """True when the transferred, manual and discretised prompts give the same answer on every test fact: the
        transfer found the template's words, not something new. Not when every fact gets one and the same answer
        (one class, or 'the' everywhere): three degenerate prompts agree without sharing any words."""
        methods = (self.method, "manual", "discretization")
        varied = len({f.get(self.method) for f in self.per_fact}) > 1
        return varied and all(len({f.get(m) for m in methods}) == 1 for f in self.per_fact)


def check_enough_facts(data: TaskData, lms: dict[str, PromptedLM]) -> None:
    """A DataError naming the task and model when a model has too few scorable examples to tune or to score."""
    from .errors import DataError

    for name, lm in lms.items():
        cands = data.candidates(lm)
        for split, minimum in MIN_FACTS.items():
            n = len(scorable_facts(data.splits[split], cands)[0])
            if n < minimum:
                raise DataError(
                    f"{data.task.id} ({data.task.label}) has too few examples for {name}: {n} {split} "
                    f"examples whose answer is a single token of the model, at least {minimum} are "
                    "needed. Pick another relation or task."
                )


def warm_up(
    sources: Sequence[PromptedLM],
    target: PromptedLM,
    data: TaskData,
    settings: RecipeSettings,
    pause: Callable[[], None] | None = None,
) -> None:
    """Fill the per-model tables a transfer needs (embedding matrix and statistics, word ids, anchors, the relative
    spaces, candidate rows) by making every target prompt `compare` makes from random source prompts. The tables
    live on the shared models, so a server that runs this in the background answers its first *Run transfer* in
    seconds instead of ~35 s (docs/benchmarks.md, "Live transfer"). `pause` is called before each prompt (the app
    waits there while a user's run goes on)."""
    pause = pause or (lambda: None)
    pause()
    prompts = [make_prompt(Method.RANDOM, data=data, target=lm, settings=settings) for lm in sources]  # tuned layout
    for method in (Method.TRANSFER, *BASELINES):
        pause()
        make_prompt(method, data=data, target=target, sources=sources, source_prompts=prompts, settings=settings)


def score(result: EvalResult, task: Task) -> dict:
    out = {"p_at_1": result.p_at_1, "n_facts": result.n_facts, "n_correct": result.n_correct}
    if task.is_classification:
        out["macro_f1"] = result.macro_f1
    return out


def _predictions(result: EvalResult) -> dict[str, str]:
    return {fact.uuid: pred for fact, pred in zip(result.kept, result.predictions)}


def cached_eval(key: dict, compute, root: Path | None, shipped: Sequence[Path] = ()) -> tuple[dict, dict[str, str]]:
    """(score, {uuid: prediction}) from the disk cache under `root` or a read-only `shipped` root, else computed
    (and stored under `root` when it is set)."""
    blob = json.dumps(key, sort_keys=True)
    key = json.loads(blob)  # as stored: tuples become lists, so a saved key compares equal
    name = f"{hashlib.sha1(blob.encode()).hexdigest()[:16]}.json"
    roots = [Path(r) for r in ([root] if root is not None else []) + list(shipped)]
    for folder in roots:
        path = folder / "scores" / name
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                if saved.get("key") == key:
                    return saved["score"], saved["predictions"]
            except (OSError, json.JSONDecodeError, KeyError):
                pass
    score_, preds = compute()
    if root is not None:
        try:
            atomic_write_json(Path(root) / "scores" / name, {"key": key, "score": score_, "predictions": preds})
        except OSError:
            pass  # a read-only cache only costs time
    return score_, preds


def compare(
    job,
    *,
    sources: list[tuple[str, PromptedLM]],
    target: PromptedLM,
    data: TaskData,
    settings: RecipeSettings,
    method: Method | str = Method.TRANSFER,
    weights: list[float] | None = None,
    uploaded: dict[str, SoftPrompt] | None = None,
    store: PromptStore | None = None,
    cache: Path | None = None,
    shipped_scores: Sequence[Path] = (),
) -> Outcome | None:
    """The whole comparison, reporting to `job`; None when cancelled. Baseline scores are read from `cache` or the
    read-only `shipped_scores` roots (assets/baseline-scores: the shipped relations on the real pair), and new
    ones are written to `cache`."""
    method = Method(method)
    task, test = data.task, data.splits["test"]
    uploaded = uploaded or {}
    if method == Method.DIRECT_TRANSFER:
        if len(sources) > 1:
            raise InputError("direct transfer copies one source prompt: select a single source model")
        if sources[0][1].width != target.width:
            raise DimensionMismatchError(
                f"direct transfer copies the vectors unchanged, so it needs equal widths: {sources[0][0]} has "
                f"{sources[0][1].width}, {target.name} has {target.width}. Use the relative-space transfer instead."
            )
    timings: dict[str, float] = {}
    notes: list[str] = []

    # 1. source prompts
    prompts: list[SoftPrompt] = []
    for name, lm in sources:
        t0 = time.perf_counter()
        prompt, how = uploaded.get(name), "uploaded"
        if prompt is None and store is not None:
            prompt, how = store.find(lm, data, settings.tune), "stored"
        if prompt is None:
            steps = (
                -(
                    -min(
                        len(scorable_facts(data.splits["train"], data.candidates(lm))[0]),
                        settings.tune.max_train or 10**9,
                    )
                    // settings.tune.batch_size
                )
                * settings.tune.epochs
            )
            job.begin(f"tune:{name}", f"Tuning a source prompt on {name} (none stored for these settings)", steps)

            def on_tune(step, metrics):
                row = {k: metrics[k] for k in ("loss", "dev_p_at_1") if metrics.get(k) is not None}
                job.report(step, row or None, metrics.get("total_steps"))

            # the one tuning path of every run: the store's prompt for these settings, else tuned (and stored)
            prompt = tuned_prompt(lm, data, settings, store, on_tune, job.should_stop)
            if job.should_stop():
                return None
            how = "tuned"
        notes += check_source_prompt(prompt, lm, task)
        job.note(f"Source prompt for {name}: {how}")
        prompts.append(prompt)
        timings[f"source {name}"] = time.perf_counter() - t0

    # 2. the target prompt
    t0 = time.perf_counter()
    lms = [lm for _, lm in sources]
    total = 1 if method == Method.DIRECT_TRANSFER else settings.transfer.steps
    job.begin(
        "search",
        "Direct transfer: copying the source vectors"
        if method == Method.DIRECT_TRANSFER
        else f"Finding {target.name}'s prompt in the relative space ({settings.transfer.solver.value})",
        total,
    )
    transferred = make_prompt(
        method,
        data=data,
        target=target,
        sources=lms,
        source_prompts=prompts,
        settings=settings,
        weights=weights,
        on_step=lambda step, m: job.report(
            step, {k: v for k, v in m.items() if k in ("loss", "dev_p_at_1")}, m.get("total_steps")
        ),
        should_stop=job.should_stop,
    )
    if job.should_stop():
        return None
    timings["search"] = time.perf_counter() - t0
    notes += anchor_shortfall(transferred, settings)
    if len(prompts) > 1:  # the baseline discretises one prompt; which one is said where its score is
        notes.append(f"The discretisation baseline discretises the first source's prompt ({prompts[0].model}).")

    # 3. scores on the target test split, next to the baselines
    job.begin("evaluate", f"Scoring on {target.name}'s test split ({len(test)} examples)", 1 + len(BASELINES))
    t0 = time.perf_counter()
    cands = data.candidates(target)

    def evaluated(prompt) -> tuple[dict, dict]:
        result = evaluate(
            target,
            prompt if isinstance(prompt, Prompt) else prompt.as_prompt(),
            test,
            cands,
            precision=SCORING_PRECISION,
            max_subject_tokens=task.max_input_tokens,
        )
        return score(result, task), _predictions(result)

    scores, predictions = {}, {}
    scores[transferred.method], predictions[transferred.method] = evaluated(transferred)
    transferred.metrics = {**transferred.metrics, "test_p_at_1": scores[transferred.method]["p_at_1"]}
    job.report(1)
    timings["evaluate transferred"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    base_key = {
        "precision": SCORING_PRECISION.value,
        "target": target.identity,
        "task": task.id,
        "test": hashlib.sha1(",".join(f.uuid for f in test).encode()).hexdigest()[:12],
    }
    made = {}
    for step, baseline in enumerate(BASELINES, start=2):
        if job.should_stop():
            return None
        made[baseline] = make_prompt(
            baseline,
            data=data,
            target=target,
            sources=lms,
            source_prompts=prompts,
            settings=settings,
            seed=settings.tune.seed,
        )
        detail = {
            "manual": task.template,
            "random": (made[baseline].template, settings.tune.seed),
            "discretization": (prompts[0].model, prompts[0].digest),
        }[baseline]
        scores[baseline], predictions[baseline] = cached_eval(
            {**base_key, "method": baseline, "detail": detail},
            lambda b=baseline: evaluated(made[b]),
            cache,
            shipped_scores,
        )
        job.report(step)
    timings["baselines"] = time.perf_counter() - t0
    kept, _ = scorable_facts(test, cands)
    per_fact = [
        {
            "subject": f.subject,
            "object": f.object,
            "uuid": f.uuid,
            **{m: predictions[m].get(f.uuid) for m in (transferred.method, "manual", "discretization")},
        }
        for f in kept
    ]
    discretized = made["discretization"]
    return Outcome(
        sources=[n for n, _ in sources],
        target=target.name,
        task=task,
        settings={**settings.describe(), "method": method.value, "weights": list(weights) if weights else None},
        source_prompts=prompts,
        transferred=transferred,
        scores=scores,
        per_fact=per_fact,
        discretized=discretized,
        discretized_tokens=discretized.provenance.get("tokens"),
        timings=timings,
        notes=notes,
    )


def compare_and_wait(**kwargs) -> Outcome:
    """`compare` run as the app runs it (in a `jobs.Job`), waited for: scripts and tests. An error is raised."""
    from .errors import PTferError
    from .jobs import Job

    job = Job(lambda job: compare(job, **kwargs), "compare").start()
    job.join(None)
    if job.error:
        raise PTferError(job.error)
    return job.result
