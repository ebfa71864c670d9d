"""Every path to the answer logits, against the plain transformers forward of tests/oracle.py: a biased LM head,
Gemma's logit soft-capping, masked LMs whose head the project does not split (full forward), a compute model other
than the loaded one, the prefix cache with text between the prompt and [Y]; and the exact refusals of `encode`.
Written from a mutation run (docs/benchmarks.md, "Mutation scores")."""

from __future__ import annotations

import copy
import re
from types import SimpleNamespace

import pytest
import torch
from oracle import oracle_logits

from ptfer_core.config import ModelKind
from ptfer_core.errors import DimensionMismatchError, InputError, ModelLoadError
from ptfer_core.mini_lama import MINI_WORDS
from ptfer_core.models import PromptedLM
from ptfer_core.templates import PromptTemplate
from ptfer_core.toy_models import tiny_lm, tiny_model, word_tokenizer

SUBJECTS = ["France", "Town3 Town4", "Person1 Person2 Person3"]
MANUAL = "[X] is located in [Y] ."
SOFT = "[X] [V] [V] [Y] ."


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def assert_matches_oracle(lm, template, vectors=None, model=None, candidate_ids=None):
    batch = lm.encode(PromptTemplate.parse(template), SUBJECTS)
    with torch.no_grad():
        ours = lm.answer_logits(batch, vectors, candidate_ids, model=model)
    reader = lm if model is None else SimpleNamespace(model=model, tokenizer=lm.tokenizer, kind=lm.kind)
    for row, subject in enumerate(SUBJECTS):
        expected = oracle_logits(reader, template, subject, vectors)
        if candidate_ids is not None:
            expected = expected[candidate_ids]
        torch.testing.assert_close(ours[row], expected, rtol=1e-4, atol=1e-4)
    return ours


def vectors_for(lm, n=2, seed=3):
    return torch.randn(n, lm.width, generator=torch.Generator().manual_seed(seed))


def test_a_biased_lm_head_adds_its_bias_on_every_path():
    lm = tiny_lm("bert", MINI_WORDS, seed=7)
    with torch.no_grad():
        lm.model.cls.predictions.bias.copy_(torch.randn(lm.vocab_size, generator=torch.Generator().manual_seed(1)))
    assert lm.model.cls.predictions.decoder.bias.abs().sum() > 0
    candidates = torch.tensor([9, 4, 30, 12])
    assert_matches_oracle(lm, MANUAL)
    assert_matches_oracle(lm, SOFT, vectors_for(lm), candidate_ids=candidates)


def _tiny_of(model_class: str, config_class: str, style: str, name: str, *, seed: int, bos: bool = False, **config):
    """A tiny transformers model of a family `tiny_lm` does not build, over the toy words."""
    import transformers as tf

    tokenizer = word_tokenizer(MINI_WORDS, style, bos=bos)
    torch.manual_seed(seed)
    cfg = getattr(tf, config_class)(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        **config,
    )
    return PromptedLM(getattr(tf, model_class)(cfg), tokenizer, name=name)


def _tiny_gemma2(softcap: float):
    return _tiny_of(
        "Gemma2ForCausalLM",
        "Gemma2Config",
        "sentencepiece",
        "tiny-gemma2",
        seed=0,
        bos=True,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=128,
        final_logit_softcapping=softcap,
        initializer_range=0.5,
        pad_token_id=0,
        attn_implementation="eager",
    )


def test_gemma_logits_are_soft_capped_as_the_model_does():
    lm = _tiny_gemma2(softcap=2.0)
    ours = assert_matches_oracle(lm, MANUAL)
    assert ours.abs().max() < 2.0 and ours.abs().max() > 1.0  # the cap is reached for, and holds
    assert_matches_oracle(lm, SOFT, vectors_for(lm), candidate_ids=torch.tensor([3, 8, 21]))


def _unsplit_masked_lm():
    """A masked LM family without a known head split (MegatronBERT): the project runs the whole model."""
    return _tiny_of(
        "MegatronBertForMaskedLM", "MegatronBertConfig", "wordpiece", "tiny-megatron", seed=2, initializer_range=0.2
    )


