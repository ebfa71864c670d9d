"""The answer position, checked against an independent oracle (tests/oracle.py): plain transformers calls on the
filled-in sentence. No real masked LM runs on these machines, so for BERT/RoBERTa/ALBERT users this is the guard
for every P@1, tuning and transfer number."""

from __future__ import annotations

import pytest
import torch
from oracle import oracle_logits, sentence

from ptfer_core.data import Fact
from ptfer_core.evaluation import CandidateSet, Prompt, evaluate
from ptfer_core.mini_lama import MINI_WORDS
from ptfer_core.templates import PromptTemplate
from ptfer_core.toy_models import tiny_lm

SUBJECTS = ["France", "Town3 Town4", "Person1 Person2 Person3", "Rome Madrid Tokyo Cairo"]  # 1 to 4 tokens
TEMPLATES = [
    "[X] is located in [Y] .",
    "The capital of [X] is [Y] .",
    "[Y] is the capital of [X] and the",
    "the [X] [Y] and a .",
]  # [Y] at the end, in the middle, first, right after [X]


@pytest.fixture(scope="module", params=["bert", "roberta", "albert", "gpt2", "llama"])
def lm(request):
    return tiny_lm(request.param, MINI_WORDS, seed=7)


def _usable(lm, template):
    return lm.kind.value == "masked" or not template.startswith("[Y]")  # a causal LM needs something before [Y]


@pytest.mark.parametrize("template", TEMPLATES)
def test_manual_template_logits_equal_the_plain_sentence(lm, template):
    if not _usable(lm, template):
        pytest.skip("a causal LM cannot answer a template that starts with [Y]")
    if lm.kind.value == "causal" and template.index("[Y]") < template.index("[X]"):
        pytest.skip("[Y] before [X]")
    if template.index("[Y]") < template.index("[X]"):
        with pytest.raises(Exception, match="after"):
            PromptTemplate.parse(template)
        return
    batch = lm.encode(PromptTemplate.parse(template), SUBJECTS)
    with torch.no_grad():
        ours = lm.answer_logits(batch)
    for row, subject in enumerate(SUBJECTS):
        torch.testing.assert_close(ours[row], oracle_logits(lm, template, subject), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "layout", ["[X] [V] [V] [V] [Y] .", "[V] [V] [X] [Y] .", "[V] [X] is [V] [Y] .", "[V] [V] [S][X] [Y] ."]
)
def test_soft_prompt_logits_equal_the_spliced_sentence(lm, layout):
    vectors = torch.randn(PromptTemplate.parse(layout).n_soft, lm.width, generator=torch.Generator().manual_seed(3))
    template = PromptTemplate.parse(layout)
    batch = lm.encode(template, SUBJECTS)
    with torch.no_grad():
        ours = lm.answer_logits(batch, vectors)
    for row, subject in enumerate(SUBJECTS):
        if "[S]" in layout:  # PEFT's layout: the vectors precede the start tokens, so splice them before the sentence
            expected = _peft_oracle(lm, subject, vectors)
        else:
            expected = oracle_logits(lm, layout, subject, vectors)
        torch.testing.assert_close(ours[row], expected, rtol=1e-4, atol=1e-4)


def _peft_oracle(lm, subject, vectors):
    text = sentence(lm, "[X] [Y] .", subject)
    ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        embeds = torch.cat([vectors.unsqueeze(0), lm.model.get_input_embeddings()(ids)], dim=1)
        logits = lm.model(inputs_embeds=embeds).logits[0]
    if lm.kind.value == "masked":
        return logits[len(vectors) + int((ids[0] == lm.tokenizer.mask_token_id).nonzero()[0, 0])]
    return logits[-1]


def test_masked_lm_top_k_matches_the_fill_mask_pipeline():
    from transformers import pipeline

    lm = tiny_lm("bert", MINI_WORDS, seed=7)
    fill = pipeline("fill-mask", model=lm.model, tokenizer=lm.tokenizer, top_k=5, device="cpu")
    for subject in SUBJECTS[:3]:
        template = "[X] is located in [Y] ."
        expected = [r["token"] for r in fill(sentence(lm, template, subject))]
        with torch.no_grad():
            logits = lm.answer_logits(lm.encode(PromptTemplate.parse(template), [subject]))[0]
        assert logits.topk(5).indices.tolist() == expected


def test_bfloat16_logits_stay_close_to_float32(lm):
    template = PromptTemplate.parse("[X] [V] [V] [Y] .")
    vectors = torch.randn(2, lm.width, generator=torch.Generator().manual_seed(4))
    batch = lm.encode(template, SUBJECTS)
    with torch.no_grad():
        exact = lm.answer_logits(batch, vectors)
        fast = lm.answer_logits(batch, vectors, model=lm.compute_model("bfloat16"))
    # bfloat16 keeps 8 bits of mantissa: within 3% of the logits' range, and the same winner where it is clear.
    spread = exact.max() - exact.min()
    assert (fast - exact).abs().max() <= 0.03 * spread
    clear = (exact.topk(2).values[:, 0] - exact.topk(2).values[:, 1]) > 0.05 * spread
    assert torch.equal(fast.argmax(-1)[clear], exact.argmax(-1)[clear])


def test_prefix_cache_equals_the_full_forward():
    for arch in ("llama", "gpt2"):
        lm = tiny_lm(arch, MINI_WORDS, seed=5)
        template = PromptTemplate.parse("The [X] [V] [V] [V] [Y] .")
        vectors = torch.randn(3, lm.width, generator=torch.Generator().manual_seed(6))
        batch = lm.encode(template, SUBJECTS)
        model = lm.compute_model("float32", for_training=True)
        if arch == "gpt2":  # GPT-2's dropout keeps a training twin in train mode; the eval twin caches
            model = lm.compute_model("float32", dropout=False, for_training=True)
        cached = lm.with_prefix(batch, model)
        assert cached.prefix is not None, arch
        with torch.no_grad():
            full = lm.answer_logits(batch, vectors)
            fast = lm.answer_logits(cached.rows([3, 0, 2]), vectors, model=model)
        torch.testing.assert_close(fast, full[[3, 0, 2]], rtol=1e-4, atol=1e-4)


def test_evaluate_scores_what_the_oracle_predicts(lm):
    template = "[X] is located in [Y] ."
    cands = CandidateSet.build(lm, ["France", "Germany", "Italy", "Spain", "Paris", "Rome"])
    facts = [Fact(s, ["France", "Italy", "Paris", "Rome"][i], f"o-{i}") for i, s in enumerate(SUBJECTS)]
    result = evaluate(lm, Prompt.manual(_task(template)), facts, cands, batch_size=3)
    expected = [cands.words[int(oracle_logits(lm, template, f.subject)[cands.token_ids].argmax())] for f in facts]
    assert result.predictions == expected
    assert result.n_correct == sum(p == f.object for p, f in zip(expected, facts))


def _task(template):
    from ptfer_core.data import Task

    return Task("P0", "test", template, "N-1")
