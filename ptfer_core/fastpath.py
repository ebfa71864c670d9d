"""Doing less arithmetic for the same answer: compute twins and the prefix key/value cache.

**Compute twins.** The loaded model is never changed. Tuning and fast evaluation run on a *twin*: a second module
tree that either shares the loaded weights (float32) or holds a bfloat16 copy of them, uses eager attention (the
CPU flash-attention backward costs ~9 ms a call on 15-token rows) and has its own train/eval flag, so dropout can
be on for tuning while other threads evaluate the same model. A twin is built once per model and kept.

**Prefix cache** (causal LMs). In ``[X] v1 … vm [Y]`` the subject's tokens come before every soft vector, so their
keys and values in every layer do not depend on the prompt. They are computed once per fact (per twin) and each
tuning step or evaluation then runs only the positions from the first soft vector to the answer: 5 instead of
~12 positions per fact with the paper's layout. The result equals the full forward up to rounding (tested).
It is skipped when dropout is active (OptiPrompt's dropout would also touch the prefix) and for layouts whose
first soft vector comes (almost) first.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import ModelKind, Precision, parse_enum

# Causal architectures whose base model takes past_key_values + position_ids + a padding mask over past and new
# positions (checked against the full forward in the tests for llama and gpt2).
PREFIX_CACHE_MODEL_TYPES = {
    "llama",
    "gpt2",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "mistral",
    "qwen2",
    "qwen3",
    "phi3",
    "smollm3",
    "olmo",
    "olmo2",
}
MIN_PREFIX = 2  # below this many cached positions per row (on average) the bookkeeping costs more than it saves


def has_dropout(model: torch.nn.Module) -> bool:
    """Whether train mode changes anything: a Dropout module, or a config dropout rate, above zero."""
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
        return True
    cfg = getattr(model, "config", None)
    rates = [
        getattr(cfg, k, 0.0) or 0.0
        for k in ("attention_dropout", "attn_pdrop", "hidden_dropout", "attention_probs_dropout_prob")
    ]
    return any(float(r) > 0 for r in rates)


def build_twin(model: torch.nn.Module, precision: Precision | str, dropout: bool) -> torch.nn.Module:
    """A module tree over the same weights (float32) or a bfloat16 copy of them, eager attention, own mode flags."""
    precision = parse_enum(Precision, precision, "precision")
    if precision == Precision.FLOAT32:
        memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    else:
        memo = {}
        for p in model.parameters():  # tied weights are one Parameter object, so they stay tied
            if id(p) not in memo:
                memo[id(p)] = torch.nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False)
        memo.update({id(b): b for b in model.buffers()})  # rotary tables and scales stay as they are
    twin = copy.deepcopy(model, memo)
    if hasattr(twin, "set_attn_implementation"):
        try:
            twin.set_attn_implementation("eager")
        except Exception:
            pass
    return twin.train(dropout)


@dataclass
class PrefixState:
    """Keys and values of each row's tokens before its first soft vector, for a set of rows."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [N, heads, P, head_dim]
    lengths: torch.Tensor  # [N] real prefix length of each row (the rest is padding)

    def rows(self, index: torch.Tensor) -> PrefixState:
        lengths = self.lengths[index]
        width = int(lengths.max())
        return PrefixState([(k[index, :, :width], v[index, :, :width]) for k, v in self.layers], lengths)

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() * 2 for k, _ in self.layers)


def prefix_cacheable(lm, twin: torch.nn.Module, first_soft: torch.Tensor) -> bool:
    return (
        lm.kind == ModelKind.CAUSAL
        and lm.model.config.model_type in PREFIX_CACHE_MODEL_TYPES
        and not twin.training
        and len(first_soft) > 0
        and int(first_soft.min()) >= 1
        and float(first_soft.float().mean()) >= MIN_PREFIX
    )


def compute_prefix(
    twin: torch.nn.Module, embed, input_ids: torch.Tensor, first_soft: torch.Tensor, chunk: int = 64
) -> PrefixState:
    """Run every row's prefix (positions before `first_soft`) once, without gradient, and keep its keys/values.

    Rows go in chunks of similar prefix length, each trimmed to its own longest prefix (subjects differ a lot in
    length: padding every chunk to the longest one tripled the work); the keys/values are then zero-padded to a
    common width, positions that the attention mask hides, and put back in row order."""
    from transformers import DynamicCache

    width = int(first_soft.max())
    order = torch.argsort(first_soft, stable=True)
    dtype = next(twin.parameters()).dtype
    parts: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    with torch.no_grad():
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            own = int(first_soft[rows].max())
            cache = DynamicCache(config=twin.config)
            twin.base_model(
                inputs_embeds=embed(input_ids[rows, :own]).to(dtype),
                attention_mask=(torch.arange(own).unsqueeze(0) < first_soft[rows].unsqueeze(1)).long(),
                past_key_values=cache,
                use_cache=True,
            )
            pad = (0, 0, 0, width - own)  # keys/values are [rows, heads, positions, head_dim]
            parts.append([(F.pad(layer.keys, pad), F.pad(layer.values, pad)) for layer in cache.layers])
    back = torch.argsort(order)
    layers = [
        (torch.cat([p[i][0] for p in parts])[back], torch.cat([p[i][1] for p in parts])[back])
        for i in range(len(parts[0]))
    ]
    return PrefixState(layers, first_soft.clone())


def forward_after_prefix(
    twin: torch.nn.Module, prefix: PrefixState, new_embeds: torch.Tensor, new_mask: torch.Tensor
) -> torch.Tensor:
    """Hidden states of the new positions [B, N, H], attending to the cached prefix (padding masked out)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=twin.config)
    for i, (k, v) in enumerate(prefix.layers):
        cache.update(k, v, i)
    width = prefix.layers[0][0].shape[2]
    past_mask = (torch.arange(width).unsqueeze(0) < prefix.lengths.unsqueeze(1)).long()
    positions = prefix.lengths.unsqueeze(1) + torch.arange(new_embeds.shape[1]).unsqueeze(0)
    out = twin.base_model(
        inputs_embeds=new_embeds,
        attention_mask=torch.cat([past_mask, new_mask], dim=1),
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
