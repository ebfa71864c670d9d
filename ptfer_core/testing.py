"""Tiny random models and tokenizers, built in-process: for tests and offline demos (no network, no weights)."""
from __future__ import annotations

import json

import torch

from .models import PromptedLM

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]


def word_tokenizer(words: list[str], style: str = "wordpiece", *, bos: bool = False):
    """A whole-word tokenizer over `words`.

    style: "wordpiece" (bare words, BERT-like [CLS] … [SEP]), "bpe" (``Ġword`` after a space, RoBERTa/GPT-2
    surface forms) or "sentencepiece" (``▁word`` after a space, Llama/Gemma surface forms).
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    uniq = sorted(set(words))
    marker = {"wordpiece": "", "bpe": "Ġ", "sentencepiece": "▁"}[style]
    vocab_list = SPECIALS + uniq + ([marker + w for w in uniq] if marker else [])
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    if style == "wordpiece":
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        tok.decoder = decoders.WordPiece()
    else:
        # Split before each space-run; the space becomes the marker prefix of the next word.
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(" ", behavior="merged_with_next"),
            pre_tokenizers.Metaspace(replacement=marker, prepend_scheme="never", split=False)
            if style == "sentencepiece" else pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        tok.decoder = decoders.Metaspace(replacement=marker, prepend_scheme="never") if style == "sentencepiece" else decoders.ByteLevel()
        if bos:
            tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]",
                                   cls_token="[CLS]", sep_token="[SEP]", bos_token="<s>", eos_token="</s>")


def tiny_model(arch: str, vocab_size: int, *, width: int = 32, layers: int = 2, heads: int = 2, seed: int = 0,
               max_positions: int = 128, init_range: float = 0.2):
    """A small randomly initialised transformers model: arch in bert, roberta, albert, gpt2, llama."""
    import transformers as tf

    torch.manual_seed(seed)
    # A wider initialisation than the 0.02 default gives the random model logits that respond to its inputs.
    common = dict(vocab_size=vocab_size, num_hidden_layers=layers, num_attention_heads=heads, initializer_range=init_range)
    if arch == "bert":
        cfg = tf.BertConfig(hidden_size=width, intermediate_size=2 * width, max_position_embeddings=max_positions, **common)
        return tf.BertForMaskedLM(cfg)
    if arch == "roberta":
        cfg = tf.RobertaConfig(hidden_size=width, intermediate_size=2 * width, max_position_embeddings=max_positions + 2,
                               pad_token_id=0, **common)
        return tf.RobertaForMaskedLM(cfg)
    if arch == "albert":
        cfg = tf.AlbertConfig(embedding_size=width // 2, hidden_size=width, intermediate_size=2 * width,
                              max_position_embeddings=max_positions, pad_token_id=0, **common)
        return tf.AlbertForMaskedLM(cfg)
    if arch == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab_size, bos_token_id=5, eos_token_id=6, n_embd=width, n_layer=layers, n_head=heads, n_positions=max_positions,
                             initializer_range=init_range)
        return tf.GPT2LMHeadModel(cfg)
    if arch == "llama":
        cfg = tf.LlamaConfig(hidden_size=width, intermediate_size=2 * width, num_key_value_heads=heads,
                             max_position_embeddings=max_positions, tie_word_embeddings=True, pad_token_id=0, **common)
        return tf.LlamaForCausalLM(cfg)
    raise ValueError(f"unknown tiny architecture {arch!r}")


TOKENIZER_STYLE = {"bert": "wordpiece", "albert": "sentencepiece", "roberta": "bpe", "gpt2": "bpe", "llama": "sentencepiece"}


def tiny_lm(arch: str, words: list[str], *, width: int = 32, seed: int = 0, name: str | None = None, **kw) -> PromptedLM:
    """A tiny random `PromptedLM` whose tokenizer knows exactly `words` (plus specials)."""
    tokenizer = word_tokenizer(words, TOKENIZER_STYLE[arch], bos=arch == "llama")
    model = tiny_model(arch, len(tokenizer), width=width, seed=seed, **kw)
    return PromptedLM(model, tokenizer, name=name or f"tiny-{arch}-{width}")


# ----------------------------------------------------------------------------- a miniature LAMA

MINI_RELATIONS = [
    {"relation": "P17", "template": "[X] is located in [Y] .", "label": "country", "type": "N-1"},
    {"relation": "P36", "template": "The capital of [X] is [Y] .", "label": "capital", "type": "1-1"},
    {"relation": "P103", "template": "The native language of [X] is [Y] .", "label": "native language", "type": "N-1"},
]
_COUNTRIES = ["France", "Germany", "Italy", "Spain", "Japan", "Canada", "Brazil", "Egypt"]
_CAPITALS = ["Paris", "Berlin", "Rome", "Madrid", "Tokyo", "Ottawa", "Brasilia", "Cairo"]
_LANGUAGES = ["French", "German", "Italian", "Spanish", "Japanese", "English", "Portuguese", "Arabic"]
_PLACES = [f"Town{i}" for i in range(24)]
_PEOPLE = [f"Person{i}" for i in range(24)]


def mini_facts() -> dict[str, list[dict]]:
    facts = {
        "P17": [{"sub_label": p, "obj_label": _COUNTRIES[i % 8], "uuid": f"p17-{i}"} for i, p in enumerate(_PLACES)],
        "P36": [{"sub_label": c, "obj_label": cap, "uuid": f"p36-{i}"} for i, (c, cap) in enumerate(zip(_COUNTRIES, _CAPITALS))],
        "P103": [{"sub_label": p, "obj_label": _LANGUAGES[i % 8], "uuid": f"p103-{i}"} for i, p in enumerate(_PEOPLE)],
    }
    facts["P17"].append({"sub_label": "Atlantis", "obj_label": "Unobtainium", "uuid": "p17-x"})  # object outside the vocab
    return facts


MINI_WORDS = sorted(set(_COUNTRIES + _CAPITALS + _LANGUAGES + _PLACES + _PEOPLE + ["Atlantis"] +
                        "The capital of is located in native language . the a and".split()))


def write_mini_lama(root):
    """Write a LAMA-shaped data directory (3 relations, ~56 facts) and return its path."""
    from pathlib import Path

    root = Path(root)
    (root / "lama_trex").mkdir(parents=True, exist_ok=True)
    (root / "pararel_patterns").mkdir(exist_ok=True)
    (root / "relations.jsonl").write_text("\n".join(json.dumps(r) for r in MINI_RELATIONS) + "\n")
    for rid, rows in mini_facts().items():
        (root / "lama_trex" / f"{rid}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "pararel_patterns" / "P17.jsonl").write_text(json.dumps({"pattern": "[X] is in [Y]."}) + "\n")
    vocab = sorted(set(_COUNTRIES + _CAPITALS + _LANGUAGES + ["Unobtainium"]))
    (root / "common_vocab_cased_be_ro_al.txt").write_text("\n".join(vocab))
    (root / "common_vocab_cased.txt").write_text("\n".join(vocab))
    return root
