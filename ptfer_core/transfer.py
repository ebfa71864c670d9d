"""Zero-shot prompt transfer through the relative space (Wu, Wu & Mou, ICLR 2024).

Each source prompt vector is encoded by its cosine similarities to k anchor tokens in the source model.
Target vectors are searched (Adam, from a seeded random start) so that their encoding against the same
anchors in the target model matches; with `normalize` they are standardised per vector and rescaled to the
target embeddings' statistics inside the loop, so the answer lies where target tokens lie. All m vectors
are searched at once: each step is one [m, d] × [d, k] product per source.

`solver=lstsq` replaces the search by its closed form. With unit anchor rows A (the source's top-K rows only)
the encoding of u is A u, and cos(A u, r) is largest when A u is the projection of r onto A's column space,
i.e. u ∝ A⁺ r: one least-squares solve per vector, exact for the unnormalised objective. Normalisation is
then applied to the solution (it cannot be inside a closed form); the reported loss is the normalised one.

`solver=vocabulary` minimises the same matching loss over the target's own token embeddings (the words shared
by all models): each vector becomes the real token whose relative encoding is closest to the source's. Unlike
snapping a searched vector to its nearest token in embedding space, the choice is made in the relative space,
where directions the anchors barely constrain cannot mislead it. It still uses no target labels.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from enum import Enum

import torch
import torch.nn.functional as F

from .anchors import DEFAULT_N_ANCHORS, AnchorFilter, AnchorSet, RelativeSpace, relative_space, select_anchors
from .artifacts import SoftPrompt
from .config import Selection, Solver, SpaceMode, parse_enum
from .errors import DimensionMismatchError, InputError
from .data import Fact
from .evaluation import CandidateSet, Prompt, evaluate
from .models import PromptedLM


class Projection(str, Enum):
    """What to do with the searched vectors afterwards (uses no labels, so transfer stays zero-shot)."""

    NONE = "none"  # the paper: keep the searched, normalised vectors
    NEAREST = "nearest"  # snap each vector to its nearest target token (cosine)
    MIX = "mix"  # similarity-weighted mix of the top-n target tokens


@dataclass
class TransferConfig:
    n_anchors: int | None = DEFAULT_N_ANCHORS  # None: every shared word
    top_k: int | None = None  # keep the K largest similarities per vector (None: all k)
    anchor_filter: AnchorFilter = AnchorFilter.WORDS
    steps: int = 2000
    lr: float = 1e-2
    normalize: bool = True
    selection: Selection = Selection.LOSS
    dev_every: int = 50  # with selection=dev: evaluate target dev P@1 every N steps
    patience: int | None = 200  # stop when the loss has not improved for this many steps (None: never)
    min_delta: float = 1e-6
    space: SpaceMode = SpaceMode.RAW  # how similarities to the anchors are taken (raw: the paper)
    centre_anchors: bool = False  # shorthand for space="centred" (kept for saved settings and URLs)
    projection: Projection = Projection.NONE
    projection_top_n: int = 8  # neighbours mixed by projection=mix
    projection_alpha: float = 1.0  # 1: the projection only; 0: the searched vector only; between: interpolate
    project_to_shared: bool = False  # project onto the words shared with the source(s) only, not the whole vocabulary
    restarts: int = 1  # independent random starts searched side by side; the lowest matching loss wins
    # solver=vocabulary: CSLS (Conneau et al., 2018): 2·cos − each target word's mean cosine to its 10 nearest
    # source words, so hub words that are near everything stop winning every vector
    hub_penalty: bool = False
    solver: Solver = Solver.ADAM
    seed: int = 0

    def __post_init__(self):
        self.selection = parse_enum(Selection, self.selection, "selection rule")
        self.anchor_filter = parse_enum(AnchorFilter, self.anchor_filter, "anchor filter")
        self.projection = parse_enum(Projection, self.projection, "projection")
        self.solver = parse_enum(Solver, self.solver, "solver")
        self.space = parse_enum(SpaceMode, self.space, "relative space")
        if self.hub_penalty and self.solver != Solver.VOCABULARY:
            raise InputError("hub_penalty re-scores candidate words: it needs solver='vocabulary'")
        if self.centre_anchors:
            if self.space == SpaceMode.STANDARDISED:
                raise InputError("centre_anchors means space='centred'; it cannot be combined with space='standardised'")
            self.space = SpaceMode.CENTRED
        if self.solver != Solver.ADAM and self.selection == Selection.DEV:
            raise InputError(f"selection='dev' picks among search steps; the {self.solver.value} solver has only one "
                             "answer: use selection='loss' with it")
        if not 0.0 <= self.projection_alpha <= 1.0 or self.projection_top_n < 1:
            raise InputError("projection_alpha must lie in [0, 1] and projection_top_n be at least 1")
        if self.steps < 1 or not self.lr > 0:
            raise InputError("steps must be at least 1 and lr positive")
        if self.n_anchors is not None and self.n_anchors < 1:
            raise InputError(f"n_anchors must be positive (got {self.n_anchors})")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top_k must be positive (got {self.top_k})")
        if self.dev_every < 1:
            raise InputError("dev_every must be at least 1")
        if self.restarts < 1:
            raise InputError(f"restarts must be at least 1 (got {self.restarts})")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(selection=self.selection.value, anchor_filter=self.anchor_filter.value, projection=self.projection.value,
                 solver=self.solver.value, space=self.space.value)
        return d


def target_statistics(lm: PromptedLM) -> tuple[float, float]:
    """Mean and std over all entries of the target's token embeddings (as the model sees them)."""
    key = ("embedding_scalar_stats",)
    if key not in lm.cache:
        emb = lm.embedding_matrix
        lm.cache[key] = (emb.mean().item(), emb.std().item())
    return lm.cache[key]


