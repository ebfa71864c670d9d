"""Shared vocabulary, anchor tokens and the relative space.

Tokens are matched across vocabularies by the word they spell at a word start: WordPiece ``word`` (not
``##piece``), byte-level BPE ``Ġword`` (decoded from GPT-2's byte alphabet, so ``Ã©`` is ``é``) and
SentencePiece ``▁word``. Everything is sorted, never taken from set iteration order, so the anchors are the
same in every process whatever ``PYTHONHASHSEED`` is.

Anchor order (frequency proxy): BPE and SentencePiece vocabularies are built most-frequent-first, so a low
id means a frequent token. A word's proxy is its mean id rank among each model's word tokens; the first k
words by (proxy, word) are the anchors.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import torch
import torch.nn.functional as F

from .config import SpaceMode, parse_enum
from .errors import InputError
from .models import PromptedLM

DEFAULT_N_ANCHORS = 8192


class AnchorFilter(str, Enum):
    WORDS = "words"  # alphabetic whole words only (default)
    ALL = "all"  # any word-initial token spelled the same in every vocabulary


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def tokenizer_style(vocab: list[str]) -> str:
    """'bpe' (byte-level Ġ), 'sentencepiece' (▁) or 'wordpiece' (##), by which marker dominates the vocabulary."""
    counts = {
        "bpe": sum(t.startswith("Ġ") for t in vocab if t),
        "sentencepiece": sum(t.startswith("▁") for t in vocab if t),
        "wordpiece": sum(t.startswith("##") for t in vocab if t),
    }
    style = max(sorted(counts), key=lambda s: counts[s])
    return style if counts[style] else "wordpiece"  # no markers at all: plain whole-word vocabulary


def word_of_token(token: str | None, style: str) -> str | None:
    """The word a token spells when it starts a word, or None for continuation pieces and oddities."""
    if not token:
        return None
    if style == "wordpiece":
        word = None if token.startswith("##") else token
    elif style == "sentencepiece":
        word = token[1:] if token.startswith("▁") else None
    else:
        if not token.startswith("Ġ"):
            return None
        decoder = _byte_decoder()
        try:
            word = bytes(decoder[c] for c in token[1:]).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            return None
    if not word or word != word.strip() or any(ch.isspace() for ch in word) or not word.isprintable():
        return None
    return word


def word_index(lm: PromptedLM) -> dict[str, int]:
    """word → id of the model's word-initial token for it (lowest id on ties). Cached per model."""
    key = ("word_index",)
    if key not in lm.cache:
        vocab = lm.vocab
        style = tokenizer_style(vocab)
        specials = lm.special_token_ids
        index: dict[str, int] = {}
        for tid, tok in enumerate(vocab):
            if tid in specials or (tok and tok.startswith("<") and tok.endswith(">")) or (tok and tok.startswith("[") and tok.endswith("]")):
                continue
            word = word_of_token(tok, style)
            if word is not None and word not in index:
                index[word] = tid
        lm.cache[key] = index
    return lm.cache[key]


def shared_vocabulary(lms: list[PromptedLM], word_filter: AnchorFilter | str = AnchorFilter.WORDS) -> list[str]:
    """Words that are a single word-initial token in every model, ordered by the frequency proxy."""
    word_filter = parse_enum(AnchorFilter, word_filter, "anchor filter")
    if not lms:
        raise InputError("shared_vocabulary needs at least one model")
    indexes = [word_index(lm) for lm in lms]
    common = set(indexes[0]).intersection(*indexes[1:])
    if word_filter == AnchorFilter.WORDS:
        common = {w for w in common if w.isalpha()}
    ranks = []
    for index in indexes:
        order = sorted(index, key=index.__getitem__)
        ranks.append({w: r / max(1, len(order)) for r, w in enumerate(order)})
    return sorted(common, key=lambda w: (sum(r[w] for r in ranks) / len(ranks), w))


@dataclass(frozen=True)
class AnchorSet:
    """k anchor words shared by a group of models."""

    words: tuple[str, ...]
    word_filter: str = AnchorFilter.WORDS.value

    def __len__(self) -> int:
        return len(self.words)

    def token_ids(self, lm: PromptedLM) -> torch.Tensor:
        index = word_index(lm)
        missing = [w for w in self.words[:5] if w not in index]
        if missing:
            raise InputError(f"anchor words {missing} are not tokens of {lm.name}; build the anchors with this model included")
        return torch.tensor([index[w] for w in self.words], dtype=torch.long)

    def embeddings(self, lm: PromptedLM) -> torch.Tensor:
        """[k, d] anchor embeddings as the model sees them (float32)."""
        return lm.embedding_matrix.index_select(0, self.token_ids(lm).to(lm.embedding_matrix.device))


def select_anchors(lms: list[PromptedLM], k: int | None = DEFAULT_N_ANCHORS,
                   word_filter: AnchorFilter | str = AnchorFilter.WORDS) -> AnchorSet:
    """The first k shared words (all of them when k is None or larger than the shared vocabulary)."""
    if k is not None and k < 1:
        raise InputError(f"number of anchors must be positive (got {k})")
    shared = shared_vocabulary(lms, word_filter)
    if not shared:
        raise InputError(f"models {[lm.name for lm in lms]} share no vocabulary: no anchors to relate them")
    return AnchorSet(tuple(shared[:k] if k else shared), parse_enum(AnchorFilter, word_filter, "anchor filter").value)


@dataclass(frozen=True)
class RelativeSpace:
    """One model's view of an anchor set: unit anchor rows [k, d], and what to subtract / divide by.

    encode(v)_j = (cos(v − centre, a_j − centre) − mean_j) / std_j, with centre, mean and std optional.
    """

    unit_anchors: torch.Tensor
    centre: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    typical_norm: float = 1.0  # mean |a_j − centre|: how far from the centre this model's tokens lie

    def cosines(self, vectors: torch.Tensor) -> torch.Tensor:
        if self.centre is not None:
            vectors = vectors - self.centre
        return F.normalize(vectors, dim=-1) @ self.unit_anchors.T

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """[..., k] encoding of [..., d] vectors; differentiable."""
        rel = self.cosines(vectors)
        return rel if self.mean is None else (rel - self.mean) / self.std

    def encode_top_k(self, vectors: torch.Tensor, top_k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoding with all but each row's K largest entries zeroed, and the mask of those kept."""
        rel = self.encode(vectors)
        if top_k is None or top_k >= rel.shape[-1]:
            return rel, torch.ones_like(rel, dtype=torch.bool)
        mask = torch.zeros_like(rel, dtype=torch.bool).scatter_(-1, rel.topk(top_k, dim=-1).indices, True)
        return rel * mask, mask


def relative_space(lm: PromptedLM, anchors: AnchorSet, mode: SpaceMode | str = SpaceMode.RAW) -> RelativeSpace:
    """The model's relative space over `anchors` (float32, CPU), cached per model, anchor set and mode."""
    mode = parse_enum(SpaceMode, mode, "relative space")
    key = ("relative_space", hash(anchors.words), len(anchors), mode.value)
    if key not in lm.cache:
        vocabulary_mean = lm.embedding_matrix.float().mean(0).cpu() if mode == SpaceMode.CENTRED else None
        lm.cache[key] = build_space(anchors.embeddings(lm).float().cpu(), mode, vocabulary_mean)
    return lm.cache[key]


def build_space(anchor_embeddings: torch.Tensor, mode: SpaceMode | str = SpaceMode.RAW,
                vocabulary_mean: torch.Tensor | None = None) -> RelativeSpace:
    """A relative space from [k, d] anchor embeddings; `vocabulary_mean` is the centre of the `centred` mode."""
    mode = parse_enum(SpaceMode, mode, "relative space")
    emb = anchor_embeddings
    if mode == SpaceMode.RAW:
        return RelativeSpace(F.normalize(emb, dim=-1), typical_norm=emb.norm(dim=-1).mean().item())
    if mode == SpaceMode.CENTRED:
        if vocabulary_mean is None:
            raise InputError("the centred relative space needs the model's mean token embedding")
        return RelativeSpace(F.normalize(emb - vocabulary_mean, dim=-1), vocabulary_mean,
                             typical_norm=(emb - vocabulary_mean).norm(dim=-1).mean().item())
    centre = emb.mean(0)
    unit = F.normalize(emb - centre, dim=-1)
    # Statistics of each anchor's similarity over the anchor set, in row chunks ([k, k] may be large).
    total, squares = torch.zeros(len(unit), dtype=unit.dtype), torch.zeros(len(unit), dtype=unit.dtype)
    for chunk in unit.split(2048):
        sims = chunk @ unit.T
        total += sims.sum(0)
        squares += sims.pow(2).sum(0)
    mean = total / len(unit)
    std = (squares / len(unit) - mean.pow(2)).clamp_min(1e-12).sqrt()
    return RelativeSpace(unit, centre, mean, std, (emb - centre).norm(dim=-1).mean().item())


def relative_encoding(vectors: torch.Tensor, anchor_embeddings: torch.Tensor, top_k: int | None = None,
                      centre: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine of each vector to each anchor, [m, k], and the mask of the top-K entries kept per vector.

    With `top_k`, all but each row's K largest similarities are zeroed. `centre`, if given, is subtracted from
    vectors and anchors first (an option: centring removes the common offset every embedding shares).
    """
    if vectors.shape[-1] != anchor_embeddings.shape[-1]:
        raise InputError(f"vectors of width {vectors.shape[-1]} cannot be compared with anchors of width "
                         f"{anchor_embeddings.shape[-1]}")
    unit = F.normalize(anchor_embeddings - centre if centre is not None else anchor_embeddings, dim=-1)
    return RelativeSpace(unit, centre).encode_top_k(vectors, top_k)
