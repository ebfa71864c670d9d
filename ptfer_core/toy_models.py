"""Toy models: tiny transformers and tokenizers built in-process, and the miniature LAMA they know.

They need no download, so the app's demo, the tests and distributed workers can name them like any other model:
``tiny:ARCH[:WIDTH[:SEED]]`` (ARCH: bert, roberta, albert, gpt2, llama) is a random toy model, and the app's
``tiny-demo-*`` names are aliases of three of them. Labelled as toy models wherever they appear.
"""

from __future__ import annotations

import torch

from .mini_lama import MINI_WORDS, TRAINING_TEMPLATES, mini_facts
from .model_names import DEMO_ALIASES, TOY_PREFIX, ToySpec
from .models import PromptedLM
from .seeding import seeded_global_rng

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
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
        tok.decoder = decoders.WordPiece()
    else:
        # Split before each space-run; the space becomes the marker prefix of the next word.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(" ", behavior="merged_with_next"),
                pre_tokenizers.Metaspace(replacement=marker, prepend_scheme="never", split=False)
                if style == "sentencepiece"
                else pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tok.decoder = (
            decoders.Metaspace(replacement=marker, prepend_scheme="never")
            if style == "sentencepiece"
            else decoders.ByteLevel()
        )
        if bos:
            tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    # As RoBERTa's <mask> and ALBERT's [MASK]: the mask token absorbs the space before it ("in [MASK]").
    from tokenizers import AddedToken

    mask = AddedToken("[MASK]", lstrip=style != "wordpiece", special=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token=mask,
        cls_token="[CLS]",
        sep_token="[SEP]",
        bos_token="<s>",
        eos_token="</s>",
    )


def tiny_model(arch: str, vocab_size: int, *, seed: int = 0, **sizes):
    """A small randomly initialised transformers model: arch in bert, roberta, albert, gpt2, llama; its start drawn
    from the global generator seeded by `seed` (`seeding`), which is left as it was."""
    with seeded_global_rng(seed):
        return _built(arch, vocab_size, **sizes)


def _built(
    arch: str,
    vocab_size: int,
    *,
    width: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 128,
    init_range: float = 0.2,
):
    import transformers as tf

    # A wider initialisation than the 0.02 default gives the random model logits that respond to its inputs.
    common = dict(
        vocab_size=vocab_size, num_hidden_layers=layers, num_attention_heads=heads, initializer_range=init_range
    )
    if arch == "bert":
        cfg = tf.BertConfig(
            hidden_size=width, intermediate_size=2 * width, max_position_embeddings=max_positions, **common
        )
        return tf.BertForMaskedLM(cfg)
    if arch == "roberta":
        cfg = tf.RobertaConfig(
            hidden_size=width,
            intermediate_size=2 * width,
            max_position_embeddings=max_positions + 2,
            pad_token_id=0,
            **common,
        )
        return tf.RobertaForMaskedLM(cfg)
    if arch == "albert":
        cfg = tf.AlbertConfig(
            embedding_size=width // 2,
            hidden_size=width,
            intermediate_size=2 * width,
            max_position_embeddings=max_positions,
            pad_token_id=0,
            **common,
        )
        return tf.AlbertForMaskedLM(cfg)
    if arch == "gpt2":
        cfg = tf.GPT2Config(
            vocab_size=vocab_size,
            bos_token_id=5,
            eos_token_id=6,
            n_embd=width,
            n_layer=layers,
            n_head=heads,
            n_positions=max_positions,
            initializer_range=init_range,
        )
        return tf.GPT2LMHeadModel(cfg)
    if arch == "llama":
        cfg = tf.LlamaConfig(
            hidden_size=width,
            intermediate_size=2 * width,
            num_key_value_heads=heads,
            max_position_embeddings=max_positions,
            tie_word_embeddings=True,
            pad_token_id=0,
            **common,
        )
        return tf.LlamaForCausalLM(cfg)
    raise ValueError(f"unknown tiny architecture {arch!r}")


TOKENIZER_STYLE = {
    "bert": "wordpiece",
    "albert": "sentencepiece",
    "roberta": "bpe",
    "gpt2": "bpe",
    "llama": "sentencepiece",
}


def tiny_lm(
    arch: str, words: list[str], *, width: int = 32, seed: int = 0, name: str | None = None, **kw
) -> PromptedLM:
    """A tiny random `PromptedLM` whose tokenizer knows exactly `words` (plus specials)."""
    tokenizer = word_tokenizer(words, TOKENIZER_STYLE[arch], bos=arch == "llama")
    model = tiny_model(arch, len(tokenizer), width=width, seed=seed, **kw)
    return PromptedLM(model, tokenizer, name=name or f"tiny-{arch}-{width}")


# ----------------------------------------------------------------------------- names


