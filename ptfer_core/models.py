"""Language models with soft prompts inserted through ``inputs_embeds``.

`PromptedLM` wraps a frozen Hugging Face masked or causal LM. Soft-prompt vectors replace the input
embeddings at placeholder positions; the model, its tokenizer and its embeddings are never changed, so
one cached instance can serve every caller. Logits are computed only at the answer position (the mask
for masked LMs, the next token for causal LMs) and only for the candidate rows of the output matrix.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import ModelKind, Precision, parse_enum
from .errors import DimensionMismatchError, InputError, ModelLoadError, NoLMHeadError, TemplateError
from .paths import model_dir
from .templates import PromptTemplate, SegmentKind

# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # hub id, or a directory name under the model dir for locally fetched models
    description: str
    local: bool = False  # True: obtained by `ptfer models fetch`, lives under the model dir

    def location(self, models_root: Path | None = None) -> str:
        return str(model_dir(models_root) / self.source) if self.local else self.source


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("bert-base-cased", "bert-base-cased", "BERT base, cased (masked LM, 768)"),
        ModelSpec("bert-large-cased", "bert-large-cased", "BERT large, cased (masked LM, 1024)"),
        ModelSpec("roberta-base", "roberta-base", "RoBERTa base (masked LM, 768)"),
        ModelSpec("roberta-large", "roberta-large", "RoBERTa large (masked LM, 1024)"),
        ModelSpec("albert-base-v2", "albert-base-v2", "ALBERT base v2 (masked LM, 128-d embeddings)"),
        ModelSpec("albert-large-v2", "albert-large-v2", "ALBERT large v2 (masked LM, 128-d embeddings)"),
        ModelSpec("gpt2", "gpt2", "GPT-2 small (causal LM, 768)"),
        ModelSpec("smollm2-135m", "smollm2-135m", "SmolLM2-135M-Instruct (causal LM, 576), local", local=True),
        ModelSpec("gemma3-270m", "gemma3-270m", "Gemma-3-270M (causal LM, 640), local", local=True),
    ]
}


def resolve_model(name_or_path: str, models_root: Path | None = None) -> str:
    """Friendly name → location; anything else is passed through as a hub id or local path."""
    spec = REGISTRY.get(name_or_path)
    return spec.location(models_root) if spec else name_or_path


# ----------------------------------------------------------------------------- batches


@dataclass
class EncodedBatch:
    """Token ids of a batch of filled templates, right-padded.

    soft_positions[b, j] is where soft vector j goes in row b; answer_positions[b] is the position whose
    output predicts [Y] (the mask for masked LMs, the last token before [Y] for causal LMs).
    """

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    soft_positions: torch.Tensor  # [B, m] (m may be 0)
    answer_positions: torch.Tensor  # [B]

    def to(self, device) -> "EncodedBatch":
        return EncodedBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.soft_positions, self.answer_positions)))

    def __len__(self) -> int:
        return self.input_ids.shape[0]


# Models whose masked-LM head is "transform, then decoder": features = transform(hidden), logits = features @ W.T + b.
# With the transform known, logits are computed for the candidate rows only.
_MLM_TRANSFORMS = {
    "bert": lambda m: m.cls.predictions.transform,
    "roberta": lambda m: (lambda h: m.lm_head.layer_norm(F.gelu(m.lm_head.dense(h)))),
    "xlm-roberta": lambda m: (lambda h: m.lm_head.layer_norm(F.gelu(m.lm_head.dense(h)))),
    "camembert": lambda m: (lambda h: m.lm_head.layer_norm(F.gelu(m.lm_head.dense(h)))),
    "albert": lambda m: (lambda h: m.predictions.LayerNorm(m.predictions.activation(m.predictions.dense(h)))),
    "distilbert": lambda m: (lambda h: m.vocab_layer_norm(m.activation(m.vocab_transform(h)))),
    "electra": lambda m: m.generator_predictions,
}


class PromptedLM:
    """A frozen masked or causal LM that scores templates with soft-prompt vectors at placeholder slots."""

    def __init__(self, model, tokenizer, name: str, kind: ModelKind | str | None = None):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.kind = parse_enum(ModelKind, kind, "model kind") if kind else _infer_kind(model)
        if self.kind == ModelKind.MASKED and tokenizer.mask_token_id is None:
            raise ModelLoadError(f"{name}: masked LM tokenizer has no mask token")
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self._lock = threading.Lock()  # guards the lazily built caches below
        self._row_cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._segment_cache: dict[str, list[int]] = {}
        self.cache: dict = {}  # derived per-model tables (candidate sets, anchors), built lazily by other modules
        self._head_transform = None
        if self.kind == ModelKind.MASKED:
            maker = _MLM_TRANSFORMS.get(model.config.model_type)
            self._head_transform = maker(model) if maker else None
        self._output_layer = model.get_output_embeddings()
        if self._output_layer is None:
            raise NoLMHeadError(f"{name}: the model has no output (LM head) layer")
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self._special_prefix, self._special_suffix = _special_tokens(tokenizer)
        if self.kind == ModelKind.CAUSAL:
            self._special_suffix = []  # nothing may follow the answer position of a causal LM

    # --------------------------------------------------------------- vocabulary and embeddings

    @property
    def width(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[0]

    @cached_property
    def vocab(self) -> list[str]:
        """Token strings indexed by id."""
        return self.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings exactly as the model sees them (e.g. including Gemma's √d scaling)."""
        with torch.no_grad():
            return self.model.get_input_embeddings()(ids.to(self.device))

    @cached_property
    def embedding_matrix(self) -> torch.Tensor:
        """All token embeddings as fed to the body, float32 [V, d]. Built once, in chunks."""
        with torch.inference_mode(False), torch.no_grad():  # a cache must stay usable by autograd later
            rows = [self.embed(torch.arange(i, min(i + 32768, self.vocab_size))).float() for i in range(0, self.vocab_size, 32768)]
            return torch.cat(rows)

    @cached_property
    def special_token_ids(self) -> set[int]:
        return set(self.tokenizer.all_special_ids)

    def word_token_id(self, word: str) -> int | None:
        """Id of the single token that spells `word` as a whole word after a space, or None."""
        return self.word_token_ids([word])[0]

    def word_token_ids(self, words: list[str]) -> list[int | None]:
        spaced = self.tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
        plain = self.tokenizer(list(words), add_special_tokens=False)["input_ids"]
        out: list[int | None] = []
        for word, a, b in zip(words, spaced, plain):
            if len(a) == 1:
                out.append(a[0])
            elif len(b) == 1 and self.kind == ModelKind.MASKED:
                out.append(b[0])
            else:
                out.append(None)
        return out

    # --------------------------------------------------------------- encoding

    def _segment_ids(self, text: str) -> list[int]:
        ids = self._segment_cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            self._segment_cache[text] = ids
        return ids

    def encode(self, template: PromptTemplate, subjects: list[str]) -> EncodedBatch:
        """Tokenise `template` filled with each subject. Soft slots get a filler id, replaced in `inputs_embeds`."""
        filler = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        rows, softs, answers = [], [], []
        for subject in subjects:
            if not isinstance(subject, str) or not subject.strip():
                raise InputError("empty subject: type the entity the question is about")
            ids = list(self._special_prefix)
            soft_pos: list[int] = []
            answer_pos = -1
            for seg in template.segments:
                space = " " if seg.leading_space else ""
                if seg.kind == SegmentKind.TEXT:
                    ids += self._segment_ids(seg.text)
                elif seg.kind == SegmentKind.SUBJECT:
                    ids += self.tokenizer(space + subject.strip(), add_special_tokens=False)["input_ids"]
                elif seg.kind == SegmentKind.SOFT:
                    soft_pos.append(len(ids))
                    ids.append(filler)
                else:  # answer slot
                    if self.kind == ModelKind.CAUSAL:
                        answer_pos = len(ids) - 1
                        break
                    answer_pos = len(ids)
                    ids.append(self.tokenizer.mask_token_id)
            ids += self._special_suffix
            if answer_pos < 0:
                raise TemplateError(f"template {template.text!r} leaves nothing before [Y] for a causal LM to read")
            rows.append(ids)
            softs.append(soft_pos)
            answers.append(answer_pos)
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), filler, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
            attention[i, : len(r)] = 1
        return EncodedBatch(input_ids, attention, torch.tensor(softs, dtype=torch.long).reshape(len(rows), -1),
                            torch.tensor(answers, dtype=torch.long))

    # --------------------------------------------------------------- forward

    def check_vectors(self, vectors: torch.Tensor, n_slots: int) -> None:
        if vectors.ndim != 2:
            raise DimensionMismatchError(f"soft prompt must be a matrix [m, d], got shape {tuple(vectors.shape)}")
        if vectors.shape[1] != self.width:
            raise DimensionMismatchError(
                f"soft prompt width {vectors.shape[1]} does not match {self.name}'s embedding width {self.width}")
        if vectors.shape[0] != n_slots:
            raise DimensionMismatchError(f"template has {n_slots} [V] slots but the prompt has {vectors.shape[0]} vectors")
        if not torch.isfinite(vectors).all():
            raise InputError("soft prompt contains NaN or infinite values")

    def prompt_embeddings(self, batch: EncodedBatch, vectors: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings of `batch` with the soft vectors written into their slots, [B, L, d]."""
        embeds = self.embed(batch.input_ids)
        m = batch.soft_positions.shape[1]
        if not m:
            return embeds
        if vectors is None:
            raise InputError("template has [V] slots but no soft prompt vectors were given")
        self.check_vectors(vectors, m)
        rows = torch.arange(len(batch), device=self.device).unsqueeze(1).expand(-1, m)
        values = vectors.to(self.device, embeds.dtype).unsqueeze(0).expand(len(batch), -1, -1)
        return embeds.index_put((rows, batch.soft_positions.to(self.device)), values)  # out of place: keeps the graph to `vectors`

    def answer_hidden(self, batch: EncodedBatch, vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden state at each row's answer position, [B, H]. Differentiable w.r.t. `vectors`."""
        batch = batch.to(self.device)
        embeds = self.prompt_embeddings(batch, vectors)
        out = self.model.base_model(inputs_embeds=embeds, attention_mask=batch.attention_mask)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return hidden[torch.arange(len(batch), device=self.device), batch.answer_positions]

    def _head_rows(self, candidate_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight, bias = self._output_layer.weight, getattr(self._output_layer, "bias", None)
        if candidate_ids is None:
            return weight, bias
        key = hashlib.sha1(candidate_ids.cpu().numpy().tobytes()).hexdigest()
        with self._lock:
            cached = self._row_cache.get(key)
            if cached is None:
                with torch.inference_mode(False), torch.no_grad():  # a cache must stay usable by autograd later
                    cached = self._select_rows(weight, bias, candidate_ids)
                if len(self._row_cache) > 8:
                    self._row_cache.clear()
                self._row_cache[key] = cached
        return cached

    @staticmethod
    def _select_rows(weight, bias, candidate_ids):
        idx = candidate_ids.to(weight.device)
        return weight.index_select(0, idx).contiguous(), None if bias is None else bias.index_select(0, idx)

    def answer_logits(self, batch: EncodedBatch, vectors: torch.Tensor | None = None,
                      candidate_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits at the answer position for the candidate rows only, [B, C] (all V when candidate_ids is None)."""
        if self.kind == ModelKind.MASKED and self._head_transform is None:
            return self._full_answer_logits(batch, vectors, candidate_ids)
        hidden = self.answer_hidden(batch, vectors)
        features = self._head_transform(hidden) if self._head_transform is not None else hidden
        weight, bias = self._head_rows(candidate_ids)
        # The candidate head is small: float32 here keeps bfloat16 predictions close to float32 ones for free.
        logits = F.linear(features.float(), weight.float(), None if bias is None else bias.float())
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits.float()

    def _full_answer_logits(self, batch, vectors, candidate_ids):
        """Fallback for masked-LM heads we do not know how to split: full forward, then gather."""
        batch = batch.to(self.device)
        embeds = self.prompt_embeddings(batch, vectors)
        logits = self.model(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits
        logits = logits[torch.arange(len(batch), device=self.device), batch.answer_positions]
        return (logits if candidate_ids is None else logits[:, candidate_ids.to(self.device)]).float()

    def __repr__(self) -> str:
        return f"PromptedLM({self.name!r}, kind={self.kind.value}, width={self.width}, vocab={self.vocab_size})"


# ----------------------------------------------------------------------------- helpers


def _infer_kind(model) -> ModelKind:
    cls = type(model).__name__
    if cls.endswith("ForMaskedLM") or cls.endswith("ForPreTraining"):
        return ModelKind.MASKED
    if cls.endswith("ForCausalLM") or cls.endswith("LMHeadModel"):
        return ModelKind.CAUSAL
    raise NoLMHeadError(f"{cls} is neither a masked LM nor a causal LM: it has no language-modelling head")


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """Ids the tokenizer adds before and after a text, found by probing rather than per-family rules."""
    bare = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return [], []


TINY_PREFIX = "tiny:"


def load_tiny(name: str) -> PromptedLM:
    """Built-in random toy models over the miniature LAMA vocabulary: ``tiny:ARCH[:WIDTH[:SEED]]``.

    They need no download, so demos, tests and distributed workers can name them like any other model.
    """
    from .testing import MINI_WORDS, TOKENIZER_STYLE, tiny_lm

    parts = name[len(TINY_PREFIX):].split(":")
    arch = parts[0]
    if arch not in TOKENIZER_STYLE:
        raise ModelLoadError(f"unknown tiny model {name!r}; use tiny:ARCH[:WIDTH[:SEED]] with ARCH in {', '.join(TOKENIZER_STYLE)}")
    try:
        width = int(parts[1]) if len(parts) > 1 else 32
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise ModelLoadError(f"tiny model {name!r}: width and seed must be integers") from None
    return tiny_lm(arch, MINI_WORDS, width=width, seed=seed, name=name)


_HEAD_ARCH_SUFFIXES = ("ForMaskedLM", "ForCausalLM", "LMHeadModel", "ForPreTraining", "ForConditionalGeneration")


def load_model(name_or_path: str, *, kind: ModelKind | str | None = None, precision: Precision | str = Precision.FLOAT32,
               device: str | None = None, gguf_file: str | None = None, models_root: Path | None = None) -> PromptedLM:
    """Load a masked or causal LM with its tokenizer from a registry name, hub id, local directory or GGUF file."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    if name_or_path.startswith(TINY_PREFIX):
        return load_tiny(name_or_path)
    precision = parse_enum(Precision, precision, "precision")
    location = resolve_model(name_or_path, models_root)
    if location.endswith(".gguf") and gguf_file is None and os.path.isfile(location):
        location, gguf_file = os.path.dirname(location) or ".", os.path.basename(location)
    spec = REGISTRY.get(name_or_path)
    if spec and spec.local and not Path(location).is_dir():
        raise ModelLoadError(f"model {name_or_path!r} is not fetched yet: run `ptfer models fetch {name_or_path}` "
                             f"(expected it in {location})")
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(location, **extra)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types; the message is what matters
        known = ", ".join(REGISTRY)
        raise ModelLoadError(f"cannot load model {name_or_path!r}: not a known name ({known}), a local model "
                             f"directory, or a reachable hub id ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
    archs = list(getattr(config, "architectures", None) or [])
    if archs and not any(a.endswith(_HEAD_ARCH_SUFFIXES) for a in archs):
        raise NoLMHeadError(f"model {name_or_path!r} ({', '.join(archs)}) has no language-modelling head; "
                            "use a checkpoint saved with its masked-LM or causal-LM head")
    if kind is None:
        kind = ModelKind.CAUSAL if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) else None
    kind = parse_enum(ModelKind, kind, "model kind") if kind else None
    dtype = torch.bfloat16 if precision == Precision.BFLOAT16 else torch.float32
    loaders = {ModelKind.MASKED: AutoModelForMaskedLM, ModelKind.CAUSAL: AutoModelForCausalLM}
    order = [kind] if kind else [ModelKind.MASKED, ModelKind.CAUSAL]
    errors = []
    for candidate in order:
        try:
            model, info = loaders[candidate].from_pretrained(location, dtype=dtype, output_loading_info=True, **extra)
        except ValueError as exc:  # config type has no such head class
            errors.append(str(exc).splitlines()[0][:200])
            continue
        missing = [k for k in info.get("missing_keys", []) if not k.startswith(model.base_model_prefix + ".")]
        if missing:
            raise NoLMHeadError(f"model {name_or_path!r} has no trained {candidate.value}-LM head "
                                f"(missing weights: {', '.join(sorted(missing)[:4])})")
        break
    else:
        raise NoLMHeadError(f"model {name_or_path!r} cannot be loaded as a masked or causal LM: {'; '.join(errors)}")
    tokenizer = AutoTokenizer.from_pretrained(location, **extra)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return PromptedLM(model.to(device), tokenizer, name=name_or_path, kind=candidate)