def test_a_masked_lm_with_an_unknown_head_is_answered_by_a_full_forward():
    lm = _unsplit_masked_lm()
    assert lm.kind == ModelKind.MASKED and lm._head_transform is None
    assert_matches_oracle(lm, MANUAL)
    assert_matches_oracle(lm, SOFT, vectors_for(lm), candidate_ids=torch.tensor([5, 9, 17]))
    other = copy.deepcopy(lm.model)
    with torch.no_grad():
        other.bert.encoder.layer[0].output.dense.weight.mul_(3.0)
    moved = assert_matches_oracle(lm, SOFT, vectors_for(lm), model=other)
    assert not torch.allclose(moved, assert_matches_oracle(lm, SOFT, vectors_for(lm)), atol=1e-3)


def test_known_masked_heads_are_split_so_only_candidate_rows_are_computed():
    for arch in ("bert", "roberta", "albert"):
        assert tiny_lm(arch, MINI_WORDS, seed=1)._head_transform is not None, arch


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_the_compute_model_passed_in_is_the_one_that_runs(arch):
    lm = tiny_lm(arch, MINI_WORDS, seed=7)
    other = copy.deepcopy(lm.model)
    layer = other.bert.encoder.layer[0].output.dense if arch == "bert" else other.model.layers[0].mlp.down_proj
    with torch.no_grad():
        layer.weight.mul_(3.0)
    moved = assert_matches_oracle(lm, SOFT, vectors_for(lm), model=other)
    plain = assert_matches_oracle(lm, SOFT, vectors_for(lm))
    assert not torch.allclose(moved, plain, atol=1e-3)


def test_compute_models_the_loaded_model_for_float32_inference_and_cached_twins_otherwise():
    lm = tiny_lm("llama", MINI_WORDS, seed=7)
    assert lm.compute_model() is lm.model and lm.compute_model("float32") is lm.model
    fast = lm.compute_model("bfloat16")
    assert fast is not lm.model and fast is lm.compute_model("bfloat16")
    assert next(fast.parameters()).dtype == torch.bfloat16 and next(lm.model.parameters()).dtype == torch.float32
    assert lm.compute_model("float32", for_training=True) is not lm.model


def test_the_prefix_cache_is_kept_per_compute_model_and_reads_text_before_the_answer():
    lm = tiny_lm("llama", MINI_WORDS, seed=5)
    template = PromptTemplate.parse("The [X] [V] [V] is in [Y] .")  # words between the last vector and [Y]
    vectors = vectors_for(lm, 2, seed=6)
    batch = lm.encode(template, ["France", "Person1 Person2 Person3 Person4", "Town3"])
    exact, fast = lm.compute_model("float32", for_training=True), lm.compute_model("bfloat16")
    with_exact, with_fast = lm.with_prefix(batch, exact), lm.with_prefix(batch, fast)
    assert with_exact.prefix is not None and with_fast.prefix is not None
    assert with_exact.prefix is not with_fast.prefix  # one model's keys/values never serve another
    with torch.no_grad():
        full = lm.answer_logits(batch, vectors)
        cached = lm.answer_logits(with_exact.rows([2, 0, 1]), vectors, model=exact)
    torch.testing.assert_close(cached, full[[2, 0, 1]], rtol=1e-4, atol=1e-4)


