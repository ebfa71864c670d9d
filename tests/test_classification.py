"""Classification tasks (SST-2 here, on a miniature copy): splits, label-word scoring, tuning, transfer, the CLI,
and the bad inputs of the classification issue. The real files' splits are checked when ../shared/data exists."""

from __future__ import annotations

import pytest
import torch

from ptfer_core.errors import DataError, InputError, PTferError
from ptfer_core.evaluation import Prompt, evaluate
from ptfer_core.mini_lama import MINI_WORDS, write_mini_lama
from ptfer_core.runs import TaskData, run
from ptfer_core.settings import TuneConfig, recipe_settings
from ptfer_core.toy_models import tiny_lm
from ptfer_core.toy_sst2 import CLASSIFICATION_WORDS, write_mini_sst2
from ptfer_core.tuning import tune_prompt

WORDS = sorted(set(MINI_WORDS + CLASSIFICATION_WORDS))


@pytest.fixture(scope="module")
def cls_dir(tmp_path_factory):
    return write_mini_sst2(write_mini_lama(tmp_path_factory.mktemp("cls")))


@pytest.fixture(scope="module")
def llama():
    return tiny_lm("llama", WORDS, width=64)


def test_splits_are_deterministic_disjoint_and_balanced(cls_dir):
    data = TaskData.load("sst2", cls_dir)
    again = TaskData.load("sst2", cls_dir)
    ids = {s: [f.uuid for f in facts] for s, facts in data.splits.items()}
    assert ids == {s: [f.uuid for f in facts] for s, facts in again.splits.items()}
    assert not set(ids["train"]) & set(ids["dev"]) and not set(ids["dev"]) & set(ids["test"])
    assert len(ids["train"]) + len(ids["dev"]) == 120 and len(ids["test"]) == 40  # test = GLUE's validation file
    dev_classes = [f.object for f in data.splits["dev"]]
    assert dev_classes.count("negative") == dev_classes.count("positive") == 12  # a fifth of each class
    other_seed = TaskData.load("sst2", cls_dir, split_seed=1)
    assert {f.uuid for f in other_seed.splits["dev"]} != set(ids["dev"])


