import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from ptfer_core.anchors import build_space, relative_encoding, select_anchors, shared_vocabulary, word_of_token
from ptfer_core.artifacts import SoftPrompt
from ptfer_core.baselines import direct_transfer, discretize, projector_prompt, random_prompt, run_method
from ptfer_core.data import Fact, get_relation
from ptfer_core.errors import DimensionMismatchError, InputError
from ptfer_core.evaluation import Prompt, candidates_for, evaluate
from ptfer_core.templates import PromptTemplate
from ptfer_core.testing import MINI_WORDS, tiny_lm
from ptfer_core.transfer import TransferConfig, normalize_to, target_statistics, transfer_prompt


@pytest.fixture(scope="module")
def pair():
    return tiny_lm("bert", MINI_WORDS, width=32, seed=1), tiny_lm("llama", MINI_WORDS, width=48, seed=2)


def soft(lm, vectors, relation="P17"):
    return SoftPrompt(vectors, lm.name, relation, "tuned", PromptTemplate.soft(len(vectors)).text)


def test_relative_encoding_is_rotation_invariant():
    gen = torch.Generator().manual_seed(0)
    vectors, anchors = torch.randn(5, 16, generator=gen, dtype=torch.float64), torch.randn(40, 16, generator=gen, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen, dtype=torch.float64))
    plain, _ = relative_encoding(vectors, anchors)
    rotated, _ = relative_encoding(vectors @ q, anchors @ q)
    torch.testing.assert_close(rotated, plain, rtol=0, atol=1e-12)
    assert not torch.allclose(relative_encoding(vectors @ q, anchors)[0], plain)  # rotating one side alone changes it


def test_top_k_keeps_the_largest_entries():
    rel, mask = relative_encoding(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]), top_k=2)
    assert mask.tolist() == [[True, False, True, False]]
    assert rel[0, 1] == 0 and rel[0, 3] == 0 and rel[0, 0] == pytest.approx(1.0)


def test_shared_vocabulary_matches_wordpiece_bpe_and_sentencepiece():
    lms = [tiny_lm(arch, MINI_WORDS) for arch in ("bert", "roberta", "llama")]
    shared = shared_vocabulary(lms, "all")
    assert {"Paris", "France", "capital"} <= set(shared)
    assert not any(w.startswith(("Ġ", "▁", "##", "[")) for w in shared)
    assert "Town1" not in shared_vocabulary(lms, "words")  # not alphabetic


def test_byte_level_tokens_are_decoded():
    assert word_of_token("ĠcafÃ©", "bpe") == "café"
    assert word_of_token("caf", "bpe") is None  # word-internal piece
    assert word_of_token("##ing", "wordpiece") is None
    assert word_of_token("▁Paris", "sentencepiece") == "Paris"


def test_anchor_set_is_independent_of_python_hash_seed():
    code = ("from ptfer_core.testing import tiny_lm, MINI_WORDS; from ptfer_core.anchors import select_anchors;"
            "import json; print(json.dumps(select_anchors([tiny_lm('bert', MINI_WORDS), tiny_lm('gpt2', MINI_WORDS)], k=20, word_filter='all').words))")
    outputs = []
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 20


def test_self_transfer_recovers_the_vectors(pair):
    lm = pair[0]
    source = torch.randn(3, lm.width, generator=torch.Generator().manual_seed(3))
    out = transfer_prompt([(soft(lm, source), lm)], lm,
                          TransferConfig(n_anchors=None, anchor_filter="all", normalize=False, steps=1500, lr=0.05, patience=None))
    assert F.cosine_similarity(out.vectors, source).min() > 0.99
    assert out.metrics["matching_loss"] < 1e-3


