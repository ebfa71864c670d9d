"""Helpers for looking at prompts: nearest tokens, norms, relative-space coordinates and 2-D maps."""

from __future__ import annotations

import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

from .anchors import AnchorSet, tokenizer_style, word_of_token
from .config import AnchorSource, SpaceMode
from .models import PromptedLM
from .space import relative_space


def _unit_embeddings(lm: PromptedLM) -> torch.Tensor:
    return lm.memo.get(("unit_embeddings",), lambda: F.normalize(lm.embedding_matrix, dim=-1))


def display_token(lm: PromptedLM, token_id: int) -> str:
    """A token as a reader would write it: the word for word-initial tokens, else the raw piece; characters that
    print as nothing (spaces, line breaks, zero-width marks) made visible, so no token shows as a blank."""
    token = lm.vocab[token_id]
    # once per model: the style scans the whole vocabulary (on Gemma's 262k tokens, ~0.2 s a token shown)
    style = lm.memo.get(("tokenizer_style",), lambda: tokenizer_style(lm.vocab))
    word = word_of_token(token, style)
    return visible(word if word is not None else token)


_CONTROL_NAMES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def visible(text: str) -> str:
    """`text` with invisible characters written out: ␣ for a space-like character, \\n for a line break, U+XXXX
    for zero-width and other control characters; the empty string as ⟨empty⟩."""
    if not text:
        return "⟨empty⟩"
    if text.strip() and all(unicodedata.category(c)[0] not in "CZ" or c == " " for c in text):
        return text  # the common case: a word, perhaps with inner spaces
    out = []
    for c in text:
        category = unicodedata.category(c)
        if c in _CONTROL_NAMES:
            out.append(_CONTROL_NAMES[c])
        elif category.startswith("Z"):
            out.append("␣")
        elif category.startswith("C"):
            out.append(f"U+{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def nearest_tokens(lm: PromptedLM, vectors: torch.Tensor, k: int = 10) -> list[list[tuple[str, float]]]:
    """For each vector, the k vocabulary tokens with the highest cosine similarity (skipping special tokens)."""
    sims = F.normalize(vectors.float().to(lm.embedding_matrix.device), dim=-1) @ _unit_embeddings(lm).T
    special = torch.tensor(sorted(lm.special_token_ids), dtype=torch.long, device=sims.device)
    if len(special):
        sims[:, special] = -2.0
    values, ids = sims.topk(min(k, sims.shape[1]), dim=-1)
    return [[(display_token(lm, i), float(v)) for v, i in zip(vs, ix)] for vs, ix in zip(values.tolist(), ids.tolist())]


def norm_table(lm: PromptedLM, vectors: torch.Tensor, sample: int = 20000, seed: int = 0) -> dict:
    """Prompt-vector L2 norms and (a seeded sample of) the vocabulary's norms, for histograms."""
    norms = lm.embedding_matrix.norm(dim=-1)
    if len(norms) > sample:
        norms = norms[torch.randperm(len(norms), generator=torch.Generator().manual_seed(seed))[:sample]]
    return {"prompt_norms": vectors.float().norm(dim=-1).tolist(), "vocab_norms": norms.tolist()}


def shown_anchor_indices(anchors: AnchorSet, n_points: int) -> np.ndarray:
    """Which anchors a map of `n_points` shows: a frequency-ranked set's first n (its most frequent words); a set in
    file order (the common vocabulary, alphabetical) spread evenly over it, not its words from "#" to "Ci…"."""
    k = len(anchors)
    if n_points >= k:
        return np.arange(k)
    if anchors.source == AnchorSource.FREQUENCY.value:
        return np.arange(n_points)
    return np.linspace(0, k - 1, n_points).round().astype(int)  # distinct: the step is at least 1


def anchor_coordinates(
    lm: PromptedLM, anchors: AnchorSet, n_points: int = 1000, mode: SpaceMode | str = SpaceMode.RAW
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Relative encodings (in the run's own space) of the anchors a map of `n_points` shows [n, k], their words and
    their indices in the anchor set (`shown_anchor_indices`).

    Both models' points are expressed against the same anchor words, so source and target maps are comparable."""
    shown = shown_anchor_indices(anchors, n_points)
    return anchor_rows(lm, anchors, shown.tolist(), mode), [anchors.words[i] for i in shown], shown


def anchor_rows(
    lm: PromptedLM, anchors: AnchorSet, indices: list[int], mode: SpaceMode | str = SpaceMode.RAW
) -> np.ndarray:
    """Relative encodings (in the run's own space) of the anchors at `indices` [n, k]."""
    with torch.no_grad():
        return relative_space(lm, anchors, mode).encode(anchors.embeddings(lm)[indices].float().cpu()).numpy()


def prompt_coordinates(
    lm: PromptedLM, vectors: torch.Tensor, anchors: AnchorSet, mode: SpaceMode | str = SpaceMode.RAW
) -> np.ndarray:
    """Relative encodings of prompt vectors against every anchor [m, k], in the same space as the anchors'."""
    with torch.no_grad():
        return relative_space(lm, anchors, mode).encode(vectors.float().cpu()).numpy()


def fingerprints(
    source: PromptedLM,
    source_vectors: torch.Tensor,
    target: PromptedLM,
    target_vectors: torch.Tensor,
    anchors: AnchorSet,
    mode: SpaceMode | str = SpaceMode.RAW,
    top_k: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source prompt's encoding (its top-K kept, the rest zero) and the transferred prompt's encoding on the
    same entries: what the transfer objective compares. Returns (source [m, k], target [m, k], mask [m, k])."""
    with torch.no_grad():
        src, mask = relative_space(source, anchors, mode).encode_top_k(source_vectors.float().cpu(), top_k)
        tgt = relative_space(target, anchors, mode).encode(target_vectors.float().cpu()) * mask
    return src.numpy(), tgt.numpy(), mask.numpy()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r, NaN when either side is constant or too short to have one."""
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 1 and a.std() > 0 and b.std() > 0 else float("nan")


def fingerprint_summary(src: np.ndarray, tgt: np.ndarray, words: list[str], strip: int = 40) -> dict:
    """What a fingerprint shows of encodings [m, k] (`fingerprints`): per vector, the match (cosine) of its two
    encodings, and the `strip` anchors it is most (dis)similar to in the source, with both sides' values and how the
    sides compare over every compared entry (the zeros of a top-K encoding were not compared) and over the strip."""
    vectors = []
    for a, b in zip(src, tgt):
        order = np.argsort(-np.abs(a), kind="stable")[:strip]
        kept = a != 0
        vectors.append(
            {
                "match": float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)),
                "source": a[order],
                "target": b[order],
                "words": [words[i] for i in order],
                "compared": int(kept.sum()),
                "size": float(np.mean(np.abs(b[kept])) / max(float(np.mean(np.abs(a[kept]))), 1e-12))
                if kept.any()
                else float("nan"),
                "r_compared": correlation(a[kept], b[kept]),
                "r_strip": correlation(a[order], b[order]),
            }
        )
    return {"vectors": vectors}


class Map2D:
    """A 2-D map fitted on anchor rows (PCA or seeded UMAP) that places further points without moving the map.

    UMAP places a new point at the weighted centre of its nearest anchors: UMAP's own starting point for new
    points, without the stochastic refinement of `UMAP.transform`, which put a self-transfer's prompt vectors (whose
    relative profiles match the source's to 0.99999) up to a fifth of the map away from the source's."""

    def __init__(self, rows: np.ndarray, method: str = "pca", seed: int = 0):
        self.method = method
        self.explained: list[float] | None = None  # PCA: the share of variance each axis keeps
        if method == "pca":
            self._mean = rows.mean(0, keepdims=True)
            centred = rows - self._mean  # once: 1,000 × 16,923 on a real pair
            self._axes, variance = top_axes(centred, 2)
            total = float(np.square(centred, dtype=np.float64).sum())
            self.explained = (variance / max(total, 1e-12)).tolist()
            self.xy = centred @ self._axes
        elif method == "umap":
            import umap

            self._neighbours = min(15, max(2, len(rows) - 1))
            reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=self._neighbours, metric="euclidean")
            self.xy = reducer.fit_transform(cosine_features(rows))
            self._rows = rows
        else:
            raise ValueError(f"unknown projection {method!r}; choose pca or umap")

    def place(self, points: np.ndarray) -> np.ndarray:
        if self.method == "pca":
            return (points - self._mean) @ self._axes
        return place_by_neighbours(points, self._rows, self.xy, self._neighbours)


UMAP_DIMS = 256  # what UMAP's neighbour search sees of an anchor's similarity row


def cosine_features(rows: np.ndarray, dims: int = UMAP_DIMS) -> np.ndarray:
    """Rows as points whose Euclidean distances give their cosine neighbours: unit length (then distance² = 2 − 2 cos),
    projected on their `dims` principal axes when they are wider. UMAP with the cosine metric on 2,000 of Gemma's
    full rows (16,923 similarities) took 84 s on this CPU; on 256 axes, which keep 93 % of each anchor's 15 cosine
    neighbours, ~10 s (64 axes keep 75 %, 128 84 %; `docs/benchmarks.md`)."""
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    if unit.shape[1] <= dims or len(unit) <= dims:
        return unit.astype(np.float32)
    centred = unit - unit.mean(0, keepdims=True)  # distances do not change with the centre
    axes, _ = top_axes(centred, dims)
    return (centred @ axes).astype(np.float32)


def top_axes(centred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` principal axes of centred rows (as columns) and the variance along each (sum of squares).

    From the top eigenvectors of the smaller of the two Gram matrices, not a full SVD: 1,000 anchor rows of 16,923
    similarities took 14 s to decompose on this CPU (a real pair's first Relative space view). Each axis's sign is
    fixed so that its largest loading is positive, so a map does not flip between runs or libraries."""
    data = centred.astype(np.float64)
    n, d = data.shape
    k = min(k, n, d)
    if n < d:  # rows × rows: axes are the rows combined by the eigenvectors
        values, vectors = top_eigen(data @ data.T, k)
        axes = data.T @ vectors / np.sqrt(np.maximum(values, 1e-12))
    else:
        values, axes = top_eigen(data.T @ data, k)
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(k)])
    axes = axes * np.where(signs == 0, 1.0, signs)
    return axes.astype(centred.dtype), np.maximum(values, 0.0)


def top_eigen(gram: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` largest eigenvalues of a symmetric matrix, largest first, and their eigenvectors (as columns).

    Lanczos (ARPACK) for the few we need: on 1,000 (2,000) of Gemma's anchors a full `eigh` took 0.13 s (0.89 s)
    here, Lanczos 9 ms (36 ms), the same axes to ~1e-15; random data with no clear leading axes takes it 30-100 ms.
    Its start vector is fixed (a map must not change between runs) and random-like: the all-ones vector lies in the
    null space of a centred Gram matrix."""
    size = len(gram)
    if size <= 4 * k + 8 or k > 16:  # ARPACK needs k < size; for many axes the dense solve is faster
        values, vectors = np.linalg.eigh(gram)
        return values[::-1][:k], vectors[:, ::-1][:, :k]
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    start = np.random.default_rng(0).standard_normal(size)
    try:
        values, vectors = eigsh(gram, k=k, which="LA", v0=start)
    except ArpackNoConvergence:
        values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:k]
    return values[order], vectors[:, order]


def place_by_neighbours(points: np.ndarray, rows: np.ndarray, xy: np.ndarray, k: int) -> np.ndarray:
    """2-D positions of `points` from the positions `xy` of the mapped `rows`: the weighted centre of each point's
    k nearest rows by cosine distance (needs k < len(rows)). Deterministic, and close inputs land close."""
    unit = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    distance = 1.0 - unit @ rows.T  # cosine distance, the metric the map was fitted with
    nearest = np.argsort(distance, axis=1, kind="stable")[:, : k + 1]
    d = np.take_along_axis(distance, nearest, axis=1)
    # Weights fall linearly to 0 at the (k+1)-th nearest row, so a row entering or leaving the k nearest carries
    # no weight at that moment: the position moves continuously with the input (exponential UMAP-style weights
    # moved a self-transfer's vector by 2.5 % of the map when one of its 15 neighbours swapped).
    weights = d[:, k:] - d[:, :k]
    weights[weights.sum(1) <= 0] = 1.0  # k+1 equidistant rows: their plain centre
    return (weights[..., None] * xy[nearest[:, :k]]).sum(1) / weights.sum(1, keepdims=True)


def word_match_rate(
    source: PromptedLM,
    target: PromptedLM,
    space: str = "raw",
    n_words: int = 100,
    pool: int = 3000,
    n_anchors: int = 8192,
    seed: int = 0,
    hub_penalty: bool = False,
) -> tuple[float, list[tuple[str, str]]]:
    """How often a shared word's relative encoding in `source` is closest to the same word's encoding in `target`.

    Draws `n_words` (seeded) of the `pool` most frequent shared words that are not anchors (an anchor would find
    itself through its own similarity of 1), transfers their source embeddings with the `vocabulary` solver
    (candidates: every shared word) and counts exact matches. It measures how well the two relative spaces line
    up before any prompt is involved. Returns (rate in [0, 1], [(word, match), ...]).
    """
    from .anchors import select_anchors
    from .artifacts import SoftPrompt
    from .errors import InputError
    from .settings import TransferConfig
    from .templates import PromptTemplate
    from .transfer import transfer_prompt

    shared = select_anchors([source, target])
    candidates = range(n_anchors, min(len(shared), n_anchors + pool))
    if not len(candidates):
        raise InputError(f"the models share {len(shared)} words: none is left to probe beyond {n_anchors} anchors")
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))[:n_words].sort().values
    picks = torch.tensor([candidates[i] for i in order.tolist()])
    words = [shared.words[i] for i in picks.tolist()]
    ids = shared.token_ids(source)[picks]
    probe = SoftPrompt(
        source.embedding_matrix[ids.to(source.embedding_matrix.device)].float().cpu(),
        source.name,
        "probe",
        "probe",
        PromptTemplate.soft(len(words)).text,
    )
    config = TransferConfig(
        solver="vocabulary",
        space=space,
        n_anchors=n_anchors,
        hub_penalty=hub_penalty,
        anchor_source="frequency",
        top_k=None,
    )
    out = transfer_prompt([(probe, source)], target, config)
    pairs = list(zip(words, out.provenance["tokens"]))
    return sum(a == b for a, b in pairs) / len(pairs), pairs
