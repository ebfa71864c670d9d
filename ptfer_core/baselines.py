"""The paper's baselines, each a function that returns a prompt for the target model.

random · direct transfer (same width only) · discretisation · neural projector. (The manual template is
`Prompt.manual`, direct tuning is `tuning.tune_prompt` on the target; `runs.make_prompt` dispatches them all.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from .anchors import AnchorSet, select_anchors
from .artifacts import SoftPrompt
from .config import Method
from .data import Fact
from .errors import DimensionMismatchError, InputError
from .evaluation import CandidateSet, Prompt, evaluate
from .files import atomic_write_bytes
from .models import PromptedLM
from .seeding import seeded_global_rng
from .settings import ProjectorConfig
from .templates import PromptTemplate
from .tuning import sample_like_embeddings


def random_prompt(target: PromptedLM, template_text: str, relation: str, seed: int = 0) -> SoftPrompt:
    """Vectors drawn from a normal fitted per dimension to the target's embeddings."""
    m = PromptTemplate.parse(template_text).n_soft
    vectors = sample_like_embeddings(target, m, torch.Generator().manual_seed(seed))
    return SoftPrompt(vectors, target.name, relation, Method.RANDOM.value, template_text, provenance={"seed": seed})


def direct_transfer(source_prompt: SoftPrompt, target: PromptedLM) -> SoftPrompt:
    """Use the source vectors on the target unchanged: only meaningful, and only allowed, when widths match."""
    if source_prompt.width != target.width:
        raise DimensionMismatchError(
            f"direct transfer needs equal embedding widths: source {source_prompt.model} has {source_prompt.width}, "
            f"target {target.name} has {target.width}; use the relative-space transfer instead"
        )
    return SoftPrompt(
        source_prompt.vectors.clone(),
        target.name,
        source_prompt.relation,
        Method.DIRECT_TRANSFER.value,
        source_prompt.template,
        provenance={"source": source_prompt.model},
    )


def discretize(
    source_prompt: SoftPrompt, source: PromptedLM, target: PromptedLM, anchors: AnchorSet | None = None
) -> tuple[SoftPrompt, list[str]]:
    """Each source vector → its nearest shared word by cosine in the source space → that word's target embedding."""
    shared = anchors or select_anchors([source, target])
    src_emb = F.normalize(shared.embeddings(source), dim=-1)
    nearest = (F.normalize(source_prompt.vectors, dim=-1) @ src_emb.T).argmax(dim=-1)
    words = [shared.words[i] for i in nearest.tolist()]
    vectors = shared.embeddings(target)[nearest].clone()
    prompt = SoftPrompt(
        vectors,
        target.name,
        source_prompt.relation,
        Method.DISCRETIZATION.value,
        source_prompt.template,
        provenance={"source": source_prompt.model, "tokens": words, "n_shared": len(shared)},
    )
    return prompt, words


