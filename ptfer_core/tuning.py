"""OptiPrompt-style tuning: only the m prompt vectors train; the model stays frozen and unchanged.

Faithful to OptiPrompt's `run_optiprompt.py` under the `paper` recipe (the dataclass defaults are the `studio`
recipe's: random start, precision auto; the rest is shared): new vectors start as
N(0, initializer_range²) rows of the embedding matrix, the loss is cross-entropy over the whole vocabulary at the
answer slot with the model's dropout on, AdamW without weight decay and a linear warm-up/decay schedule, the
facts in file order, and source dev P@1 checked before training and 3 times per epoch, the best check kept.

The vectors are optimised in the embedding *weights'* space (what OptiPrompt trains) and enter the model after
the embedding module's own scaling (Gemma multiplies by √d), so one learning rate means the same for every model.

Where it costs nothing in accuracy the arithmetic is cheaper (`fastpath`): a bfloat16 twin of the frozen model
(vectors, gradients and optimiser state stay float32), eager attention, and on causal LMs the subject's
keys/values computed once per fact instead of once per step.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from .artifacts import SoftPrompt
from .config import Placement, PromptInit, TuneLoss, resolve_precision
from .data import Fact, Task, unit_hash
from .errors import DataError, InputError
from .evaluation import CandidateSet, Prompt, evaluate, scorable_facts
from .fastpath import has_dropout
from .models import PromptedLM
from .seeding import SeededDropout
from .settings import TuneConfig
from .templates import PromptTemplate, SegmentKind


def resolve_layout(config: TuneConfig, lm: PromptedLM, task: Task) -> tuple[TuneConfig, PromptTemplate]:
    """The concrete layout: `template` placement becomes the split layout mirroring the task's manual template."""
    if config.placement == Placement.TEMPLATE:
        n_vectors, split_at = template_shape(lm, task)
        config = replace(config, placement=Placement.SPLIT, n_vectors=n_vectors, split_at=split_at)
    return config, PromptTemplate.soft(config.n_vectors, config.placement, config.split_at)


def template_shape(lm: PromptedLM, task: Task) -> tuple[int, int]:
    """(n_vectors, split_at) mirroring the manual template in this model's tokens: one vector per token before [X]
    and one per token between [X] and [Y]. With init=manual the prompt starts as the template itself."""
    before = after = 0
    seen_subject = False
    for seg in task.prompt_template.segments:
        if seg.kind == SegmentKind.SUBJECT:
            seen_subject = True
        elif seg.kind == SegmentKind.ANSWER:
            break
        elif seg.kind == SegmentKind.TEXT:
            ids = [
                i
                for i in lm.tokenizer(seg.text, add_special_tokens=False)["input_ids"]
                if i not in lm.special_token_ids
            ]
            after, before = (after + len(ids), before) if seen_subject else (after, before + len(ids))
    if before + after == 0:
        raise InputError(f"task {task.id}: the template {task.template!r} has no words before [Y] to shape a prompt on")
    return before + after, before


def embedding_stats(lm: PromptedLM) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the model's token embeddings (as the model sees them)."""
    return lm.memo.get(("embedding_stats",), lambda: (lm.embedding_matrix.mean(0), lm.embedding_matrix.std(0)))


def sample_like_embeddings(lm: PromptedLM, n: int, generator: torch.Generator) -> torch.Tensor:
    """n vectors from a normal fitted (per dimension) to the model's token embeddings."""
    mean, std = embedding_stats(lm)
    return torch.randn(n, lm.width, generator=generator) * std + mean


