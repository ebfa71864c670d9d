"""Anchor words: words that every model involved spells as one token, so each model can embed the same anchors.

Two ways to choose them (`AnchorSource`):
- ``common-vocab`` (the reference, `rel2abs_util.py`): the words of the common-vocabulary file in file order that
  are one token with a leading space in every model (``tokenizer(' ' + word)`` is a single known token).
- ``frequency``: every word-initial token spelled the same in every vocabulary, ordered by a frequency proxy. BPE
  and SentencePiece vocabularies are built most-frequent-first, so a low id means a frequent token; a word's proxy
  is its mean id rank among each model's word tokens, and the first k words by (proxy, word) are the anchors.

Tokens are matched across vocabularies by the word they spell at a word start: WordPiece ``word`` (not ``##x``),
byte-level BPE ``Ġword`` (decoded from GPT-2's byte alphabet) and SentencePiece ``▁word``. Everything is sorted,
never taken from set order, so the anchors are the same in every process whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import torch

from .config import AnchorFilter, AnchorSource, parse_enum
from .errors import InputError
from .models import PromptedLM


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
    return style if counts[style] else "wordpiece"  # no markers at all: a plain whole-word vocabulary


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

    def build():
        vocab, specials = lm.vocab, lm.special_token_ids
        style = tokenizer_style(vocab)
        index: dict[str, int] = {}
        for tid, tok in enumerate(vocab):
            if tid in specials or (tok and tok[0] in "<[" and tok[-1] in ">]"):
                continue
            word = word_of_token(tok, style)
            if word is not None and word not in index:
                index[word] = tid
        return index

    return lm.memo.get(("word_index",), build)


def shared_vocabulary(lms: list[PromptedLM], word_filter: AnchorFilter | str = AnchorFilter.WORDS) -> list[str]:
    """Words that are a single word-initial token in every model, most frequent first (the id-rank proxy)."""
    word_filter = parse_enum(AnchorFilter, word_filter, "anchor filter")
    if not lms:
        raise InputError("shared_vocabulary needs at least one model")
    indexes = [word_index(lm) for lm in lms]
    common = sorted(set(indexes[0]).intersection(*indexes[1:]))
    if word_filter == AnchorFilter.WORDS:
        common = [w for w in common if w.isalpha()]
    for lm in lms:  # keep the words the tokenizer itself reads as one token (the canonical spelling)
        common = [w for w, tid in zip(common, lm.word_token_ids(common)) if tid is not None]
    ranks = []
    for index in indexes:
        order = sorted(index, key=index.__getitem__)
        ranks.append({w: r / max(1, len(order)) for r, w in enumerate(order)})
    return sorted(common, key=lambda w: (sum(r[w] for r in ranks) / len(ranks), w))


def common_vocab_words(lms: list[PromptedLM], data_dir=None) -> list[str]:
    """The reference's anchors: common-vocabulary words (file order) that are one token in every model."""
    from .data import load_common_vocab

    words = list(dict.fromkeys(load_common_vocab(data_dir=data_dir)))
    for lm in lms:
        words = [w for w, tid in zip(words, lm.word_token_ids(words)) if tid is not None]
    return words


@dataclass(frozen=True)
class AnchorSet:
    """Anchor words shared by a group of models, in order."""

    words: tuple[str, ...]
    source: str = AnchorSource.FREQUENCY.value

    def __len__(self) -> int:
        return len(self.words)

    @property
    def key(self) -> str:
        return hashlib.sha1("\n".join(self.words).encode()).hexdigest()[:16]

    def token_ids(self, lm: PromptedLM) -> torch.Tensor:
        """Each anchor's token id in `lm`; every word is checked (InputError naming the missing ones)."""
        ids = lm.word_token_ids(list(self.words))
        missing = [w for w, tid in zip(self.words, ids) if tid is None]
        if missing:
            shown = ", ".join(repr(w) for w in missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise InputError(
                f"{len(missing)} anchor word(s) are not single tokens of {lm.name}: {shown}; build the "
                "anchors with this model included"
            )
        return torch.tensor(ids, dtype=torch.long)

    def embeddings(self, lm: PromptedLM) -> torch.Tensor:
        """[k, d] anchor embeddings as the model sees them (float32)."""
        return lm.embedding_matrix.index_select(0, self.token_ids(lm).to(lm.embedding_matrix.device))


def select_anchors(
    lms: list[PromptedLM],
    k: int | None = None,
    source: AnchorSource | str = AnchorSource.FREQUENCY,
    word_filter: AnchorFilter | str = AnchorFilter.WORDS,
    data_dir=None,
) -> AnchorSet:
    """The first k anchors of `source` shared by `lms` (all of them when k is None)."""
    source = parse_enum(AnchorSource, source, "anchor source")
    if k is not None and k < 1:
        raise InputError(f"number of anchors must be positive (got {k})")
    unique = list({id(lm): lm for lm in lms}.values())
    names = tuple(sorted(lm.identity for lm in unique))
    key = ("anchors", source.value, parse_enum(AnchorFilter, word_filter, "anchor filter").value, str(data_dir), names)
    words = unique[0].memo.get(
        key,
        lambda: (
            common_vocab_words(unique, data_dir)
            if source == AnchorSource.COMMON_VOCAB
            else shared_vocabulary(unique, word_filter)
        ),
    )
    if not words:
        raise InputError(f"models {[lm.name for lm in unique]} share no words: no anchors to relate them")
    return AnchorSet(tuple(words[:k] if k else words), source.value)