def train_projector(
    source: PromptedLM,
    target: PromptedLM,
    config: ProjectorConfig | None = None,
    pairs: AnchorSet | None = None,
    on_epoch=None,
    should_stop=None,
) -> torch.nn.Module:
    """2-layer MLP (LeakyReLU) mapping source to target embeddings, MSE on shared-vocabulary pairs."""
    config = config or ProjectorConfig()
    pairs = pairs or select_anchors([source, target])
    x, y = pairs.embeddings(source).cpu(), pairs.embeddings(target).cpu()
    with seeded_global_rng(config.seed):  # nn.Linear draws its start from the global generator
        net = torch.nn.Sequential(
            torch.nn.Linear(source.width, config.hidden),
            torch.nn.LeakyReLU(),
            torch.nn.Linear(config.hidden, target.width),
        )
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    for epoch in range(config.epochs):
        if should_stop and should_stop():
            break
        for idx in torch.randperm(len(x), generator=gen).split(config.batch_size):
            loss = F.mse_loss(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if on_epoch:
            on_epoch(epoch, net)
    return net.eval()


def projector_snapshots(
    source: PromptedLM,
    target: PromptedLM,
    config: ProjectorConfig | None = None,
    should_stop=None,
    cache_dir: Path | None = None,
) -> list[dict]:
    """The projector's weights after each epoch, trained once per (source, target, config) and kept in the target's
    memo, and under `cache_dir` when given (so separate processes, e.g. a grid run in parts, train it once).

    The projector maps embeddings, not prompts, so every relation reuses the same training run; only the
    choice of epoch (on each relation's target dev split) differs.
    """
    config = config or ProjectorConfig()
    key = ("projector_snapshots", source.identity, tuple(sorted(config.to_dict().items())))
    cached = target.memo.peek(key)
    if cached is not None:
        return cached
    path = None
    if cache_dir is not None:
        blob = json.dumps([source.identity, target.identity, config.stamped()], sort_keys=True)
        path = Path(cache_dir) / f"projector-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.safetensors"
        stored = _read_snapshots(path, config.epochs)
        if stored is not None:
            return target.memo.get(key, lambda: stored)
    snapshots: list[dict] = []
    train_projector(
        source,
        target,
        config,
        should_stop=should_stop,
        on_epoch=lambda epoch, net: snapshots.append({k: v.clone() for k, v in net.state_dict().items()}),
    )
    if len(snapshots) < config.epochs:
        return snapshots  # a cancelled run is not kept
    if path is not None:
        _write_snapshots(path, snapshots)
    return target.memo.get(key, lambda: snapshots)


def _write_snapshots(path: Path, snapshots: list[dict]) -> None:
    from safetensors.torch import save

    flat = {f"epoch{i}.{name}": t.contiguous() for i, state in enumerate(snapshots) for name, t in state.items()}
    atomic_write_bytes(path, save(flat))


def _read_snapshots(path: Path, epochs: int) -> list[dict] | None:
    """The stored per-epoch weights, or None when absent or unreadable (then they are trained again)."""
    if not path.is_file():
        return None
    from safetensors.torch import load

    try:
        flat = load(path.read_bytes())
    except Exception:  # a damaged cache file is only a cache: train again and overwrite it
        return None
    snapshots: list[dict] = [{} for _ in range(epochs)]
    for name, tensor in flat.items():
        epoch, _, param = name.partition(".")
        index = int(epoch.removeprefix("epoch"))
        if index >= epochs:
            return None
        snapshots[index][param] = tensor
    return snapshots if all(snapshots) else None


def projector_prompt(
    source_prompt: SoftPrompt,
    source: PromptedLM,
    target: PromptedLM,
    dev: list[Fact],
    candidates: CandidateSet,
    config: ProjectorConfig | None = None,
    should_stop=None,
    max_subject_tokens: int | None = None,
    cache_dir: Path | None = None,
) -> SoftPrompt:
    """Project the source prompt with the MLP of each epoch; keep the epoch best on target dev (as the paper)."""
    config = config or ProjectorConfig()
    snapshots = projector_snapshots(source, target, config, should_stop, cache_dir)
    if not snapshots:
        raise InputError("projector training was stopped before its first epoch")
    net = torch.nn.Sequential(
        torch.nn.Linear(source.width, config.hidden), torch.nn.LeakyReLU(), torch.nn.Linear(config.hidden, target.width)
    )
    template = source_prompt.prompt_template
    best: dict = {"dev_p_at_1": -1.0}
    for epoch, state in enumerate(snapshots):
        net.load_state_dict(state)
        with torch.no_grad():
            vectors = net(source_prompt.vectors)
        score = (
            evaluate(target, Prompt(template, vectors), dev, candidates, max_subject_tokens=max_subject_tokens).p_at_1
            if dev
            else 0.0
        )
        if score > best["dev_p_at_1"]:
            best.update(dev_p_at_1=score, epoch=epoch, vectors=vectors)
    return SoftPrompt(
        best["vectors"],
        target.name,
        source_prompt.relation,
        Method.PROJECTOR.value,
        source_prompt.template,
        provenance={
            "source": source_prompt.model,
            "selected_epoch": best["epoch"],
            "projector": config.stamped(),
            "selection": "target dev P@1",
        },
        metrics={"dev_p_at_1": best["dev_p_at_1"]},
    )
