"""Classification tasks: SST-2 and DBpedia-14, the paper's Table 6 (Appendix B.2).

A text is the "subject" of the manual template and its class is predicted through the class's label word: the
model's logits are compared only at the label words (one per class), as in the paper. Label words follow Sun et
al. (2022, BBT): SST-2 "bad"/"great"; DBpedia "Artist", "Company", "Office", ... Each class may list fallback words:
per model, a class is scored by its first word that is a single token of that model (after a space); a class with
no such word is an error naming the class and the model.

Splits (deterministic, documented in the README):
- SST-2: the test split is GLUE's 872 validation sentences (its test labels are not public; LM-BFF and BBT do the
  same). Dev is 200 sentences per class taken from the training file in SHA-256 order of ``seed:uuid``; train is
  the rest of the training file in that same order, so a training cap takes a random sample.
- DBpedia (a 5,000 + 5,000 subset, not the full test set): dev is 20 texts per class from its training file, train
  the rest, test its test file.
Texts longer than `max_input_tokens` keep their first tokens; the template itself is never cut.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .config import TaskKind
from .data import Fact, Task, file_stamp, read_text, text_file, unit_hash
from .errors import DataError


@dataclass(frozen=True)
class ClassificationSource:
    id: str
    label: str
    template: str
    folder: str
    dev_per_class: int
    max_input_tokens: int


SST2 = ClassificationSource("sst2", "SST-2 sentiment", "[X] It was [Y] .", "sst2", 200, 96)
DBPEDIA = ClassificationSource("dbpedia", "DBpedia-14 topic", "[X] Category: [Y] .", "dbpedia", 20, 128)

SST2_CLASSES = ("negative", "positive")
SST2_WORDS = (("bad", "terrible"), ("great", "good"))
DBPEDIA_WORDS = {  # BBT's verbalizer, lower-case forms as fallbacks
    "Artist": ("Artist", "artist"),
    "Company": ("Company", "company"),
    "OfficeHolder": ("Office", "office"),
    "Building": ("Building", "building"),
    "Village": ("Village", "village"),
    "Plant": ("Plant", "plant"),
    "EducationalInstitution": ("Education", "education"),
    "Animal": ("Animal", "animal"),
    "Album": ("Album", "album"),
    "WrittenWork": ("Written", "written"),
    "NaturalPlace": ("Natural", "natural"),
    "MeanOfTransportation": ("Transportation", "transport"),
    "Athlete": ("Athlete", "athlete"),
    "Film": ("Film", "film"),
}
_CLASS_LINE = re.compile(r"^\s*(\d+)\s*:\s*(\S.*?)\s*$")


TASK_FILES = {  # each task's folder and the files it needs, all of them
    SST2.id: (SST2.folder, ("train.tsv", "dev.tsv")),
    DBPEDIA.id: (DBPEDIA.folder, ("classes.txt", "train.csv", "test.csv")),
}


def missing_files(root: Path, task_id: str) -> list[str]:
    """The files of a classification task that are not under `root/classification/<its folder>`."""
    folder, names = TASK_FILES[task_id]
    return [n for n in names if not (root / "classification" / folder / n).is_file()]


def incomplete_tasks(root: Path) -> list[str]:
    """A line for each classification folder that is there but lacks a file, so it is no task (`data info`)."""
    lines = []
    for task_id, (folder, _) in TASK_FILES.items():
        missing = missing_files(root, task_id)
        if (root / "classification" / folder).is_dir() and missing:
            lines.append(
                f"{task_id}: {root / 'classification' / folder} lacks {', '.join(missing)}, so it is not a task"
            )
    return lines


def classification_tasks(root: Path) -> dict[str, Task]:
    """The classification tasks whose files are present under `root/classification`."""
    base = root / "classification"
    tasks = {}
    if not missing_files(root, SST2.id):
        tasks[SST2.id] = Task(
            SST2.id,
            SST2.label,
            SST2.template,
            "classification",
            "binary sentiment of movie-review sentences",
            TaskKind.CLASSIFICATION,
            SST2_CLASSES,
            SST2_WORDS,
            SST2.max_input_tokens,
        )
    classes_file = base / DBPEDIA.folder / "classes.txt"
    # all three files, as SST-2 needs both of its own: without test.csv `data info` ended in a traceback
    if not missing_files(root, DBPEDIA.id):
        classes = _dbpedia_classes(classes_file)
        unknown = [c for c in classes if c not in DBPEDIA_WORDS]
        if unknown:
            raise DataError(f"{classes_file}: no label words for class(es) {', '.join(unknown)}")
        tasks[DBPEDIA.id] = Task(
            DBPEDIA.id,
            DBPEDIA.label,
            DBPEDIA.template,
            "classification",
            "14-way ontology class of a Wikipedia abstract",
            TaskKind.CLASSIFICATION,
            classes,
            tuple(DBPEDIA_WORDS[c] for c in classes),
            DBPEDIA.max_input_tokens,
        )
    return tasks


def _dbpedia_classes(path: Path) -> tuple[str, ...]:
    pairs = [(int(m.group(1)), m.group(2)) for m in map(_CLASS_LINE.match, read_text(path).splitlines()) if m]
    if not pairs or sorted(i for i, _ in pairs) != list(range(1, len(pairs) + 1)):
        raise DataError(f"{path}: expected lines 'N: ClassName' numbered from 1")
    return tuple(name for _, name in sorted(pairs))


def load_examples(task: Task, split: str, root: Path, seed: int = 0) -> list[Fact]:
    """The examples of one split ("train", "dev", "test" or "all") as facts (text, class name, uuid)."""
    source = {SST2.id: SST2, DBPEDIA.id: DBPEDIA}[task.id]
    files = _read_files(task, root)
    if split == "test":
        return list(files["test"])
    if split == "all":
        return list(files["train"]) + list(files["test"])
    order = sorted(files["train"], key=lambda f: unit_hash(f"{seed}:{f.uuid}"))
    per_class = Counter(f.object for f in order)
    # At most a fifth of a class goes to dev, so a small training file keeps examples to tune on (the real files
    # hold far more than five times dev_per_class per class: their splits are unaffected).
    quota = {c: min(source.dev_per_class, max(1, per_class[c] // 5)) for c in task.classes}
    dev, taken = [], {c: 0 for c in task.classes}
    for fact in order:
        if taken[fact.object] < quota[fact.object]:
            taken[fact.object] += 1
            dev.append(fact)
    short = [c for c, n in taken.items() if n == 0]
    if short:
        raise DataError(f"task {task.id}: class(es) {', '.join(short)} have no examples in the dev split")
    if split == "dev":
        return dev
    dev_ids = {f.uuid for f in dev}
    return [f for f in order if f.uuid not in dev_ids]


@lru_cache(maxsize=4)
def _read_cached(task_id: str, root: Path, classes: tuple[str, ...], _stamp: tuple) -> dict[str, tuple[Fact, ...]]:
    base = root / "classification"
    if task_id == SST2.id:
        train = _read_tsv(base / SST2.folder / "train.tsv", task_id, "train", classes)
        test = _read_tsv(base / SST2.folder / "dev.tsv", task_id, "test", classes)
    else:
        train = _read_csv(base / DBPEDIA.folder / "train.csv", task_id, "train", classes)
        test = _read_csv(base / DBPEDIA.folder / "test.csv", task_id, "test", classes)
    for name, facts in (("train", train), ("test", test)):
        missing = sorted(set(classes) - {f.object for f in facts})
        if missing:
            raise DataError(f"task {task_id}: class(es) {', '.join(missing)} have no examples in its {name} file")
    return {"train": tuple(train), "test": tuple(test)}


def _read_files(task: Task, root: Path) -> dict[str, tuple[Fact, ...]]:
    base = root.resolve() / "classification"
    files = [base / SST2.folder / n for n in ("train.tsv", "dev.tsv")] + [
        base / DBPEDIA.folder / n for n in ("train.csv", "test.csv")
    ]
    return _read_cached(task.id, root.resolve(), task.classes, file_stamp(*files))


def _example(
    path: Path, lineno: int, label: str, text: str, task_id: str, part: str, classes: tuple[str, ...], one_based: bool
) -> Fact:
    try:
        index = int(label) - (1 if one_based else 0)
    except ValueError:
        raise DataError(f"{path}:{lineno}: label {label!r} is not a class number") from None
    if not 0 <= index < len(classes):
        raise DataError(f"{path}:{lineno}: label {label!r} is outside the {len(classes)} classes")
    if not text.strip():
        raise DataError(f"{path}:{lineno}: empty text")
    return Fact(text.strip(), classes[index], f"{task_id}-{part}-{lineno}")


def _read_tsv(path: Path, task_id: str, part: str, classes) -> list[Fact]:
    rows = []
    with text_file(path) as fh:
        for lineno, line in enumerate(fh, 1):
            label, _, text = line.rstrip("\n").partition("\t")
            # a header (label, sentence/content) is skipped; a file without one lost its first example
            if not line.strip() or (lineno == 1 and not label.strip().isdigit()):
                continue
            rows.append(_example(path, lineno, label, text, task_id, part, classes, one_based=False))
    return rows


def _read_csv(path: Path, task_id: str, part: str, classes) -> list[Fact]:
    rows = []
    with text_file(path, newline="") as fh:
        for lineno, record in enumerate(csv.reader(fh), 1):
            if not record:
                continue
            if len(record) < 2:
                raise DataError(f"{path}:{lineno}: expected a class id and a text")
            rows.append(_example(path, lineno, record[0], " ".join(record[1:]), task_id, part, classes, one_based=True))
    return rows
