"""Soft-prompt layouts and anchor selection, pinned exactly (gaps found by mutation testing: `mutmut run`)."""

from __future__ import annotations

import itertools

import pytest

from ptfer_core.anchors import AnchorSet, select_anchors
from ptfer_core.errors import InputError, TemplateError
from ptfer_core.templates import PromptTemplate
from ptfer_core.toy_models import tiny_lm

# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    "placement,split_at,text",
    [
        ("postfix", None, "[X] [V] [V] [V] [Y] ."),
        ("prefix", None, "[V] [V] [V] [X] [Y] ."),
        ("split", None, "[V] [V] [X] [V] [Y] ."),  # default: all but the last vector before the subject
        ("split", 0, "[X] [V] [V] [V] [Y] ."),
        ("split", 1, "[V] [X] [V] [V] [Y] ."),
        ("split", 3, "[V] [V] [V] [X] [Y] ."),
        ("peft", None, "[V] [V] [V] [S][X] [Y] ."),
    ],
)
def test_every_layout_is_the_documented_text(placement, split_at, text):
    layout = PromptTemplate.soft(3, placement, split_at)
    assert layout.text == text and layout.n_soft == 3
    assert layout.soft_before_specials == (placement == "peft")


def test_one_vector_is_a_valid_prompt_and_the_suffix_is_kept():
    assert PromptTemplate.soft(1).text == "[X] [V] [Y] ."
    assert PromptTemplate.soft(2, "prefix", suffix="").text == "[V] [V] [X] [Y]"
    assert PromptTemplate.soft(2, "peft", suffix=" !").text == "[V] [V] [S][X] [Y] !"


@pytest.mark.parametrize(
    "args,message",
    [
        ((0,), "a soft prompt needs at least one vector (got 0)"),
        ((3, "split", 4), "split_at=4 must lie in 0..3"),
        ((3, "split", -1), "split_at=-1 must lie in 0..3"),
        ((3, "template"), "a template-shaped layout depends on the model and relation: resolve it first"),
        ((3, "sideways"), "unknown placement 'sideways'; choose one of:"),
    ],
)
def test_bad_layouts_say_what_is_wrong(args, message):
    with pytest.raises((TemplateError, InputError)) as caught:
        PromptTemplate.soft(*args)
    assert str(caught.value).startswith(message), str(caught.value)


# ----------------------------------------------------------------------------- anchors

LEFT = ["apple", "river", "city", "music", "stone", "green", "house", "paper"]
RIGHT = ["river", "music", "house", "cloud", "paper", "tiger", "apple"]


@pytest.fixture(scope="module")
def models():
    return (
        tiny_lm("gpt2", LEFT, name="left"),
        tiny_lm("llama", RIGHT, name="right"),
        tiny_lm("gpt2", ["stone", "green", "lemon"], name="third"),
    )


def test_anchors_are_exactly_the_words_every_model_has(models):
    left, right, _ = models
    shared = select_anchors([left, right], word_filter="all")
    assert set(shared.words) == set(LEFT) & set(RIGHT)
    assert shared.token_ids(left).tolist() == left.word_token_ids(list(shared.words))
    assert shared.token_ids(right).tolist() == right.word_token_ids(list(shared.words))
    assert select_anchors([left, right, left], word_filter="all").words == shared.words  # a repeated model is one


def test_k_takes_the_first_k_shared_words_and_must_be_positive(models):
    left, right, _ = models
    every = select_anchors([left, right], word_filter="all").words
    assert select_anchors([left, right], 1, word_filter="all").words == every[:1]
    assert select_anchors([left, right], 3, word_filter="all").words == every[:3]
    with pytest.raises(InputError, match=r"number of anchors must be positive \(got 0\)"):
        select_anchors([left, right], 0)


