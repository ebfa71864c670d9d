"""What a transfer hands back, checked field by field against independent computations: the provenance record,
the error texts, the projection onto the target's tokens, the CSLS hub penalty and the reuse of an Adam search.
Written from a mutation run (docs/benchmarks.md, "Mutation scores"): each test pins a behaviour a one-line bug
changed without any other test noticing."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transfer_kit import config, model_pair, randn, soft

from ptfer_core import transfer as transfer_module
from ptfer_core.analysis import display_token
from ptfer_core.anchors import AnchorSet, select_anchors
from ptfer_core.artifacts import SoftPrompt
from ptfer_core.data import load_split
from ptfer_core.errors import DimensionMismatchError, InputError
from ptfer_core.evaluation import candidates_for
from ptfer_core.mini_lama import MINI_WORDS, write_mini_lama
from ptfer_core.space import relative_space
from ptfer_core.templates import PromptTemplate
from ptfer_core.toy_models import tiny_lm
from ptfer_core.transfer import encode_sources, hub_penalty, project_to_vocabulary, source_spread, transfer_prompt


@pytest.fixture(scope="module")
def pair():
    return model_pair()


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


# ----------------------------------------------------------------------------- the saved record


def test_provenance_records_exactly_what_was_done(pair):
    src, tgt = pair
    a, b = soft(src, randn(3, src.width, seed=1)), soft(src, randn(3, src.width, seed=2))
    started = time.perf_counter()
    out = transfer_prompt([(a, src), (b, src)], tgt, config(n_anchors=40, solver="lstsq"), weights=[3.0, 1.0])
    elapsed = time.perf_counter() - started
    assert (out.model, out.relation, out.method, out.template) == (tgt.name, "P17", "transfer", a.template)
    p = out.provenance
    assert set(p) == {
        "transfer", "n_anchors", "anchor_source", "selected_step", "steps_run", "stopped_early", "seconds",
        "sources", "weights",
    }  # fmt: skip
    assert p["transfer"] == config(n_anchors=40, solver="lstsq").stamped()
    assert (p["n_anchors"], p["anchor_source"]) == (40, "frequency")
    assert p["steps_run"] == len(out.trajectory) and p["stopped_early"] is False
    assert 0 < p["seconds"] <= elapsed
    assert p["weights"] == [0.75, 0.25]
    assert p["sources"] == [
        {"model": s.model, "relation": s.relation, "method": s.method, "created": s.created, "digest": s.digest}
        for s in (a, b)
    ]
    assert set(out.metrics) == {"matching_loss"}  # no target labels were used, so no dev score


def test_self_transfer_records_the_cosine_of_each_vector_before_normalisation(pair):
    src, _ = pair
    prompt = soft(src, randn(4, src.width, seed=3))
    out = transfer_prompt([(prompt, src)], src, config(solver="refined", steps=3))
    cosines = out.provenance["cosine_to_source_before_normalisation"]
    assert len(cosines) == 4 and all(type(c) is float and round(c, 6) == c for c in cosines)
    assert all(0.5 < c <= 1.0 for c in cosines)
    cross = transfer_prompt([(prompt, src)], pair[1], config(solver="refined", steps=3))
    assert "cosine_to_source_before_normalisation" not in cross.provenance  # only a prompt's own model can say


def test_an_adam_search_records_every_step_and_no_dev_score_under_loss_selection(pair, mini_data_dir):
    src, tgt = pair
    out = transfer_prompt(
        [(soft(src, randn(3, src.width, seed=4)), src)],
        tgt,
        config(solver="adam", steps=12, lr=0.1),
        dev=load_split("P17", "all", mini_data_dir),
        candidates=candidates_for(tgt, None, mini_data_dir),
    )
    assert out.provenance["steps_run"] == 12 == len(out.trajectory)
    assert not any("dev_p_at_1" in row for row in out.trajectory)  # dev facts given, but selection=loss
    assert "dev_p_at_1" not in out.metrics and "search_reused" not in out.provenance


# ----------------------------------------------------------------------------- inputs


def test_every_refusal_says_what_is_wrong(pair):
    src, tgt = pair
    a = soft(src, randn(3, src.width))
    with pytest.raises(InputError, match=exactly("transfer needs at least one source prompt")):
        transfer_prompt([], tgt, config())
    two = SoftPrompt(randn(2, src.width), src.name, "P17", "tuned", PromptTemplate.soft(2).text)
    with pytest.raises(
        InputError,
        match=exactly("all source prompts must share one layout (same number and placement of [V] slots)"),
    ):
        transfer_prompt([(a, src), (two, src)], tgt, config())
    with pytest.raises(InputError, match=exactly("the source prompts are for different tasks (P17, P36)")):
        transfer_prompt([(a, src), (soft(src, randn(3, src.width), "P36"), src)], tgt, config())
    for dev, candidates in ((None, object()), ([object()], None)):
        with pytest.raises(InputError, match=exactly("selection='dev' needs target dev facts and candidates")):
            transfer_prompt([(a, src)], tgt, config(solver="adam", selection="dev"), dev=dev, candidates=candidates)
    for weights in ([0.0], [float("inf")], [float("nan")], [-1.0]):
        with pytest.raises(InputError, match=r"^weights must be finite, non-negative and not all zero \(got \["):
            transfer_prompt([(a, src)], tgt, config(), weights=weights)
    with pytest.raises(InputError, match=exactly("give one weight per source: 2 weight(s) for 1 source(s)")):
        transfer_prompt([(a, src)], tgt, config(), weights=[1.0, 1.0])
    narrow = SoftPrompt(randn(3, 8), src.name, "P17", "tuned", a.template)
    with pytest.raises(
        DimensionMismatchError, match=exactly(f"source prompt width 8 does not match {src.name}'s width {src.width}")
    ):
        transfer_prompt([(narrow, src)], tgt, config())


def test_weights_count_by_their_ratio_however_large(pair):
    """Two weights of 1e308 summed to inf: both became 0, and a prompt matched to nothing was scored as a result."""
    src, tgt = pair
    sources = [(soft(src, randn(3, src.width)), src), (soft(src, randn(3, src.width)), src)]
    equal = transfer_prompt(sources, tgt, config(), weights=[1.0, 1.0])
    huge = transfer_prompt(sources, tgt, config(), weights=[1e308, 1e308])
    assert huge.provenance["weights"] == equal.provenance["weights"] == [0.5, 0.5]
    assert torch.allclose(huge.vectors, equal.vectors)


def test_top_k_may_equal_the_number_of_anchors(pair):
    src, tgt = pair
    out = transfer_prompt([(soft(src, randn(3, src.width)), src)], tgt, config(n_anchors=30, top_k=30))
    assert out.provenance["n_anchors"] == 30
    with pytest.raises(InputError, match="top_k 31 is larger than the 30 anchors"):
        transfer_prompt([(soft(src, randn(3, src.width)), src)], tgt, config(n_anchors=30, top_k=31))


def test_anchors_are_the_words_every_model_spells_as_one_token(pair):
    _, tgt = pair
    small = tiny_lm("bert", MINI_WORDS[:60], width=32, seed=1)  # knows fewer words than the target
    out = transfer_prompt([(soft(small, randn(3, 32, seed=5)), small)], tgt, config())
    shared = select_anchors([small, tgt], None, word_filter="all")
    assert out.provenance["n_anchors"] == len(shared) < len(select_anchors([tgt], None, word_filter="all"))


def test_anchor_and_projection_words_come_from_the_given_data_directory(pair, tmp_path, monkeypatch):
    src, tgt = pair
    words = ["France", "Germany", "Paris", "Berlin", "Rome", "Italy", "Spain", "Madrid", "Tokyo", "Japan"]
    write_mini_lama(tmp_path)  # then a common vocabulary of ten words only
    (tmp_path / "common_vocab_cased_be_ro_al.txt").write_text("\n".join(words), encoding="utf-8")
    (tmp_path / "common_vocab_cased.txt").write_text("\n".join(words), encoding="utf-8")
    allowed = []
    real = transfer_module.project_to_vocabulary
    monkeypatch.setattr(
        transfer_module, "project_to_vocabulary", lambda *a: allowed.append(a[3]) or real(*a)
    )  # the found vectors lie in the anchors' span, so their nearest tokens are anchors anyway: check the ids
    out = transfer_prompt(
        [(soft(src, randn(3, src.width, seed=5)), src)],
        tgt,
        config(anchor_source="common-vocab", projection="nearest-shared"),
        data_dir=tmp_path,
    )
    assert out.provenance["n_anchors"] == len(words) and out.provenance["anchor_source"] == "common-vocab"
    assert {t for row in out.provenance["projected_to"] for t in row} <= set(words)
    assert sorted(allowed[0].tolist()) == sorted(tgt.word_token_ids(words))


def test_the_dev_scorer_reads_subjects_as_the_caller_cut_them(pair, mini_data_dir, monkeypatch):
    src, tgt = pair
    seen = []
    real = transfer_module.evaluate

    def spy(*args, **kwargs):
        seen.append(kwargs.get("max_subject_tokens"))
        return real(*args, **kwargs)

    monkeypatch.setattr(transfer_module, "evaluate", spy)
    transfer_prompt(
        [(soft(src, randn(3, src.width, seed=6)), src)],
        tgt,
        config(solver="adam", steps=4, selection="dev", dev_every=2),
        dev=load_split("P17", "all", mini_data_dir),
        candidates=candidates_for(tgt, None, mini_data_dir),
        max_subject_tokens=2,
    )
    assert seen and set(seen) == {2}


# ----------------------------------------------------------------------------- relative normalisation


def test_relative_normalisation_uses_the_weighted_spread_of_the_sources(pair):
    src, tgt = pair
    a, b = soft(src, randn(3, src.width, seed=7)), soft(src, 4 * randn(3, src.width, seed=8))
    emb_std = src.embedding_matrix.std().item()
    spread_a, spread_b = a.vectors.std().item() / emb_std, b.vectors.std().item() / emb_std
    assert source_spread([(a, src), (b, src)], [3.0, 1.0]) == pytest.approx(0.75 * spread_a + 0.25 * spread_b)
    assert source_spread([(a, src), (b, src)]) == pytest.approx(0.5 * spread_a + 0.5 * spread_b)
    out = transfer_prompt(
        [(a, src), (b, src)], tgt, config(normalization="relative", solver="lstsq"), weights=[3.0, 1.0]
    )
    expected = tgt.embedding_matrix.std().item() * (0.75 * spread_a + 0.25 * spread_b)
    assert out.vectors.std().item() == pytest.approx(expected, rel=1e-3)


# ----------------------------------------------------------------------------- projection onto target tokens


def _plain_cosines(lm, vectors):
    emb = lm.embedding_matrix
    sims = torch.stack([F.cosine_similarity(v.unsqueeze(0), emb, dim=-1) for v in vectors])
    sims[:, sorted(lm.special_token_ids)] = -2.0
    return emb, sims


def test_nearest_projection_is_the_nearest_non_special_token(pair):
    _, tgt = pair
    special = sorted(tgt.special_token_ids)[0]
    vectors = torch.cat([randn(3, tgt.width, seed=9), tgt.embedding_matrix[special : special + 1] * 1.5])
    emb, sims = _plain_cosines(tgt, vectors)
    ids = sims.argmax(-1)
    assert special not in ids.tolist()  # the last vector *is* a special token's embedding, yet it is skipped
    for alpha in (1.0, 0.25):
        out, names = project_to_vocabulary(tgt, vectors, config(projection="nearest", projection_alpha=alpha))
        torch.testing.assert_close(out, alpha * emb[ids] + (1 - alpha) * vectors)
        assert names == [[display_token(tgt, int(i))] for i in ids]


@pytest.mark.parametrize("top_n", [2, 4])
def test_mix_projection_is_a_sharp_softmax_over_the_top_n_tokens(pair, top_n):
    _, tgt = pair
    vectors = randn(2, tgt.width, seed=10)
    emb, sims = _plain_cosines(tgt, vectors)
    out, names = project_to_vocabulary(tgt, vectors, config(projection="mix", projection_top_n=top_n))
    for i in range(2):
        values, ids = sims[i].sort(descending=True)
        weights = torch.exp((values[:top_n] - values[0]) / 0.05)
        expected = (weights / weights.sum()) @ emb[ids[:top_n]]
        torch.testing.assert_close(out[i], expected, rtol=1e-5, atol=1e-6)
        assert names[i] == [display_token(tgt, int(t)) for t in ids[:top_n]]


def test_shared_projection_only_picks_allowed_tokens_and_none_changes_nothing(pair):
    _, tgt = pair
    vectors = randn(3, tgt.width, seed=11)
    allowed = torch.tensor([10, 20, 30, 40])
    emb, sims = _plain_cosines(tgt, vectors)
    out, names = project_to_vocabulary(tgt, vectors, config(projection="nearest-shared"), allowed)
    ids = allowed[sims[:, allowed].argmax(-1)]
    torch.testing.assert_close(out, emb[ids])
    assert names == [[display_token(tgt, int(i))] for i in ids]
    same, none = project_to_vocabulary(tgt, vectors, config(projection="none"))
    assert same is vectors and none == []


# ----------------------------------------------------------------------------- the CSLS hub penalty


def _brute_force_penalty(source, target, anchors, words, n_reference, neighbours, space="raw"):
    reference = AnchorSet(anchors.words[:n_reference])
    src_space, tgt_space = relative_space(source, anchors, space), relative_space(target, anchors, space)
    queries = src_space.encode(reference.embeddings(source).float())
    penalty = []
    for e in words.embeddings(target).float():
        cos = F.cosine_similarity(tgt_space.encode(e.unsqueeze(0)), queries, dim=-1)
        penalty.append(cos.sort(descending=True).values[:neighbours].mean())
    return torch.stack(penalty)


def test_hub_penalty_is_the_mean_cosine_to_the_nearest_source_words(pair):
    src, tgt = pair
    anchors = select_anchors([src, tgt], None, word_filter="all")
    words = AnchorSet(anchors.words[5:40])
    for space, n_reference, neighbours in (("raw", 12, 3), ("standardised", 20, 5)):
        ours = hub_penalty(src, tgt, anchors, words, space, n_reference=n_reference, neighbours=neighbours)
        expected = _brute_force_penalty(src, tgt, anchors, words, n_reference, neighbours, space)
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    defaults = hub_penalty(src, tgt, anchors, words, "raw")  # CSLS's usual 10 neighbours, 2,048 reference words
    torch.testing.assert_close(defaults, _brute_force_penalty(src, tgt, anchors, words, 2048, 10), rtol=1e-4, atol=1e-5)


def test_vocabulary_solver_with_hub_penalty_picks_the_csls_best_word(pair):
    src, tgt = pair
    words = select_anchors([src, tgt], None, word_filter="all")
    prompt = soft(src, randn(20, src.width, seed=14))  # enough vectors for the penalty to change some choices
    plain = transfer_prompt([(prompt, src)], tgt, config(solver="vocabulary", top_k=15))
    out = transfer_prompt([(prompt, src)], tgt, config(solver="vocabulary", top_k=15, hub_penalty=True))
    (enc,) = encode_sources([(prompt, src)], words, config(top_k=15))
    target_rel = relative_space(tgt, words).encode(words.embeddings(tgt))
    penalty = _brute_force_penalty(src, tgt, words, words, 2048, 10)
    for i, token in enumerate(out.provenance["tokens"]):
        cos = F.cosine_similarity(target_rel * enc.mask[i], enc.encoding[i].unsqueeze(0), dim=-1)
        assert words.words[int((2 * cos - penalty).argmax())] == token
    assert out.provenance["tokens"] != plain.provenance["tokens"]  # the penalty changed at least one choice
    chosen = words.token_ids(tgt)[[words.words.index(t) for t in out.provenance["tokens"]]]
    torch.testing.assert_close(out.vectors, tgt.embedding_matrix[chosen])


# ----------------------------------------------------------------------------- reusing an Adam search


def test_a_search_is_reused_only_for_the_same_settings_sources_and_dev_facts(pair, mini_data_dir):
    src, tgt = pair
    prompt = soft(src, randn(3, src.width, seed=12))
    dev = load_split("P17", "all", mini_data_dir)
    kw = dict(candidates=candidates_for(tgt, None, mini_data_dir))
    by_dev = config(solver="adam", steps=20, lr=0.3, seed=3, selection="dev", dev_every=5)
    tgt.memo.clear()
    first = transfer_prompt([(prompt, src)], tgt, by_dev, dev=dev, **kw)
    again = transfer_prompt([(prompt, src)], tgt, by_dev, dev=dev, **kw)
    assert "search_reused" not in first.provenance and again.provenance["search_reused"] is True
    assert torch.equal(again.vectors, first.vectors)
    fewer = transfer_prompt([(prompt, src)], tgt, by_dev, dev=dev[:-3], **kw)  # other dev facts: search again
    assert "search_reused" not in fewer.provenance
    other_lr = transfer_prompt([(prompt, src)], tgt, config(solver="adam", steps=20, lr=0.05, seed=3), dev=dev, **kw)
    assert "search_reused" not in other_lr.provenance
    same = transfer_prompt([(prompt, src)], tgt, config(solver="adam", steps=20, lr=0.3, seed=3), dev=dev, **kw)
    assert same.provenance["search_reused"] is True
    closed = transfer_prompt([(prompt, src)], tgt, config(solver="lstsq"))
    assert "search_reused" not in closed.provenance  # a one-step solver has nothing to reuse


def test_map_placement_is_continuous_and_lands_an_anchor_on_itself():
    """A self-transfer's prompt (relative profile equal to the source's to 1e-5) must land where the source prompt
    does; UMAP's stochastic transform moved it by a sixth of the map."""
    from ptfer_core.analysis import Map2D, place_by_neighbours

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(200, 16))
    xy = rng.normal(size=(200, 2))
    point = rng.normal(size=(1, 16))
    nearly = point + 1e-5 * rng.normal(size=(1, 16))
    moved = np.abs(place_by_neighbours(nearly, rows, xy, 15) - place_by_neighbours(point, rows, xy, 15)).max()
    assert moved < 1e-3 * np.ptp(xy)
    far = place_by_neighbours(point + 0.5 * rng.normal(size=(1, 16)), rows, xy, 15)
    assert np.abs(far - place_by_neighbours(point, rows, xy, 15)).max() > 10 * moved, "placement follows the input"
    # a point equal to a mapped row lies among its neighbours: inside their box, nearest to its own row's position
    on_row = place_by_neighbours(rows[:1], rows, xy, 15)
    nearest = np.argsort(1 - (rows / np.linalg.norm(rows, axis=1, keepdims=True)) @ rows[0] / np.linalg.norm(rows[0]))
    box = xy[nearest[:15]]
    assert (box.min(0) <= on_row[0]).all() and (on_row[0] <= box.max(0)).all()
    pca = Map2D(rows, "pca")
    assert np.allclose(pca.place(rows), pca.xy) and len(pca.explained) == 2
    with pytest.raises(ValueError, match="pca or umap"):
        Map2D(rows, "tsne")


