"""Zero-shot prompt transfer through the relative space (Wu, Wu & Mou, ICLR 2024).

    1. anchors: words every model involved spells as one token                        (`anchors.select_anchors`)
    2. encode each source prompt vector by its similarities to the anchors, in its own
       model, keeping its top-K entries (Eqs. 3-4)                                      (`encode_sources`)
    3. find target vectors whose encoding in the target model matches, normalised onto
       the target's embedding distribution (Eqs. 5-6); several sources: Eq. 7           (`solvers.solve`)
    4. optionally snap the answer onto target tokens (label-free)                       (`project_to_vocabulary`)

Multi-source (Eq. 7) here is a weighted sum of per-source matching terms, each source with its own top-K mask.
The reference's dual-source code instead averages two terms under one mask (the second source's top-K applied to
both); with equal weights and K = all anchors the two agree.
"""

from __future__ import annotations

import hashlib
import json
import math
import time

import torch
import torch.nn.functional as F

from .anchors import AnchorSet, select_anchors
from .artifacts import SoftPrompt
from .config import Normalization, Projection, Selection, Solver, SpaceMode
from .data import Fact
from .errors import DimensionMismatchError, InputError
from .evaluation import CandidateSet, Prompt, evaluate
from .models import PromptedLM
from .settings import TransferConfig
from .solvers import EncodedSource, Normalizer, Problem, Solution, solve
from .space import relative_space


def target_statistics(lm: PromptedLM) -> tuple[float, float]:
    """Mean and std over all entries of the target's token embeddings (as the model sees them): Eq. 6's target."""

    def stats():
        emb = lm.embedding_matrix
        return emb.mean().item(), emb.std().item()

    return lm.memo.get(("embedding_scalar_stats",), stats)


def source_spread(sources: list[tuple[SoftPrompt, PromptedLM]], weights: list[float] | None = None) -> float:
    """How spread out the source prompt's values are relative to its own model's token embeddings (weighted)."""
    return sum(
        w * prompt.vectors.float().std().item() / target_statistics(lm)[1]
        for (prompt, lm), w in zip(sources, blend_weights(weights, len(sources)))
    )


def blend_weights(weights: list[float] | None, n: int) -> list[float]:
    """The sources' weights summing to 1 (equal when None); refused unless finite, non-negative and not all zero.
    Scaled by the largest first: two weights of 1e308 summed to inf and came out as 0 and 0."""
    weights = [float(w) for w in weights] if weights is not None else [1.0] * n
    if len(weights) != n:
        raise InputError(f"give one weight per source: {len(weights)} weight(s) for {n} source(s)")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not max(weights) > 0:
        raise InputError(f"weights must be finite, non-negative and not all zero (got {weights})")
    scaled = [w / max(weights) for w in weights]
    return [w / sum(scaled) for w in scaled]


def encode_sources(
    sources: list[tuple[SoftPrompt, PromptedLM]],
    anchors: AnchorSet,
    config: TransferConfig,
    weights: list[float] | None = None,
) -> list[EncodedSource]:
    """Each source prompt's top-K-masked relative encoding in its own model's space, with normalised weights."""
    weights = blend_weights(weights, len(sources))
    out = []
    for (prompt, lm), w in zip(sources, weights):
        if prompt.width != lm.width:
            raise DimensionMismatchError(
                f"source prompt width {prompt.width} does not match {lm.name}'s width {lm.width}"
            )
        vectors = prompt.vectors.float().cpu()
        encoding, mask = relative_space(lm, anchors, config.space).encode_top_k(vectors, config.top_k)
        out.append(EncodedSource(encoding, mask, w, vectors.norm(dim=-1)))
    return out