def test_cached_anchors_belong_to_their_model_set(models):
    left, right, third = models
    first = select_anchors([left, right], word_filter="all").words
    other = select_anchors([left, third], word_filter="all").words  # same first model, so the same memo
    assert set(other) == {"stone", "green"} and set(first) != set(other)
    with pytest.raises(InputError, match=r"models \['right', 'third'\] share no words"):
        select_anchors([right, third], word_filter="all")


def test_missing_anchor_words_are_listed_five_then_counted(models):
    left, _, _ = models
    missing = [f"zz{i}" for i in range(7)]
    with pytest.raises(InputError) as caught:
        AnchorSet(("apple", *missing), "frequency").token_ids(left)
    assert str(caught.value) == (
        "7 anchor word(s) are not single tokens of left: 'zz0', 'zz1', 'zz2', 'zz3', 'zz4' and 2 more; "
        "build the anchors with this model included"
    )
    with pytest.raises(InputError, match=r"1 anchor word\(s\) are not single tokens of left: 'zz0'; build"):
        AnchorSet(("zz0",), "frequency").token_ids(left)


@pytest.mark.parametrize(
    "vocab,style",
    [
        (["Ġthe", "Ġcat", "s", "ing"], "bpe"),
        (["▁the", "▁cat", "s", "Ġx"], "sentencepiece"),
        (["the", "##s", "##ing", "cat"], "wordpiece"),
        (["the", "cat", "sat"], "wordpiece"),  # no markers: whole words
    ],
)
def test_tokenizer_style_is_the_dominant_marker(vocab, style):
    from ptfer_core.anchors import tokenizer_style

    assert tokenizer_style(vocab) == style


def test_frequency_anchors_come_in_mean_rank_order(models, monkeypatch):
    """Most frequent first, by the mean id-rank over the models (not alphabetically, not reversed)."""
    from ptfer_core import anchors

    left, right, _ = models
    fake = {
        "left": {"river": 1, "music": 2, "house": 3, "apple": 4, "paper": 5},
        "right": {"music": 1, "house": 2, "river": 3, "paper": 4, "apple": 5},
    }
    monkeypatch.setattr(anchors, "word_index", lambda lm: fake[lm.name])
    # mean ranks: music 0.1, river 0.2, house 0.3, paper 0.7, apple 0.7 (ties by the word itself)
    assert anchors.shared_vocabulary([left, right], "all") == ["music", "river", "house", "apple", "paper"]


@pytest.mark.parametrize("n_missing,tail", [(5, "'zz4'; build"), (6, "'zz4' and 1 more; build")])
def test_the_missing_word_list_stops_at_five(models, n_missing, tail):
    with pytest.raises(InputError) as caught:
        AnchorSet(tuple(f"zz{i}" for i in range(n_missing)), "frequency").token_ids(models[0])
    assert tail in str(caught.value)


def test_a_map_shows_a_ranked_anchor_sets_first_words_and_spreads_over_an_alphabetical_one():
    """The maps' "Anchors shown": the most frequent words of a frequency-ranked set; across the whole common
    vocabulary (alphabetical), not its words from "#" to "Ci…"; every anchor when there are no more than asked."""
    from ptfer_core.analysis import shown_anchor_indices
    from ptfer_core.anchors import AnchorSet

    words = tuple(f"w{i:03d}" for i in range(100))
    assert shown_anchor_indices(AnchorSet(words, "frequency"), 10).tolist() == list(range(10))
    spread = shown_anchor_indices(AnchorSet(words, "common-vocab"), 10).tolist()
    assert spread[0] == 0 and spread[-1] == 99 and len(set(spread)) == 10 and spread == sorted(spread)
    assert max(b - a for a, b in itertools.pairwise(spread)) <= 12, "evenly spread"
    assert len(set(shown_anchor_indices(AnchorSet(words, "common-vocab"), 99).tolist())) == 99, "no anchor twice"
    assert shown_anchor_indices(AnchorSet(words, "common-vocab"), 500).tolist() == list(range(100))