def test_pca_maps_match_a_full_svd_up_to_a_fixed_sign_whichever_side_is_smaller():
    """The maps' PCA takes its two axes from the smaller Gram matrix (a full SVD of 1,000 × 16,923 similarities took
    14 s), by Lanczos: the same axes and explained variance as the SVD, each axis signed so its largest loading is
    positive, and the same map twice."""
    from ptfer_core.analysis import Map2D

    rng = np.random.default_rng(1)
    for n, d in ((40, 300), (300, 40), (6, 9)):  # Lanczos on the smaller side both ways; a dense solve when tiny
        rows = rng.normal(size=(n, d)) * np.linspace(3.0, 0.1, d)  # distinct variances: the axes are well defined
        pca = Map2D(rows.astype(np.float32), "pca")
        centred = rows - rows.mean(0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        axes = vt[:2].T * np.sign(vt[:2].T[np.abs(vt[:2].T).argmax(0), [0, 1]])
        assert np.allclose(pca.xy, centred @ axes, atol=1e-3 * np.abs(centred @ axes).max()), (n, d)
        assert np.allclose(pca.explained, singular[:2] ** 2 / (singular**2).sum(), atol=1e-6)
        assert pca.xy.dtype == np.float32
        flipped = Map2D(-rows.astype(np.float32), "pca")
        assert np.allclose(flipped.xy, -pca.xy, atol=1e-4), "the sign follows the data, not the decomposition"
        assert np.array_equal(Map2D(rows.astype(np.float32), "pca").xy, pca.xy), "a fixed start: the same map"


def test_umap_sees_rows_whose_distances_give_their_cosine_neighbours():
    """UMAP fits on `cosine_features`: unit rows (squared distance = 2 - 2 cos, exactly, when narrow), projected on
    their top axes when wider (UMAP on 2,000 x 16,923 cosine rows took 84 s): the cosine neighbours of rows with a
    few strong directions, as real similarity rows have, are kept."""
    from ptfer_core.analysis import cosine_features

    rng = np.random.default_rng(0)
    narrow = rng.normal(size=(50, 20)) + 0.5
    feats = cosine_features(narrow)
    unit = narrow / np.linalg.norm(narrow, axis=1, keepdims=True)
    squared = ((feats[:, None] - feats[None]) ** 2).sum(-1)
    assert np.allclose(squared, 2 - 2 * unit @ unit.T, atol=1e-5)

    wide = rng.normal(size=(300, 40)) @ rng.normal(size=(40, 2000)) + 0.05 * rng.normal(size=(300, 2000)) + 3.0
    feats = cosine_features(wide, 64)
    assert feats.shape == (300, 64) and feats.dtype == np.float32
    unit = wide / np.linalg.norm(wide, axis=1, keepdims=True)
    by_cosine = np.argsort(-(unit @ unit.T), axis=1)[:, 1:6]
    by_distance = np.argsort(((feats[:, None] - feats[None]) ** 2).sum(-1), axis=1)[:, 1:6]
    kept = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(by_cosine, by_distance)])
    assert kept > 0.95, kept


