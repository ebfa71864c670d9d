import pytest
import torch

from ptfer_core.errors import DimensionMismatchError, InputError, ModelLoadError, NoLMHeadError, TemplateError
from ptfer_core.loading import load_model
from ptfer_core.templates import PromptTemplate, SegmentKind


def template_as_soft(lm, template_text):
    """Replace each literal word token of a template by a [V] slot: (soft template, those tokens' embeddings)."""
    tpl = PromptTemplate.parse(template_text)
    parts, ids = [], []
    after_answer = False
    for seg in tpl.segments:
        if seg.kind == SegmentKind.TEXT and after_answer:
            parts.append(seg.text.strip())  # text after [Y] stays literal (a causal LM never reads it)
        elif seg.kind == SegmentKind.TEXT:
            seg_ids = lm.tokenizer(seg.text, add_special_tokens=False)["input_ids"]
            ids += seg_ids
            parts += ["[V]"] * len(seg_ids)
        else:
            after_answer = after_answer or seg.kind == SegmentKind.ANSWER
            parts.append({SegmentKind.SUBJECT: "[X]", SegmentKind.ANSWER: "[Y]", SegmentKind.SOFT: "[V]"}[seg.kind])
    return PromptTemplate.parse(" ".join(parts)), lm.embed(torch.tensor(ids))


@pytest.mark.parametrize("template", ["[X] is located in [Y] .", "The capital of [X] is [Y] ."])
def test_template_embeddings_as_soft_prompt_reproduce_discrete_logits(any_lm, template):
    lm = any_lm
    subjects = ["France", "Town3 Town4"]
    manual = PromptTemplate.parse(template)
    # Reference: the plain full forward on the tokenised sentence, independent of our answer-position path.
    batch = lm.encode(manual, subjects)
    with torch.no_grad():
        full = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    reference = full[torch.arange(len(subjects)), batch.answer_positions]
    soft_template, vectors = template_as_soft(lm, template)
    soft_batch = lm.encode(soft_template, subjects)
    assert torch.equal(soft_batch.answer_positions, batch.answer_positions)
    with torch.no_grad():
        ours = lm.answer_logits(soft_batch, vectors)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_causal_reference_sentence_matches_plain_tokenisation(gpt2_lm):
    """For a causal LM the answer is predicted from the last token before [Y]: the tokens are the sentence prefix."""
    lm = gpt2_lm
    batch = lm.encode(PromptTemplate.parse("The capital of [X] is [Y] ."), ["France"])
    expected = lm.tokenizer("The capital of France is", add_special_tokens=True)["input_ids"]
    assert batch.input_ids[0, : len(expected)].tolist() == expected
    assert batch.answer_positions.tolist() == [len(expected) - 1]


def test_candidate_rows_equal_full_vocabulary_columns(any_lm):
    lm = any_lm
    batch = lm.encode(PromptTemplate.parse("[X] is located in [Y] ."), ["Town1", "Paris", "Town2 Town3"])
    cand = torch.tensor([7, 3, 11, 12])
    with torch.no_grad():
        full = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        restricted = lm.answer_logits(batch, None, cand)
    torch.testing.assert_close(restricted, full[torch.arange(3), batch.answer_positions][:, cand], rtol=1e-4, atol=1e-5)


def test_model_is_not_mutated_by_soft_prompts(bert_lm):
    lm = bert_lm
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    vocab_before = len(lm.tokenizer)
    vectors = torch.randn(3, lm.width, requires_grad=True)
    logits = lm.answer_logits(lm.encode(PromptTemplate.soft(3), ["France"]), vectors)
    logits.sum().backward()
    assert vectors.grad is not None and vectors.grad.abs().sum() > 0
    assert len(lm.tokenizer) == vocab_before
    for k, v in lm.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in lm.model.parameters())