def transfer_prompt(
    sources: list[tuple[SoftPrompt, PromptedLM]],
    target: PromptedLM,
    config: TransferConfig | None = None,
    weights: list[float] | None = None,
    dev: list[Fact] | None = None,
    candidates: CandidateSet | None = None,
    anchors: AnchorSet | None = None,
    data_dir=None,
    max_subject_tokens: int | None = None,
    on_step=None,
    should_stop=None,
) -> SoftPrompt:
    """Target vectors whose relative encoding matches the source prompt(s); no target labels unless selection=dev."""
    config = config or TransferConfig()
    if not sources:
        raise InputError("transfer needs at least one source prompt")
    first = sources[0][0]
    if any(p.prompt_template.text != first.prompt_template.text for p, _ in sources):
        raise InputError("all source prompts must share one layout (same number and placement of [V] slots)")
    if any(p.relation != first.relation for p, _ in sources):
        raise InputError(
            f"the source prompts are for different tasks ({', '.join(sorted({p.relation for p, _ in sources}))})"
        )
    if config.selection == Selection.DEV and (not dev or candidates is None):
        raise InputError("selection='dev' needs target dev facts and candidates")
    started = time.perf_counter()
    models = list({id(lm): lm for _, lm in sources + [(None, target)]}.values())  # each model once, in order
    anchors = anchors or select_anchors(models, config.n_anchors, config.anchor_source, config.anchor_filter, data_dir)
    if config.top_k is not None and config.top_k > len(anchors):
        raise InputError(
            f"top_k {config.top_k} is larger than the {len(anchors)} anchors these models share; "
            f"use top_k at most {len(anchors)} (or none to keep every similarity)"
        )
    encoded = encode_sources(sources, anchors, config, weights)
    space = relative_space(target, anchors, config.space)
    template = first.prompt_template

    def dev_score(vectors: torch.Tensor) -> float:
        return evaluate(
            target, Prompt(template, vectors), dev, candidates, max_subject_tokens=max_subject_tokens
        ).p_at_1

    words = None
    if config.solver == Solver.VOCABULARY or config.projection == Projection.NEAREST_SHARED:
        words = select_anchors(models, None, config.anchor_source, config.anchor_filter, data_dir)
    mean, std = target_statistics(target)
    if config.normalization == Normalization.RELATIVE:
        std *= source_spread(sources, weights)
    problem = Problem(
        space,
        encoded,
        first.n_vectors,
        target.width,
        Normalizer(config.normalization, mean, std),
        config,
        dev_score=dev_score if config.selection == Selection.DEV else None,
        on_step=on_step,
        should_stop=should_stop,
    )
    if config.solver == Solver.VOCABULARY:
        problem.candidates = (list(words.words), words.embeddings(target).float().cpu())
        problem.penalties = [
            hub_penalty(lm, target, anchors, words, config.space) if config.hub_penalty else None for _, lm in sources
        ]
    solution, reused = _solve_with_reuse(problem, sources, target, anchors, dev)
    final, neighbours = project_to_vocabulary(
        target,
        solution.vectors,
        config,
        words.token_ids(target) if config.projection == Projection.NEAREST_SHARED else None,
    )
    diagnostics = {}
    if sources[0][1] is target and solution.unnormalised is not None:  # self-transfer: what came back, before Eq. 6
        before = F.cosine_similarity(solution.unnormalised.float(), first.vectors.float(), dim=-1)
        diagnostics["cosine_to_source_before_normalisation"] = [round(float(c), 6) for c in before]
    return SoftPrompt(
        vectors=final,
        model=target.name,
        relation=first.relation,
        method="transfer",
        template=first.template,
        provenance={
            "transfer": config.stamped(),
            "n_anchors": len(anchors),
            "anchor_source": anchors.source,
            "selected_step": solution.step,
            "steps_run": len(solution.trajectory),
            "stopped_early": solution.stopped,
            "seconds": time.perf_counter() - started,
            **({"search_reused": True} if reused else {}),
            "sources": [
                {"model": p.model, "relation": p.relation, "method": p.method, "created": p.created, "digest": p.digest}
                for p, _ in sources
            ],
            "weights": [s.weight for s in encoded],
            **({"projected_to": neighbours} if neighbours else {}),
            **({"tokens": solution.tokens} if solution.tokens else {}),
            **diagnostics,
        },
        metrics={
            "matching_loss": solution.loss,
            **({"dev_p_at_1": solution.dev_p_at_1} if solution.dev_p_at_1 is not None else {}),
        },
        trajectory=solution.trajectory,
    )


