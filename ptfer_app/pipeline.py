"""What one "Transfer" press does, as plain calls into `ptfer_core` (no Streamlit here).

1. splits of the relation (too few facts → a clear error);
2. one tuned prompt per source model: an uploaded one, else a cached one, else tuned now and cached;
3. the search for the target prompt (relative-space transfer, or direct transfer as a baseline);
4. P@1 on the target's test split of the transferred prompt and of the manual, discretised and random baselines
   (baseline scores are cached on disk: they do not depend on the search settings).

Everything the page shows afterwards is in the returned `Outcome`, which presets store as files.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ptfer_core import data as core_data
from ptfer_core.artifacts import SoftPrompt, atomic_write_json
from ptfer_core.data import Fact, Relation
from ptfer_core.errors import DataError, InputError, PromptFileError
from ptfer_core.evaluation import CandidateSet, Prompt, evaluate, scorable_facts
from ptfer_core.models import PromptedLM
from ptfer_core.paths import REPO_ROOT

CACHE_ENV = "PTFER_APP_CACHE"
MIN_FACTS = {"train": 4, "test": 3}  # scorable facts needed for tuning and for a P@1 worth showing
BASELINES = ("manual", "discretization", "random")
METHOD_LABELS = {
    "transfer": "Transferred",
    "direct-transfer": "Direct transfer",
    "manual": "Manual template",
    "discretization": "Discretisation",
    "random": "Random prompt",
}


THREADS_ENV = "PTFER_APP_THREADS"


def cpu_setup() -> None:
    """CPU settings for the calling thread (both are per-thread: call it in every worker thread).

    Flushing denormals keeps ops on tiny values fast; one intra-op thread per run is much faster on a small shared
    CPU (the transfer search is thousands of small ops: 10-30x faster than with 2 threads here), and concurrent
    sessions then share the cores instead of oversubscribing them. $PTFER_APP_THREADS overrides the 1.
    """
    import torch

    torch.set_flush_denormal(True)
    threads = max(1, int(os.environ.get(THREADS_ENV) or 1))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def cache_root() -> Path:
    """Where the app keeps tuned source prompts and baseline scores ($PTFER_APP_CACHE, else runs/app-cache)."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "runs" / "app-cache")


def digest(vectors) -> str:
    return hashlib.sha1(vectors.detach().cpu().numpy().tobytes()).hexdigest()[:12]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ----------------------------------------------------------------------------- settings


@dataclass
class RunSettings:
    """Everything the Transfer page lets a user choose. Defaults are sized for a 2-core CPU.

    The transfer defaults are the best zero-shot setting of the study on SmolLM2 ↔ Gemma (docs/transferability.md):
    source prompts shaped like the manual template and started from its words, the least-squares closed form of
    the paper's search, then each vector snapped to its nearest shared word. The paper's own recipe (postfix,
    random start, Adam, no snap) is one choice away on the page and is what the CLI and the grid run by default.
    """

    method: str = "transfer"  # "transfer" | "direct-transfer"
    n_anchors: int | None = 8192
    top_k: int | None = None
    normalize: bool = True
    selection: str = "loss"  # "loss" (zero-shot) | "dev" (peeks at target dev labels, as the original code)
    steps: int = 600
    patience: int | None = 100
    lr: float = 1e-2
    dev_every: int = 50
    centre_anchors: bool = False  # older settings' name for space="centred"
    space: str = "raw"  # "raw" (the paper) | "centred" | "standardised": how similarities to the anchors are taken
    hub_penalty: bool = False  # solver="vocabulary" only: CSLS against hub words
    # label-free snap onto the target's tokens afterwards: "none" | "nearest" | "shared" (nearest shared word) | "mix"
    projection: str = "shared"
    solver: str = "lstsq"  # "adam" (the paper's search) | "lstsq" (its closed form) | "vocabulary" (real target words)
    weights: tuple[float, ...] | None = None  # multi-source blend, one per source
    n_vectors: int = 5
    tune_init: str = "manual"  # "random" | "manual" | "vocab-sample"
    placement: str = "template"  # "postfix" | "prefix" | "split" | "template"
    tune_epochs: int = 10
    tune_lr: float = 3e-3
    seed: int = 0

    def transfer_config(self):
        from ptfer_core.transfer import TransferConfig

        return TransferConfig(n_anchors=self.n_anchors, top_k=self.top_k, steps=self.steps, lr=self.lr,
                              normalize=self.normalize, selection=self.selection, dev_every=self.dev_every,
                              patience=self.patience, centre_anchors=self.centre_anchors,
                              projection="nearest" if self.projection == "shared" else self.projection,
                              project_to_shared=self.projection == "shared", solver=self.solver, space=self.space,
                              hub_penalty=self.hub_penalty and self.solver == "vocabulary", seed=self.seed)

    def tune_config(self):
        from ptfer_core.tuning import TuneConfig

        return TuneConfig(n_vectors=self.n_vectors, placement=self.placement, init=self.tune_init, epochs=self.tune_epochs,
                          lr=self.tune_lr, seed=self.seed)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = list(self.weights) if self.weights else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunSettings":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if known.get("weights"):
            known["weights"] = tuple(known["weights"])
        return cls(**known)


