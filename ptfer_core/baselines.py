"""Every way of getting a prompt for the target, behind one function: `run_method(method, ...)`.

random · manual · direct tuning (upper bound) · direct transfer (same width only) · discretisation ·
neural projector · transfer (single or multi-source, through the relative space).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .anchors import AnchorSet, select_anchors, word_index
from .artifacts import SoftPrompt
from .config import Method, parse_enum
from .data import Fact, Relation
from .errors import DimensionMismatchError, InputError
from .evaluation import CandidateSet, Prompt, evaluate
from .models import PromptedLM
from .transfer import TransferConfig, transfer_prompt
from .tuning import TuneConfig, sample_like_embeddings, tune_prompt


def random_prompt(target: PromptedLM, template_text: str, relation: str, seed: int = 0) -> SoftPrompt:
    """Vectors drawn from a normal fitted per dimension to the target's embeddings."""
    from .templates import PromptTemplate

    m = PromptTemplate.parse(template_text).n_soft
    vectors = sample_like_embeddings(target, m, torch.Generator().manual_seed(seed))
    return SoftPrompt(vectors, target.name, relation, Method.RANDOM.value, template_text, provenance={"seed": seed})


def direct_transfer(source_prompt: SoftPrompt, target: PromptedLM) -> SoftPrompt:
    """Use the source vectors on the target unchanged: only meaningful, and only allowed, when widths match."""
    if source_prompt.width != target.width:
        raise DimensionMismatchError(
            f"direct transfer needs equal embedding widths: source {source_prompt.model} has {source_prompt.width}, "
            f"target {target.name} has {target.width}; use the relative-space transfer instead")
    return SoftPrompt(source_prompt.vectors.clone(), target.name, source_prompt.relation, Method.DIRECT_TRANSFER.value,
                      source_prompt.template, provenance={"source": source_prompt.model})


def discretize(source_prompt: SoftPrompt, source: PromptedLM, target: PromptedLM,
               anchors: AnchorSet | None = None) -> tuple[SoftPrompt, list[str]]:
    """Each source vector → its nearest shared word by cosine in the source space → that word's target embedding."""
    shared = anchors or select_anchors([source, target], k=None)
    src_emb = F.normalize(shared.embeddings(source), dim=-1)
    nearest = (F.normalize(source_prompt.vectors, dim=-1) @ src_emb.T).argmax(dim=-1).tolist()
    words = [shared.words[i] for i in nearest]
    tgt_index = word_index(target)
    vectors = target.embedding_matrix[torch.tensor([tgt_index[w] for w in words])].clone()
    prompt = SoftPrompt(vectors, target.name, source_prompt.relation, Method.DISCRETIZATION.value, source_prompt.template,
                        provenance={"source": source_prompt.model, "tokens": words, "n_shared": len(shared)})
    return prompt, words


@dataclass
class ProjectorConfig:
    hidden: int = 768
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 16
    seed: int = 0


def train_projector(source: PromptedLM, target: PromptedLM, config: ProjectorConfig | None = None,
                    pairs: AnchorSet | None = None, on_epoch=None, should_stop=None) -> torch.nn.Module:
    """2-layer MLP (LeakyReLU) mapping source to target embeddings, MSE on shared-vocabulary pairs."""
    config = config or ProjectorConfig()
    pairs = pairs or select_anchors([source, target], k=None)
    x, y = pairs.embeddings(source).cpu(), pairs.embeddings(target).cpu()
    torch.manual_seed(config.seed)
    net = torch.nn.Sequential(torch.nn.Linear(source.width, config.hidden), torch.nn.LeakyReLU(),
                              torch.nn.Linear(config.hidden, target.width))
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


