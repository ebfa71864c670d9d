"""Precision@1 (and, for classification, macro-F1) of discrete or soft prompts over a restricted answer set.

Speed comes from computing only what P@1 needs: one hidden state per example (the answer position), logits for
the candidate rows only, examples batched in order of length so padding is small, no autograd, and, for soft
prompts on causal LMs, the subject's keys/values computed once and reused (`fastpath`).

Two averages over relations are reported and always named: the **relation mean** (the mean of per-relation P@1:
what the paper and OptiPrompt call "micro") and the **pooled** P@1 (all correct over all facts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import Precision
from .data import DEFAULT_COMMON_VOCAB, Fact, Task, load_common_vocab
from .errors import DataError, InputError
from .models import PromptedLM
from .templates import PromptTemplate

DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class CandidateSet:
    """The answers a model may give: common-vocabulary words (relations) or classes (through label words)."""

    words: tuple[str, ...]  # the answers: words, or class names
    token_ids: torch.Tensor  # [C] the token scored for each answer
    n_vocab_words: int  # answers asked for before the single-token filter
    token_words: tuple[str, ...] = ()  # classification: the label word used for each class
    # (word, candidate index): other words of the vocabulary whose token is a candidate's. An uncased tokenizer
    # reads "french" as "French"; with one word per token, facts answered "french" were dropped unscored.
    aliases: tuple[tuple[str, int], ...] = ()

    @classmethod
    def build(cls, lm: PromptedLM, vocab_words: list[str]) -> CandidateSet:
        seen: dict[int, int] = {}  # token id -> candidate index (its first word)
        words, aliases = [], []
        for word, tid in zip(vocab_words, lm.word_token_ids(vocab_words)):
            if tid is None:
                continue
            if tid in seen:
                aliases.append((word, seen[tid]))
                continue
            seen[tid] = len(words)
            words.append(word)
        return cls(tuple(words), torch.tensor(list(seen), dtype=torch.long), len(vocab_words), aliases=tuple(aliases))

    @classmethod
    def for_classes(cls, lm: PromptedLM, task: Task) -> CandidateSet:
        """One token per class: the first of its label words that is a single token of `lm`."""
        chosen_ids, chosen_words = [], []
        for name, words in zip(task.classes, task.label_words):
            ids = lm.word_token_ids(list(words))
            pick = next(((w, i) for w, i in zip(words, ids) if i is not None), None)
            if pick is None:
                raise InputError(
                    f"task {task.id}: no label word of class {name!r} is a single token of {lm.name} "
                    f"({', '.join(_why_not_one_token(lm, w) for w in words)})"
                )
            chosen_words.append(pick[0])
            chosen_ids.append(pick[1])
        if len(set(chosen_ids)) != len(chosen_ids):
            raise InputError(f"task {task.id}: two classes share a label token in {lm.name}")
        return cls(task.classes, torch.tensor(chosen_ids, dtype=torch.long), len(task.classes), tuple(chosen_words))

    @property
    def index(self) -> dict[str, int]:
        """Each answer word's candidate index, its aliases included."""
        return {**dict(self.aliases), **{w: i for i, w in enumerate(self.words)}}

    def __len__(self) -> int:
        return len(self.words)


def _why_not_one_token(lm: PromptedLM, word: str) -> str:
    ids = lm.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    if lm.tokenizer.unk_token_id is not None and lm.tokenizer.unk_token_id in ids:
        return f"{word!r} is not in its vocabulary"
    return f"{word!r} splits into {len(ids)} tokens"


def candidates_for(
    lm: PromptedLM, task: Task | None = None, data_dir=None, vocab: str = DEFAULT_COMMON_VOCAB
) -> CandidateSet:
    """The answers of `task` for this model (a relation: the common vocabulary's single-token words), built once."""
    if task is not None and task.is_classification:
        return lm.memo.get(
            ("candidates", "task", task.id, task.label_words), lambda: CandidateSet.for_classes(lm, task)
        )
    return lm.memo.get(
        ("candidates", vocab, str(data_dir)), lambda: CandidateSet.build(lm, load_common_vocab(vocab, data_dir))
    )


