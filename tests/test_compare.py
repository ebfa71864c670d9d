"""`compare`, the app's *Run transfer*: baseline scores come from the cache or a shipped read-only root (never
recomputed when stored), and the warm-up fills the tables a transfer needs without changing its answers."""

from __future__ import annotations

import shutil

import pytest
from transfer_kit import model_pair, randn, soft

import ptfer_core.compare as compare_module
from ptfer_core.compare import BASELINES, compare_and_wait, warm_up
from ptfer_core.mini_lama import MINI_WORDS
from ptfer_core.model_names import TOY_TRANSFER_OVERRIDES
from ptfer_core.runs import PromptStore, TaskData
from ptfer_core.settings import recipe_settings
from ptfer_core.toy_models import tiny_lm


@pytest.fixture(scope="module")
def setup(mini_data_dir):
    source, target = model_pair()
    data = TaskData.load("P36", mini_data_dir)
    settings = recipe_settings("studio", {"transfer": TOY_TRANSFER_OVERRIDES})
    prompt = soft(source, randn(5, source.width, seed=4), "P36")
    return source, target, data, settings, prompt


def run(setup, tmp_path, **kw):
    source, target, data, settings, prompt = setup
    return compare_and_wait(
        sources=[(source.name, source)],
        target=target,
        data=data,
        settings=settings,
        uploaded={source.name: prompt},
        store=PromptStore(tmp_path / "store"),
        **kw,
    )


@pytest.fixture
def count_evaluations(monkeypatch):
    calls = []
    real = compare_module.evaluate

    def counting(lm, prompt, *args, **kw):
        calls.append(prompt)
        return real(lm, prompt, *args, **kw)

    monkeypatch.setattr(compare_module, "evaluate", counting)
    return calls


def test_stored_baseline_scores_are_read_back_not_recomputed(setup, tmp_path, count_evaluations):
    first = run(setup, tmp_path, cache=tmp_path / "cache")
    assert len(count_evaluations) == 4  # the transferred prompt and the three baselines
    assert len(list((tmp_path / "cache" / "scores").glob("*.json"))) == 3
    again = run(setup, tmp_path, cache=tmp_path / "cache")
    assert len(count_evaluations) == 5  # only the transferred prompt (random and discretised keys hold tuples)
    assert again.scores == first.scores and again.per_fact == first.per_fact

    shipped = tmp_path / "shipped"
    shutil.copytree(tmp_path / "cache", shipped)
    from_shipped = run(setup, tmp_path, cache=tmp_path / "empty", shipped_scores=(shipped,))
    assert len(count_evaluations) == 6 and from_shipped.scores == first.scores
    assert not (tmp_path / "empty" / "scores").exists()  # nothing to write: all three were shipped
    for path in (shipped / "scores").glob("*.json"):  # a shipped score for other facts is not used
        path.write_text(path.read_text(encoding="utf-8").replace('"task": "P36"', '"task": "P17"'), encoding="utf-8")
    run(setup, tmp_path, cache=tmp_path / "empty2", shipped_scores=(shipped,))
    assert len(count_evaluations) == 10


def test_warm_up_fills_the_tables_and_changes_no_answer(setup, tmp_path, mini_data_dir):
    _, _, data, settings, prompt = setup
    cold = run(setup, tmp_path)
    fresh_source, fresh_target = model_pair()
    assert len(fresh_target.memo) == 0
    pauses = []
    warm_up([fresh_source], fresh_target, data, settings, pause=lambda: pauses.append(len(fresh_target.memo)))
    assert len(pauses) == 1 + 1 + len(BASELINES), "a pause before each prompt the warm-up makes"
    assert pauses[0] == 0 and pauses[-1] > 0, "the first pause comes before any work, the later ones between steps"
    filled = len(fresh_target.memo)
    assert filled > 0 and ("embedding_stats",) in fresh_target.memo and ("word_index",) in fresh_target.memo
    warm = run((fresh_source, fresh_target, data, settings, prompt), tmp_path)
    assert warm.scores == cold.scores and warm.per_fact == cold.per_fact
    assert warm.transferred.vectors.equal(cold.transferred.vectors)
    other = tiny_lm("gpt2", MINI_WORDS, width=40, seed=5)
    warm_up([fresh_source, other], fresh_target, data, settings)  # multi-source works too


def test_recovered_template_needs_the_template_words_not_one_answer_everywhere():
    from types import SimpleNamespace

    from ptfer_core.compare import Outcome

    def outcome(rows):
        per_fact = [dict(zip(("transfer", "manual", "discretization"), r)) for r in rows]
        return Outcome([], "t", None, {}, [], SimpleNamespace(method="transfer"), per_fact=per_fact)

    assert outcome([("Paris", "Paris", "Paris"), ("Rome", "Rome", "Rome")]).recovered_template
    assert not outcome([("Paris", "Paris", "Paris"), ("Rome", "Rome", "Oslo")]).recovered_template
    # Three prompts that all say 'positive' (or 'the') on every example agree without sharing any words.
    assert not outcome([("positive",) * 3, ("positive",) * 3]).recovered_template
    assert not outcome([]).recovered_template


def test_a_shortfall_is_explained_only_with_what_its_numbers_support():
    from ptfer_app.results import CLOSE_MATCH, why_transfer_fell_short

    close, rough = CLOSE_MATCH / 10, CLOSE_MATCH * 5
    assert "relative spaces do not line up" in why_transfer_fell_short(["a"], "b", close)
    assert "did not reproduce" in why_transfer_fell_short(["a"], "b", rough)
    assert "did not reproduce" in why_transfer_fell_short(["a"], "b", None)
    assert "mixing in another model" in why_transfer_fell_short(["a", "b"], "b", close)
    alone = why_transfer_fell_short(["b"], "b", close)  # a self-transfer mixes in nothing
    assert "self-transfer" in alone and "another model" not in alone and "do not line up" not in alone
