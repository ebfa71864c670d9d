"""Precision@1 of discrete or soft prompts, restricted to a common vocabulary.

Speed comes from computing only what P@1 needs: one hidden state per fact (the answer position), logits
for the candidate rows only, facts batched in order of length so padding is small, no autograd.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .data import DEFAULT_COMMON_VOCAB, Fact, Relation, load_common_vocab
from .errors import DataError, InputError
from .models import EncodedBatch, PromptedLM
from .templates import PromptTemplate

DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class CandidateSet:
    """Answer candidates of one model: common-vocabulary words that are single tokens of that model."""

    words: tuple[str, ...]
    token_ids: torch.Tensor  # [C] ids into the model's vocabulary
    n_vocab_words: int  # size of the common vocabulary before the single-token filter

    @classmethod
    def build(cls, lm: PromptedLM, vocab_words: list[str]) -> "CandidateSet":
        ids = lm.word_token_ids(vocab_words)
        seen: dict[int, str] = {}
        for word, tid in zip(vocab_words, ids):
            if tid is not None and tid not in seen and tid not in lm.special_token_ids:
                seen[tid] = word
        words = tuple(seen.values())
        return cls(words, torch.tensor(list(seen.keys()), dtype=torch.long), len(vocab_words))

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)


def candidates_for(lm: PromptedLM, vocab: str = DEFAULT_COMMON_VOCAB, data_dir=None) -> CandidateSet:
    """The model's candidate set for a named common vocabulary, built once per model."""
    key = ("candidates", vocab, str(data_dir))
    if key not in lm.cache:
        lm.cache[key] = CandidateSet.build(lm, load_common_vocab(vocab, data_dir))
    return lm.cache[key]


@dataclass(frozen=True)
class Prompt:
    """A template, plus soft vectors for its [V] slots when it has any."""

    template: PromptTemplate
    vectors: torch.Tensor | None = None
    label: str = "prompt"

    @classmethod
    def manual(cls, relation: Relation) -> "Prompt":
        return cls(relation.prompt_template, None, "manual")

    @classmethod
    def from_text(cls, template: str, label: str = "template") -> "Prompt":
        return cls(PromptTemplate.parse(template), None, label)


@dataclass
class EvalResult:
    n_facts: int  # facts scored (answer is a candidate of this model)
    n_correct: int
    n_skipped: int  # facts dropped because their object is not a single-token candidate of the model
    predictions: list[str] = field(default_factory=list, repr=False)  # in the order of `facts` that were kept
    kept: list[Fact] = field(default_factory=list, repr=False)

    @property
    def p_at_1(self) -> float:
        return 100.0 * self.n_correct / self.n_facts if self.n_facts else 0.0


@dataclass
class EvalReport:
    per_relation: dict[str, EvalResult]

    @property
    def micro_p_at_1(self) -> float:
        n = sum(r.n_facts for r in self.per_relation.values())
        return 100.0 * sum(r.n_correct for r in self.per_relation.values()) / n if n else 0.0

    @property
    def macro_p_at_1(self) -> float:
        scored = [r.p_at_1 for r in self.per_relation.values() if r.n_facts]
        return sum(scored) / len(scored) if scored else 0.0

    @property
    def n_facts(self) -> int:
        return sum(r.n_facts for r in self.per_relation.values())

    def as_dict(self) -> dict:
        return {
            "micro_p_at_1": self.micro_p_at_1,
            "macro_p_at_1": self.macro_p_at_1,
            "n_facts": self.n_facts,
            "relations": {rid: {"p_at_1": r.p_at_1, "n_facts": r.n_facts, "n_correct": r.n_correct,
                                "n_skipped": r.n_skipped} for rid, r in self.per_relation.items()},
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


def iter_batches(lm: PromptedLM, prompt: Prompt, subjects: list[str], batch_size: int):
    """Yield (original indices, encoded batch): every row tokenised once, sorted by token length, and cut into
    batches that are each trimmed to their own longest row (rows are right-padded), so padding is minimal."""
    if not subjects:
        return
    full = lm.encode(prompt.template, subjects)
    lengths = full.attention_mask.sum(dim=1).tolist()
    order = sorted(range(len(subjects)), key=lambda i: (lengths[i], i))
    for start, end in batch_bounds([lengths[i] for i in order], batch_size):
        idx = order[start:end]
        rows, width = torch.tensor(idx), lengths[idx[-1]]
        yield idx, EncodedBatch(full.input_ids[rows, :width], full.attention_mask[rows, :width],
                                full.soft_positions[rows], full.answer_positions[rows])


def evaluate(lm: PromptedLM, prompt: Prompt, facts: list[Fact], candidates: CandidateSet,
             batch_size: int = DEFAULT_BATCH_SIZE) -> EvalResult:
    """P@1 of `prompt` on `facts`, argmax over the candidate rows only."""
    if prompt.vectors is not None:
        lm.check_vectors(prompt.vectors, prompt.template.n_soft)
    kept, gold = scorable_facts(facts, candidates)
    preds = [0] * len(kept)
    cand_ids = candidates.token_ids
    with torch.inference_mode():
        for idx, batch in iter_batches(lm, prompt, [f.subject for f in kept], batch_size):
            top = lm.answer_logits(batch, prompt.vectors, cand_ids).argmax(dim=-1).tolist()
            for i, p in zip(idx, top):
                preds[i] = p
    n_correct = sum(p == g for p, g in zip(preds, gold))
    return EvalResult(len(kept), n_correct, len(facts) - len(kept), [candidates.words[p] for p in preds], kept)


def evaluate_relations(lm: PromptedLM, prompts: dict[str, Prompt], facts: dict[str, list[Fact]],
                       candidates: CandidateSet, batch_size: int = DEFAULT_BATCH_SIZE, on_step=None,
                       should_stop=None) -> EvalReport:
    """Evaluate one prompt per relation; micro-average = all correct / all facts."""
    results = {}
    for step, (rid, prompt) in enumerate(prompts.items()):
        if should_stop and should_stop():
            break
        results[rid] = evaluate(lm, prompt, facts[rid], candidates, batch_size)
        if on_step:
            on_step(step, {"relation": rid, "p_at_1": results[rid].p_at_1, "n_facts": results[rid].n_facts})
    return EvalReport(results)


@dataclass(frozen=True)
class Prediction:
    word: str
    probability: float  # softmax over the candidate set


def top_k(lm: PromptedLM, prompt: Prompt, subject: str, candidates: CandidateSet, k: int = 5) -> list[Prediction]:
    """The model's k most likely candidate answers for one subject."""
    if not isinstance(subject, str) or not subject.strip():
        raise InputError("empty subject: type the entity the question is about")
    if k < 1:
        raise InputError(f"k must be at least 1 (got {k})")
    with torch.inference_mode():
        logits = lm.answer_logits(lm.encode(prompt.template, [subject]), prompt.vectors, candidates.token_ids)[0]
    probs = logits.softmax(-1)
    values, idx = probs.topk(min(k, len(candidates)))
    return [Prediction(candidates.words[i], float(v)) for v, i in zip(values.tolist(), idx.tolist())]


def require_facts(facts: list[Fact], relation_id: str, minimum: int = 1) -> list[Fact]:
    if len(facts) < minimum:
        raise DataError(f"relation {relation_id} has {len(facts)} usable facts; at least {minimum} are needed")
    return facts