def _solve_with_reuse(problem: Problem, sources, target: PromptedLM, anchors: AnchorSet, dev) -> tuple[Solution, bool]:
    """The paper's Adam search, run once per process for the target-dev and the lowest-loss selections: they share
    every step, so the zero-shot answer of a dev-selected search is reused (the grid asks for both)."""
    config = problem.config
    if config.solver != Solver.ADAM:
        return solve(problem), False
    settings = {k: v for k, v in config.to_dict().items() if k not in ("selection", "dev_every")}
    key = (
        "adam_search",
        tuple(p.digest for p, _ in sources),
        tuple(lm.identity for _, lm in sources),
        anchors.key,
        json.dumps(settings, sort_keys=True),
        tuple(problem.sources[i].weight for i in range(len(sources))),
    )
    dev_key = (config.dev_every, hashlib.sha1("\n".join(f.uuid for f in dev or []).encode()).hexdigest())
    cached = target.memo.peek(key)
    if cached is not None and config.selection == Selection.LOSS:
        return cached["by_loss"], True
    if cached is not None and cached.get("dev_key") == dev_key:
        return cached["by_dev"], True
    solution = solve(problem)
    if config.selection == Selection.DEV and solution.by_loss is not None:
        target.memo.get(key, lambda: {"by_loss": solution.by_loss, "by_dev": solution, "dev_key": dev_key})
    return solution, False


def hub_penalty(
    source: PromptedLM,
    target: PromptedLM,
    anchors: AnchorSet,
    words: AnchorSet,
    space: SpaceMode,
    n_reference: int = 2048,
    neighbours: int = 10,
) -> torch.Tensor:
    """Per target word of `words`: its mean cosine to its `neighbours` nearest source words (CSLS's r term).

    Full (unmasked) encodings; the source side is its `n_reference` first anchors. Cached on the target: it
    depends on the pair, the anchors and the space, not on the prompt.
    """

    def compute():
        reference = AnchorSet(anchors.words[:n_reference])
        source_space, target_space = relative_space(source, anchors, space), relative_space(target, anchors, space)
        queries = F.normalize(source_space.encode(reference.embeddings(source).float().cpu()), dim=-1)
        embeddings = words.embeddings(target).float().cpu()
        penalty = torch.empty(len(embeddings))
        with torch.no_grad():
            for start in range(0, len(embeddings), 2048):
                sims = F.normalize(target_space.encode(embeddings[start : start + 2048]), dim=-1) @ queries.T
                penalty[start : start + 2048] = sims.topk(min(neighbours, len(queries)), dim=-1).values.mean(-1)
        return penalty

    key = ("hub_penalty", source.identity, anchors.key, words.key, SpaceMode(space).value, n_reference)
    return target.memo.get(key, compute)


def project_to_vocabulary(
    target: PromptedLM, vectors: torch.Tensor, config: TransferConfig, allowed: torch.Tensor | None = None
) -> tuple[torch.Tensor, list[list[str]]]:
    """Pull found vectors onto the target's token manifold (nearest token, or a top-n mix), then interpolate.

    `allowed` restricts the tokens to those ids (e.g. the shared words). Returns the new vectors and, per vector,
    the target tokens used. Uses no labels.
    """
    if config.projection == Projection.NONE:
        return vectors, []
    from .analysis import display_token

    emb = target.embedding_matrix
    sims = F.normalize(vectors.to(emb.device), dim=-1) @ F.normalize(emb, dim=-1).T
    special = torch.tensor(sorted(target.special_token_ids), dtype=torch.long, device=sims.device)
    if len(special):
        sims[:, special] = -2.0
    if allowed is not None:
        keep = torch.full_like(sims, -2.0)
        keep[:, allowed.to(sims.device)] = sims[:, allowed.to(sims.device)]
        sims = keep
    n = config.projection_top_n if config.projection == Projection.MIX else 1
    # at most every token that may be used: topk past the vocabulary raised, past `allowed` it mixed in excluded ones
    eligible = int((sims > -2.0).sum(dim=-1).min())  # neither special nor outside `allowed`
    n = max(1, min(n, eligible))
    values, ids = sims.topk(n, dim=-1)
    weights = torch.softmax(values / 0.05, dim=-1) if n > 1 else torch.ones_like(values)  # sharp: near tokens dominate
    projected = (weights.unsqueeze(-1) * emb[ids]).sum(dim=1).cpu()
    out = config.projection_alpha * projected + (1 - config.projection_alpha) * vectors
    return out, [[display_token(target, i) for i in row] for row in ids.tolist()]
