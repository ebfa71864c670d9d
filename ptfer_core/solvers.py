"""Solvers of the transfer objective: find target vectors whose relative encoding matches the source's.

    loss(V) = 1 − Σ_s w_s · mean_i cos(mask_s ⊙ enc_target(N(V)_i), r_s,i)        (Eq. 5, weighted sources: Eq. 7)

where r_s is source s's top-K-masked encoding and N is the Eq. 6 normalisation onto the target's embedding
distribution. Every solver takes one `Problem` and returns one `Solution`:

- `AdamSearch` (the paper, `rel2abs_GO.py`): Adam from a Xavier-normal start, N inside the loop, kept by the lowest
  loss or by target dev P@1 checked every `dev_every` steps.
- `ClosedForm` (the default): with unit anchor rows A (a source's kept rows) the encoding of u is A û, and
  cos(A u, r) is largest when A u is the projection of r onto A's column space, i.e. u ∝ A⁺ r: one least-squares
  solve per vector, the exact optimum without N. Each vector gets the source vector's relative length, then N.
  N moves the answer slightly off the optimum (cosine ≥ 0.9999 to it), but it keeps the lengths, and lengths are
  what the objective cannot see and the model can: with N relative, self-transfer gives back the source prompt's
  test P@1 within 1 point on 7 relations × 2 real models (benchmarks/recipes.py).
- `Refined`: the closed form, then L-BFGS with N inside the loop, so it reaches the optimum of the normalised
  objective. The directions come back to cosine > 0.999, but meeting N's mean and spread exactly moves the
  vectors' relative lengths, which cost up to 7 points of self-transfer P@1 on the real models.
- `VocabularySolver`: the same objective over real target words (the words all models share).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .config import Normalization, Selection, Solver, parse_enum
from .settings import TransferConfig
from .space import RelativeSpace


@dataclass
class EncodedSource:
    encoding: torch.Tensor  # [m, k], zeros outside the top-K
    mask: torch.Tensor  # [m, k] bool
    weight: float  # normalised over the sources
    norms: torch.Tensor  # [m] lengths of the source vectors (kept relative by the refined solver)


@dataclass(frozen=True)
class Normalizer:
    """Eq. 6: (x − mean(x)) / std(x) · std_T + mean_T, with the statistics taken as `mode` says."""

    mode: Normalization
    mean: float  # the target embedding matrix's mean and std, over all entries
    std: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: [m, d], or [R, m, d] for R restarts (each normalised on its own)."""
        if self.mode == Normalization.NONE:
            return x
        dims = (-1,) if self.mode == Normalization.PER_VECTOR else (-2, -1)  # global and relative: all values
        centred = x - x.mean(dim=dims, keepdim=True)
        spread = centred.pow(2).sum(dim=dims, keepdim=True) / max(1, _count(x, dims) - 1)  # unbiased, as torch.std
        return centred / spread.sqrt().clamp_min(1e-12) * self.std + self.mean


def _count(x: torch.Tensor, dims: tuple[int, ...]) -> int:
    n = 1
    for d in dims:
        n *= x.shape[d]
    return n


def matching_loss(vectors: torch.Tensor, space: RelativeSpace, sources: list[EncodedSource]) -> torch.Tensor:
    """1 − weighted mean over sources and vectors of cos(masked target encoding, source encoding).

    `vectors` is [m, d] (a scalar loss) or [R, m, d] for R restarts searched together (one loss per restart).
    """
    rel = space.encode(vectors)
    return 1.0 - sum(s.weight * F.cosine_similarity(rel * s.mask, s.encoding, dim=-1).mean(dim=-1) for s in sources)


@dataclass
class Problem:
    space: RelativeSpace  # the target's
    sources: list[EncodedSource]
    n_vectors: int
    width: int
    normalizer: Normalizer
    config: TransferConfig
    dev_score: Callable[[torch.Tensor], float] | None = None  # target dev P@1 of vectors (selection=dev only)
    candidates: tuple[list[str], torch.Tensor] | None = None  # vocabulary solver: (words, target embeddings [n, d])
    penalties: list[torch.Tensor | None] | None = None  # vocabulary solver: CSLS terms per source
    on_step: Callable | None = None
    should_stop: Callable[[], bool] | None = None

    def report(self, step: int, row: dict, total: int) -> None:
        if self.on_step:
            self.on_step(step, {**row, "total_steps": total})

    def stopping(self) -> bool:
        return bool(self.should_stop and self.should_stop())