def test_normalised_vectors_have_target_statistics(pair):
    src, tgt = pair
    out = transfer_prompt([(soft(src, torch.randn(4, src.width)), src)], tgt, TransferConfig(anchor_filter="all", steps=50))
    mean, std = target_statistics(tgt)
    torch.testing.assert_close(out.vectors.mean(-1), torch.full((4,), mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.vectors.std(-1), torch.full((4,), std), atol=1e-5, rtol=1e-4)
    assert out.width == tgt.width and out.model == tgt.name


def test_normalize_to_formula():
    v = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    out = normalize_to(v, mean=0.5, std=2.0)
    expected = (v - v.mean()) / v.std() * 2.0 + 0.5
    torch.testing.assert_close(out, expected)


def test_two_identical_sources_equal_one(pair):
    src, tgt = pair
    prompt = soft(src, torch.randn(3, src.width, generator=torch.Generator().manual_seed(5)))
    config = TransferConfig(anchor_filter="all", steps=200, patience=None)
    single = transfer_prompt([(prompt, src)], tgt, config)
    double = transfer_prompt([(prompt, src), (prompt, src)], tgt, config)
    torch.testing.assert_close(double.vectors, single.vectors, atol=1e-6, rtol=1e-5)
    assert len(double.provenance["sources"]) == 2


def test_multi_source_weights_move_the_result(pair):
    src, tgt = pair
    a = soft(src, torch.randn(3, src.width, generator=torch.Generator().manual_seed(6)))
    b = soft(src, torch.randn(3, src.width, generator=torch.Generator().manual_seed(7)))
    config = TransferConfig(anchor_filter="all", steps=300, patience=None)
    only_a = transfer_prompt([(a, src)], tgt, config)
    mostly_a = transfer_prompt([(a, src), (b, src)], tgt, config, weights=[1.0, 0.0])
    torch.testing.assert_close(mostly_a.vectors, only_a.vectors, atol=1e-6, rtol=1e-5)
    with pytest.raises(InputError, match="weight"):
        transfer_prompt([(a, src), (b, src)], tgt, config, weights=[1.0])


def test_transfer_is_deterministic_under_a_seed(pair):
    src, tgt = pair
    prompt = soft(src, torch.randn(2, src.width))
    config = TransferConfig(anchor_filter="all", steps=100, seed=11)
    assert torch.equal(transfer_prompt([(prompt, src)], tgt, config).vectors, transfer_prompt([(prompt, src)], tgt, config).vectors)


def test_restarts_keep_the_lowest_matching_loss(pair):
    src, tgt = pair
    prompt = soft(src, torch.randn(3, src.width, generator=torch.Generator().manual_seed(8)))
    base = dict(anchor_filter="all", steps=40, patience=None, seed=4)
    one, four = (transfer_prompt([(prompt, src)], tgt, TransferConfig(restarts=r, **base)) for r in (1, 4))
    # The first restart is the single run itself (same seeded draw, independent updates), so four can only be better.
    assert four.metrics["matching_loss"] <= one.metrics["matching_loss"] + 1e-6
    assert four.vectors.shape == one.vectors.shape == (3, tgt.width)
    assert four.provenance["config"]["restarts"] == 4
    with pytest.raises(InputError, match="restarts"):
        TransferConfig(restarts=0)


def test_should_stop_interrupts_within_one_step(pair):
    src, tgt = pair
    steps = []
    out = transfer_prompt([(soft(src, torch.randn(2, src.width)), src)], tgt, TransferConfig(anchor_filter="all", steps=1000),
                          on_step=lambda s, m: steps.append(s), should_stop=lambda: len(steps) >= 3)
    assert steps == [1, 2, 3]
    assert out.provenance["stopped_early"] and out.provenance["steps_run"] == 3


def test_dev_selection_records_dev_accuracy(pair, mini_data_dir):
    src, tgt = pair
    cands = candidates_for(tgt, data_dir=mini_data_dir)
    dev = [Fact("France", "Paris", "a"), Fact("Italy", "Rome", "b")]
    out = transfer_prompt([(soft(src, torch.randn(2, src.width)), src)], tgt,
                          TransferConfig(anchor_filter="all", steps=120, selection="dev", dev_every=50, patience=None),
                          dev=dev, candidates=cands)
    evaluated = [row["step"] for row in out.trajectory if "dev_p_at_1" in row]
    assert evaluated == [1, 50, 100]
    assert "dev_p_at_1" in out.metrics
    with pytest.raises(InputError, match="dev"):
        transfer_prompt([(soft(src, torch.randn(2, src.width)), src)], tgt, TransferConfig(selection="dev"))


def test_direct_transfer_refuses_mismatched_widths(pair):
    src, tgt = pair
    with pytest.raises(DimensionMismatchError, match="32.*48"):
        direct_transfer(soft(src, torch.randn(2, src.width)), tgt)
    same = direct_transfer(soft(src, torch.randn(2, src.width)), src)
    assert same.method == "direct-transfer"


def test_discretisation_recovers_exact_token_embeddings(pair):
    src, tgt = pair
    words = ["Paris", "capital", "France"]
    anchors = select_anchors([src, tgt], k=None, word_filter="all")
    ids = torch.tensor([anchors.words.index(w) for w in words])
    vectors = anchors.embeddings(src)[ids] * 3.0  # scale does not change the cosine neighbour
    prompt, tokens = discretize(soft(src, vectors), src, tgt, anchors)
    assert tokens == words
    torch.testing.assert_close(prompt.vectors, anchors.embeddings(tgt)[ids])


def test_projector_and_random_baselines_have_target_shape(pair, mini_data_dir):
    src, tgt = pair
    from ptfer_core.baselines import ProjectorConfig

    cands = candidates_for(tgt, data_dir=mini_data_dir)
    prompt = soft(src, torch.randn(3, src.width))
    proj = projector_prompt(prompt, src, tgt, [Fact("France", "Paris", "a")], cands, ProjectorConfig(hidden=16, epochs=2))
    assert proj.vectors.shape == (3, tgt.width) and proj.provenance["selected_epoch"] in (0, 1)
    rnd = random_prompt(tgt, prompt.template, "P17", seed=1)
    assert rnd.vectors.shape == (3, tgt.width)
    assert torch.equal(rnd.vectors, random_prompt(tgt, prompt.template, "P17", seed=1).vectors)


def test_run_method_covers_every_method(pair, mini_data_dir):
    src, tgt = pair
    relation = get_relation("P36", mini_data_dir)
    cands = candidates_for(tgt, data_dir=mini_data_dir)
    facts = [Fact("France", "Paris", "a"), Fact("Italy", "Rome", "b"), Fact("Spain", "Madrid", "c")]
    source = (soft(src, torch.randn(3, src.width), "P36"), src)
    from ptfer_core.transfer import TransferConfig as TC
    from ptfer_core.tuning import TuneConfig

    for method in ("manual", "random", "direct-tuning", "discretization", "projector", "transfer"):
        prompt = run_method(method, target=tgt, relation=relation, sources=[source], train=facts, dev=facts,
                            candidates=cands, tune_config=TuneConfig(epochs=1, n_vectors=3),
                            transfer_config=TC(anchor_filter="all", steps=20))
        as_prompt = prompt if isinstance(prompt, Prompt) else prompt.as_prompt()
        assert evaluate(tgt, as_prompt, facts, cands).n_facts == 3, method
    with pytest.raises(DimensionMismatchError):
        run_method("direct-transfer", target=tgt, relation=relation, sources=[source])
    with pytest.raises(InputError, match="needs a source"):
        run_method("transfer", target=tgt, relation=relation)
    with pytest.raises(InputError, match="unknown method"):
        run_method("telepathy", target=tgt, relation=relation)


def test_projection_onto_target_tokens(pair):
    src, tgt = pair
    prompt = soft(src, torch.randn(3, src.width, generator=torch.Generator().manual_seed(8)))
    base = dict(anchor_filter="all", steps=60, patience=None)
    plain = transfer_prompt([(prompt, src)], tgt, TransferConfig(**base))
    snapped = transfer_prompt([(prompt, src)], tgt, TransferConfig(**base, projection="nearest"))
    # Every snapped vector is exactly some target token's embedding: the one nearest to the searched vector.
    nearest = (F.normalize(plain.vectors, dim=-1) @ F.normalize(tgt.embedding_matrix, dim=-1).T)
    nearest[:, sorted(tgt.special_token_ids)] = -2
    torch.testing.assert_close(snapped.vectors, tgt.embedding_matrix[nearest.argmax(-1)])
    assert len(snapped.provenance["projected_to"]) == 3
    untouched = transfer_prompt([(prompt, src)], tgt, TransferConfig(**base, projection="mix", projection_alpha=0.0))
    torch.testing.assert_close(untouched.vectors, plain.vectors)
    with pytest.raises(InputError, match="projection_alpha"):
        TransferConfig(projection_alpha=1.5)


def test_projection_onto_shared_words_only(pair):
    from ptfer_core.anchors import word_index

    src, tgt = pair
    prompt = soft(src, torch.randn(4, src.width, generator=torch.Generator().manual_seed(9)))
    config = TransferConfig(anchor_filter="words", steps=40, patience=None, projection="nearest", project_to_shared=True)
    snapped = transfer_prompt([(prompt, src)], tgt, config)
    shared = select_anchors([src, tgt], None, "words")
    shared_rows = tgt.embedding_matrix[shared.token_ids(tgt)]
    for vector, (word,) in zip(snapped.vectors, snapped.provenance["projected_to"]):
        assert word in shared.words  # a word both models know, never a target-only token
        assert torch.equal(vector, tgt.embedding_matrix[word_index(tgt)[word]])
        assert (shared_rows == vector).all(-1).any()


def test_lstsq_self_transfer_recovers_the_vectors_exactly(pair):
    lm = pair[1]
    source = torch.randn(4, lm.width, generator=torch.Generator().manual_seed(5))
    out = transfer_prompt([(soft(lm, source), lm)], lm,
                          TransferConfig(n_anchors=None, anchor_filter="all", normalize=False, solver="lstsq"))
    assert F.cosine_similarity(out.vectors, source).min() > 0.9999
    assert out.metrics["matching_loss"] < 1e-6
    assert out.provenance["steps_run"] == 1 and out.provenance["config"]["solver"] == "lstsq"


def test_lstsq_is_the_optimum_that_adam_approaches(pair):
    source_lm, target = pair
    source = soft(source_lm, torch.randn(3, source_lm.width, generator=torch.Generator().manual_seed(6)))
    common = dict(n_anchors=None, anchor_filter="all", normalize=False)
    closed = transfer_prompt([(source, source_lm)], target, TransferConfig(solver="lstsq", **common))
    searched = transfer_prompt([(source, source_lm)], target, TransferConfig(steps=1500, lr=0.05, patience=None, **common))
    # Across models the match is not perfect, and no search does better than the closed form.
    assert 0 < closed.metrics["matching_loss"] <= searched.metrics["matching_loss"] + 1e-5
    assert F.cosine_similarity(closed.vectors, searched.vectors).min() > 0.99


def test_lstsq_respects_top_k_and_normalisation(pair):
    source_lm, target = pair
    source = soft(source_lm, torch.randn(3, source_lm.width, generator=torch.Generator().manual_seed(7)))
    out = transfer_prompt([(source, source_lm)], target,
                          TransferConfig(n_anchors=None, anchor_filter="all", top_k=20, solver="lstsq"))
    mean, std = target_statistics(target)
    torch.testing.assert_close(out.vectors.mean(-1), torch.full((3,), mean), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.vectors.std(-1), torch.full((3,), std), atol=1e-4, rtol=1e-4)
    # Two identical sources (the per-vector path) give the single-source answer.
    twice = transfer_prompt([(source, source_lm), (source, source_lm)], target,
                            TransferConfig(n_anchors=None, anchor_filter="all", top_k=20, solver="lstsq"))
    torch.testing.assert_close(twice.vectors, out.vectors, atol=1e-4, rtol=1e-4)


def test_lstsq_refuses_dev_selection():
    with pytest.raises(InputError, match="lstsq"):
        TransferConfig(solver="lstsq", selection="dev")
    with pytest.raises(InputError, match="solver"):
        TransferConfig(solver="newton")


@pytest.mark.parametrize("space,hubs", [("raw", False), ("standardised", False), ("standardised", True)])
def test_vocabulary_solver_picks_the_tokens_a_source_spells(pair, space, hubs):
    source_lm, target = pair
    anchors = select_anchors([source_lm, target], k=None, word_filter="all")
    words = ["capital", "France", "Paris"]
    ids = anchors.token_ids(source_lm)[[anchors.words.index(w) for w in words]]
    source = soft(source_lm, source_lm.embedding_matrix[ids].clone())
    self_out = transfer_prompt([(source, source_lm)], source_lm,
                               TransferConfig(n_anchors=None, anchor_filter="all", solver="vocabulary", space=space))
    assert self_out.provenance["tokens"] == words  # in the source's own space every word is its own best match
    torch.testing.assert_close(self_out.vectors, source.vectors)
    assert self_out.metrics["matching_loss"] < 1e-5
    # Across models the answer is always a real target token, and no token matches better (checked by brute force).
    cross = transfer_prompt([(source, source_lm)], target, TransferConfig(
        n_anchors=None, anchor_filter="all", solver="vocabulary", top_k=10, space=space, hub_penalty=hubs))
    target_ids = anchors.token_ids(target)
    chosen = [anchors.words.index(w) for w in cross.provenance["tokens"]]
    torch.testing.assert_close(cross.vectors, target.embedding_matrix[target_ids[chosen]])
    src_rel, mask = build_space(anchors.embeddings(source_lm), space).encode_top_k(source.vectors, 10)
    every = build_space(anchors.embeddings(target), space).encode(anchors.embeddings(target))
    penalty = torch.zeros(len(every))
    if hubs:  # CSLS by brute force: each target word's mean cosine to its 10 nearest source words
        source_side = build_space(anchors.embeddings(source_lm), space).encode(anchors.embeddings(source_lm))
        penalty = (F.normalize(every, dim=-1) @ F.normalize(source_side, dim=-1).T).topk(10, dim=-1).values.mean(-1)
    for i, c in enumerate(chosen):
        cos = F.cosine_similarity(every * mask[i], src_rel[i].expand_as(every), dim=-1)
        score = 2 * cos - penalty if hubs else cos
        assert score[c] >= score.max() - 1e-5


def test_standardised_space_z_scores_each_anchor_and_is_rotation_invariant():
    gen = torch.Generator().manual_seed(8)
    anchors = torch.randn(60, 12, generator=gen, dtype=torch.float64) + 3.0  # a common offset, as real embeddings have
    vectors = torch.randn(4, 12, generator=gen, dtype=torch.float64) + 3.0
    space = build_space(anchors, "standardised")
    on_anchors = space.encode(anchors)
    torch.testing.assert_close(on_anchors.mean(0), torch.zeros(60, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(on_anchors.std(0, unbiased=False), torch.ones(60, dtype=torch.float64), atol=1e-9, rtol=0)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=gen, dtype=torch.float64))
    rotated = build_space(anchors @ q, "standardised").encode(vectors @ q)
    torch.testing.assert_close(rotated, space.encode(vectors), atol=1e-9, rtol=0)
    # The common offset is gone: raw cosines are all near 1, standardised encodings are not.
    assert build_space(anchors, "raw").encode(vectors).min() > 0.5 and space.encode(vectors).min() < -0.5


@pytest.mark.parametrize("space", ["raw", "centred", "standardised"])
def test_lstsq_self_transfer_in_every_space(pair, space):
    lm = pair[1]
    source = torch.randn(3, lm.width, generator=torch.Generator().manual_seed(9))
    out = transfer_prompt([(soft(lm, source), lm)], lm, TransferConfig(n_anchors=None, anchor_filter="all",
                                                                       normalize=False, solver="lstsq", space=space))
    centre = out.vectors.new_zeros(lm.width) if space == "raw" else (
        lm.embedding_matrix.mean(0) if space == "centred" else
        select_anchors([lm], None, "all").embeddings(lm).mean(0))
    assert F.cosine_similarity(out.vectors - centre, source - centre).min() > 0.999
    assert out.metrics["matching_loss"] < 1e-4 and out.provenance["config"]["space"] == space


def test_space_settings_are_validated():
    with pytest.raises(InputError, match="vocabulary"):
        TransferConfig(hub_penalty=True)
    assert TransferConfig(centre_anchors=True).space.value == "centred"
    with pytest.raises(InputError, match="standardised"):
        TransferConfig(centre_anchors=True, space="standardised")
    with pytest.raises(InputError, match="relative space"):
        TransferConfig(space="whitened")


def test_word_match_rate_is_perfect_within_one_model_and_lower_across(pair):
    from ptfer_core.analysis import word_match_rate

    source_lm, target = pair
    rate, matches = word_match_rate(source_lm, source_lm, "standardised", n_words=15, n_anchors=16)
    assert rate == 1.0 and len(matches) == 15 and all(a == b for a, b in matches)
    assert not {w for w, _ in matches} & set(select_anchors([source_lm, source_lm], 16).words)  # probes are not anchors
    across, _ = word_match_rate(source_lm, target, "raw", n_words=15, n_anchors=16)
    assert across < 0.5  # two unrelated random models do not line up
    with pytest.raises(InputError, match="none is left"):
        word_match_rate(source_lm, target, n_anchors=10_000)