@dataclass(frozen=True)
class Prompt:
    """A template, plus soft vectors for its [V] slots when it has any."""

    template: PromptTemplate
    vectors: torch.Tensor | None = None
    label: str = "prompt"

    @classmethod
    def manual(cls, task: Task) -> Prompt:
        return cls(task.prompt_template, None, "manual")

    @classmethod
    def from_text(cls, template: str, label: str = "template") -> Prompt:
        return cls(PromptTemplate.parse(template), None, label)


@dataclass
class EvalResult:
    n_facts: int  # examples scored (the answer is a candidate of this model)
    n_correct: int
    n_skipped: int  # examples dropped because their answer is not a single-token candidate of the model
    predictions: list[str] = field(default_factory=list, repr=False)  # in the order of `kept`
    kept: list[Fact] = field(default_factory=list, repr=False)

    @property
    def p_at_1(self) -> float:
        return 100.0 * self.n_correct / self.n_facts if self.n_facts else 0.0

    @property
    def macro_f1(self) -> float:
        """Mean over answers that occur (as gold or prediction) of per-answer F1, in %: the classification metric."""
        gold = [f.object for f in self.kept]
        labels = sorted(set(gold) | set(self.predictions))
        scores = []
        for label in labels:
            tp = sum(g == label and p == label for g, p in zip(gold, self.predictions))
            predicted, actual = self.predictions.count(label), gold.count(label)
            scores.append(2 * tp / (predicted + actual) if predicted + actual else 0.0)
        return 100.0 * sum(scores) / len(scores) if scores else 0.0


@dataclass
class EvalReport:
    per_relation: dict[str, EvalResult]

    @property
    def relation_mean(self) -> float:
        """Mean of per-relation P@1 (the paper's and OptiPrompt's "micro" average)."""
        scored = [r.p_at_1 for r in self.per_relation.values() if r.n_facts]
        return sum(scored) / len(scored) if scored else 0.0

    @property
    def pooled(self) -> float:
        """All correct answers over all scored facts."""
        n = self.n_facts
        return 100.0 * sum(r.n_correct for r in self.per_relation.values()) / n if n else 0.0

    @property
    def n_facts(self) -> int:
        return sum(r.n_facts for r in self.per_relation.values())

    def as_dict(self) -> dict:
        return {
            "p_at_1_relation_mean": self.relation_mean,
            "p_at_1_pooled": self.pooled,
            "n_facts": self.n_facts,
            "relations": {
                rid: {"p_at_1": r.p_at_1, "n_facts": r.n_facts, "n_correct": r.n_correct, "n_skipped": r.n_skipped}
                for rid, r in self.per_relation.items()
            },
        }


def scorable_facts(facts: list[Fact], candidates: CandidateSet) -> tuple[list[Fact], list[int]]:
    """Facts whose object is a candidate, with the object's candidate index."""
    index = candidates.index
    kept = [f for f in facts if f.object in index]
    return kept, [index[f.object] for f in kept]


BATCH_OVERHEAD_TOKENS = 32  # the fixed cost of one more forward pass, in padded tokens (measured on CPU)


def batch_bounds(lengths: list[int], batch_size: int, overhead: int = BATCH_OVERHEAD_TOKENS) -> list[tuple[int, int]]:
    """Cut rows sorted by length into batches of at most `batch_size` rows, minimising padded tokens + overhead
    per batch (dynamic programming over the cut points; a batch costs rows x its longest row)."""
    n = len(lengths)
    best, prev = [0] + [float("inf")] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - batch_size), end):
            cost = best[start] + (end - start) * lengths[end - 1] + overhead
            if cost < best[end]:
                best[end], prev[end] = cost, start
    bounds, end = [], n
    while end > 0:
        bounds.append((prev[end], end))
        end = prev[end]
    return bounds[::-1]


def iter_batches(
    lm: PromptedLM,
    prompt: Prompt,
    subjects: list[str],
    batch_size: int,
    model=None,
    max_subject_tokens: int | None = None,
):
    """Yield (original indices, encoded batch): every row tokenised once (its prefix keys/values computed once
    when that pays), sorted by token length and cut into batches trimmed to their own longest row."""
    if not subjects:
        return
    full = lm.encode(prompt.template, subjects, max_subject_tokens)
    if prompt.vectors is not None:
        full = lm.with_prefix(full, model if model is not None else lm.model)
    lengths = full.attention_mask.sum(dim=1).tolist()
    order = sorted(range(len(subjects)), key=lambda i: (lengths[i], i))
    for start, end in batch_bounds([lengths[i] for i in order], batch_size):
        idx = order[start:end]
        yield idx, full.rows(idx)


