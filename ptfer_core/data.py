"""Tasks and their examples: the 41 LAMA T-REx relations and the classification tasks (SST-2, DBpedia).

A `Task` is what a prompt is tuned for. For a relation, an example is a fact (subject, object); for a
classification task, the "subject" is the text and the "object" is the class name, predicted through the class's
label words. Both run through the same tuning, transfer and evaluation code.

LAMA split: duplicate (subject, object) pairs are dropped first (the first in file order is kept, as LAMA and
OptiPrompt do); then each fact goes to train/dev/test by hashing ``f"{seed}:{uuid}"`` with SHA-256 into [0, 1)
and cutting at 0.6 and 0.8. The split depends on nothing but the uuid and the seed: identical across machines,
processes and hash seeds, and stable when facts are added or filtered. Classification splits: `classification.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .config import TaskKind
from .errors import DataError
from .paths import DATA_DIR_ENV
from .paths import data_dir as resolve_data_dir
from .templates import PromptTemplate

SPLIT_RATIOS = {"train": 0.6, "dev": 0.2, "test": 0.2}
SPLITS = tuple(SPLIT_RATIOS)
DEFAULT_SPLIT_SEED = 0
COMMON_VOCABS = {"be_ro_al": "common_vocab_cased_be_ro_al.txt", "lama": "common_vocab_cased.txt"}
DEFAULT_COMMON_VOCAB = "be_ro_al"
_RELATION_ID = re.compile(r"^P\d+$")


@dataclass(frozen=True)
class Fact:
    subject: str  # the input: a LAMA subject, or a classification text
    object: str  # the answer: a LAMA object word, or a class name
    uuid: str


@dataclass(frozen=True)
class Task:
    id: str
    label: str
    template: str  # the manual template, with [X] and [Y]
    type: str  # 1-1, N-1, N-M for relations; "classification"
    description: str = ""
    kind: TaskKind = TaskKind.RELATION
    classes: tuple[str, ...] = ()  # classification: the class names, in label order
    label_words: tuple[tuple[str, ...], ...] = ()  # classification: per class, its words (first = preferred)
    max_input_tokens: int | None = None  # classification: longer texts keep their first N tokens
    sources: tuple[str, ...] = field(default=(), compare=False)  # the files it was read from

    @property
    def prompt_template(self) -> PromptTemplate:
        return PromptTemplate.parse(self.template)

    @property
    def is_classification(self) -> bool:
        return self.kind == TaskKind.CLASSIFICATION


def check_data_dir(data_dir: str | os.PathLike | None) -> Path:
    root = resolve_data_dir(data_dir)
    if not (root / "relations.jsonl").is_file() or not (root / "lama_trex").is_dir():
        raise DataError(
            f"LAMA data not found in {root}: it needs relations.jsonl and lama_trex/P*.jsonl. Put the data there, "
            f"or point to it with --data-dir or ${DATA_DIR_ENV} (see README, 'Data')."
        )
    return root


@contextmanager
def text_file(path: Path, newline: str | None = None):
    """`open(path)` for reading UTF-8 text, whose decoding errors become a DataError naming the file (a
    UnicodeDecodeError traceback, else)."""
    with open(path, encoding="utf-8", newline=newline) as fh:
        try:
            yield fh
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not UTF-8 text ({exc.reason})") from None


def read_text(path: Path) -> str:
    with text_file(path) as fh:
        return fh.read()


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-empty line; a clear DataError for anything that is not a JSON object."""
    rows = []
    with text_file(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno} is a JSON {type(row).__name__}, not an object")
            rows.append((lineno, row))
    return rows


