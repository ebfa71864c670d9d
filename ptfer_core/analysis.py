"""Helpers for looking at prompts: nearest tokens, norms, relative-space coordinates and 2-D maps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .anchors import AnchorSet, tokenizer_style, word_of_token
from .config import SpaceMode
from .models import PromptedLM
from .space import relative_space


def _unit_embeddings(lm: PromptedLM) -> torch.Tensor:
    return lm.memo.get(("unit_embeddings",), lambda: F.normalize(lm.embedding_matrix, dim=-1))


def display_token(lm: PromptedLM, token_id: int) -> str:
    """A token as a reader would write it: the word for word-initial tokens, else the raw piece."""
    token = lm.vocab[token_id]
    word = word_of_token(token, tokenizer_style(lm.vocab))
    return word if word is not None else token


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


def relative_coordinates(
    lm: PromptedLM,
    vectors: torch.Tensor,
    anchors: AnchorSet,
    n_points: int = 1000,
    mode: SpaceMode | str = SpaceMode.RAW,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Relative encodings (in the run's own space) of the first `n_points` anchors and of the prompt vectors.

    Both models' points are expressed against the same anchor words, so source and target maps are comparable.
    Returns (anchor rows [n, k], prompt rows [m, k], the n anchor words).
    """
    space = relative_space(lm, anchors, mode)
    with torch.no_grad():
        anchor_rel = space.encode(anchors.embeddings(lm)[:n_points].float().cpu())
        prompt_rel = space.encode(vectors.float().cpu())
    return anchor_rel.numpy(), prompt_rel.numpy(), list(anchors.words[:n_points])


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


def project_2d(
    points: np.ndarray, method: str = "pca", seed: int = 0, fit_rows: int | None = None
) -> tuple[np.ndarray, list[float] | None]:
    """2-D map of `points` by PCA (instant) or UMAP (seeded), and (PCA only) the share of variance each axis keeps.

    The projection is fitted on the first `fit_rows` rows (e.g. the anchors only) and applied to all, so prompt
    vectors do not move the map."""
    fit = points[:fit_rows] if fit_rows else points
    if method == "pca":
        mean = fit.mean(0, keepdims=True)
        _, singular, vt = np.linalg.svd(fit - mean, full_matrices=False)
        variance = singular**2
        return (points - mean) @ vt[:2].T, (variance[:2] / max(variance.sum(), 1e-12)).tolist()
    if method == "umap":
        import umap

        reducer = umap.UMAP(
            n_components=2, random_state=seed, n_neighbors=min(15, max(2, len(fit) - 1)), metric="cosine"
        )
        reducer.fit(fit)
        return reducer.transform(points), None
    raise ValueError(f"unknown projection {method!r}; choose pca or umap")


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