@dataclass
class Solution:
    vectors: torch.Tensor  # [m, d] the answer, normalised
    loss: float
    step: int  # the step it was taken at
    trajectory: list[dict] = field(default_factory=list)
    stopped: bool = False  # cancelled through should_stop
    dev_p_at_1: float | None = None
    tokens: list[str] | None = None  # vocabulary solver: the words chosen
    unnormalised: torch.Tensor | None = None  # the solver's vectors before N (for diagnostics)
    by_loss: Solution | None = None  # selection=dev: the same search's lowest-loss answer (reused for loss selection)


class AdamSearch:
    """The paper's search: Adam from seeded Xavier-normal starts, N inside the loop, no early stop by default."""

    def solve(self, p: Problem) -> Solution:
        c = p.config
        gen = torch.Generator().manual_seed(c.seed)
        shape = (c.restarts, p.n_vectors, p.width)
        std = (2.0 / (p.n_vectors + p.width)) ** 0.5 if c.search_init.value == "xavier" else 1.0
        raw = torch.nn.Parameter(torch.randn(shape, generator=gen) * std)
        optimizer = torch.optim.Adam([raw], lr=c.lr)
        best = Solution(torch.empty(0), float("inf"), 0)
        lowest_seen = Solution(torch.empty(0), float("inf"), 0)  # tracked in dev mode too: the zero-shot answer
        trajectory: list[dict] = []
        lowest, since_improved = float("inf"), 0
        for step in range(1, c.steps + 1):
            if p.stopping():
                best.stopped = True
                break
            vectors = p.normalizer(raw)
            losses = matching_loss(vectors, p.space, p.sources)
            leader = int(losses.argmin())
            value = losses[leader].item()
            row = {"step": step, "loss": value}
            # Scores belong to the vectors before this step's update, as in the reference.
            if value < lowest_seen.loss:
                lowest_seen = Solution(
                    vectors[leader].detach().clone(), value, step, unnormalised=raw[leader].detach().clone()
                )
            if c.selection == Selection.LOSS:
                best = lowest_seen
            elif step % c.dev_every == 0:
                row["dev_p_at_1"] = p.dev_score(vectors[leader].detach())
                if best.dev_p_at_1 is None or row["dev_p_at_1"] > best.dev_p_at_1:
                    best = Solution(
                        vectors[leader].detach().clone(),
                        value,
                        step,
                        dev_p_at_1=row["dev_p_at_1"],
                        unnormalised=raw[leader].detach().clone(),
                    )
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            trajectory.append(row)
            p.report(step, row, c.steps)
            since_improved = 0 if value < lowest - c.min_delta else since_improved + 1
            lowest = min(lowest, value)
            if c.patience is not None and since_improved >= c.patience:
                break
        if not len(best.vectors):  # stopped before the first scored step: the current vectors
            with torch.no_grad():
                vectors = p.normalizer(raw.detach()[0])
                best = Solution(
                    vectors,
                    matching_loss(vectors, p.space, p.sources).item(),
                    len(trajectory),
                    stopped=best.stopped,
                    unnormalised=raw.detach()[0].clone(),
                )
        best.trajectory = trajectory
        if c.selection == Selection.DEV and len(lowest_seen.vectors):
            lowest_seen.trajectory, lowest_seen.stopped = trajectory, best.stopped
            best.by_loss = lowest_seen
        return best


def closed_form_directions(p: Problem) -> torch.Tensor:
    """Per vector, the unit direction u (relative to the space's centre) minimising the summed squared errors
    against each source's unit-norm encoding over its kept anchors (weighted): exact for one source."""
    anchors64 = p.space.unit_anchors.double()
    wanted = [p.space.implied_cosines(s.encoding).double() for s in p.sources]
    if len(p.sources) == 1 and bool(p.sources[0].mask.all()):  # the common case: one solve, m right-hand sides
        solutions = torch.linalg.lstsq(anchors64, wanted[0].T, driver="gelsd").solution.T
    else:
        rows_out = []
        for i in range(p.n_vectors):
            rows, rhs = [], []
            for s, b in zip(p.sources, wanted):
                keep = s.mask[i]
                scale = s.weight**0.5 / b[i][keep].norm().clamp_min(1e-12).item()
                rows.append(anchors64[keep] * scale)
                rhs.append(b[i][keep] * scale)
            rows_out.append(
                torch.linalg.lstsq(torch.cat(rows), torch.cat(rhs).unsqueeze(-1), driver="gelsd").solution.squeeze(-1)
            )
        solutions = torch.stack(rows_out)
    return F.normalize(solutions.float(), dim=-1)