def test_bad_vectors_are_rejected(bert_lm):
    batch = bert_lm.encode(PromptTemplate.soft(2), ["France"])
    with pytest.raises(DimensionMismatchError, match="width"):
        bert_lm.answer_logits(batch, torch.zeros(2, bert_lm.width + 1))
    with pytest.raises(DimensionMismatchError, match="2 \\[V\\] slots"):
        bert_lm.answer_logits(batch, torch.zeros(3, bert_lm.width))
    bad = torch.zeros(2, bert_lm.width)
    bad[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        bert_lm.answer_logits(batch, bad)


@pytest.mark.parametrize("subject", ["", "   "])
def test_empty_subject_is_rejected(bert_lm, subject):
    with pytest.raises(InputError, match="empty subject"):
        bert_lm.encode(PromptTemplate.parse("[X] is located in [Y] ."), [subject])


@pytest.mark.parametrize(
    "text,match",
    [("[X] is located in .", r"\[Y\]"), ("is located in [Y] .", r"\[X\]"), ("[Y] is [X]", "after"), ("", "empty")],
)
def test_bad_templates(text, match):
    with pytest.raises(TemplateError, match=match):
        PromptTemplate.parse(text)


def test_soft_layouts():
    assert PromptTemplate.soft(3).text == "[X] [V] [V] [V] [Y] ."
    assert PromptTemplate.soft(3, "prefix").text == "[V] [V] [V] [X] [Y] ."
    assert PromptTemplate.soft(3, "split", split_at=1).text == "[V] [X] [V] [V] [Y] ."


def test_unknown_model_name_gives_clear_error():
    with pytest.raises(ModelLoadError, match="cannot load model 'no-such-model-xyz'"):
        load_model("no-such-model-xyz")


def test_local_model_directory_round_trip(tmp_path, bert_lm):
    bert_lm.model.save_pretrained(tmp_path / "m")
    bert_lm.tokenizer.save_pretrained(tmp_path / "m")
    lm = load_model(str(tmp_path / "m"))
    assert lm.kind.value == "masked" and lm.width == bert_lm.width
    batch = lm.encode(PromptTemplate.parse("[X] is located in [Y] ."), ["France"])
    with torch.no_grad():
        torch.testing.assert_close(lm.answer_logits(batch), bert_lm.answer_logits(batch))


def test_model_without_lm_head_is_refused(tmp_path, bert_lm):
    import transformers as tf

    tf.BertModel(bert_lm.model.config).save_pretrained(tmp_path / "bare")
    bert_lm.tokenizer.save_pretrained(tmp_path / "bare")
    with pytest.raises(NoLMHeadError, match="no language-modelling head"):
        load_model(str(tmp_path / "bare"))


def test_unfetched_local_model_says_how_to_fetch(tmp_path):
    with pytest.raises(ModelLoadError, match="ptfer models fetch gemma3-270m"):
        load_model("gemma3-270m", models_root=tmp_path)


def test_auto_precision_follows_the_machine(monkeypatch):
    import torch

    from ptfer_core.config import Precision, resolve_precision

    monkeypatch.delenv("PTFER_AUTO_PRECISION", raising=False)
    assert resolve_precision("float32") == Precision.FLOAT32 and resolve_precision("bfloat16") == Precision.BFLOAT16
    assert resolve_precision("auto", "cuda:0") == Precision.BFLOAT16
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert resolve_precision("auto") == Precision.FLOAT32  # emulated bf16 would be ~50x slower
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert resolve_precision("auto") == Precision.BFLOAT16
    monkeypatch.setenv("PTFER_AUTO_PRECISION", "float32")
    assert resolve_precision("auto") == Precision.FLOAT32


def test_a_tuned_prompt_records_the_precision_auto_chose(monkeypatch, mini_data_dir):
    from ptfer_core.mini_lama import MINI_WORDS
    from ptfer_core.runs import TaskData
    from ptfer_core.settings import TuneConfig
    from ptfer_core.toy_models import tiny_lm
    from ptfer_core.tuning import tune_prompt

    lm = tiny_lm("gpt2", MINI_WORDS)
    data = TaskData.load("P36", mini_data_dir)
    for forced in ("float32", "bfloat16"):
        monkeypatch.setenv("PTFER_AUTO_PRECISION", forced)
        prompt = tune_prompt(
            lm, data.task, data.splits["train"], [], data.candidates(lm), TuneConfig(epochs=1, max_train=4)
        )
        assert prompt.provenance["tune"]["precision"] == "auto" and prompt.provenance["precision_used"] == forced
