"""Shared fixtures: a miniature LAMA data directory and tiny random LMs over its words (no network, no weights)."""

from __future__ import annotations

import os

import pytest

# Tests never reach the network: fail fast on hub look-ups instead of waiting for time-outs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ptfer_core.mini_lama import MINI_WORDS, write_mini_lama
from ptfer_core.toy_models import tiny_lm

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def mini_data_dir(tmp_path_factory):
    return write_mini_lama(tmp_path_factory.mktemp("lama"))


@pytest.fixture(scope="session")
def words():
    return MINI_WORDS


@pytest.fixture(scope="session", params=["bert", "roberta", "gpt2", "llama"])
def any_lm(request):
    return tiny_lm(request.param, MINI_WORDS)


@pytest.fixture(scope="session")
def bert_lm():
    return tiny_lm("bert", MINI_WORDS)


@pytest.fixture(scope="session")
def gpt2_lm():
    return tiny_lm("gpt2", MINI_WORDS)