def file_stamp(*paths: Path) -> tuple:
    """(size, mtime) of each path (None when missing): part of every file memo's key, so a file edited in place
    while the process runs (the app) is read again instead of answered from the memo."""
    stamps = []
    for path in paths:
        try:
            st = Path(path).stat()
            stamps.append((st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


@lru_cache(maxsize=8)
def _relations_cached(root: Path, _stamp: tuple) -> dict[str, Task]:
    out = {}
    path = root / "relations.jsonl"
    for lineno, row in read_jsonl(path):
        rid, template = row.get("relation"), row.get("template")
        if not isinstance(rid, str) or not _RELATION_ID.match(rid):
            raise DataError(f"{path}:{lineno}: 'relation' must be an id like P19 (got {rid!r})")
        if not isinstance(template, str):
            raise DataError(f"{path}:{lineno}: relation {rid} has no 'template' text")
        facts_file = root / "lama_trex" / f"{rid}.jsonl"
        if facts_file.is_file():
            try:
                PromptTemplate.parse(template)
            except Exception as exc:
                raise DataError(f"{path}:{lineno}: relation {rid}: {exc}") from None
            out[rid] = Task(
                rid,
                str(row.get("label", "")),
                template,
                str(row.get("type", "")),
                str(row.get("description", "")),
                sources=(str(facts_file),),
            )
    return dict(sorted(out.items(), key=lambda kv: int(kv[0][1:])))


def load_relations(data_dir: str | os.PathLike | None = None) -> dict[str, Task]:
    """The LAMA relations that have both a manual template and facts, ordered by P-number."""
    root = check_data_dir(data_dir).resolve()
    return _relations_cached(root, file_stamp(root / "relations.jsonl"))


def load_tasks(data_dir: str | os.PathLike | None = None) -> dict[str, Task]:
    """Every task: the LAMA relations, then the classification tasks whose data is present."""
    from .classification import classification_tasks

    return {**load_relations(data_dir), **classification_tasks(check_data_dir(data_dir))}


def get_task(task_id: str, data_dir: str | os.PathLike | None = None) -> Task:
    tasks = load_tasks(data_dir)
    if task_id not in tasks:
        relations = [t for t in tasks if _RELATION_ID.match(t)]
        others = [t for t in tasks if not _RELATION_ID.match(t)]
        raise DataError(
            f"unknown relation or task {task_id!r} (relations: {', '.join(relations)}; "
            f"classification tasks: {', '.join(others) or 'none in this data directory'})"
        )
    return tasks[task_id]


@lru_cache(maxsize=64)
def _facts_cached(path: Path, _stamp: tuple) -> tuple[Fact, ...]:
    facts, seen = [], set()
    for lineno, row in read_jsonl(path):
        try:
            subject, obj, uuid = row["sub_label"], row["obj_label"], row["uuid"]
        except KeyError as exc:
            raise DataError(f"{path}:{lineno}: a fact lacks the field {exc.args[0]!r}") from None
        if not all(isinstance(v, str) for v in (subject, obj, uuid)):
            raise DataError(f"{path}:{lineno}: sub_label, obj_label and uuid must be strings")
        # stripped: "Paris " was no candidate (dropped unscored), "Italy " a second copy of "Italy" (scored twice)
        subject, obj = subject.strip(), obj.strip()
        if not subject or not obj:
            raise DataError(f"{path}:{lineno}: fact {uuid} has an empty {'subject' if not subject else 'object'}")
        if (subject, obj) in seen:  # LAMA and OptiPrompt keep distinct (subject, object) pairs only
            continue
        seen.add((subject, obj))
        facts.append(Fact(subject, obj, uuid))
    return tuple(facts)


def load_facts(task_id: str, data_dir: str | os.PathLike | None = None) -> list[Fact]:
    """All examples of a relation (distinct (subject, object) pairs, file order)."""
    task = get_task(task_id, data_dir)
    if task.is_classification:
        from .classification import load_examples

        return load_examples(task, "all", check_data_dir(data_dir))
    path = (check_data_dir(data_dir) / "lama_trex" / f"{task_id}.jsonl").resolve()
    facts = list(_facts_cached(path, file_stamp(path)))
    if not facts:
        raise DataError(f"relation {task_id} has no facts")
    return facts


def split_of(uuid: str, seed: int = DEFAULT_SPLIT_SEED) -> str:
    u = unit_hash(f"{seed}:{uuid}")
    return (
        "train" if u < SPLIT_RATIOS["train"] else "dev" if u < SPLIT_RATIOS["train"] + SPLIT_RATIOS["dev"] else "test"
    )


def unit_hash(text: str) -> float:
    """A number in [0, 1) from SHA-256: the same on every machine and in every process."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def split_facts(facts: list[Fact], seed: int = DEFAULT_SPLIT_SEED) -> dict[str, list[Fact]]:
    out: dict[str, list[Fact]] = {name: [] for name in SPLITS}
    for fact in facts:
        out[split_of(fact.uuid, seed)].append(fact)
    return out


def load_split(task_id: str, split: str, data_dir=None, seed: int = DEFAULT_SPLIT_SEED) -> list[Fact]:
    if split not in SPLITS and split != "all":
        raise DataError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}, all")
    task = get_task(task_id, data_dir)
    if task.is_classification:
        from .classification import load_examples

        return load_examples(task, split, check_data_dir(data_dir), seed)
    facts = load_facts(task_id, data_dir)
    return facts if split == "all" else split_facts(facts, seed)[split]


def load_paraphrases(relation_id: str, data_dir=None) -> list[str]:
    """ParaRel paraphrased templates of a relation (empty when ParaRel has none for it)."""
    path = check_data_dir(data_dir) / "pararel_patterns" / f"{relation_id}.jsonl"
    return [row["pattern"] for _, row in read_jsonl(path) if "pattern" in row] if path.is_file() else []


def load_common_vocab(name: str = DEFAULT_COMMON_VOCAB, data_dir=None) -> list[str]:
    """The common vocabulary's words in file order (the reference's anchors and LAMA's answer candidates)."""
    if name not in COMMON_VOCABS:
        raise DataError(f"unknown common vocabulary {name!r}; choose one of: {', '.join(COMMON_VOCABS)}")
    path = check_data_dir(data_dir) / COMMON_VOCABS[name]
    if not path.is_file():
        raise DataError(f"common vocabulary file {path} is missing")
    return [w.strip() for w in read_text(path).split("\n") if w.strip()]  # be_ro_al lines are indented
