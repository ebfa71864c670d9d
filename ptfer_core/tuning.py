"""OptiPrompt-style soft-prompt tuning: only the m prompt vectors train; the model stays frozen and unchanged.

The loss is cross-entropy over the candidate answers at the answer position, which is both what P@1
measures and far cheaper than a full-vocabulary loss at every position.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from .artifacts import SoftPrompt
from .config import Placement, PromptInit, parse_enum
from .data import Fact, Relation
from .errors import DataError, InputError
from .evaluation import CandidateSet, Prompt, evaluate, scorable_facts
from .models import PromptedLM
from .templates import PromptTemplate, SegmentKind


@dataclass
class TuneConfig:
    n_vectors: int = 5
    placement: Placement = Placement.POSTFIX
    split_at: int | None = None
    init: PromptInit = PromptInit.RANDOM
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 16
    warmup: float = 0.1  # fraction of steps with linearly rising learning rate
    weight_decay: float = 0.01
    # Pull towards the token manifold: weight × squared distance of each vector to its nearest token embedding,
    # relative to the embeddings' mean squared norm. 0 is OptiPrompt; > 0 keeps prompts word-like (transferable?).
    manifold_weight: float = 0.0
    seed: int = 0

    def __post_init__(self):
        self.placement = parse_enum(Placement, self.placement, "placement")
        self.init = parse_enum(PromptInit, self.init, "prompt initialisation")
        if self.n_vectors < 1:
            raise InputError(f"n_vectors must be at least 1 (got {self.n_vectors})")
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError("epochs and batch_size must be at least 1")
        if not self.lr > 0:
            raise InputError(f"learning rate must be positive (got {self.lr})")
        if not self.manifold_weight >= 0:
            raise InputError(f"manifold_weight must be non-negative (got {self.manifold_weight})")
        if not 0 <= self.warmup < 1:
            raise InputError(f"warmup is a fraction in [0, 1) (got {self.warmup})")

    @property
    def template(self) -> PromptTemplate:
        if self.placement == Placement.TEMPLATE:
            raise InputError("a template-shaped layout depends on the model and relation: use config.resolved(lm, relation)")
        return PromptTemplate.soft(self.n_vectors, self.placement, self.split_at)

    def resolved(self, lm: PromptedLM, relation: Relation) -> "TuneConfig":
        """The concrete layout: `template` placement becomes the split layout mirroring the relation's template."""
        if self.placement != Placement.TEMPLATE:
            return self
        n_vectors, split_at = template_shape(lm, relation)
        return replace(self, placement=Placement.SPLIT, n_vectors=n_vectors, split_at=split_at)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(placement=self.placement.value, init=self.init.value)
        return d


def embedding_stats(lm: PromptedLM) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the model's token embeddings (as the model sees them)."""
    key = ("embedding_stats",)
    if key not in lm.cache:
        emb = lm.embedding_matrix
        lm.cache[key] = (emb.mean(0), emb.std(0))
    return lm.cache[key]


def sample_like_embeddings(lm: PromptedLM, n: int, generator: torch.Generator) -> torch.Tensor:
    """n vectors from a normal fitted (per dimension) to the model's token embeddings."""
    mean, std = embedding_stats(lm)
    return torch.randn(n, lm.width, generator=generator) * std + mean


def initial_vectors(lm: PromptedLM, relation: Relation, config: TuneConfig, candidates: CandidateSet | None = None) -> torch.Tensor:
    config = config.resolved(lm, relation)
    gen = torch.Generator().manual_seed(config.seed)
    m = config.n_vectors
    if config.init == PromptInit.RANDOM:
        return sample_like_embeddings(lm, m, gen)
    if config.init == PromptInit.MANUAL:
        # The manual template's own word tokens, in order, cycled to length m.
        ids = []
        for seg in relation.prompt_template.segments:
            if seg.kind == SegmentKind.TEXT:
                ids += lm.tokenizer(seg.text, add_special_tokens=False)["input_ids"]
        ids = [i for i in ids if i not in lm.special_token_ids] or [lm.tokenizer.unk_token_id or 0]
        return lm.embedding_matrix[torch.tensor([ids[j % len(ids)] for j in range(m)])].clone()
    pool = candidates.token_ids if candidates is not None else torch.arange(lm.vocab_size)
    pick = pool[torch.randperm(len(pool), generator=gen)[:m]]
    return lm.embedding_matrix[pick].clone()


