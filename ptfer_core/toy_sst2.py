"""A miniature SST-2 for the tests and the toy models: short sentences whose class one word gives away (so a tuned
prompt can learn it), in GLUE's file layout. `CLASSIFICATION_WORDS` are the words a toy tokenizer needs for it."""

from __future__ import annotations

_POSITIVE = ["great", "good", "lovely", "fun", "moving"]
_NEGATIVE = ["bad", "terrible", "dull", "awful", "boring"]
_FILLER = ["film", "story", "plot", "cast", "ending", "really", "so", "quite"]
CLASSIFICATION_WORDS = sorted(set(_POSITIVE + _NEGATIVE + _FILLER + ["It", "was", "."]))


def mini_sentences(n: int, seed: int) -> list[tuple[int, str]]:
    """(label, sentence) pairs: a filler word, a sentiment word and another filler, classes alternating, so the
    class is readable from one word (separable) but never from position alone."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        word = rng.choice(_POSITIVE if label else _NEGATIVE)
        a, b = rng.choice(_FILLER), rng.choice(_FILLER)
        rows.append((label, f"{a} {word} {b}" if rng.random() < 0.5 else f"{word} {a} {b}"))
    return rows


def write_mini_sst2(root, n_train: int = 120, n_test: int = 40):
    """Add `classification/sst2/{train,dev}.tsv` (GLUE's layout: header, label TAB sentence) under `root`."""
    from pathlib import Path

    folder = Path(root) / "classification" / "sst2"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.tsv", mini_sentences(n_train, 0)), ("dev.tsv", mini_sentences(n_test, 1))):
        lines = ["label\tsentence", *(f"{label}\t{text}" for label, text in rows)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(root)