# ----------------------------------------------------------------------------- outcome


@dataclass
class Outcome:
    """A finished transfer: the prompts, their scores on the target test split, and how they were made."""

    sources: list[str]
    target: str
    relation: Relation
    settings: dict
    source_prompts: list[SoftPrompt]
    transferred: SoftPrompt
    scores: dict = field(default_factory=dict)  # method -> {"p_at_1", "n_facts"}
    per_fact: list = field(default_factory=list)  # test facts with each prompt's top-1 answer
    discretized: SoftPrompt | None = None
    discretized_tokens: list | None = None
    timings: dict = field(default_factory=dict)
    origin: str = "live"  # "live" | "preset:<id>"
    title: str = ""

    @property
    def key(self) -> str:
        return f"{self.target}:{self.relation.id}:{digest(self.transferred.vectors)}"

    @property
    def method(self) -> str:
        return self.transferred.method

    @property
    def pair_label(self) -> str:
        return f"{' + '.join(self.sources)} → {self.target}"


# ----------------------------------------------------------------------------- data


def relation_splits(relation_id: str, data_dir, seed: int = core_data.DEFAULT_SPLIT_SEED) -> dict[str, list[Fact]]:
    facts = core_data.load_facts(relation_id, data_dir)
    return core_data.split_facts(facts, seed)


def check_enough_facts(relation: Relation, splits: dict[str, list[Fact]], candidates: dict[str, CandidateSet]) -> None:
    """Raise a DataError naming the relation when a model has too few scorable facts to tune or to score."""
    for model, cands in candidates.items():
        for split, minimum in MIN_FACTS.items():
            n = len(scorable_facts(splits[split], cands)[0])
            if n < minimum:
                raise DataError(
                    f"relation {relation.id} ({relation.label}) has too few facts for {model}: {n} {split} facts whose "
                    f"answer is a single token of the model, at least {minimum} are needed. Pick another relation.")


# ----------------------------------------------------------------------------- source prompts


def tuned_prompt_path(model: str, relation_id: str, settings: RunSettings, root: Path | None = None) -> Path:
    lr = f"{settings.tune_lr:g}".replace(".", "p")  # no dots: SoftPrompt.save treats a dot as a suffix
    name = f"tuned-m{settings.n_vectors}-e{settings.tune_epochs}-lr{lr}-s{settings.seed}"
    if settings.tune_init != "random" or settings.placement != "postfix":
        name += f"-{settings.tune_init}-{settings.placement}"
    return (root or cache_root()) / "prompts" / _safe(model) / relation_id / f"{name}.safetensors"


def find_cached_source(model: str, relation_id: str, settings: RunSettings, extra: list[SoftPrompt] = (),
                       root: Path | None = None) -> SoftPrompt | None:
    """A tuned prompt for (model, relation) made with these tuning settings: from the cache, else from `extra`
    (e.g. the presets' source prompts)."""
    path = tuned_prompt_path(model, relation_id, settings, root)
    if path.is_file():
        try:
            return SoftPrompt.load(path)
        except PromptFileError:
            path.unlink(missing_ok=True)  # a damaged cache entry is simply re-tuned
    want = settings.tune_config().as_dict()
    # A template-shaped prompt records the split layout it resolved to, and the placement that was asked for.
    keys = ("epochs", "lr", "seed", "init") + (() if settings.placement == "template" else ("n_vectors",))
    for prompt in extra:
        config = prompt.provenance.get("config", {})
        asked = prompt.provenance.get("placement_requested", config.get("placement"))
        if (prompt.model == model and prompt.relation == relation_id and prompt.method == "tuned"
                and asked == settings.placement and all(config.get(k) == want[k] for k in keys)):
            return prompt
    return None