def test_prefix_chunks_of_unequal_lengths_are_trimmed_padded_and_put_back_in_row_order():
    from ptfer_core import fastpath

    lm = tiny_lm("llama", MINI_WORDS, seed=5)
    template = PromptTemplate.parse("The [X] [V] [V] is in [Y] .")
    vectors = vectors_for(lm, 2, seed=6)
    subjects = ["Person1 Person2 Person3 Person4", "France", "Town3 Town4", "Paris", "Person1 Person2 Person3", "Town1"]
    batch = lm.encode(template, subjects)
    model = lm.compute_model("float32", for_training=True)
    first = batch.soft_positions[:, 0]
    assert len(set(first.tolist())) > 2  # prefixes of several lengths, not in length order
    state = fastpath.compute_prefix(model, lm.embed, batch.input_ids, first, chunk=2)  # three chunks
    whole = fastpath.compute_prefix(model, lm.embed, batch.input_ids, first, chunk=64)
    for (k, v), (k_all, v_all) in zip(state.layers, whole.layers):
        assert k.shape == k_all.shape
        visible = (torch.arange(k.shape[2]) < first.unsqueeze(1))[:, None, :, None]  # what attention reads
        torch.testing.assert_close(k * visible, k_all * visible, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(v * visible, v_all * visible, rtol=1e-5, atol=1e-5)
    chunked = type(batch)(batch.input_ids, batch.attention_mask, batch.soft_positions, batch.answer_positions, state)
    with torch.no_grad():
        full = lm.answer_logits(batch, vectors)
        cached = lm.answer_logits(chunked, vectors, model=model)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- encode and its refusals


def test_a_causal_lm_answers_after_a_single_token():
    lm = tiny_lm("gpt2", MINI_WORDS, seed=7)  # no BOS: "France" alone is the whole input
    batch = lm.encode(PromptTemplate.parse("[X] [Y] ."), ["France"])
    assert batch.answer_positions.tolist() == [0]
    with torch.no_grad():
        ours = lm.answer_logits(batch)[0]
    torch.testing.assert_close(ours, oracle_logits(lm, "[X] [Y] .", "France"), rtol=1e-4, atol=1e-4)


def test_inputs_up_to_the_models_length_are_read_and_longer_ones_refused_by_row():
    lm = PromptedLM(tiny_model("gpt2", len(word_tokenizer(MINI_WORDS, "bpe")), max_positions=6),
                    word_tokenizer(MINI_WORDS, "bpe"), name="tiny-short")  # fmt: skip
    template = PromptTemplate.parse("[X] is in [Y] .")  # causal: the subject, then "is in"
    assert lm.encode(template, ["Person1 Person2 Person3 Person4"]).input_ids.shape[1] == 6
    with pytest.raises(
        InputError,
        match=exactly("input 2 is 7 tokens long; tiny-short reads at most 6: shorten the subject"),
    ):
        lm.encode(template, ["France", "Person1 Person2 Person3 Person4 Person5", "Town3"])


def test_encode_and_vector_refusals_name_the_problem_exactly():
    lm = tiny_lm("bert", MINI_WORDS, seed=7)
    with pytest.raises(
        InputError, match=exactly("empty subject (row 2): type the entity or text the question is about")
    ):
        lm.encode(PromptTemplate.parse(MANUAL), ["France", " "])
    batch = lm.encode(PromptTemplate.parse(SOFT), ["France"])
    with pytest.raises(DimensionMismatchError, match=exactly("soft prompt must be a matrix [m, d], got shape (32,)")):
        lm.answer_logits(batch, torch.zeros(32))
    with pytest.raises(DimensionMismatchError, match=exactly("template has 2 [V] slots but the prompt has 3 vectors")):
        lm.answer_logits(batch, torch.zeros(3, lm.width))
    with pytest.raises(InputError, match=exactly("soft prompt contains NaN or infinite values")):
        lm.answer_logits(batch, torch.full((2, lm.width), float("inf")))
    with pytest.raises(InputError, match=exactly("template has [V] slots but no soft prompt vectors were given")):
        lm.answer_logits(batch)


def test_construction_freezes_the_model_and_checks_the_tokenizer():
    lm = tiny_lm("bert", MINI_WORDS, seed=7, name="frozen")
    assert lm.name == "frozen" and not any(p.requires_grad for p in lm.model.parameters())
    forced = PromptedLM(lm.model, lm.tokenizer, name="forced", kind="causal")
    assert forced.kind == ModelKind.CAUSAL  # an explicit kind wins over the class name
    no_mask = word_tokenizer(MINI_WORDS, "wordpiece")
    no_mask.mask_token = None
    with pytest.raises(ModelLoadError, match=exactly("no-mask: masked LM tokenizer has no mask token")):
        PromptedLM(lm.model, no_mask, name="no-mask")
    causal = tiny_lm("llama", MINI_WORDS, seed=7)
    assert PromptedLM(causal.model, no_mask, name="causal-no-mask").kind == ModelKind.CAUSAL  # needs none
    with pytest.raises(Exception, match="model kind"):
        PromptedLM(lm.model, lm.tokenizer, name="x", kind="bidirectional")


def test_bfloat16_twin_reads_its_own_prefix_cache():
    lm = tiny_lm("llama", MINI_WORDS, seed=5)
    template = PromptTemplate.parse("The [X] [V] [V] is in [Y] .")
    vectors = vectors_for(lm, 2, seed=6)
    batch = lm.encode(template, ["France", "Person1 Person2 Person3 Person4", "Town3"])
    fast = lm.compute_model("bfloat16")
    cached = lm.with_prefix(batch, fast)
    with torch.no_grad():
        exact = lm.answer_logits(batch, vectors)
        approx = lm.answer_logits(cached, vectors, model=fast)
    assert approx.dtype == torch.float32  # the head runs in float32 on the loaded model's weights
    assert (approx - exact).abs().max() <= 0.03 * (exact.max() - exact.min())


def test_head_rows_cached_under_inference_mode_still_train():
    lm = tiny_lm("gpt2", MINI_WORDS, seed=3)
    batch = lm.encode(PromptTemplate.parse(SOFT), SUBJECTS)
    candidates = torch.tensor([4, 9, 15, 22])
    with torch.inference_mode():  # evaluation fills the cache first
        lm.answer_logits(batch, vectors_for(lm), candidates)
    vectors = vectors_for(lm).requires_grad_(True)
    lm.answer_logits(batch, vectors, candidates).logsumexp(-1).sum().backward()  # then tuning reuses the rows
    assert vectors.grad is not None and vectors.grad.abs().sum() > 0


def test_a_masked_lm_also_accepts_a_bare_word_token_and_a_causal_lm_does_not():
    for arch in ("roberta", "gpt2"):
        lm = tiny_lm(arch, MINI_WORDS, seed=1)
        lm.tokenizer.add_tokens(["Zebra"])  # only bare: " Zebra" is two tokens (a lone space, then the word)
        lm.model.resize_token_embeddings(len(lm.tokenizer))
        zebra = lm.tokenizer.convert_tokens_to_ids("Zebra")
        assert len(lm.tokenizer(" Zebra", add_special_tokens=False)["input_ids"]) == 2
        expected = [zebra, lm.tokenizer.convert_tokens_to_ids("ĠParis"), None]
        if arch == "gpt2":
            expected[0] = None  # a causal LM reads the answer after a space: only the spaced form counts
        assert lm.word_token_ids(["Zebra", "Paris", "Qwertyuiop"]) == expected, arch


def test_the_model_kind_comes_from_the_class_name():
    import transformers as tf

    from ptfer_core.errors import NoLMHeadError
    from ptfer_core.models import infer_kind

    cfg = tf.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    assert infer_kind(tf.BertForPreTraining(cfg)) == ModelKind.MASKED
    assert infer_kind(tf.BertForMaskedLM(cfg)) == ModelKind.MASKED
    with pytest.raises(
        NoLMHeadError,
        match=exactly("BertModel is neither a masked LM nor a causal LM: it has no language-modelling head"),
    ):
        infer_kind(tf.BertModel(cfg))


def test_token_ids_from_the_rust_backend_equal_the_tokenizer_wrapper():
    texts = ["Paris", " Paris", "Zebra", " Zebra", "Qwertyuiop", " two words", "naïve", "日本"]
    for arch in ("bert", "roberta", "gpt2", "llama"):
        lm = tiny_lm(arch, MINI_WORDS, seed=1)
        lm.tokenizer.add_tokens(["Zebra"])  # added tokens live in the backend too
        wrapper = lm.tokenizer(texts, add_special_tokens=False)["input_ids"]
        assert lm._token_ids(texts) == wrapper, arch
        # a backend set to truncate would cut where the wrapper does not: the wrapper is used instead
        lm.tokenizer.backend_tokenizer.enable_truncation(max_length=1)
        assert lm._token_ids(texts) == wrapper, arch