def parse_toy(name: str) -> ToySpec:
    """`tiny:ARCH[:WIDTH[:SEED[:trained]]]` or a demo alias → its spec; ModelLoadError naming the form otherwise."""
    from .errors import ModelLoadError

    if name in DEMO_ALIASES:
        return DEMO_ALIASES[name][0]
    parts = name[len(TOY_PREFIX) :].split(":")
    trained = parts[-1] == "trained" and len(parts) == 4
    parts = parts[:3] if trained else parts
    if parts[0] not in TOKENIZER_STYLE or len(parts) > 3:
        raise ModelLoadError(
            f"unknown toy model {name!r}; use tiny:ARCH[:WIDTH[:SEED]] with ARCH in "
            f"{', '.join(TOKENIZER_STYLE)}, or one of {', '.join(DEMO_ALIASES)}"
        )
    try:
        width = int(parts[1]) if len(parts) > 1 else 32
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise ModelLoadError(f"toy model {name!r}: width and seed must be integers") from None
    if width < 4 or width > 1024 or width % 2:
        raise ModelLoadError(f"toy model {name!r}: width must be an even number in 4..1024")
    return ToySpec(parts[0], width, seed, trained)


def _asset(spec: ToySpec):
    from .paths import REPO_ROOT

    return REPO_ROOT / "assets" / "toy_models" / f"{spec.arch}-{spec.width}-{spec.seed}.safetensors"


def load_toy(name: str) -> PromptedLM:
    """A toy model by name. Trained ones load their shipped weights (assets/toy_models), else train in seconds."""
    spec = parse_toy(name)
    if not spec.trained:
        lm = tiny_lm(spec.arch, MINI_WORDS, width=spec.width, seed=spec.seed, name=name)
        lm.identity = spec.name
        return lm
    tokenizer = word_tokenizer(MINI_WORDS, TOKENIZER_STYLE[spec.arch], bos=spec.arch == "llama")
    path = _asset(spec)
    if path.is_file():
        from safetensors.torch import load_file

        model = tiny_model(spec.arch, len(tokenizer), width=spec.width, seed=spec.seed)
        model.load_state_dict(load_file(path), strict=False)  # tied weights are stored once
        model.tie_weights()
    else:
        model = _trained(spec, tokenizer)
    return PromptedLM(model, tokenizer, name=name, identity=spec.name)


def _trained(spec: ToySpec, tokenizer):
    """A demo alias's model trained on the miniature LAMA: its start and its training's dropout drawn in turn from
    the generator seeded by its seed, as when its weights under assets/toy_models were written."""
    with seeded_global_rng(spec.seed):
        model = _built(spec.arch, len(tokenizer), width=spec.width)
        train_on_mini_lama(model, tokenizer, seed=spec.seed)
    return model


def write_toy_assets() -> list:
    """Train the demo aliases' models and store their weights under assets/toy_models (run once; kilobytes)."""
    from safetensors.torch import save_model

    written = []
    for spec, _ in DEMO_ALIASES.values():
        tokenizer = word_tokenizer(MINI_WORDS, TOKENIZER_STYLE[spec.arch], bos=spec.arch == "llama")
        model = _trained(spec, tokenizer)
        path = _asset(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, str(path))
        written.append(path)
    return written


def train_on_mini_lama(model, tokenizer, seed: int = 0, steps: int = 800, lr: float = 3e-3) -> None:
    """Teach a toy model the miniature LAMA's facts, phrased with TRAINING_TEMPLATES (seeded; seconds on a CPU).

    Causal LMs learn each sentence as language modelling; masked LMs learn to fill the object."""
    gen = torch.Generator().manual_seed(seed)
    sentences = [
        (t.replace("[X]", f["sub_label"]), f["obj_label"])
        for rid, rows in mini_facts().items()
        for f in rows
        for t in TRAINING_TEMPLATES[rid]
        if f["obj_label"] in MINI_WORDS
    ]
    masked = not getattr(model.config, "is_decoder", False) and type(model).__name__.endswith("ForMaskedLM")
    texts = [s.replace("[Y]", tokenizer.mask_token if masked else o) for s, o in sentences]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    labels = enc["input_ids"].clone()
    if masked:
        objects = torch.tensor([tokenizer(" " + o, add_special_tokens=False)["input_ids"][-1] for _, o in sentences])
        is_mask = enc["input_ids"] == tokenizer.mask_token_id
        labels = torch.full_like(labels, -100)
        labels[is_mask] = objects
    else:
        labels[enc["attention_mask"] == 0] = -100
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        idx = torch.randperm(len(texts), generator=gen)[:32]
        loss = model(
            input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx], labels=labels[idx]
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


if __name__ == "__main__":
    for path in write_toy_assets():
        print(path)