def check_source_prompt(prompt: SoftPrompt, lm: PromptedLM, relation_id: str) -> None:
    if prompt.width != lm.width:
        from ptfer_core.errors import DimensionMismatchError

        raise DimensionMismatchError(f"the prompt for {prompt.model} has width {prompt.width}, but {lm.name} has "
                                     f"width {lm.width}: it was made for another model")
    if prompt.relation != relation_id:
        raise InputError(f"the prompt is for relation {prompt.relation}, but {relation_id} is selected")


# ----------------------------------------------------------------------------- baselines


def _score(result) -> dict:
    return {"p_at_1": result.p_at_1, "n_facts": result.n_facts, "n_correct": result.n_correct}


def _predictions(result) -> dict[str, str]:
    return {fact.uuid: pred for fact, pred in zip(result.kept, result.predictions)}


def cached_eval(key: dict, compute, root: Path | None = None) -> tuple[dict, dict[str, str]]:
    """(score, {uuid: prediction}) from the disk cache, or computed and stored."""
    blob = json.dumps(key, sort_keys=True)
    path = (root or cache_root()) / "scores" / f"{hashlib.sha1(blob.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return saved["score"], saved["predictions"]
        except (OSError, json.JSONDecodeError, KeyError):
            pass
    result = compute()
    score, preds = _score(result), _predictions(result)
    try:
        atomic_write_json(path, {"key": key, "score": score, "predictions": preds})
    except OSError:
        pass  # a read-only cache only costs time
    return score, preds


# ----------------------------------------------------------------------------- the run


