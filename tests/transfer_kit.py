"""Shared by the transfer test files: the toy model pair, soft prompts on it, configs over every shared word."""

from __future__ import annotations

import torch

from ptfer_core.artifacts import SoftPrompt
from ptfer_core.mini_lama import MINI_WORDS
from ptfer_core.settings import TransferConfig
from ptfer_core.templates import PromptTemplate
from ptfer_core.toy_models import tiny_lm

ALL = {"anchor_source": "frequency", "anchor_filter": "all", "top_k": None}  # every shared word: the toy vocabulary


def model_pair():
    """A masked and a causal toy model of different widths over the same words."""
    return tiny_lm("bert", MINI_WORDS, width=32, seed=1), tiny_lm("llama", MINI_WORDS, width=48, seed=2)


def soft(lm, vectors, relation="P17"):
    return SoftPrompt(vectors, lm.name, relation, "tuned", PromptTemplate.soft(len(vectors)).text)


def config(**kw):
    return TransferConfig(**{**ALL, **kw})


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