def projector_snapshots(source: PromptedLM, target: PromptedLM, config: ProjectorConfig | None = None,
                        should_stop=None) -> list[dict]:
    """The projector's weights after each epoch, trained once per (source, target, config) and kept in the target's cache.

    The projector maps embeddings, not prompts, so every relation reuses the same training run; only the
    choice of epoch (on each relation's target dev split) differs.
    """
    config = config or ProjectorConfig()
    key = ("projector_snapshots", source.name, tuple(sorted(asdict(config).items())))
    if key not in target.cache:
        snapshots: list[dict] = []
        train_projector(source, target, config, should_stop=should_stop,
                        on_epoch=lambda epoch, net: snapshots.append({k: v.clone() for k, v in net.state_dict().items()}))
        if should_stop and should_stop() and len(snapshots) < config.epochs:
            return snapshots  # a cancelled run is not cached
        target.cache[key] = snapshots
    return target.cache[key]


def projector_prompt(source_prompt: SoftPrompt, source: PromptedLM, target: PromptedLM, dev: list[Fact],
                     candidates: CandidateSet, config: ProjectorConfig | None = None, should_stop=None) -> SoftPrompt:
    """Project the source prompt with the MLP of each epoch; keep the epoch best on target dev (as the paper)."""
    config = config or ProjectorConfig()
    snapshots = projector_snapshots(source, target, config, should_stop)
    if not snapshots:
        raise InputError("projector training was stopped before its first epoch")
    net = torch.nn.Sequential(torch.nn.Linear(source.width, config.hidden), torch.nn.LeakyReLU(),
                              torch.nn.Linear(config.hidden, target.width))
    template = source_prompt.prompt_template
    best: dict = {"dev_p_at_1": -1.0}
    for epoch, state in enumerate(snapshots):
        net.load_state_dict(state)
        with torch.no_grad():
            vectors = net(source_prompt.vectors)
        score = evaluate(target, Prompt(template, vectors), dev, candidates).p_at_1 if dev else 0.0
        if score > best["dev_p_at_1"]:
            best.update(dev_p_at_1=score, epoch=epoch, vectors=vectors)
    return SoftPrompt(best["vectors"], target.name, source_prompt.relation, Method.PROJECTOR.value, source_prompt.template,
                      provenance={"source": source_prompt.model, "selected_epoch": best["epoch"],
                                  "config": asdict(config), "selection": "target dev P@1"},
                      metrics={"dev_p_at_1": best["dev_p_at_1"]})


def run_method(method: Method | str, *, target: PromptedLM, relation: Relation,
               sources: list[tuple[SoftPrompt, PromptedLM]] = (), train: list[Fact] | None = None,
               dev: list[Fact] | None = None, candidates: CandidateSet | None = None, seed: int = 0,
               template: str | None = None, tune_config: TuneConfig | None = None,
               transfer_config: TransferConfig | None = None, projector_config: ProjectorConfig | None = None,
               on_step=None, should_stop=None) -> Prompt | SoftPrompt:
    """One entry point for every method. Returns a `Prompt` (manual) or a `SoftPrompt` for the target."""
    method = parse_enum(Method, method, "method")
    sources = list(sources)
    needs_source = {Method.DIRECT_TRANSFER, Method.DISCRETIZATION, Method.PROJECTOR, Method.TRANSFER}
    if method in needs_source and not sources:
        raise InputError(f"method {method.value!r} needs a source prompt")
    if method == Method.MANUAL:
        return Prompt.manual(relation)
    if method == Method.RANDOM:
        layout = template or (sources[0][0].template if sources else
                              (tune_config or TuneConfig()).resolved(target, relation).template.text)
        return random_prompt(target, layout, relation.id, seed)
    if method == Method.DIRECT_TUNING:
        config = tune_config or TuneConfig(seed=seed)
        prompt = tune_prompt(target, relation, train or [], dev or [], candidates, config, on_step, should_stop)
        prompt.method = Method.DIRECT_TUNING.value
        return prompt
    if method == Method.DIRECT_TRANSFER:
        return direct_transfer(sources[0][0], target)
    if method == Method.DISCRETIZATION:
        return discretize(sources[0][0], sources[0][1], target)[0]
    if method == Method.PROJECTOR:
        return projector_prompt(sources[0][0], sources[0][1], target, dev or [], candidates, projector_config,
                                should_stop)
    config = transfer_config or TransferConfig(seed=seed)
    return transfer_prompt(sources, target, config, dev=dev, candidates=candidates, on_step=on_step,
                           should_stop=should_stop)