def normalize_to(vectors: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(v − mean_v) / std_v · std_emb + mean_emb, per vector."""
    centred = vectors - vectors.mean(dim=-1, keepdim=True)
    return centred / centred.std(dim=-1, keepdim=True).clamp_min(1e-12) * std + mean


@dataclass
class _Source:
    encoding: torch.Tensor  # [m, k], zeros outside the top-K
    mask: torch.Tensor  # [m, k]
    weight: float


def encode_sources(sources: list[tuple[SoftPrompt, PromptedLM]], anchors: AnchorSet, top_k: int | None,
                   weights: list[float] | None, space: SpaceMode | str = SpaceMode.RAW) -> list[_Source]:
    """Each source prompt's relative encoding (top-K masked) in its own model's space, with normalised weights."""
    weights = list(weights) if weights is not None else [1.0] * len(sources)
    if len(weights) != len(sources) or any(w < 0 for w in weights) or not sum(weights) > 0:
        raise InputError("give one non-negative weight per source, not all zero")
    total = sum(weights)
    out = []
    for (prompt, lm), w in zip(sources, weights):
        if prompt.width != lm.width:
            raise DimensionMismatchError(f"source prompt width {prompt.width} does not match {lm.name}'s width {lm.width}")
        enc, mask = relative_space(lm, anchors, space).encode_top_k(prompt.vectors.float().cpu(), top_k)
        out.append(_Source(enc, mask, w / total))
    return out


def matching_loss(vectors: torch.Tensor, target_space: RelativeSpace, sources: list[_Source]) -> torch.Tensor:
    """1 − weighted mean over sources and prompt vectors of cos(masked target encoding, source encoding).

    `vectors` is [m, d] (a scalar loss) or [R, m, d] for R restarts searched together (one loss per restart).
    """
    rel = target_space.encode(vectors)
    sim = sum(s.weight * F.cosine_similarity(rel * s.mask, s.encoding, dim=-1).mean(dim=-1) for s in sources)
    return 1.0 - sim


def transfer_prompt(sources: list[tuple[SoftPrompt, PromptedLM]], target: PromptedLM,
                    config: TransferConfig | None = None, weights: list[float] | None = None,
                    dev: list[Fact] | None = None, candidates: CandidateSet | None = None,
                    anchors: AnchorSet | None = None, on_step=None, should_stop=None) -> SoftPrompt:
    """Search target vectors whose relative encoding matches the source prompt(s); no target labels with selection=loss."""
    config = config or TransferConfig()
    if not sources:
        raise InputError("transfer needs at least one source prompt")
    first = sources[0][0]
    if any(p.prompt_template.text != first.prompt_template.text for p, _ in sources):
        raise InputError("all source prompts must share one layout (same number and placement of [V] slots)")
    if config.selection == Selection.DEV and (not dev or candidates is None):
        raise InputError("selection='dev' needs target dev facts and candidates")
    lms = [lm for _, lm in sources]
    everyone = list({id(x): x for x in lms + [target]}.values())  # each model once, in order
    anchors = anchors or select_anchors(everyone, config.n_anchors, config.anchor_filter)
    encoded = encode_sources(sources, anchors, config.top_k, weights, config.space)
    space = relative_space(target, anchors, config.space)
    mean, std = target_statistics(target)

    def realise(x: torch.Tensor) -> torch.Tensor:
        # Without normalisation the raw vector is only rescaled to the target's spread (cosine ignores scale).
        return normalize_to(x, mean, std) if config.normalize else x * std

    started = time.perf_counter()
    snap_to_shared = config.project_to_shared and config.projection != Projection.NONE
    # Every word all models share: the vocabulary solver's candidates and the shared-word snap's targets.
    words = select_anchors(everyone, None, config.anchor_filter) if (
        config.solver == Solver.VOCABULARY or snap_to_shared) else None
    if config.solver == Solver.VOCABULARY:
        penalties = [hub_penalty(lm, target, anchors, words, config.space) if config.hub_penalty else None
                     for lm in lms]
        best, trajectory, stopped = _solve_vocabulary(target, words, space, encoded, on_step, penalties)
    elif config.solver == Solver.LSTSQ:
        def place(direction: torch.Tensor) -> torch.Tensor:
            # (v − centre) along the solved direction, as far out as the target's tokens lie; then normalised.
            v = direction * space.typical_norm + (space.centre if space.centre is not None else 0.0)
            return normalize_to(v, mean, std) if config.normalize else v

        best, trajectory, stopped = _solve_lstsq(first.n_vectors, space, encoded, place, on_step)
    else:
        best, trajectory, stopped = _search_adam(first, target, config, space, encoded, realise, dev, candidates,
                                                 on_step, should_stop)
    searched = best["vectors"]
    allowed = words.token_ids(target) if snap_to_shared else None
    final, neighbours = project_to_vocabulary(target, searched, config, allowed)
    return SoftPrompt(
        vectors=final, model=target.name, relation=first.relation, method="transfer",
        template=first.template,
        provenance={
            "config": config.as_dict(), "n_anchors": len(anchors), "selected_step": best["step"],
            "steps_run": len(trajectory), "stopped_early": stopped, "seconds": time.perf_counter() - started,
            "sources": [{"model": p.model, "relation": p.relation, "method": p.method, "created": p.created}
                        for p, _ in sources],
            "weights": [s.weight for s in encoded],
            **({"projected_to": neighbours} if neighbours else {}),
            **({"tokens": best["tokens"]} if "tokens" in best else {}),
        },
        metrics={"matching_loss": best["loss"], **({"dev_p_at_1": best["dev_p_at_1"]} if best["dev_p_at_1"] is not None else {})},
        trajectory=trajectory)


def _search_adam(first: SoftPrompt, target: PromptedLM, config: TransferConfig, space: RelativeSpace,
                 encoded: list[_Source], realise, dev, candidates, on_step, should_stop):
    """The paper's search: Adam from seeded random starts, kept by matching loss (or target dev P@1)."""
    gen = torch.Generator().manual_seed(config.seed)
    # Restarts share every step: Adam is elementwise, so summing their losses updates each exactly as if alone.
    raw = torch.nn.Parameter(torch.randn(config.restarts, first.n_vectors, target.width, generator=gen))
    optimizer = torch.optim.Adam([raw], lr=config.lr)

    trajectory: list[dict] = []
    best = {"loss": float("inf"), "step": 0, "dev_p_at_1": None, "vectors": None}
    lowest, since_improved, stopped = float("inf"), 0, False
    for step in range(1, config.steps + 1):
        if should_stop and should_stop():
            stopped = True
            break
        all_vectors = realise(raw)
        losses = matching_loss(all_vectors, space, encoded)
        leader = int(losses.argmin())
        vectors, value = all_vectors[leader], losses[leader].item()
        row = {"step": step, "loss": value}
        # Scores belong to the vectors before this step's update, so the kept vectors and their loss agree.
        if config.selection == Selection.LOSS and value < best["loss"]:
            best.update(loss=value, step=step, vectors=vectors.detach().clone())
        elif config.selection == Selection.DEV and (step == 1 or step % config.dev_every == 0):
            row["dev_p_at_1"] = evaluate(target, Prompt(first.prompt_template, vectors.detach()), dev, candidates).p_at_1
            if best["dev_p_at_1"] is None or row["dev_p_at_1"] > best["dev_p_at_1"]:
                best.update(loss=value, step=step, dev_p_at_1=row["dev_p_at_1"], vectors=vectors.detach().clone())
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        trajectory.append(row)
        if on_step:
            on_step(step, {**row, "total_steps": config.steps})
        since_improved = 0 if value < lowest - config.min_delta else since_improved + 1
        lowest = min(lowest, value)
        if config.patience is not None and since_improved >= config.patience:
            break
    if best["vectors"] is None:  # stopped before the first step
        best["vectors"] = realise(raw.detach()[0])
        with torch.no_grad():
            best["loss"] = matching_loss(best["vectors"], space, encoded).item()
    return best, trajectory, stopped


def _one_step(vectors: torch.Tensor, loss: float, on_step, **extra):
    """The (best, trajectory, stopped) triple of a solver that answers in one step."""
    row = {"step": 1, "loss": loss}
    if on_step:
        on_step(1, {**row, "total_steps": 1})
    return {"loss": loss, "step": 1, "dev_p_at_1": None, "vectors": vectors, **extra}, [row], False


def _implied_cosines(space: RelativeSpace, encoding: torch.Tensor) -> torch.Tensor:
    """The target cosines an encoding asks for: itself, or mean + std · z in a standardised space."""
    return encoding if space.mean is None else space.mean + space.std * encoding


def _solve_lstsq(n_vectors: int, space: RelativeSpace, encoded: list[_Source], place, on_step):
    """Closed form: per vector, least squares over the kept anchor rows of every source (weighted, stacked).

    For one source in a raw or centred space this is the exact optimum of the unnormalised cosine objective; for
    several it is the optimum of the summed squared errors against unit-norm encodings, a close stand-in for the
    summed cosines. In a standardised space it solves for the cosines the source's z-scores imply.
    It takes milliseconds, one "step", so there is nothing for `should_stop` to interrupt.
    """
    anchors64 = space.unit_anchors.double()
    wanted = [_implied_cosines(space, s.encoding).double() for s in encoded]
    if len(encoded) == 1 and bool(encoded[0].mask.all()):  # the common case: one solve with m right-hand sides
        solutions = torch.linalg.lstsq(anchors64, wanted[0].T, driver="gelsd").solution.T
    else:
        solutions = []
        for i in range(n_vectors):
            rows, rhs = [], []
            for s, b in zip(encoded, wanted):
                keep = s.mask[i]
                scale = s.weight ** 0.5 / b[i][keep].norm().clamp_min(1e-12).item()
                rows.append(anchors64[keep] * scale)
                rhs.append(b[i][keep] * scale)
            solutions.append(torch.linalg.lstsq(torch.cat(rows), torch.cat(rhs).unsqueeze(-1), driver="gelsd")
                             .solution.squeeze(-1))
        solutions = torch.stack(solutions)
    with torch.no_grad():
        vectors = place(F.normalize(solutions.float(), dim=-1))
        loss = matching_loss(vectors, space, encoded).item()
    return _one_step(vectors, loss, on_step)


def hub_penalty(source: PromptedLM, target: PromptedLM, anchors: AnchorSet, words: AnchorSet, space: SpaceMode,
                n_reference: int = 2048, neighbours: int = 10) -> torch.Tensor:
    """Per target word of `words`: its mean cosine to its `neighbours` nearest source words (CSLS's r term).

    Full (unmasked) encodings; the source side is its `n_reference` most frequent anchors. Cached on the target:
    it depends on the pair, the anchors and the space, not on the prompt.
    """
    key = ("hub_penalty", source.name, hash(anchors.words), hash(words.words), SpaceMode(space).value, n_reference)
    if key not in target.cache:
        reference = AnchorSet(anchors.words[:n_reference])
        source_space, target_space = relative_space(source, anchors, space), relative_space(target, anchors, space)
        queries = F.normalize(source_space.encode(reference.embeddings(source).float().cpu()), dim=-1)
        ids = words.token_ids(target)
        penalty = torch.empty(len(ids))
        with torch.no_grad():
            for start in range(0, len(ids), 2048):
                chunk = target.embedding_matrix.index_select(0, ids[start:start + 2048].to(target.embedding_matrix.device))
                sims = F.normalize(target_space.encode(chunk.float().cpu()), dim=-1) @ queries.T
                penalty[start:start + 2048] = sims.topk(min(neighbours, len(queries)), dim=-1).values.mean(-1)
        target.cache[key] = penalty
    return target.cache[key]


def _solve_vocabulary(target: PromptedLM, words: AnchorSet, space: RelativeSpace, encoded: list[_Source], on_step,
                      penalties: list[torch.Tensor | None] | None = None):
    """Per vector, the shared word w maximising Σ_s weight_s · cos(encoding of e_w under s's mask, r_s).

    With a hub penalty p_s per source, each term is 2·cos − p_s(w) instead (CSLS).

    Encodings of every word ([V, k]) are never built. With unit vectors ê (centred if the space is) and the
    encoding (A ê − μ)/σ restricted to the kept rows M: its dot with z is ê·A_Mᵀ(z/σ) − Σ μ z/σ, and its squared
    norm is ê G ê − 2 ê·h + c with G = A_Mᵀ diag(1/σ²) A_M, h = A_Mᵀ(μ/σ²), c = Σ μ²/σ². One [V, d] × [d, d]
    product per source and distinct mask.
    """
    ids = words.token_ids(target)
    emb = target.embedding_matrix.index_select(0, ids.to(target.embedding_matrix.device)).float().cpu()
    unit = F.normalize(emb - space.centre if space.centre is not None else emb, dim=-1)
    k = space.unit_anchors.shape[0]
    inv_std = 1.0 / space.std if space.std is not None else torch.ones(k)
    mu = space.mean if space.mean is not None else torch.zeros(k)
    m = encoded[0].encoding.shape[0]
    score = torch.zeros(m, len(ids))
    with torch.no_grad():
        for s, penalty in zip(encoded, penalties or [None] * len(encoded)):
            full = bool(s.mask.all())
            norms = None
            for i in range(m):
                keep = s.mask[i]
                rows, w, mu_k = space.unit_anchors[keep], inv_std[keep], mu[keep]
                if norms is None or not full:  # one Gram matrix per distinct mask
                    gram = (rows * w.pow(2).unsqueeze(1)).T @ rows
                    squares = ((unit @ gram) * unit).sum(-1) - 2 * unit @ (rows.T @ (mu_k * w.pow(2))) \
                        + (mu_k * w).pow(2).sum()
                    norms = squares.clamp_min(1e-12).sqrt()
                z = s.encoding[i][keep]
                dots = unit @ (rows.T @ (z * w)) - (mu_k * w * z).sum()
                cos = dots / (norms * z.norm().clamp_min(1e-12))
                score[i] += s.weight * (cos if penalty is None else 2 * cos - penalty)
        chosen = score.argmax(dim=-1)
        vectors = emb[chosen].clone()  # the tokens themselves, as the model embeds them
        loss = matching_loss(vectors, space, encoded).item()
    return _one_step(vectors, loss, on_step, tokens=[words.words[i] for i in chosen.tolist()])


def project_to_vocabulary(target: PromptedLM, vectors: torch.Tensor, config: TransferConfig,
                          allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, list[list[str]]]:
    """Pull searched vectors onto the target's token manifold (nearest token, or a top-n mix), then interpolate.

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
    n = 1 if config.projection == Projection.NEAREST else config.projection_top_n
    values, ids = sims.topk(n, dim=-1)
    weights = torch.softmax(values / 0.05, dim=-1) if n > 1 else torch.ones_like(values)  # sharp: near tokens dominate
    projected = (weights.unsqueeze(-1) * emb[ids]).sum(dim=1).cpu()
    alpha = config.projection_alpha
    out = alpha * projected + (1 - alpha) * vectors
    return out, [[display_token(target, i) for i in row] for row in ids.tolist()]
