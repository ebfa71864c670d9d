"""An independent oracle for answer-position logits: plain transformers calls on the filled-in sentence, sharing
no code with `PromptedLM.encode`, its special-token handling or its answer positions.

Masked LM: fill [X], put the tokenizer's mask token at [Y], tokenise the whole sentence with the tokenizer's own
special tokens, and read the logits where ``input_ids == mask_token_id``. Causal LM: tokenise the sentence up to
[Y] and read the last position. A template with [V] slots is tokenised piece by piece around the slots (each
piece with its own leading space, as a word boundary), and the vectors are spliced into ``inputs_embeds``.
"""

from __future__ import annotations

import re

import torch


def _wrapping(tok) -> tuple[list[int], list[int]]:
    """The ids the tokenizer itself puts before and after a text."""
    plain = tok("word", add_special_tokens=False)["input_ids"]
    full = tok("word")["input_ids"]
    start = next(i for i in range(len(full)) if full[i : i + len(plain)] == plain)
    return full[:start], full[start + len(plain) :]


def sentence(lm, template: str, subject: str) -> str:
    """The text a reader would write: [X] filled; [Y] the mask (masked LM) or the end of the input (causal LM)."""
    text = template.replace("[X]", subject)
    if lm.kind.value == "masked":
        return text.replace("[Y]", lm.tokenizer.mask_token)
    return text[: text.index("[Y]")].rstrip()


def oracle_inputs(lm, template: str, subject: str) -> tuple[torch.Tensor, list[int]]:
    """(input ids [1, L], positions of the [V] slots)."""
    tok = lm.tokenizer
    text = sentence(lm, template, subject)
    if "[V]" not in text:
        return torch.tensor([tok(text)["input_ids"]]), []
    before, after = _wrapping(tok)
    ids, slots = list(before), []
    for k, piece in enumerate(re.split(r"\s*(\[V\])", text)):
        if piece == "[V]":
            slots.append(len(ids))
            ids.append(tok.pad_token_id if tok.pad_token_id is not None else 0)
        elif piece.strip():
            words = piece.strip() if (k == 0 and not piece.startswith(" ")) else " " + piece.strip()
            ids += tok(words, add_special_tokens=False)["input_ids"]
    if lm.kind.value == "masked":
        ids += after
    return torch.tensor([ids]), slots


def oracle_logits(lm, template: str, subject: str, vectors: torch.Tensor | None = None) -> torch.Tensor:
    """Full-vocabulary logits at the answer slot, computed the plain way (float32, no project code)."""
    input_ids, slots = oracle_inputs(lm, template, subject)
    with torch.no_grad():
        embeds = lm.model.get_input_embeddings()(input_ids)
        for j, position in enumerate(slots):
            embeds[0, position] = vectors[j]
        logits = lm.model(inputs_embeds=embeds).logits[0]
    if lm.kind.value == "masked":
        return logits[int((input_ids[0] == lm.tokenizer.mask_token_id).nonzero()[0, 0])]
    return logits[-1]