def manifold_distance(vectors: torch.Tensor, lm: PromptedLM) -> torch.Tensor:
    """Per vector: squared distance to the nearest token embedding over the embeddings' mean squared norm."""
    key = ("embedding_sq_norms",)
    if key not in lm.cache:
        emb = lm.embedding_matrix
        lm.cache[key] = (emb.pow(2).sum(-1), emb.pow(2).sum(-1).mean())
    sq_norms, mean_sq = lm.cache[key]
    emb = lm.embedding_matrix
    with torch.no_grad():  # which token is nearest needs no gradient; the distance to it does
        nearest = (sq_norms - 2 * vectors.detach() @ emb.T).argmin(dim=-1)
    return (vectors - emb[nearest]).pow(2).sum(-1) / mean_sq


def template_shape(lm: PromptedLM, relation: Relation) -> tuple[int, int]:
    """(n_vectors, split_at) mirroring the manual template in this model's tokens: one vector per word token
    before [X] and one per token between [X] and [Y]. With init=manual the prompt starts as the template itself."""
    before = after = 0
    seen_subject = False
    for seg in relation.prompt_template.segments:
        if seg.kind == SegmentKind.SUBJECT:
            seen_subject = True
        elif seg.kind == SegmentKind.ANSWER:
            break
        elif seg.kind == SegmentKind.TEXT:
            ids = [i for i in lm.tokenizer(seg.text, add_special_tokens=False)["input_ids"] if i not in lm.special_token_ids]
            after, before = (after + len(ids), before) if seen_subject else (after, before + len(ids))
    if before + after == 0:
        raise InputError(f"relation {relation.id}: the template {relation.prompt_template.text!r} has no words "
                         "before [Y] to shape a prompt on")
    return before + after, before


def _linear_warmup(total: int, warmup_frac: float):
    warm = max(1, int(total * warmup_frac))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    return factor


def tune_prompt(lm: PromptedLM, relation: Relation, train: list[Fact], dev: list[Fact], candidates: CandidateSet,
                config: TuneConfig | None = None, on_step=None, should_stop=None) -> SoftPrompt:
    """Tune m soft vectors on `train`; the epoch with the best P@1 on `dev` (of this same model) wins."""
    requested = config or TuneConfig()
    config = requested.resolved(lm, relation)
    kept, gold = scorable_facts(train, candidates)
    if not kept:
        raise DataError(f"relation {relation.id}: no training fact has an answer that is a single token of {lm.name}")
    template = config.template
    vectors = torch.nn.Parameter(initial_vectors(lm, relation, config, candidates).to(lm.device))
    optimizer = torch.optim.AdamW([vectors], lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(kept) // config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_warmup(total, config.warmup))
    gen = torch.Generator().manual_seed(config.seed)
    gold_t = torch.tensor(gold)
    cand_ids = candidates.token_ids
    started = time.perf_counter()

    def dev_p_at_1() -> float:
        return evaluate(lm, Prompt(template, vectors.detach()), dev, candidates).p_at_1 if dev else float("nan")

    best = {"epoch": -1, "dev_p_at_1": -1.0, "vectors": vectors.detach().clone()}
    curve: list[dict] = []
    step, stopped = 0, False
    for epoch in range(config.epochs):
        order = torch.randperm(len(kept), generator=gen).tolist()
        epoch_loss = 0.0
        for start in range(0, len(order), config.batch_size):
            if should_stop and should_stop():
                stopped = True
                break
            idx = order[start : start + config.batch_size]
            batch = lm.encode(template, [kept[i].subject for i in idx])
            logits = lm.answer_logits(batch, vectors, cand_ids)
            loss = F.cross_entropy(logits, gold_t[idx].to(logits.device))
            if config.manifold_weight:
                loss = loss + config.manifold_weight * manifold_distance(vectors, lm).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.item() * len(idx)
            step += 1
            if on_step:
                on_step(step, {"epoch": epoch, "loss": loss.item(), "total_steps": total})
        if stopped:
            break
        dev_score = dev_p_at_1()
        curve.append({"epoch": epoch, "train_loss": epoch_loss / len(kept), "dev_p_at_1": dev_score})
        if on_step:
            on_step(step, {"epoch": epoch, "dev_p_at_1": dev_score, "total_steps": total, "epoch_end": True})
        if not dev or dev_score > best["dev_p_at_1"]:
            best = {"epoch": epoch, "dev_p_at_1": dev_score, "vectors": vectors.detach().clone()}
    return SoftPrompt(
        vectors=best["vectors"], model=lm.name, relation=relation.id, method="tuned", template=template.text,
        provenance={"config": config.as_dict(), "placement_requested": requested.placement.value, "selected_epoch": best["epoch"], "selection": "source dev P@1",
                    "n_train": len(kept), "stopped_early": stopped, "seconds": time.perf_counter() - started},
        metrics={"dev_p_at_1": best["dev_p_at_1"]}, trajectory=curve)
