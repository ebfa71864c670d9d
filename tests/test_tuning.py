import pytest
import torch

from ptfer_core.data import Fact, get_relation
from ptfer_core.errors import DataError, InputError
from ptfer_core.evaluation import Prompt, candidates_for, evaluate
from ptfer_core.templates import PromptTemplate
from ptfer_core.testing import MINI_WORDS, tiny_lm
from ptfer_core.tuning import (TuneConfig, initial_vectors, manifold_distance, sample_like_embeddings, template_shape,
                               tune_prompt)

# A learnable relation for a random model: most subjects share one answer.
FACTS = [Fact(f"Person{i}", "French" if i % 5 else "German", f"u{i}") for i in range(24)]


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_tuning_beats_a_random_prompt_on_the_training_set(arch, mini_data_dir):
    lm = tiny_lm(arch, MINI_WORDS)
    cands = candidates_for(lm, data_dir=mini_data_dir)
    relation = get_relation("P103", mini_data_dir)
    tuned = tune_prompt(lm, relation, FACTS, FACTS[:6], cands, TuneConfig(epochs=10, lr=0.05, batch_size=8))
    random_p = Prompt(PromptTemplate.soft(5), sample_like_embeddings(lm, 5, torch.Generator().manual_seed(0)))
    tuned_score = evaluate(lm, tuned.as_prompt(), FACTS, cands).p_at_1
    assert tuned_score > evaluate(lm, random_p, FACTS, cands).p_at_1
    assert tuned_score >= 75.0
    assert tuned.trajectory[-1]["train_loss"] < tuned.trajectory[0]["train_loss"]
    assert tuned.model == lm.name and tuned.relation == "P103" and tuned.provenance["config"]["lr"] == 0.05


def test_tuning_is_deterministic_and_leaves_the_model_alone(mini_data_dir):
    lm = tiny_lm("bert", MINI_WORDS)
    cands = candidates_for(lm, data_dir=mini_data_dir)
    relation = get_relation("P103", mini_data_dir)
    before = [p.clone() for p in lm.model.parameters()]
    config = TuneConfig(epochs=2, seed=3)
    a = tune_prompt(lm, relation, FACTS, FACTS[:4], cands, config)
    b = tune_prompt(lm, relation, FACTS, FACTS[:4], cands, config)
    assert torch.equal(a.vectors, b.vectors)
    assert all(torch.equal(p, q) for p, q in zip(before, lm.model.parameters()))


def test_should_stop_interrupts_tuning_within_one_step(mini_data_dir):
    lm = tiny_lm("gpt2", MINI_WORDS)
    cands = candidates_for(lm, data_dir=mini_data_dir)
    steps = []
    out = tune_prompt(lm, get_relation("P103", mini_data_dir), FACTS, FACTS[:4], cands, TuneConfig(epochs=50, batch_size=2),
                      on_step=lambda s, m: steps.append(s), should_stop=lambda: len(steps) >= 2)
    assert steps == [1, 2] and out.provenance["stopped_early"]


@pytest.mark.parametrize("placement,text", [("prefix", "[V] [V] [X] [Y] ."), ("split", "[V] [X] [V] [Y] .")])
def test_placement_is_recorded_in_the_prompt(placement, text, mini_data_dir):
    lm = tiny_lm("gpt2", MINI_WORDS)
    out = tune_prompt(lm, get_relation("P103", mini_data_dir), FACTS, [], candidates_for(lm, data_dir=mini_data_dir),
                      TuneConfig(n_vectors=2, placement=placement, epochs=1))
    assert out.template == text


def test_manual_initialisation_uses_the_template_words(mini_data_dir):
    lm = tiny_lm("bert", MINI_WORDS)
    relation = get_relation("P36", mini_data_dir)  # "The capital of [X] is [Y] ."
    vectors = initial_vectors(lm, relation, TuneConfig(init="manual", n_vectors=5))
    ids = lm.tokenizer("The capital of is .", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(vectors, lm.embedding_matrix[torch.tensor(ids)])


def test_manifold_penalty_keeps_tuned_vectors_near_tokens(mini_data_dir):
    lm = tiny_lm("gpt2", MINI_WORDS)
    cands = candidates_for(lm, data_dir=mini_data_dir)
    relation = get_relation("P103", mini_data_dir)
    assert manifold_distance(lm.embedding_matrix[:3], lm).max() < 1e-4  # a token is on the manifold
    free, pulled = (tune_prompt(lm, relation, FACTS, [], cands, TuneConfig(epochs=6, lr=0.05, manifold_weight=w))
                    for w in (0.0, 50.0))
    assert manifold_distance(pulled.vectors, lm).mean() < 0.5 * manifold_distance(free.vectors, lm).mean()
    assert pulled.provenance["config"]["manifold_weight"] == 50.0
    with pytest.raises(InputError, match="manifold_weight"):
        TuneConfig(manifold_weight=-1)


def test_template_shaped_prompt_starts_as_the_manual_template(mini_data_dir):
    lm = tiny_lm("gpt2", MINI_WORDS)
    relation = get_relation("P36", mini_data_dir)  # "The capital of [X] is [Y] ."
    before = lm.tokenizer("The capital of", add_special_tokens=False)["input_ids"]
    m, split_at = template_shape(lm, relation)
    assert (m, split_at) == (len(before) + 1, len(before))
    config = TuneConfig(n_vectors=m, placement="split", split_at=split_at, init="manual")
    assert config.template.text == " ".join(["[V]"] * split_at + ["[X]", "[V]", "[Y]", "."])
    ids = lm.tokenizer("The capital of is", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(initial_vectors(lm, relation, config), lm.embedding_matrix[torch.tensor(ids)])
    # placement="template" resolves to exactly that layout when tuning, and starts as the manual prompt.
    shaped = TuneConfig(placement="template", init="manual", epochs=1)
    assert shaped.resolved(lm, relation) == config.__class__(**{**config.__dict__, "epochs": 1})
    with pytest.raises(InputError, match="resolved"):
        shaped.template
    cands = candidates_for(lm, data_dir=mini_data_dir)
    manual = evaluate(lm, Prompt.manual(relation), FACTS, cands)
    start = evaluate(lm, Prompt(config.template, initial_vectors(lm, relation, shaped)), FACTS, cands)
    assert start.predictions == manual.predictions and len(set(manual.predictions)) > 1
    tuned = tune_prompt(lm, relation, FACTS, [], cands, shaped)
    assert tuned.template == config.template.text and tuned.provenance["placement_requested"] == "template"


def test_bad_settings_and_unanswerable_data(mini_data_dir):
    with pytest.raises(InputError, match="placement"):
        TuneConfig(placement="sideways")
    with pytest.raises(InputError, match="learning rate"):
        TuneConfig(lr=0)
    lm = tiny_lm("bert", MINI_WORDS)
    with pytest.raises(DataError, match="single token"):
        tune_prompt(lm, get_relation("P103", mini_data_dir), [Fact("Person1", "Klingon", "z")], [],
                    candidates_for(lm, data_dir=mini_data_dir))