def test_prediction_is_restricted_to_the_label_words_exactly(cls_dir):
    lm = tiny_lm("gpt2", WORDS)
    data = TaskData.load("sst2", cls_dir)
    candidates = data.candidates(lm)
    assert candidates.words == ("negative", "positive")
    bad, great = (lm.tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in ("bad", "great"))
    assert candidates.token_ids.tolist() == bad + great
    facts = data.splits["test"]
    result = evaluate(lm, Prompt.manual(data.task), facts, candidates)
    # Independent of the project's encoding: a plain forward over "<text> It was", last position, two logits.
    expected = []
    for fact in facts:
        ids = lm.tokenizer(f"{fact.subject} It was", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = lm.model(input_ids=ids).logits[0, -1]
        expected.append(candidates.words[int(logits[candidates.token_ids].argmax())])
    assert [p for p in result.predictions] == expected
    assert result.n_facts == len(facts)
    assert result.p_at_1 == pytest.approx(100 * sum(e == f.object for e, f in zip(expected, facts)) / len(facts))


def test_tuning_learns_a_separable_toy_task(cls_dir, llama):
    data = TaskData.load("sst2", cls_dir)
    candidates = data.candidates(llama)
    train = data.splits["train"]
    manual = evaluate(llama, Prompt.manual(data.task), train, candidates).p_at_1
    prompt = tune_prompt(llama, data.task, train, [], candidates, TuneConfig(epochs=30, lr=0.3, precision="float32"))
    tuned = evaluate(llama, prompt.as_prompt(), train, candidates).p_at_1
    assert tuned >= 75.0 and tuned >= manual + 20, (manual, tuned)  # classes are balanced: chance is 50
    assert prompt.relation == "sst2"


def macro_f1(predicted, facts) -> float:
    """Percent, each class's F1 averaged (a class never predicted nor present counts 0)."""
    scores = []
    for c in ("negative", "positive"):
        tp = sum(p == c and f.object == c for p, f in zip(predicted, facts))
        fp = sum(p == c and f.object != c for p, f in zip(predicted, facts))
        fn = sum(p != c and f.object == c for p, f in zip(predicted, facts))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return 100 * sum(scores) / len(scores)


def test_transfer_and_every_baseline_run_on_a_task(cls_dir, llama):
    data = TaskData.load("sst2", cls_dir)
    source = tiny_lm("gpt2", WORDS, width=64)
    settings = recipe_settings(
        "studio",
        {
            "tune": {"epochs": 2},
            "transfer": {"anchor_source": "frequency", "anchor_filter": "all", "top_k": None},
            "projector": {"hidden": 8, "epochs": 1},
        },
    )
    for method in ("manual", "random", "direct-tuning", "discretization", "projector", "transfer"):
        out = run(method, data=data, target=llama, sources=[source], settings=settings)
        assert out.result.n_facts == 40, method
        assert set(out.result.predictions) <= {"negative", "positive"}
        assert out.result.macro_f1 == pytest.approx(macro_f1(out.result.predictions, data.splits["test"])), method


def test_the_cli_scores_a_task_or_says_which_label_word_a_model_lacks(cls_dir, tmp_path, monkeypatch, capsys):
    from ptfer_core.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PTFER_DATA_DIR", str(cls_dir))
    assert main(["data", "info", "--relation", "sst2"]) == 0
    assert "sst2" in capsys.readouterr().out
    # The built-in toy models know the miniature LAMA's words only: no SST-2 label word.
    assert main(["evaluate", "--model", "tiny:gpt2:32:0", "--relation", "sst2", "--out", "-", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "class 'negative'" in err and "'bad' is not in its vocabulary" in err


# ----------------------------------------------------------------------------- bad input


def test_unknown_task_names_what_exists(cls_dir):
    from ptfer_core.data import get_task

    with pytest.raises(PTferError, match=r"sst3.*sst2|sst2.*sst3"):
        get_task("sst3", cls_dir)


def test_a_label_word_that_is_several_tokens_is_named(cls_dir):
    lm = tiny_lm("gpt2", [w for w in WORDS if w not in ("great", "good")])  # 'great' and 'good' split into pieces
    data = TaskData.load("sst2", cls_dir)
    with pytest.raises(InputError, match=r"class 'positive'.*'great' is not in its vocabulary"):
        data.candidates(lm)


def test_empty_text_and_a_class_missing_from_a_file_are_named(tmp_path):
    root = write_mini_sst2(write_mini_lama(tmp_path / "a"))
    test_file = root / "classification" / "sst2" / "dev.tsv"
    lines = test_file.read_text(encoding="utf-8").splitlines()
    test_file.write_text("\n".join([*lines[:3], "1\t   ", *lines[3:]]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dev.tsv:4: empty text"):
        TaskData.load("sst2", root)
    root = write_mini_sst2(write_mini_lama(tmp_path / "b"))
    test_file = root / "classification" / "sst2" / "dev.tsv"
    test_file.write_text(
        "\n".join(line for line in test_file.read_text(encoding="utf-8").splitlines() if not line.startswith("1")),
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="positive have no examples in its test file"):
        TaskData.load("sst2", root)


def test_a_relation_prompt_is_refused_on_a_task_and_the_reverse(cls_dir, llama):
    data = TaskData.load("sst2", cls_dir)
    relation = TaskData.load("P36", cls_dir)
    settings = recipe_settings("studio", {"tune": {"epochs": 1}})
    p36 = tune_prompt(llama, relation.task, relation.splits["train"], [], relation.candidates(llama))
    with pytest.raises(InputError, match="made for P36, not sst2"):
        run("transfer", data=data, target=llama, sources=[llama], settings=settings, given_prompts=[p36])
    sst2 = tune_prompt(llama, data.task, data.splits["train"][:8], [], data.candidates(llama), TuneConfig(epochs=1))
    with pytest.raises(InputError, match="made for sst2, not P36"):
        run("transfer", data=relation, target=llama, sources=[llama], settings=settings, given_prompts=[sst2])


def test_the_real_files_split_as_documented():
    try:
        data = TaskData.load("sst2")
    except PTferError:
        pytest.skip("the shared SST-2 files are not here")
    assert len(data.splits["test"]) == 872 and len(data.splits["dev"]) == 400
    assert len(data.splits["train"]) + 400 == 67_349