def initial_vectors(
    lm: PromptedLM, task: Task, config: TuneConfig, candidates: CandidateSet | None = None
) -> torch.Tensor:
    """The starting vectors (as the model sees them), seeded by config.seed."""
    config, _ = resolve_layout(config, lm, task)
    gen = torch.Generator().manual_seed(config.seed)
    m = config.n_vectors
    if config.init == PromptInit.OPTIPROMPT:
        return torch.randn(m, lm.width, generator=gen) * lm.initializer_range * lm.embed_scale
    if config.init == PromptInit.RANDOM:
        return sample_like_embeddings(lm, m, gen)
    if config.init == PromptInit.MANUAL:  # the manual template's own tokens, in order, cycled to length m
        ids = []
        for seg in task.prompt_template.segments:
            if seg.kind == SegmentKind.TEXT:
                ids += lm.tokenizer(seg.text, add_special_tokens=False)["input_ids"]
        ids = [i for i in ids if i not in lm.special_token_ids] or [lm.tokenizer.unk_token_id or 0]
        return lm.embedding_matrix[torch.tensor([ids[j % len(ids)] for j in range(m)])].clone()
    pool = candidates.token_ids if candidates is not None else torch.arange(lm.vocab_size)
    pick = pool[torch.randperm(len(pool), generator=gen)[:m]]
    return lm.embedding_matrix[pick].clone()


def manifold_distance(vectors: torch.Tensor, lm: PromptedLM) -> torch.Tensor:
    """Per vector: squared distance to the nearest token embedding over the embeddings' mean squared norm."""
    sq_norms, mean_sq = lm.memo.get(
        ("embedding_sq_norms",), lambda: (lm.embedding_matrix.pow(2).sum(-1), lm.embedding_matrix.pow(2).sum(-1).mean())
    )
    emb = lm.embedding_matrix
    with torch.no_grad():  # which token is nearest needs no gradient; the distance to it does
        nearest = (sq_norms - 2 * vectors.detach() @ emb.T).argmin(dim=-1)
    return (vectors - emb[nearest]).pow(2).sum(-1) / mean_sq


def training_facts(train: list[Fact], candidates: CandidateSet, config: TuneConfig, seed: int = 0) -> list[Fact]:
    """The scorable training facts, capped at config.max_train by a seeded sample kept in file order."""
    kept, _ = scorable_facts(train, candidates)
    if config.max_train is not None and len(kept) > config.max_train:
        chosen = set(sorted(range(len(kept)), key=lambda i: unit_hash(f"{seed}:{kept[i].uuid}"))[: config.max_train])
        kept = [f for i, f in enumerate(kept) if i in chosen]
    return kept


def _schedule(total: int, warmup_frac: float):
    """Linear warm-up to the peak, then linear decay to zero (transformers' get_linear_schedule_with_warmup)."""
    warm = int(total * warmup_frac)

    def factor(step: int) -> float:
        if step < warm:
            return step / max(1, warm)
        return max(0.0, (total - step) / max(1, total - warm))

    return factor


def dev_check_points(steps_per_epoch: int, checks: int) -> set[int]:
    """Steps within an epoch (1-based) after which dev P@1 is checked: `checks` evenly spaced, the last at the end."""
    return {max(1, round(steps_per_epoch * j / checks)) for j in range(1, checks + 1)}