def relative_lengths(sources: list[EncodedSource]) -> torch.Tensor:
    """[m] the source vectors' lengths over their mean (weighted over sources): what N leaves free to choose."""
    return sum(s.weight * s.norms / s.norms.mean().clamp_min(1e-12) for s in sources)


def _place(p: Problem, directions: torch.Tensor) -> torch.Tensor:
    """Vectors along `directions` (from the space's centre), as long as the target's tokens times each source
    vector's relative length."""
    lengths = relative_lengths(p.sources).unsqueeze(-1) * p.space.typical_norm
    return directions * lengths + (p.space.centre if p.space.centre is not None else 0.0)


def _one_step(p: Problem, vectors: torch.Tensor, unnormalised: torch.Tensor | None = None, **extra) -> Solution:
    with torch.no_grad():
        loss = matching_loss(vectors, p.space, p.sources).item()
    row = {"step": 1, "loss": loss}
    p.report(1, row, 1)
    return Solution(vectors, loss, 1, [row], unnormalised=unnormalised, **extra)


class ClosedForm:
    """The unnormalised optimum in closed form, then N (one step; milliseconds)."""

    def solve(self, p: Problem) -> Solution:
        placed = _place(p, closed_form_directions(p))
        return _one_step(p, p.normalizer(placed), placed)