def evaluate(
    lm: PromptedLM,
    prompt: Prompt,
    facts: list[Fact],
    candidates: CandidateSet,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    precision: Precision | str = Precision.FLOAT32,
    max_subject_tokens: int | None = None,
) -> EvalResult:
    """P@1 of `prompt` on `facts`, argmax over the candidate rows only."""
    if prompt.vectors is not None:
        lm.check_vectors(prompt.vectors, prompt.template.n_soft)
    kept, gold = scorable_facts(facts, candidates)
    preds = [0] * len(kept)
    model = lm.compute_model(precision)
    with torch.inference_mode():
        for idx, batch in iter_batches(lm, prompt, [f.subject for f in kept], batch_size, model, max_subject_tokens):
            top = lm.answer_logits(batch, prompt.vectors, candidates.token_ids, model).argmax(dim=-1).tolist()
            for i, p in zip(idx, top):
                preds[i] = p
    n_correct = sum(p == g for p, g in zip(preds, gold))
    # a right answer is reported in the fact's own spelling (an alias's), so `prediction == object` means right
    shown = [f.object if p == g else candidates.words[p] for p, g, f in zip(preds, gold, kept)]
    return EvalResult(len(kept), n_correct, len(facts) - len(kept), shown, kept)


def evaluate_relations(
    lm: PromptedLM,
    prompts: dict[str, Prompt],
    facts: dict[str, list[Fact]],
    candidates: CandidateSet | dict[str, CandidateSet],
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_step=None,
    should_stop=None,
    precision: Precision | str = Precision.FLOAT32,
    max_subject_tokens: dict[str, int | None] | None = None,
) -> EvalReport:
    """Evaluate one prompt per relation (or task), against one candidate set or one per task."""
    results = {}
    for step, (rid, prompt) in enumerate(prompts.items()):
        if should_stop and should_stop():
            break
        cands = candidates[rid] if isinstance(candidates, dict) else candidates
        results[rid] = evaluate(
            lm,
            prompt,
            facts[rid],
            cands,
            batch_size,
            precision=precision,
            max_subject_tokens=(max_subject_tokens or {}).get(rid),
        )
        if on_step:
            on_step(step, {"relation": rid, "p_at_1": results[rid].p_at_1, "n_facts": results[rid].n_facts})
    return EvalReport(results)


@dataclass(frozen=True)
class Prediction:
    word: str
    probability: float  # softmax over the candidate set


def top_k(
    lm: PromptedLM,
    prompt: Prompt,
    subject: str,
    candidates: CandidateSet,
    k: int = 5,
    max_subject_tokens: int | None = None,
) -> list[Prediction]:
    """The model's k most likely candidate answers for one subject."""
    if not isinstance(subject, str) or not subject.strip():
        raise InputError("empty subject: type the entity the question is about")
    if k < 1:
        raise InputError(f"k must be at least 1 (got {k})")
    with torch.inference_mode():
        batch = lm.encode(prompt.template, [subject], max_subject_tokens)
        logits = lm.answer_logits(batch, prompt.vectors, candidates.token_ids)[0]
    probs = logits.softmax(-1)
    values, idx = probs.topk(min(k, len(candidates)))
    return [Prediction(candidates.words[i], float(v)) for v, i in zip(values.tolist(), idx.tolist())]


def require_scorable(facts: list[Fact], candidates: CandidateSet, what: str, minimum: int = 1) -> list[Fact]:
    """The scorable facts, or a DataError naming `what` when fewer than `minimum` remain."""
    kept, _ = scorable_facts(facts, candidates)
    if len(kept) < minimum:
        raise DataError(
            f"{what}: {len(kept)} example(s) whose answer is a single-token candidate of the model; "
            f"at least {minimum} needed"
        )
    return kept
