"""LAMA T-REx relations, facts, templates, common vocabularies and the deterministic train/dev/test split.

Split: each fact goes to train/dev/test by hashing ``f"{seed}:{uuid}"`` with SHA-256 into [0, 1) and cutting
at 0.6 and 0.8 (60/20/20). The split depends on nothing but the uuid and the seed: it is identical across
machines, processes and Python hash seeds, and stable when facts are added or filtered.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import DataError
from .paths import DATA_DIR_ENV, data_dir as resolve_data_dir
from .templates import PromptTemplate

SPLIT_RATIOS = {"train": 0.6, "dev": 0.2, "test": 0.2}
SPLITS = tuple(SPLIT_RATIOS)
DEFAULT_SPLIT_SEED = 0
COMMON_VOCABS = {"be_ro_al": "common_vocab_cased_be_ro_al.txt", "lama": "common_vocab_cased.txt"}
DEFAULT_COMMON_VOCAB = "be_ro_al"


@dataclass(frozen=True)
class Fact:
    subject: str
    object: str
    uuid: str


@dataclass(frozen=True)
class Relation:
    id: str
    label: str
    template: str
    type: str  # 1-1, N-1, N-M
    description: str = ""

    @property
    def prompt_template(self) -> PromptTemplate:
        return PromptTemplate.parse(self.template)


def _checked_dir(data_dir: str | os.PathLike | None) -> Path:
    root = resolve_data_dir(data_dir)
    if not (root / "relations.jsonl").is_file() or not (root / "lama_trex").is_dir():
        raise DataError(
            f"LAMA data not found in {root}: it needs relations.jsonl and lama_trex/P*.jsonl. Put the data there, "
            f"or point to it with --data-dir or ${DATA_DIR_ENV} (see README, 'Data').")
    return root


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno} is not valid JSON ({exc.msg})") from None
    return rows


@lru_cache(maxsize=8)
def _relations_cached(root: Path) -> dict[str, Relation]:
    out = {}
    for row in _read_jsonl(root / "relations.jsonl"):
        if (root / "lama_trex" / f"{row['relation']}.jsonl").is_file():
            out[row["relation"]] = Relation(row["relation"], row.get("label", ""), row["template"], row.get("type", ""),
                                            row.get("description", ""))
    return dict(sorted(out.items(), key=lambda kv: int(kv[0][1:])))


def load_relations(data_dir: str | os.PathLike | None = None) -> dict[str, Relation]:
    """The relations that have both a manual template and facts, ordered by P-number."""
    return _relations_cached(_checked_dir(data_dir).resolve())


def get_relation(relation_id: str, data_dir: str | os.PathLike | None = None) -> Relation:
    relations = load_relations(data_dir)
    if relation_id not in relations:
        raise DataError(f"relation {relation_id!r} is not in the data (known: {', '.join(relations)})")
    return relations[relation_id]


@lru_cache(maxsize=64)
def _facts_cached(path: Path) -> tuple[Fact, ...]:
    facts = []
    for row in _read_jsonl(path):
        try:
            facts.append(Fact(row["sub_label"], row["obj_label"], row["uuid"]))
        except KeyError as exc:
            raise DataError(f"{path}: a fact lacks the field {exc.args[0]!r}") from None
    return tuple(facts)


def load_facts(relation_id: str, data_dir: str | os.PathLike | None = None) -> list[Fact]:
    get_relation(relation_id, data_dir)
    facts = list(_facts_cached((_checked_dir(data_dir) / "lama_trex" / f"{relation_id}.jsonl").resolve()))
    if not facts:
        raise DataError(f"relation {relation_id} has no facts")
    return facts


def split_of(uuid: str, seed: int = DEFAULT_SPLIT_SEED) -> str:
    digest = hashlib.sha256(f"{seed}:{uuid}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "train" if u < SPLIT_RATIOS["train"] else "dev" if u < SPLIT_RATIOS["train"] + SPLIT_RATIOS["dev"] else "test"


def split_facts(facts: list[Fact], seed: int = DEFAULT_SPLIT_SEED) -> dict[str, list[Fact]]:
    out: dict[str, list[Fact]] = {name: [] for name in SPLITS}
    for fact in facts:
        out[split_of(fact.uuid, seed)].append(fact)
    return out


def load_split(relation_id: str, split: str, data_dir=None, seed: int = DEFAULT_SPLIT_SEED) -> list[Fact]:
    if split not in SPLITS and split != "all":
        raise DataError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}, all")
    facts = load_facts(relation_id, data_dir)
    return facts if split == "all" else split_facts(facts, seed)[split]


def load_paraphrases(relation_id: str, data_dir=None) -> list[str]:
    """ParaRel paraphrased templates of a relation (empty when ParaRel has none for it)."""
    path = _checked_dir(data_dir) / "pararel_patterns" / f"{relation_id}.jsonl"
    return [row["pattern"] for row in _read_jsonl(path)] if path.is_file() else []


def load_common_vocab(name: str = DEFAULT_COMMON_VOCAB, data_dir=None) -> list[str]:
    if name not in COMMON_VOCABS:
        raise DataError(f"unknown common vocabulary {name!r}; choose one of: {', '.join(COMMON_VOCABS)}")
    path = _checked_dir(data_dir) / COMMON_VOCABS[name]
    if not path.is_file():
        raise DataError(f"common vocabulary file {path} is missing")
    return [w.strip() for w in path.read_text(encoding="utf-8").split("\n") if w.strip()]  # be_ro_al lines are space-indented