def test_nearest_tokens_read_the_vocabulary_style_once_per_model(gpt2_lm, monkeypatch):
    """The style (Ġ, ▁ or ##) scans the whole vocabulary: once per token shown, a real Gemma's Nearest tokens page
    took ~20 s on its first view (80 tokens × 262k entries)."""
    import torch

    from ptfer_core import analysis

    calls = []
    real = analysis.tokenizer_style
    monkeypatch.setattr(analysis, "tokenizer_style", lambda vocab: calls.append(1) or real(vocab))
    gpt2_lm.memo.clear()
    vectors = torch.randn(3, gpt2_lm.embedding_matrix.shape[1], generator=torch.Generator().manual_seed(0))
    first = analysis.nearest_tokens(gpt2_lm, vectors, k=8)
    again = analysis.nearest_tokens(gpt2_lm, vectors, k=8)
    assert len(calls) <= 1 and first == again and all(len(row) == 8 for row in first)
    sims = torch.nn.functional.normalize(vectors, dim=-1) @ torch.nn.functional.normalize(
        gpt2_lm.embedding_matrix, dim=-1).T  # fmt: skip
    sims[:, sorted(gpt2_lm.special_token_ids)] = -2.0
    ids = sims.argmax(dim=-1).tolist()
    expected = [analysis.word_of_token(gpt2_lm.vocab[i], real(gpt2_lm.vocab)) or gpt2_lm.vocab[i] for i in ids]
    assert [row[0][0] for row in first] == [analysis.visible(w) for w in expected], "words as before"


def test_tokens_that_print_as_nothing_are_written_out():
    from ptfer_core.analysis import visible

    assert visible("Paris") == "Paris" and visible("New York") == "New York"
    assert visible("") == "⟨empty⟩" and visible(" ") == "␣" and visible("\u00a0") == "␣"
    assert visible("\n") == "\\n" and visible("\u200b") == "U+200B" and visible("ab\u200b") == "abU+200B"