def tune_prompt(
    lm: PromptedLM,
    task: Task,
    train: list[Fact],
    dev: list[Fact],
    candidates: CandidateSet,
    config: TuneConfig | None = None,
    on_step=None,
    should_stop=None,
) -> SoftPrompt:
    """Tune m soft vectors on `train`; the dev check with the best P@1 on `dev` (of this same model) wins."""
    requested = config or TuneConfig()
    config, template = resolve_layout(requested, lm, task)
    kept = training_facts(train, candidates, config, config.seed)
    if not kept:
        raise DataError(f"{task.id}: no training example has an answer that is a single-token candidate of {lm.name}")
    gold = torch.tensor([candidates.index[f.object] for f in kept])
    targets = candidates.token_ids[gold] if config.loss == TuneLoss.FULL_VOCABULARY else gold
    score_ids = None if config.loss == TuneLoss.FULL_VOCABULARY else candidates.token_ids
    train_model = lm.compute_model(config.precision, dropout=config.dropout, for_training=True)
    encoded = lm.with_prefix(lm.encode(template, [f.subject for f in kept], task.max_input_tokens), train_model)
    scale = lm.embed_scale  # optimise in the embedding weights' space (see the module doc)
    raw = torch.nn.Parameter(initial_vectors(lm, task, config, candidates).to(lm.device) / scale)
    optimizer = torch.optim.AdamW([raw], lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(kept) // config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total, config.warmup))
    gen = torch.Generator().manual_seed(config.seed)
    # OptiPrompt's dropout, drawn from a stream of this tuning's own (`seeding`: deterministic under the seed)
    dropout_masks = SeededDropout(config.seed, lm.device, active=config.dropout and has_dropout(lm.model))
    checks = dev_check_points(steps_per_epoch, config.dev_checks_per_epoch)
    started = time.perf_counter()

    def dev_p_at_1() -> float:
        vectors = (raw.detach() * scale).float()
        return evaluate(
            lm,
            Prompt(template, vectors),
            dev,
            candidates,
            precision=config.precision,
            max_subject_tokens=task.max_input_tokens,
        ).p_at_1

    best = {"step": 0, "epoch": -1, "dev_p_at_1": None, "vectors": (raw.detach() * scale).clone()}
    curve: list[dict] = []

    def check(step: int, epoch: int, train_loss: float | None) -> None:
        score = dev_p_at_1() if dev else None
        curve.append({"step": step, "epoch": epoch, "train_loss": train_loss, "dev_p_at_1": score})
        if on_step:
            on_step(step, {"epoch": epoch, "dev_p_at_1": score, "total_steps": total, "epoch_end": True})
        if not dev or best["dev_p_at_1"] is None or score > best["dev_p_at_1"]:
            best.update(step=step, epoch=epoch, dev_p_at_1=score, vectors=(raw.detach() * scale).clone())

    if dev and config.dev_before_training:
        check(0, -1, None)
    step, stopped = 0, False
    for epoch in range(config.epochs):
        order = torch.randperm(len(kept), generator=gen).tolist() if config.shuffle else list(range(len(kept)))
        running, seen = 0.0, 0
        for i, start in enumerate(range(0, len(order), config.batch_size), 1):
            if should_stop and should_stop():
                stopped = True
                break
            idx = order[start : start + config.batch_size]
            with dropout_masks.drawn():
                logits = lm.answer_logits(encoded.rows(idx), raw * scale, score_ids, train_model)
            loss = F.cross_entropy(logits, targets[idx].to(logits.device))
            if config.manifold_weight:
                loss = loss + config.manifold_weight * manifold_distance(raw * scale, lm).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            running += loss.item() * len(idx)
            seen += len(idx)
            if on_step:
                on_step(step, {"epoch": epoch, "loss": loss.item(), "total_steps": total})
            if i in checks:
                check(step, epoch, running / max(1, seen))
        if stopped:
            break
    if not dev:  # nothing to select on: the last vectors
        best.update(step=step, epoch=config.epochs - 1, vectors=(raw.detach() * scale).clone())
    return SoftPrompt(
        vectors=best["vectors"],
        model=lm.name,
        relation=task.id,
        method="tuned",
        template=template.text,
        provenance={
            "tune": config.stamped(),
            "precision_used": resolve_precision(config.precision, lm.device).value,
            "placement_requested": requested.placement.value,
            "model_identity": lm.identity,
            "selected_step": best["step"],
            "selected_epoch": best["epoch"],
            "selection": "source dev P@1" if dev else "last step",
            "n_train": len(kept),
            "stopped_early": stopped,
            "seconds": time.perf_counter() - started,
        },
        metrics={} if best["dev_p_at_1"] is None else {"dev_p_at_1": best["dev_p_at_1"]},
        trajectory=curve,
    )