def run_transfer(job, *, sources: list[tuple[str, PromptedLM]], target: PromptedLM, relation: Relation,
                 splits: dict[str, list[Fact]], candidates: dict[str, CandidateSet], settings: RunSettings,
                 anchors=None, uploaded: dict[str, SoftPrompt] | None = None, known_prompts: list[SoftPrompt] = (),
                 shared_words=None, root: Path | None = None) -> Outcome | None:
    """The whole run, reporting to `job` (a `jobs.Job`); None when cancelled.

    `anchors`: the AnchorSet of the search (built here when None); `shared_words`: every word shared by the first
    source and the target, for the discretisation baseline (built here when None). Pass cached ones to save time.
    """
    from ptfer_core.baselines import direct_transfer, discretize, random_prompt
    from ptfer_core.transfer import transfer_prompt
    from ptfer_core.tuning import tune_prompt

    timings: dict[str, float] = {}
    uploaded = uploaded or {}
    tgt_cands = candidates[target.name]
    if settings.method == "direct-transfer" and len(sources) > 1:
        raise InputError("direct transfer copies one source prompt: select a single source model")
    if settings.method == "direct-transfer":
        (_, first_lm), = sources
        if first_lm.width != target.width:
            from ptfer_core.errors import DimensionMismatchError

            raise DimensionMismatchError(
                f"direct transfer copies the vectors unchanged, so it needs equal widths: {first_lm.name} has "
                f"{first_lm.width}, {target.name} has {target.width}. Use the relative-space transfer instead.")

    # 1. source prompts
    source_prompts: list[SoftPrompt] = []
    for name, lm in sources:
        t0 = time.perf_counter()
        prompt = uploaded.get(name)
        how = "uploaded"
        if prompt is None:
            prompt = find_cached_source(name, relation.id, settings, list(known_prompts), root)
            how = "cached"
        if prompt is None:
            config = settings.tune_config()
            steps_per_epoch = -(-len(scorable_facts(splits["train"], candidates[name])[0]) // config.batch_size)
            phase = job.begin(f"tune:{name}", f"Tuning a source prompt on {name} (no cached one)",
                              steps_per_epoch * config.epochs)

            def on_tune(step, metrics, _phase=phase):
                row = {k: metrics[k] for k in ("loss", "dev_p_at_1") if k in metrics and metrics[k] == metrics[k]}
                job.report(step, row or None, metrics.get("total_steps"))

            prompt = tune_prompt(lm, relation, splits["train"], splits["dev"], candidates[name], config,
                                 on_step=on_tune, should_stop=job.should_stop)
            if job.should_stop():
                return None
            prompt.save(tuned_prompt_path(name, relation.id, settings, root))
            how = "tuned"
        check_source_prompt(prompt, lm, relation.id)
        job.note(f"Source prompt for {name}: {how}")
        source_prompts.append(prompt)
        timings[f"source {name}"] = time.perf_counter() - t0

    # 2. the search
    t0 = time.perf_counter()
    pairs = list(zip(source_prompts, [lm for _, lm in sources]))
    if settings.method == "direct-transfer":
        job.begin("search", "Direct transfer: copying the source vectors", 1)
        transferred = direct_transfer(source_prompts[0], target)
        job.report(1)
    else:
        config = settings.transfer_config()
        job.begin("search", f"Searching {target.name}'s prompt in the relative space", config.steps)

        def on_search(step, metrics):
            job.report(step, {k: v for k, v in metrics.items() if k in ("loss", "dev_p_at_1")}, metrics.get("total_steps"))

        transferred = transfer_prompt(pairs, target, config, weights=list(settings.weights) if settings.weights else None,
                                      dev=splits["dev"] if settings.selection == "dev" else None, candidates=tgt_cands,
                                      anchors=anchors, on_step=on_search, should_stop=job.should_stop)
        if job.should_stop():
            return None
    timings["search"] = time.perf_counter() - t0

    # 3. scores on the target test split
    test = splits["test"]
    job.begin("evaluate", f"Scoring on {target.name}'s test split ({len(test)} facts)", 1 + len(BASELINES))
    t0 = time.perf_counter()
    result = evaluate(target, transferred.as_prompt(), test, tgt_cands)
    scores = {transferred.method: _score(result)}
    predictions = {transferred.method: _predictions(result)}
    transferred.metrics = {**transferred.metrics, "test_p_at_1": result.p_at_1, "n_test": result.n_facts}
    job.report(1)
    timings["evaluate transferred"] = time.perf_counter() - t0
    if job.should_stop():
        return None

    t0 = time.perf_counter()
    base_key = {"target": target.name, "relation": relation.id, "n_test": len(test),
                "test": hashlib.sha1(",".join(f.uuid for f in test).encode()).hexdigest()[:12]}
    scores["manual"], predictions["manual"] = cached_eval(
        {**base_key, "method": "manual", "template": relation.template},
        lambda: evaluate(target, Prompt.manual(relation), test, tgt_cands), root)
    job.report(2)
    if job.should_stop():
        return None
    discretized, tokens = discretize(source_prompts[0], sources[0][1], target, anchors=shared_words)
    scores["discretization"], predictions["discretization"] = cached_eval(
        {**base_key, "method": "discretization", "source": source_prompts[0].model,
         "prompt": digest(source_prompts[0].vectors)},
        lambda: evaluate(target, discretized.as_prompt(), test, tgt_cands), root)
    job.report(3)
    if job.should_stop():
        return None
    rand = random_prompt(target, transferred.template, relation.id, settings.seed)
    scores["random"], _ = cached_eval({**base_key, "method": "random", "seed": settings.seed, "template": rand.template},
                                      lambda: evaluate(target, rand.as_prompt(), test, tgt_cands), root)
    job.report(4)
    timings["baselines"] = time.perf_counter() - t0

    kept, _ = scorable_facts(test, tgt_cands)
    per_fact = [{"subject": f.subject, "object": f.object, "uuid": f.uuid,
                 **{m: predictions[m].get(f.uuid) for m in (transferred.method, "manual", "discretization")}}
                for f in kept]
    return Outcome(sources=[n for n, _ in sources], target=target.name, relation=relation,
                   settings=settings.as_dict(), source_prompts=source_prompts, transferred=transferred, scores=scores,
                   per_fact=per_fact, discretized=discretized, discretized_tokens=tokens, timings=timings)
