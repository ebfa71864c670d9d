"""The neural-projector baseline: the epoch kept is the one best on target dev, and its training is stored on disk
so another process (a grid run in parts) reuses it instead of training again."""

from __future__ import annotations

import pytest
import torch

from ptfer_core import baselines
from ptfer_core.artifacts import SoftPrompt
from ptfer_core.evaluation import Prompt, evaluate
from ptfer_core.mini_lama import MINI_WORDS
from ptfer_core.runs import TaskData
from ptfer_core.settings import ProjectorConfig
from ptfer_core.toy_models import tiny_lm

CONFIG = ProjectorConfig(hidden=16, epochs=4)


@pytest.fixture
def setup(mini_data_dir):
    source, target = tiny_lm("gpt2", MINI_WORDS, seed=1), tiny_lm("llama", MINI_WORDS, width=48, seed=2)
    data = TaskData.load("P103", mini_data_dir)
    prompt = SoftPrompt(torch.randn(5, 32), source.name, "P103", "tuned", "[X] [V] [V] [V] [V] [V] [Y] .")
    return source, target, data, prompt


def test_the_projector_keeps_the_epoch_best_on_target_dev(setup):
    source, target, data, prompt = setup
    dev, candidates = data.splits["dev"], data.candidates(target)
    out = baselines.projector_prompt(prompt, source, target, dev, candidates, CONFIG)
    snapshots = baselines.projector_snapshots(source, target, CONFIG)
    net = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.LeakyReLU(), torch.nn.Linear(16, 48))
    scores = []
    for state in snapshots:
        net.load_state_dict(state)
        with torch.no_grad():
            scores.append(evaluate(target, Prompt(prompt.prompt_template, net(prompt.vectors)), dev, candidates).p_at_1)
    best = scores.index(max(scores))  # the first of the best, as the baseline keeps
    assert out.provenance["selected_epoch"] == best and out.metrics["dev_p_at_1"] == scores[best]
    net.load_state_dict(snapshots[best])
    with torch.no_grad():
        assert torch.allclose(out.vectors, net(prompt.vectors))


def test_a_stored_projector_is_reused_by_another_process(setup, tmp_path, monkeypatch):
    source, target, data, prompt = setup
    dev, candidates = data.splits["dev"], data.candidates(target)
    first = baselines.projector_prompt(prompt, source, target, dev, candidates, CONFIG, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("projector-*.safetensors"))) == 1
    fresh_target = tiny_lm("llama", MINI_WORDS, width=48, seed=2)  # a new process: empty memo, same identity

    def no_training(*a, **k):
        raise AssertionError("the stored projector was trained again")

    monkeypatch.setattr(baselines, "train_projector", no_training)
    again = baselines.projector_prompt(prompt, source, fresh_target, dev, candidates, CONFIG, cache_dir=tmp_path)
    assert torch.equal(first.vectors, again.vectors)
    # Another setting is another projector: it is trained, not taken from the file.
    with pytest.raises(AssertionError, match="trained again"):
        baselines.projector_prompt(
            prompt, source, fresh_target, dev, candidates, ProjectorConfig(hidden=16, epochs=4, lr=1e-2),
            cache_dir=tmp_path,
        )  # fmt: skip


def test_a_damaged_projector_file_is_trained_again(setup, tmp_path):
    source, target, data, prompt = setup
    dev, candidates = data.splits["dev"], data.candidates(target)
    baselines.projector_prompt(prompt, source, target, dev, candidates, CONFIG, cache_dir=tmp_path)
    stored = next(tmp_path.glob("projector-*.safetensors"))
    stored.write_bytes(stored.read_bytes()[:100])
    fresh_target = tiny_lm("llama", MINI_WORDS, width=48, seed=2)
    out = baselines.projector_prompt(prompt, source, fresh_target, dev, candidates, CONFIG, cache_dir=tmp_path)
    assert out.vectors.shape == (5, 48) and len(stored.read_bytes()) > 100  # retrained and rewritten
