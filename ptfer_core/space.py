"""The relative space: a vector described by its similarities to anchor words (Eqs. 3-4 of the paper).

A small composition, fitted per model on that model's anchor embeddings:

    optional centring  →  cosine similarity to each anchor  →  optional standardisation  →  top-K mask

`SpaceMode.RAW` is the paper (no centring, no standardisation); `CENTRED` subtracts the model's mean token
embedding first; `STANDARDISED` centres on the anchors' mean and z-scores each anchor's similarity over the
anchor set. The top-K mask keeps each *source* vector's K largest similarities (signed, as the reference) and the
same entries are compared on the target side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .anchors import AnchorSet
from .config import SpaceMode, parse_enum
from .errors import InputError
from .models import PromptedLM


@dataclass(frozen=True)
class RelativeSpace:
    """One model's fitted view of an anchor set.

    encode(v)_j = (cos(v − centre, a_j − centre) − mean_j) / std_j, each of centre, mean and std optional.
    """

    unit_anchors: torch.Tensor  # [k, d] (anchors − centre), unit rows
    centre: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    typical_norm: float = 1.0  # mean |a_j − centre|: how far from the centre this model's tokens lie

    @classmethod
    def fit(
        cls,
        anchor_embeddings: torch.Tensor,
        mode: SpaceMode | str = SpaceMode.RAW,
        vocabulary_mean: torch.Tensor | None = None,
    ) -> RelativeSpace:
        """Fit on [k, d] anchor embeddings; `vocabulary_mean` is the centre of the `centred` mode."""
        mode = parse_enum(SpaceMode, mode, "relative space")
        emb = anchor_embeddings.float()
        if mode == SpaceMode.RAW:
            return cls(F.normalize(emb, dim=-1), typical_norm=emb.norm(dim=-1).mean().item())
        if mode == SpaceMode.CENTRED:
            if vocabulary_mean is None:
                raise InputError("the centred relative space needs the model's mean token embedding")
            return cls(
                F.normalize(emb - vocabulary_mean, dim=-1),
                vocabulary_mean,
                typical_norm=(emb - vocabulary_mean).norm(dim=-1).mean().item(),
            )
        centre = emb.mean(0)
        unit = F.normalize(emb - centre, dim=-1)
        # Statistics of each anchor's similarity over the anchor set, in row chunks ([k, k] may be large).
        total, squares = torch.zeros(len(unit)), torch.zeros(len(unit))
        for chunk in unit.split(2048):
            sims = chunk @ unit.T
            total += sims.sum(0)
            squares += sims.pow(2).sum(0)
        mean = total / len(unit)
        std = (squares / len(unit) - mean.pow(2)).clamp_min(1e-12).sqrt()
        return cls(unit, centre, mean, std, (emb - centre).norm(dim=-1).mean().item())

    def __len__(self) -> int:
        return self.unit_anchors.shape[0]

    def cosines(self, vectors: torch.Tensor) -> torch.Tensor:
        if self.centre is not None:
            vectors = vectors - self.centre
        return F.normalize(vectors, dim=-1) @ self.unit_anchors.T

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """[..., k] encoding of [..., d] vectors; differentiable."""
        if vectors.shape[-1] != self.unit_anchors.shape[1]:
            raise InputError(
                f"vectors of width {vectors.shape[-1]} cannot be compared with anchors of width "
                f"{self.unit_anchors.shape[1]}"
            )
        rel = self.cosines(vectors)
        return rel if self.mean is None else (rel - self.mean) / self.std

    def implied_cosines(self, encoding: torch.Tensor) -> torch.Tensor:
        """The cosines an encoding stands for: itself, or mean + std · z in a standardised space."""
        return encoding if self.mean is None else self.mean + self.std * encoding

    def encode_top_k(self, vectors: torch.Tensor, top_k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoding with all but each row's K largest entries zeroed, and the mask of those kept."""
        rel = self.encode(vectors)
        if top_k is None or top_k >= rel.shape[-1]:
            return rel, torch.ones_like(rel, dtype=torch.bool)
        mask = torch.zeros_like(rel, dtype=torch.bool).scatter_(-1, rel.topk(top_k, dim=-1).indices, True)
        return rel * mask, mask


def relative_space(lm: PromptedLM, anchors: AnchorSet, mode: SpaceMode | str = SpaceMode.RAW) -> RelativeSpace:
    """The model's relative space over `anchors` (float32, CPU), fitted once per model, anchor set and mode."""
    mode = parse_enum(SpaceMode, mode, "relative space")

    def fit():
        vocabulary_mean = lm.embedding_matrix.float().mean(0).cpu() if mode == SpaceMode.CENTRED else None
        return RelativeSpace.fit(anchors.embeddings(lm).float().cpu(), mode, vocabulary_mean)

    return lm.memo.get(("relative_space", anchors.key, len(anchors), mode.value), fit)
