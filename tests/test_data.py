"""LAMA data loading, the deterministic train/dev/test split, and every way the data can be missing or broken."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ptfer_core.data import (
    SPLITS,
    Fact,
    get_task,
    load_common_vocab,
    load_facts,
    load_paraphrases,
    load_relations,
    load_split,
    split_facts,
    split_of,
)
from ptfer_core.errors import DataError, PTferError
from ptfer_core.mini_lama import write_mini_lama
from ptfer_core.paths import DATA_DIR_ENV

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def fresh_data(tmp_path):
    """A private copy of the mini LAMA (the loaders cache by path, so tests that break files need their own)."""
    return write_mini_lama(tmp_path / "lama")


def synthetic_facts(n: int, prefix: str = "f") -> list[Fact]:
    return [Fact(f"subject {i}", f"object {i % 7}", f"{prefix}-{i:05d}") for i in range(n)]


# ----------------------------------------------------------------------------- the split


def test_split_is_disjoint_and_complete(mini_data_dir):
    for rid in load_relations(mini_data_dir):
        facts = load_facts(rid, mini_data_dir)
        parts = split_facts(facts)
        assert set(parts) == set(SPLITS)
        uuids = [{f.uuid for f in parts[name]} for name in SPLITS]
        assert sum(len(u) for u in uuids) == len(facts)
        assert set().union(*uuids) == {f.uuid for f in facts}
        for i in range(3):
            for j in range(i + 1, 3):
                assert not uuids[i] & uuids[j]


def test_split_proportions_are_60_20_20():
    parts = split_facts(synthetic_facts(6000))
    shares = {name: len(v) / 6000 for name, v in parts.items()}
    assert shares["train"] == pytest.approx(0.6, abs=0.03)
    assert shares["dev"] == pytest.approx(0.2, abs=0.03)
    assert shares["test"] == pytest.approx(0.2, abs=0.03)


def test_split_is_pinned():
    """The split is part of every reported number: a change of algorithm must show up here."""
    assert split_of("6a9d91c1-eb9b-4142-8371-3c063ec40700") == "dev"
    assert split_of("9f747ed9-2ead-46d2-8914-80bce0d09335") == "train"
    assert [split_of(f"p17-{i}") for i in range(6)] == ["train", "train", "test", "train", "dev", "dev"]
    assert [split_of(f"p17-{i}", seed=1) for i in range(3)] == ["train", "test", "train"]


def test_split_depends_only_on_uuid_and_seed(mini_data_dir):
    facts = load_facts("P17", mini_data_dir)
    full = split_facts(facts)
    shuffled = facts[:]
    random.Random(3).shuffle(shuffled)
    subset = shuffled[: len(facts) // 2]
    part = split_facts(subset)
    for name in SPLITS:
        assert {f.uuid for f in split_facts(shuffled)[name]} == {f.uuid for f in full[name]}
        assert {f.uuid for f in part[name]} == {f.uuid for f in full[name]} & {f.uuid for f in subset}
    # Another seed is another split, still a partition.
    other = split_facts(synthetic_facts(500), seed=7)
    base = split_facts(synthetic_facts(500))
    assert [f.uuid for f in other["test"]] != [f.uuid for f in base["test"]]
    assert sum(len(v) for v in other.values()) == 500


def test_split_is_identical_in_another_process_with_another_hash_seed():
    uuids = [f"u-{i}" for i in range(200)]
    code = (
        "import json,sys; from ptfer_core.data import split_of; "
        "print(json.dumps([split_of(u) for u in json.loads(sys.argv[1])]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(uuids)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert json.loads(out.stdout) == [split_of(u) for u in uuids]


def test_load_split_returns_the_split_and_all(mini_data_dir):
    facts = load_facts("P103", mini_data_dir)
    assert load_split("P103", "all", mini_data_dir) == facts
    parts = split_facts(facts)
    for name in SPLITS:
        assert load_split("P103", name, mini_data_dir) == parts[name]
    with pytest.raises(DataError, match="unknown split 'validation'"):
        load_split("P103", "validation", mini_data_dir)


# ----------------------------------------------------------------------------- loading


def test_relations_facts_and_paraphrases(mini_data_dir):
    relations = load_relations(mini_data_dir)
    assert list(relations) == ["P17", "P36", "P103"]  # ordered by P-number, not by file order or text
    p36 = get_task("P36", mini_data_dir)
    assert p36.template == "The capital of [X] is [Y] ." and p36.type == "1-1"
    assert p36.prompt_template.n_soft == 0
    facts = load_facts("P36", mini_data_dir)
    assert facts[0] == Fact("France", "Paris", "p36-0") and len(facts) == 8
    assert load_paraphrases("P17", mini_data_dir) == ["[X] is in [Y]."]
    assert load_paraphrases("P36", mini_data_dir) == []


def test_relation_without_facts_file_is_not_listed(fresh_data):
    (fresh_data / "lama_trex" / "P36.jsonl").unlink()
    assert "P36" not in load_relations(fresh_data)


def test_data_dir_from_environment(mini_data_dir, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(mini_data_dir))
    assert list(load_relations()) == ["P17", "P36", "P103"]


def test_missing_data_dir_says_how_to_point_to_it(tmp_path):
    with pytest.raises(DataError, match="--data-dir") as info:
        load_relations(tmp_path / "nowhere")
    assert DATA_DIR_ENV in str(info.value) and isinstance(info.value, PTferError)


def test_data_dir_without_relations_file(fresh_data):
    (fresh_data / "relations.jsonl").unlink()
    with pytest.raises(DataError, match=r"relations\.jsonl"):
        load_relations(fresh_data)


def test_unknown_relation_is_named(mini_data_dir):
    with pytest.raises(DataError, match="unknown relation or task 'P999'") as info:
        get_task("P999", mini_data_dir)
    assert "P17" in str(info.value)  # lists the known ones
    with pytest.raises(DataError, match="P999"):
        load_split("P999", "test", mini_data_dir)


def test_corrupt_jsonl_line_is_located(fresh_data):
    path = fresh_data / "lama_trex" / "P17.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = '{"sub_label": "Town2", "obj_label": '
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"P17.jsonl:3 is not valid JSON"):
        load_facts("P17", fresh_data)


def test_fact_missing_a_field(fresh_data):
    path = fresh_data / "lama_trex" / "P36.jsonl"
    path.write_text(json.dumps({"sub_label": "France", "uuid": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="lacks the field 'obj_label'"):
        load_facts("P36", fresh_data)


def test_relation_with_empty_facts_file(fresh_data):
    (fresh_data / "lama_trex" / "P36.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="P36 has no facts"):
        load_facts("P36", fresh_data)


def test_common_vocab_lines_are_stripped(fresh_data):
    # The real be_ro_al file indents its words; a candidate " Paris" would never match an object "Paris".
    (fresh_data / "common_vocab_cased_be_ro_al.txt").write_text("  Paris\n Rome \n\n\tBerlin\n", encoding="utf-8")
    assert load_common_vocab("be_ro_al", fresh_data) == ["Paris", "Rome", "Berlin"]


def test_common_vocab_errors(fresh_data):
    with pytest.raises(DataError, match="unknown common vocabulary 'bert'"):
        load_common_vocab("bert", fresh_data)
    (fresh_data / "common_vocab_cased.txt").unlink()
    with pytest.raises(DataError, match=r"common_vocab_cased\.txt is missing"):
        load_common_vocab("lama", fresh_data)


@pytest.mark.skipif(not (SHARED_DATA / "relations.jsonl").is_file(), reason="shared LAMA data not present")
def test_shared_lama_data_and_its_split():
    relations = load_relations(SHARED_DATA)
    assert len(relations) == 41
    counts = {name: 0 for name in SPLITS}
    total = 0
    for rid in relations:
        facts = load_facts(rid, SHARED_DATA)
        total += len(facts)
        for name, part in split_facts(facts).items():
            counts[name] += len(part)
    assert total == 29411 - 17  # 17 repeated (subject, object) pairs are dropped before splitting
    assert counts == {"train": 17599, "dev": 5952, "test": 5843}
    vocab = load_common_vocab("be_ro_al", SHARED_DATA)
    assert all(w == w.strip() and w for w in vocab) and "Paris" in vocab


def test_repeated_subject_object_pairs_are_dropped_before_the_split(tmp_path):
    root = write_mini_lama(tmp_path)
    path = root / "lama_trex" / "P36.jsonl"
    rows = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(rows[0])
    rows.append(json.dumps({**first, "uuid": "another-uuid"}))  # the same fact under a new id
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    facts = load_facts("P36", root)
    assert len(facts) == len(rows) - 1
    assert [f.uuid for f in facts if f.subject == first["sub_label"]] == [first["uuid"]]  # the first one is kept
