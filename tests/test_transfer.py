"""The relative space, the solvers and the transfer: invariances, exact optima, top-K in every solver, selection
rules against their recorded curves, weight normalisation and provenance, and every bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transfer_kit import config, model_pair, randn, soft

from ptfer_core.anchors import (
    AnchorSet,
    common_vocab_words,
    select_anchors,
    shared_vocabulary,
    word_index,
    word_of_token,
)
from ptfer_core.config import Normalization
from ptfer_core.errors import InputError
from ptfer_core.mini_lama import MINI_WORDS
from ptfer_core.settings import recipe_settings
from ptfer_core.solvers import Normalizer
from ptfer_core.space import RelativeSpace, relative_space
from ptfer_core.toy_models import tiny_lm
from ptfer_core.transfer import encode_sources, target_statistics, transfer_prompt


@pytest.fixture(scope="module")
def pair():
    return model_pair()


# ----------------------------------------------------------------------------- the relative space


@pytest.mark.parametrize("mode", ["raw", "standardised"])
def test_relative_space_is_rotation_invariant(mode):
    gen = torch.Generator().manual_seed(0)
    vectors, anchors = (
        torch.randn(5, 16, generator=gen, dtype=torch.float64),
        torch.randn(40, 16, generator=gen, dtype=torch.float64),
    )
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen, dtype=torch.float64))
    plain = RelativeSpace.fit(anchors.float(), mode).encode(vectors.float())
    rotated = RelativeSpace.fit((anchors @ q).float(), mode).encode((vectors @ q).float())
    torch.testing.assert_close(rotated, plain, rtol=0, atol=1e-5)
    assert not torch.allclose(RelativeSpace.fit(anchors.float(), mode).encode((vectors @ q).float()), plain, atol=1e-3)


def test_top_k_keeps_the_largest_signed_entries():
    space = RelativeSpace.fit(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]))
    rel, mask = space.encode_top_k(torch.tensor([[1.0, 0.0]]), 2)
    assert mask.tolist() == [
        [True, False, True, False]
    ]  # the -1 (largest in magnitude) is not kept: signed, as the reference
    assert rel[0, 1] == 0 and rel[0, 3] == 0 and rel[0, 0] == pytest.approx(1.0)


def test_standardised_space_z_scores_each_anchor():
    anchors = randn(30, 8, seed=2)
    space = RelativeSpace.fit(anchors, "standardised")
    z = space.encode(anchors)
    torch.testing.assert_close(z.mean(0), torch.zeros(30), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(30), atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- anchors


def test_shared_vocabulary_matches_wordpiece_bpe_and_sentencepiece():
    lms = [tiny_lm(arch, MINI_WORDS) for arch in ("bert", "roberta", "llama")]
    shared = shared_vocabulary(lms, "all")
    assert {"Paris", "France", "capital"} <= set(shared)
    assert not any(w.startswith(("Ġ", "▁", "##", "[")) for w in shared)
    assert "Town1" not in shared_vocabulary(lms, "words")  # not alphabetic


def test_frequency_order_puts_low_token_ids_first():
    lm = tiny_lm("roberta", MINI_WORDS)
    shared = shared_vocabulary([lm], "all")
    ids = [word_index(lm)[w] for w in shared]
    assert ids == sorted(ids)  # one model: its id order is the frequency proxy


def test_common_vocab_anchors_keep_file_order_and_drop_words_a_model_lacks(pair, tmp_path):
    from ptfer_core.mini_lama import write_mini_lama

    root = write_mini_lama(tmp_path)
    words = ["Rome", "Zanzibar", "France", "Paris", "Rome"]
    (root / "common_vocab_cased_be_ro_al.txt").write_text("\n".join(f"  {w}" for w in words), encoding="utf-8")
    assert common_vocab_words(list(pair), root) == ["Rome", "France", "Paris"]
    anchors = select_anchors(list(pair), None, "common-vocab", data_dir=root)
    assert anchors.words == ("Rome", "France", "Paris") and anchors.source == "common-vocab"


def test_every_anchor_word_is_checked(pair):
    words = tuple(select_anchors(list(pair), 20, word_filter="all").words) + ("Zanzibar",)
    with pytest.raises(InputError, match="Zanzibar"):
        AnchorSet(words).token_ids(pair[0])


def test_byte_level_tokens_are_decoded():
    assert word_of_token("ĠcafÃ©", "bpe") == "café"
    assert word_of_token("caf", "bpe") is None  # word-internal piece
    assert word_of_token("##ing", "wordpiece") is None
    assert word_of_token("▁Paris", "sentencepiece") == "Paris"


def test_anchor_set_is_independent_of_python_hash_seed():
    code = (
        "from ptfer_core.toy_models import tiny_lm, MINI_WORDS; from ptfer_core.anchors import select_anchors;"
        "import json; print(json.dumps(select_anchors([tiny_lm('bert', MINI_WORDS), tiny_lm('gpt2', MINI_WORDS)],"
        " k=20, word_filter='all').words))"
    )
    outputs = []
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 20


# ----------------------------------------------------------------------------- normalisation (Eq. 6)


def test_global_normalisation_is_one_mean_and_std_over_all_values():
    x = randn(3, 10, seed=1) * 4 + 2
    out = Normalizer(Normalization.GLOBAL, mean=0.5, std=2.0)(x)
    torch.testing.assert_close(out, (x - x.mean()) / x.std() * 2.0 + 0.5)
    norms = out.norm(dim=-1)
    assert norms.max() - norms.min() > 0.1  # unlike per-vector normalisation, the vectors keep different lengths


def test_relative_normalisation_keeps_the_source_prompts_scale(pair):
    lm = pair[1]
    small = randn(4, lm.width, seed=8) * 0.01  # far smaller than this model's tokens
    paper = transfer_prompt([(soft(lm, small), lm)], lm, config(normalization="global"))
    kept = transfer_prompt([(soft(lm, small), lm)], lm, config(normalization="relative"))
    assert paper.vectors.std().item() == pytest.approx(target_statistics(lm)[1], rel=1e-3)  # Eq. 6: the target's
    assert kept.vectors.std().item() == pytest.approx(small.std().item(), rel=1e-3)  # relative: the source's own
    scale, _shift, residual = affine_fit(kept.vectors, small)  # the source prompt itself, shifted by Eq. 6's mean
    assert scale == pytest.approx(1.0, rel=1e-3) and residual < 1e-4


def test_per_vector_normalisation_and_none():
    x = randn(3, 10, seed=2)
    per = Normalizer(Normalization.PER_VECTOR, 0.5, 2.0)(x)
    torch.testing.assert_close(per.mean(-1), torch.full((3,), 0.5), atol=1e-6, rtol=0)
    torch.testing.assert_close(per.std(-1), torch.full((3,), 2.0), atol=1e-5, rtol=0)
    assert torch.equal(Normalizer(Normalization.NONE, 0.5, 2.0)(x), x)


def test_transferred_vectors_have_the_target_statistics(pair):
    src, tgt = pair
    out = transfer_prompt([(soft(src, randn(4, src.width, seed=3)), src)], tgt, config(normalization="global"))
    mean, std = target_statistics(tgt)
    assert out.vectors.mean().item() == pytest.approx(mean, abs=1e-5)
    assert out.vectors.std().item() == pytest.approx(std, rel=1e-4)
    assert out.width == tgt.width and out.model == tgt.name


# ----------------------------------------------------------------------------- solvers: optima and self-transfer


def affine_fit(out: torch.Tensor, source: torch.Tensor) -> tuple[float, float, float]:
    """(a, b, relative residual) of the least-squares fit out ≈ a·source + b over every value: Eq. 6 is such a map."""
    x, y = source.flatten().double(), out.flatten().double()
    design = torch.stack([x, torch.ones_like(x)], dim=-1)
    (a, b) = torch.linalg.lstsq(design, y.unsqueeze(-1)).solution.squeeze(-1).tolist()
    return a, b, float((y - a * x - b).norm() / y.norm())


def test_default_self_transfer_gives_the_source_prompt_back(pair):
    """The default (closed form at the source's relative lengths, then Eq. 6 relative) returns the source prompt up
    to Eq. 6's shift: exact directions, every vector's relative length, and the source's own spread."""
    lm = pair[1]
    lengths = torch.tensor([0.5, 1.0, 2.0, 3.0]).unsqueeze(-1)
    source = randn(4, lm.width, seed=4) * 0.3 * lengths  # unequal lengths, which the default must keep
    out = transfer_prompt([(soft(lm, source), lm)], lm, config())
    assert (out.provenance["transfer"]["solver"], out.provenance["transfer"]["normalization"]) == ("lstsq", "relative")
    assert min(out.provenance["cosine_to_source_before_normalisation"]) > 0.99999
    scale, _shift, residual = affine_fit(out.vectors, source)
    assert scale == pytest.approx(1.0, rel=1e-3) and residual < 1e-4, (scale, residual)
    refined = transfer_prompt([(soft(lm, source), lm)], lm, config(solver="refined"))
    assert affine_fit(refined.vectors, source)[2] > 10 * residual, "refined moves lengths to meet Eq. 6 exactly"


@pytest.mark.parametrize("space", ["raw", "centred", "standardised"])
def test_refined_self_transfer_recovers_every_vector(pair, space):
    lm = pair[1]
    source = randn(4, lm.width, seed=4) * 0.3
    out = transfer_prompt([(soft(lm, source), lm)], lm, config(space=space, solver="refined", normalization="global"))
    # The encoding fixes each vector's direction from the space's centre (the origin in the paper's raw space).
    anchors = select_anchors([lm], None, word_filter="all")
    centre = relative_space(lm, anchors, space).centre
    centre = torch.zeros(lm.width) if centre is None else centre
    assert F.cosine_similarity(out.vectors - centre, source - centre, dim=-1).min() > 0.999
    assert out.metrics["matching_loss"] < 1e-5


def test_closed_form_is_exact_before_normalisation_and_refined_improves_after(pair):
    lm = pair[0]
    source = soft(lm, randn(3, lm.width, seed=5))
    lstsq = transfer_prompt([(source, lm)], lm, config(solver="lstsq", normalization="none"))
    assert F.cosine_similarity(lstsq.vectors, source.vectors, dim=-1).min() > 0.99999
    normalised = transfer_prompt([(source, lm)], lm, config(solver="lstsq"))
    refined = transfer_prompt([(source, lm)], lm, config(solver="refined"))
    assert refined.metrics["matching_loss"] <= normalised.metrics["matching_loss"]
    adam = transfer_prompt([(source, lm)], lm, config(solver="adam", steps=300))
    assert refined.metrics["matching_loss"] <= adam.metrics["matching_loss"] + 1e-7


def test_every_solver_compares_only_the_top_k_entries(pair):
    src, tgt = pair
    prompt = soft(src, randn(3, src.width, seed=6))
    anchors = select_anchors([src, tgt], None, word_filter="all")
    k = 12
    cfg = config(top_k=k)
    (encoded,) = encode_sources([(prompt, src)], anchors, cfg)
    assert encoded.mask.sum(dim=-1).tolist() == [k, k, k]
    space = relative_space(tgt, anchors)
    for solver in ("lstsq", "refined", "adam", "vocabulary"):
        out = transfer_prompt([(prompt, src)], tgt, config(top_k=k, solver=solver, steps=100))
        manual = 1 - F.cosine_similarity(space.encode(out.vectors) * encoded.mask, encoded.encoding, dim=-1).mean()
        assert out.metrics["matching_loss"] == pytest.approx(manual.item(), abs=1e-5), solver
    # The closed form on the kept rows, computed independently, is the lstsq solver's direction.
    closed = transfer_prompt([(prompt, src)], tgt, config(top_k=k, solver="lstsq", normalization="none"))
    for i in range(3):
        rows = space.unit_anchors[encoded.mask[i]].double()
        u = torch.linalg.pinv(rows) @ encoded.encoding[i][encoded.mask[i]].double()
        assert F.cosine_similarity(closed.vectors[i].double(), u, dim=0) > 0.9999


def test_vocabulary_solver_is_the_brute_force_best_word(pair):
    src, tgt = pair
    words = select_anchors([src, tgt], None, word_filter="all")
    ids = words.token_ids(src)[[3, 10, 20]]
    prompt = soft(src, src.embedding_matrix[ids].clone())
    out = transfer_prompt([(prompt, src)], tgt, config(solver="vocabulary", top_k=15))
    (enc,) = encode_sources([(prompt, src)], words, config(top_k=15))
    space = relative_space(tgt, words)
    target_rel = space.encode(words.embeddings(tgt))
    for i, token in enumerate(out.provenance["tokens"]):
        scores = F.cosine_similarity(target_rel * enc.mask[i], enc.encoding[i].unsqueeze(0), dim=-1)
        assert words.words[int(scores.argmax())] == token


# ----------------------------------------------------------------------------- multi-source


def test_weights_are_normalised_and_recorded(pair):
    src, tgt = pair
    a, b = soft(src, randn(3, src.width, seed=7)), soft(src, randn(3, src.width, seed=8))
    cfg = config(solver="lstsq")
    one = transfer_prompt([(a, src), (b, src)], tgt, cfg, weights=[3.0, 1.0])
    same = transfer_prompt([(a, src), (b, src)], tgt, cfg, weights=[0.75, 0.25])
    torch.testing.assert_close(one.vectors, same.vectors)
    assert one.provenance["weights"] == pytest.approx([0.75, 0.25])
    other = transfer_prompt([(a, src), (b, src)], tgt, cfg, weights=[1.0, 3.0])
    assert not torch.allclose(one.vectors, other.vectors, atol=1e-3)
    only_a = transfer_prompt([(a, src)], tgt, cfg)
    torch.testing.assert_close(
        transfer_prompt([(a, src), (b, src)], tgt, cfg, weights=[1.0, 0.0]).vectors,
        only_a.vectors,
        atol=1e-5,
        rtol=1e-4,
    )
    assert [s["digest"] for s in one.provenance["sources"]] == [a.digest, b.digest]


def test_weight_errors(pair):
    src, tgt = pair
    a = soft(src, randn(3, src.width, seed=7))
    for weights in ([1.0], [0.0, 0.0], [1.0, -1.0], [float("nan"), 1.0]):
        with pytest.raises(InputError, match="weight"):
            transfer_prompt([(a, src), (a, src)], tgt, config(solver="lstsq"), weights=weights)


def test_sources_for_different_tasks_are_refused(pair):
    src, tgt = pair
    with pytest.raises(InputError, match="different tasks"):
        transfer_prompt(
            [(soft(src, randn(3, src.width), "P17"), src), (soft(src, randn(3, src.width), "P36"), src)], tgt
        )


# ----------------------------------------------------------------------------- the Adam search and its selection rules


def test_adam_starts_like_the_reference_and_is_deterministic(pair):
    src, tgt = pair
    prompt = soft(src, randn(3, src.width, seed=9))
    cfg = config(solver="adam", steps=40, normalization="none")
    a = transfer_prompt([(prompt, src)], tgt, cfg)
    assert torch.equal(a.vectors, transfer_prompt([(prompt, src)], tgt, cfg).vectors)
    assert len(a.trajectory) == 40  # no early stop by default (the reference runs every step)


def test_loss_selection_keeps_the_lowest_recorded_loss(pair):
    src, tgt = pair
    out = transfer_prompt(
        [(soft(src, randn(3, src.width, seed=10)), src)], tgt, config(solver="adam", steps=80, lr=0.2)
    )
    losses = [r["loss"] for r in out.trajectory]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert out.provenance["selected_step"] == out.trajectory[best]["step"]
    assert out.metrics["matching_loss"] == pytest.approx(losses[best])


def test_dev_selection_keeps_the_best_checked_step(pair, mini_data_dir):
    from ptfer_core.data import load_split
    from ptfer_core.evaluation import candidates_for

    src, tgt = pair
    dev = load_split("P17", "all", mini_data_dir)
    out = transfer_prompt(
        [(soft(src, randn(3, src.width, seed=11)), src)],
        tgt,
        config(solver="adam", steps=60, lr=0.3, selection="dev", dev_every=10),
        dev=dev,
        candidates=candidates_for(tgt, None, mini_data_dir),
    )
    checked = [r for r in out.trajectory if "dev_p_at_1" in r]
    assert [r["step"] for r in checked] == [10, 20, 30, 40, 50, 60]  # every dev_every steps, as (i + 1) % 50 there
    best = max(checked, key=lambda r: r["dev_p_at_1"])  # the first of equal bests
    assert out.provenance["selected_step"] == best["step"]
    assert out.metrics["dev_p_at_1"] == best["dev_p_at_1"]


def test_a_dev_selected_search_also_gives_the_zero_shot_answer(pair, mini_data_dir):
    from ptfer_core.data import load_split
    from ptfer_core.evaluation import candidates_for

    src, tgt = pair
    prompt = soft(src, randn(3, src.width, seed=13))
    kw = dict(dev=load_split("P17", "all", mini_data_dir), candidates=candidates_for(tgt, None, mini_data_dir))
    fresh = transfer_prompt([(prompt, src)], tgt, config(solver="adam", steps=40, lr=0.3, seed=5), **kw)
    transfer_prompt(
        [(prompt, src)], tgt, config(solver="adam", steps=40, lr=0.3, seed=5, selection="dev", dev_every=10), **kw
    )
    tgt.memo.clear()
    transfer_prompt(
        [(prompt, src)], tgt, config(solver="adam", steps=40, lr=0.3, seed=5, selection="dev", dev_every=10), **kw
    )
    reused = transfer_prompt([(prompt, src)], tgt, config(solver="adam", steps=40, lr=0.3, seed=5), **kw)
    assert reused.provenance.get("search_reused") and not fresh.provenance.get("search_reused")
    assert torch.equal(reused.vectors, fresh.vectors)
    assert reused.provenance["selected_step"] == fresh.provenance["selected_step"]


def test_restarts_keep_the_lowest_matching_loss(pair):
    src, tgt = pair
    prompt = soft(src, randn(3, src.width, seed=12))
    one = transfer_prompt([(prompt, src)], tgt, config(solver="adam", steps=30))
    many = transfer_prompt([(prompt, src)], tgt, config(solver="adam", steps=30, restarts=4))
    assert many.metrics["matching_loss"] <= one.metrics["matching_loss"] + 1e-6


def test_should_stop_interrupts_within_one_step(pair):
    src, tgt = pair
    steps = []
    out = transfer_prompt(
        [(soft(src, randn(3, src.width)), src)],
        tgt,
        config(solver="adam", steps=1000),
        on_step=lambda s, m: steps.append(s),
        should_stop=lambda: len(steps) >= 3,
    )
    assert steps == [1, 2, 3] and out.provenance["stopped_early"]


# ----------------------------------------------------------------------------- recipes and bad input


def test_the_paper_recipe_is_the_reference():
    paper = recipe_settings("paper")
    t = paper.transfer
    assert (
        t.anchor_source.value,
        t.n_anchors,
        t.top_k,
        t.solver.value,
        t.lr,
        t.steps,
        t.search_init.value,
        t.normalization.value,
        t.selection.value,
        t.dev_every,
        t.patience,
    ) == ("common-vocab", None, 8192, "adam", 5e-3, 2000, "xavier", "global", "dev", 50, None)
    u = paper.tune
    assert (
        u.init.value,
        u.loss.value,
        u.lr,
        u.batch_size,
        u.epochs,
        u.weight_decay,
        u.dropout,
        u.dev_checks_per_epoch,
        u.dev_before_training,
        u.shuffle,
    ) == ("optiprompt", "full-vocabulary", 3e-3, 16, 10, 0.0, True, 3, True, False)
    assert paper.projector.lr == 5e-3
    assert recipe_settings("paper-zero-shot").transfer.selection.value == "loss"
    assert [recipe_settings(r).transfer.normalization.value for r in ("paper", "paper-zero-shot", "studio")] == [
        "global",
        "global",
        "relative",
    ]
    assert recipe_settings("studio").transfer.solver.value == "lstsq"


def test_recipe_overrides_are_recorded_and_checked():
    s = recipe_settings("paper", {"transfer": {"steps": 500, "lr": 5e-3}})
    assert s.overrides == {"transfer": {"steps": 500}}  # a value equal to the recipe's is not an override
    with pytest.raises(InputError, match="recipe"):
        recipe_settings("astrology")
    with pytest.raises(InputError, match="selection='dev'"):
        recipe_settings("studio", {"transfer": {"selection": "dev"}})
    with pytest.raises(InputError, match="steps"):
        recipe_settings("paper", {"transfer": {"steps": 0}})
    with pytest.warns(UserWarning, match="bogus"):
        recipe_settings("paper", {"transfer": {"bogus": 1}})


def test_top_k_larger_than_the_anchors_is_refused(pair):
    src, tgt = pair
    with pytest.raises(InputError, match="larger than the"):
        transfer_prompt([(soft(src, randn(3, src.width)), src)], tgt, config(top_k=100_000))