class Refined:
    """The closed form, then L-BFGS on the normalised objective from there: the exact optimum with N in the loop.

    Only the directions move: each vector keeps the length `_place` gave it (the source vector's relative length),
    since the objective cannot see lengths and an optimiser left free would wander along them. It runs in float64
    (the last digits decide whether every vector comes back to cosine 0.999) and stops when 20 more iterations
    improve the loss by less than a thousandth of itself."""

    chunk = 20  # L-BFGS iterations between progress reports and cancel checks

    def solve(self, p: Problem) -> Solution:
        directions = closed_form_directions(p)
        start = _place(p, directions)
        if p.normalizer.mode == Normalization.NONE:
            return _one_step(p, start, start)
        built = exact_normalised(p, directions)
        if built is not None:  # the closed form's directions, at lengths that N leaves unchanged: no search needed
            return _one_step(p, p.normalizer(built).float(), built.float())
        exact = _in_float64(p)
        centre = p.space.centre.double() if p.space.centre is not None else 0.0
        offset = start.double() - centre
        lengths = offset.norm(dim=-1, keepdim=True)
        u = torch.nn.Parameter(offset / lengths)

        def vectors_of(direction):
            return F.normalize(direction, dim=-1) * lengths + centre

        optimizer = torch.optim.LBFGS(
            [u],
            lr=1.0,
            max_iter=self.chunk,
            history_size=20,
            tolerance_grad=1e-10,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = matching_loss(p.normalizer(vectors_of(u)), exact.space, exact.sources)
            loss.backward()
            return loss

        with torch.no_grad():
            previous = matching_loss(p.normalizer(vectors_of(u)), exact.space, exact.sources).item()
        trajectory = [{"step": 0, "loss": previous}]
        steps, stopped = 0, False
        while steps < p.config.steps:
            if p.stopping():
                stopped = True
                break
            optimizer.step(closure)
            steps += self.chunk
            with torch.no_grad():
                value = matching_loss(p.normalizer(vectors_of(u)), exact.space, exact.sources).item()
            trajectory.append({"step": steps, "loss": value})
            p.report(steps, trajectory[-1], p.config.steps)
            if previous - value <= max(1e-3 * previous, 1e-14):
                break
            previous = value
        with torch.no_grad():
            found = vectors_of(u.detach())
            vectors = p.normalizer(found).float()
            loss = matching_loss(vectors, p.space, p.sources).item()
        return Solution(vectors, loss, steps, trajectory, stopped, unnormalised=found.float())


def exact_normalised(p: Problem, directions: torch.Tensor, tolerance: float = 1e-4) -> torch.Tensor | None:
    """Vectors along `directions` (from the space's centre) whose values already have N's target mean and spread,
    so N returns them unchanged and the normalised objective equals the unnormalised one, whose optimum the closed
    form is. Lengths k = s·ρ + t·S stay as close as possible to the source's relative lengths ρ (S: each direction's
    sum of components, the only way lengths move the mean); s and t solve one linear and one quadratic equation.
    None when no positive lengths fit (then the caller refines iteratively)."""
    if p.normalizer.mode == Normalization.PER_VECTOR or len(p.sources) != 1:
        return None
    d = directions.double()
    m, width = d.shape
    n = m * width
    centre = p.space.centre.double() if p.space.centre is not None else torch.zeros(width, dtype=torch.float64)
    rho = relative_lengths(p.sources).double()
    big_s, g = d.sum(-1), d @ centre  # per vector: sum of components, and the centre's projection
    mean_t, std_t = p.normalizer.mean, p.normalizer.std
    # mean:  m·Σc + Σ k_i S_i = n·μ          second moment:  m‖c‖² + 2 Σ k_i g_i + Σ k_i² = (n − 1)σ² + n·μ²
    linear_rhs = n * mean_t - m * centre.sum().item()
    quad_rhs = (n - 1) * std_t**2 + n * mean_t**2 - m * centre.pow(2).sum().item()
    a_, b_ = float(rho @ big_s), float(big_s @ big_s)
    if b_ < 1e-12:
        return None
    # t = (linear_rhs − s·a_)/b_ ;  k = s·(ρ − S·a_/b_) + S·linear_rhs/b_ = s·u + v
    u, v = rho - big_s * a_ / b_, big_s * linear_rhs / b_
    qa, qb, qc = float(u @ u), float(2 * (u @ v) + 2 * (u @ g)), float(v @ v + 2 * (v @ g)) - quad_rhs
    disc = qb * qb - 4 * qa * qc
    if qa < 1e-12 or disc < 0:
        return None
    k = (-qb + disc**0.5) / (2 * qa) * u + v
    if bool((k <= 0).any()):
        return None
    vectors = centre + k.unsqueeze(-1) * d
    with torch.no_grad():
        loss = matching_loss(p.normalizer(vectors).float(), p.space, p.sources).item()
    return vectors if loss <= tolerance else None


@dataclass
class _Exact:
    space: RelativeSpace
    sources: list[EncodedSource]


def _in_float64(p: Problem) -> _Exact:
    space = p.space
    double = RelativeSpace(
        space.unit_anchors.double(),
        *(None if t is None else t.double() for t in (space.centre, space.mean, space.std)),
        space.typical_norm,
    )
    sources = [EncodedSource(s.encoding.double(), s.mask, s.weight, s.norms.double()) for s in p.sources]
    return _Exact(double, sources)


class VocabularySolver:
    """Per vector, the candidate word w maximising Σ_s w_s · cos(encoding of e_w under s's mask, r_s) (or CSLS:
    2·cos − penalty). Encodings of every word ([V, k]) are never built: with unit (centred) ê and the encoding
    (A ê − μ)/σ on the kept rows M, its dot with z is ê·A_Mᵀ(z/σ) − Σ μz/σ and its squared norm is
    êGê − 2ê·h + c with G = A_Mᵀ diag(1/σ²) A_M, h = A_Mᵀ(μ/σ²), c = Σ μ²/σ²."""

    def solve(self, p: Problem) -> Solution:
        words, emb = p.candidates
        space = p.space
        unit = F.normalize(emb - space.centre if space.centre is not None else emb, dim=-1)
        k = space.unit_anchors.shape[0]
        inv_std = 1.0 / space.std if space.std is not None else torch.ones(k)
        mu = space.mean if space.mean is not None else torch.zeros(k)
        score = torch.zeros(p.n_vectors, len(words))
        with torch.no_grad():
            for s, penalty in zip(p.sources, p.penalties or [None] * len(p.sources)):
                full = bool(s.mask.all())
                norms = None
                for i in range(p.n_vectors):
                    keep = s.mask[i]
                    rows, w, mu_k = space.unit_anchors[keep], inv_std[keep], mu[keep]
                    if norms is None or not full:  # one Gram matrix per distinct mask
                        gram = (rows * w.pow(2).unsqueeze(1)).T @ rows
                        squares = (
                            ((unit @ gram) * unit).sum(-1)
                            - 2 * unit @ (rows.T @ (mu_k * w.pow(2)))
                            + (mu_k * w).pow(2).sum()
                        )
                        norms = squares.clamp_min(1e-12).sqrt()
                    z = s.encoding[i][keep]
                    dots = unit @ (rows.T @ (z * w)) - (mu_k * w * z).sum()
                    cos = dots / (norms * z.norm().clamp_min(1e-12))
                    score[i] += s.weight * (cos if penalty is None else 2 * cos - penalty)
            chosen = score.argmax(dim=-1)
        return _one_step(p, emb[chosen].clone(), tokens=[words[i] for i in chosen.tolist()])


SOLVERS = {
    Solver.ADAM: AdamSearch(),
    Solver.LSTSQ: ClosedForm(),
    Solver.REFINED: Refined(),
    Solver.VOCABULARY: VocabularySolver(),
}


def solve(problem: Problem) -> Solution:
    return SOLVERS[parse_enum(Solver, problem.config.solver, "solver")].solve(problem)
