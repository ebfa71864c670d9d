"""A miniature LAMA: a few countries, capitals and languages, written as a data directory the engine reads like the
real one. The toy models are trained on it; the app's demo reads it. Torch-free, so the demo's first page needs no
torch.
"""

from __future__ import annotations

import json
from pathlib import Path

MINI_RELATIONS = [
    {"relation": "P17", "template": "[X] is located in [Y] .", "label": "country", "type": "N-1"},
    {"relation": "P36", "template": "The capital of [X] is [Y] .", "label": "capital", "type": "1-1"},
    {"relation": "P103", "template": "The native language of [X] is [Y] .", "label": "native language", "type": "N-1"},
]
_COUNTRIES = ["France", "Germany", "Italy", "Spain", "Japan", "Canada", "Brazil", "Egypt"]
_CAPITALS = ["Paris", "Berlin", "Rome", "Madrid", "Tokyo", "Ottawa", "Brasilia", "Cairo"]
_LANGUAGES = ["French", "German", "Italian", "Spanish", "Japanese", "English", "Portuguese", "Arabic"]
_PLACES = [f"Town{i}" for i in range(60)]
_PEOPLE = [f"Person{i}" for i in range(60)]


def mini_facts() -> dict[str, list[dict]]:
    facts = {
        "P17": [{"sub_label": p, "obj_label": _COUNTRIES[i % 8], "uuid": f"p17-{i}"} for i, p in enumerate(_PLACES)],
        "P36": [
            {"sub_label": c, "obj_label": cap, "uuid": f"p36-{i}"}
            for i, (c, cap) in enumerate(zip(_COUNTRIES, _CAPITALS))
        ],
        "P103": [{"sub_label": p, "obj_label": _LANGUAGES[i % 8], "uuid": f"p103-{i}"} for i, p in enumerate(_PEOPLE)],
    }
    facts["P17"].append(
        {"sub_label": "Atlantis", "obj_label": "Unobtainium", "uuid": "p17-x"}
    )  # object outside the vocab
    return facts


MINI_WORDS = sorted(
    set(
        _COUNTRIES
        + _CAPITALS
        + _LANGUAGES
        + _PLACES
        + _PEOPLE
        + ["Atlantis"]
        + [
            "The",
            "capital",
            "of",
            "is",
            "located",
            "in",
            "native",
            "language",
            ".",
            "the",
            "a",
            "and",
            "has",
            "speaks",
            "lies",
            "city",
            "country",
        ]
    )
)
# What trained toy models read: each fact in two phrasings that are *not* the manual template, so the manual
# template works only as far as the model generalises, and a tuned prompt has something to find.
TRAINING_TEMPLATES = {
    "P17": ["[X] lies in [Y] .", "the country of [X] is [Y] ."],
    "P36": ["[X] has the capital [Y] .", "the capital city of [X] is [Y] ."],
    "P103": ["[X] speaks [Y] .", "the language of [X] is [Y] ."],
}


def write_mini_lama(root):
    """Write a LAMA-shaped data directory (3 relations, ~56 facts) and return its path."""

    root = Path(root)
    (root / "lama_trex").mkdir(parents=True, exist_ok=True)
    (root / "pararel_patterns").mkdir(exist_ok=True)
    (root / "relations.jsonl").write_text("\n".join(json.dumps(r) for r in MINI_RELATIONS) + "\n", encoding="utf-8")
    for rid, rows in mini_facts().items():
        (root / "lama_trex" / f"{rid}.jsonl").write_text(
            "\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8"
        )
    (root / "pararel_patterns" / "P17.jsonl").write_text(
        json.dumps({"pattern": "[X] is in [Y]."}) + "\n", encoding="utf-8"
    )
    vocab = sorted(set(_COUNTRIES + _CAPITALS + _LANGUAGES + ["Unobtainium"]))
    (root / "common_vocab_cased_be_ro_al.txt").write_text("\n".join(vocab), encoding="utf-8")
    (root / "common_vocab_cased.txt").write_text("\n".join(vocab), encoding="utf-8")
    return root
