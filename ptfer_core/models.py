"""Language models with soft prompts inserted through ``inputs_embeds``.

`PromptedLM` wraps a frozen Hugging Face masked or causal LM. Soft-prompt vectors replace the input embeddings
at placeholder positions; the model, its tokenizer and its embeddings are never changed, so one cached instance
serves every caller, concurrently. Logits are computed only at the answer position (the mask for masked LMs, the
next token for causal LMs) and only for the candidate rows of the output matrix. Tables derived from the model
(candidates, anchors, statistics, compute twins) live in its bounded, thread-safe `memo`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from . import fastpath
from .config import ModelKind, Precision, parse_enum, resolve_precision
from .errors import DimensionMismatchError, InputError, ModelLoadError, NoLMHeadError, TemplateError
from .memo import Memo
from .templates import PromptTemplate, SegmentKind


@dataclass
class EncodedBatch:
    """Token ids of a batch of filled templates, right-padded.

    soft_positions[b, j] is where soft vector j goes in row b; answer_positions[b] is the position whose output
    predicts [Y] (the mask for masked LMs, the last token before [Y] for causal LMs). `prefix`, when set, holds
    the cached keys/values of each row's tokens before its first soft vector (see `fastpath`).
    """

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    soft_positions: torch.Tensor  # [B, m] (m may be 0)
    answer_positions: torch.Tensor  # [B]
    prefix: fastpath.PrefixState | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def rows(self, index: list[int] | torch.Tensor) -> EncodedBatch:
        """The given rows, trimmed to their own longest row."""
        index = torch.as_tensor(index, dtype=torch.long)
        width = int(self.attention_mask[index].sum(dim=1).max())
        return EncodedBatch(
            self.input_ids[index, :width],
            self.attention_mask[index, :width],
            self.soft_positions[index],
            self.answer_positions[index],
            self.prefix.rows(index) if self.prefix is not None else None,
        )


# Masked-LM heads that are "transform, then decoder": logits = transform(hidden) @ W.T + b, so only the candidate
# rows of W are needed.
_MLM_TRANSFORMS = {
    "bert": lambda m: m.cls.predictions.transform,
    "roberta": lambda m: lambda h: m.lm_head.layer_norm(F.gelu(m.lm_head.dense(h))),
    "xlm-roberta": lambda m: lambda h: m.lm_head.layer_norm(F.gelu(m.lm_head.dense(h))),
    "camembert": lambda m: lambda h: m.lm_head.layer_norm(F.gelu(m.lm_head.dense(h))),
    "albert": lambda m: lambda h: m.predictions.LayerNorm(m.predictions.activation(m.predictions.dense(h))),
    "distilbert": lambda m: lambda h: m.vocab_layer_norm(m.activation(m.vocab_transform(h))),
    "electra": lambda m: m.generator_predictions,
}


class PromptedLM:
    """A frozen masked or causal LM that scores templates with soft-prompt vectors at placeholder slots."""

    def __init__(self, model, tokenizer, name: str, kind: ModelKind | str | None = None, identity: str | None = None):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.identity = identity or name  # what determines the weights (e.g. a content hash); keys stored prompts
        self.kind = parse_enum(ModelKind, kind, "model kind") if kind else infer_kind(model)
        if self.kind == ModelKind.MASKED and tokenizer.mask_token_id is None:
            raise ModelLoadError(f"{name}: masked LM tokenizer has no mask token")
        self.device = next(model.parameters()).device
        self.memo = Memo(max_entries=64)
        self.prefix_memo = Memo(max_entries=6)  # prefix keys/values of fact sets: large, so few
        self._head_transform = None
        if self.kind == ModelKind.MASKED:
            maker = _MLM_TRANSFORMS.get(model.config.model_type)
            self._head_transform = maker(model) if maker else None
        self._output_layer = model.get_output_embeddings()
        if self._output_layer is None:
            raise NoLMHeadError(f"{name}: the model has no output (LM head) layer")
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self._special_prefix, self._special_suffix = special_tokens(tokenizer)
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
        with torch.inference_mode(False), torch.no_grad():  # a cached tensor must stay usable by autograd later
            rows = [
                self.embed(torch.arange(i, min(i + 32768, self.vocab_size))).float()
                for i in range(0, self.vocab_size, 32768)
            ]
            return torch.cat(rows)

    @cached_property
    def embed_scale(self) -> float:
        """How much the input-embedding module scales a weight row (Gemma: √d; most models: 1)."""
        weight = self.model.get_input_embeddings().weight
        row = int(weight.norm(dim=-1).argmax())
        return float(self.embedding_matrix[row].norm() / weight[row].float().norm().clamp_min(1e-12))

    @cached_property
    def max_length(self) -> int | None:
        """The most positions the model can read (learned position embeddings), if it says."""
        config = self.model.config
        for key in ("max_position_embeddings", "n_positions"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value - (2 if config.model_type in ("roberta", "xlm-roberta", "camembert") else 0)
        return None

    @property
    def initializer_range(self) -> float:
        return float(getattr(self.model.config, "initializer_range", 0.02) or 0.02)

    @cached_property
    def special_token_ids(self) -> set[int]:
        return set(self.tokenizer.all_special_ids)

    def word_token_ids(self, words: list[str]) -> list[int | None]:
        """Per word, the id of the single token that spells it as a whole word after a space, or None.

        The reference's rule (``tokenizer.tokenize(' ' + word)`` is one known token); a masked LM also accepts the
        bare word as one token. Cached per word list.
        """
        words = list(words)
        key = ("word_token_ids", hashlib.sha1("\n".join(words).encode()).hexdigest())
        return self.memo.get(key, lambda: self._word_token_ids(words))

    def _word_token_ids(self, words: list[str]) -> list[int | None]:
        if not words:
            return []
        spaced, plain = self._token_ids([" " + w for w in words]), self._token_ids(words)
        unk = self.tokenizer.unk_token_id
        out: list[int | None] = []
        for a, b in zip(spaced, plain):
            if len(a) == 1 and a[0] != unk and a[0] not in self.special_token_ids:
                out.append(a[0])
            elif len(b) == 1 and self.kind == ModelKind.MASKED and b[0] != unk and b[0] not in self.special_token_ids:
                out.append(b[0])
            else:
                out.append(None)
        return out

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens. A fast tokenizer's Rust backend is called directly: the
        `tokenizer(...)` wrapper spends ~3x longer building Python encodings (60k words: 3.6-4.7 s, not 1.3-1.5 s)."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None) if self.tokenizer.is_fast else None
        if backend is None or backend.truncation is not None or backend.padding is not None:
            return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]

    # --------------------------------------------------------------- encoding

    def _segment_ids(self, text: str) -> list[int]:
        return self.memo.get(("segment", text), lambda: self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(
        self, template: PromptTemplate, subjects: list[str], max_subject_tokens: int | None = None
    ) -> EncodedBatch:
        """Tokenise `template` filled with each subject. Soft slots get a filler id, replaced in `inputs_embeds`.

        `max_subject_tokens` keeps only the first N tokens of a long subject (a classification text); the
        template's own tokens are never cut.
        """
        filler = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        rows, softs, answers = [], [], []
        for n, subject in enumerate(subjects):
            if not isinstance(subject, str) or not subject.strip():
                raise InputError(f"empty subject (row {n + 1}): type the entity or text the question is about")
            has_specials = template.soft_before_specials
            ids = [] if has_specials else list(self._special_prefix)
            soft_pos: list[int] = []
            answer_pos = -1
            for seg in template.segments:
                space = " " if seg.leading_space else ""
                if seg.kind == SegmentKind.TEXT:
                    ids += self._segment_ids(seg.text)
                elif seg.kind == SegmentKind.SPECIALS:
                    ids += self._special_prefix
                elif seg.kind == SegmentKind.SUBJECT:
                    ids += self.tokenizer(space + subject.strip(), add_special_tokens=False)["input_ids"][
                        :max_subject_tokens
                    ]
                elif seg.kind == SegmentKind.SOFT:
                    soft_pos.append(len(ids))
                    ids.append(filler)
                else:  # the answer slot
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
        if self.max_length is not None and length > self.max_length:
            row = max(range(len(rows)), key=lambda i: len(rows[i]))
            raise InputError(
                f"input {row + 1} is {length} tokens long; {self.name} reads at most {self.max_length}: "
                "shorten the subject"
            )
        input_ids = torch.full((len(rows), length), filler, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
            attention[i, : len(r)] = 1
        return EncodedBatch(
            input_ids,
            attention,
            torch.tensor(softs, dtype=torch.long).reshape(len(rows), -1),
            torch.tensor(answers, dtype=torch.long),
        )

    # --------------------------------------------------------------- compute models and the prefix cache

    def compute_model(
        self, precision: Precision | str = Precision.FLOAT32, dropout: bool = False, for_training: bool = False
    ):
        """The module that runs a forward: the loaded model itself (float32 inference) or a twin (`fastpath`:
        bfloat16 weights, or dropout on, or eager attention for a fast backward)."""
        precision = resolve_precision(precision, self.device)
        dropout = dropout and fastpath.has_dropout(self.model)
        if precision == Precision.FLOAT32 and not dropout and not for_training:
            return self.model
        return self.memo.get(
            ("twin", precision.value, dropout), lambda: fastpath.build_twin(self.model, precision, dropout)
        )

    def with_prefix(self, batch: EncodedBatch, model) -> EncodedBatch:
        """`batch` with the cached keys/values of its rows' prefixes attached, when that saves work."""
        if batch.soft_positions.shape[1] == 0:
            return batch
        first = batch.soft_positions[:, 0]
        if not fastpath.prefix_cacheable(self, model, first):
            return batch
        key = (
            "prefix",
            id(model),
            hashlib.sha1(batch.input_ids.numpy().tobytes()).hexdigest(),
            hashlib.sha1(first.numpy().tobytes()).hexdigest(),
        )
        state = self.prefix_memo.get(key, lambda: fastpath.compute_prefix(model, self.embed, batch.input_ids, first))
        return EncodedBatch(batch.input_ids, batch.attention_mask, batch.soft_positions, batch.answer_positions, state)

    # --------------------------------------------------------------- forward

    def check_vectors(self, vectors: torch.Tensor, n_slots: int) -> None:
        if vectors.ndim != 2:
            raise DimensionMismatchError(f"soft prompt must be a matrix [m, d], got shape {tuple(vectors.shape)}")
        if vectors.shape[1] != self.width:
            raise DimensionMismatchError(
                f"soft prompt width {vectors.shape[1]} does not match {self.name}'s embedding width {self.width}"
            )
        if vectors.shape[0] != n_slots:
            raise DimensionMismatchError(
                f"template has {n_slots} [V] slots but the prompt has {vectors.shape[0]} vectors"
            )
        if not torch.isfinite(vectors).all():
            raise InputError("soft prompt contains NaN or infinite values")

    def _embeds(self, input_ids, soft_positions, vectors, dtype) -> torch.Tensor:
        """Token embeddings with the soft vectors written into their slots, [B, L, d] (graph kept to `vectors`)."""
        embeds = self.embed(input_ids).to(dtype)
        m = soft_positions.shape[1]
        if not m:
            return embeds
        if vectors is None:
            raise InputError("template has [V] slots but no soft prompt vectors were given")
        self.check_vectors(vectors, m)
        rows = torch.arange(len(input_ids), device=self.device).unsqueeze(1).expand(-1, m)
        values = vectors.to(self.device, dtype).unsqueeze(0).expand(len(input_ids), -1, -1)
        return embeds.index_put((rows, soft_positions.to(self.device)), values)

    def answer_hidden(self, batch: EncodedBatch, vectors: torch.Tensor | None = None, model=None) -> torch.Tensor:
        """Final hidden state at each row's answer position, [B, H]. Differentiable w.r.t. `vectors`."""
        model = model if model is not None else self.model
        dtype = next(model.parameters()).dtype
        rows = torch.arange(len(batch))
        if batch.prefix is not None:  # run only from the first soft vector to the answer
            start = batch.prefix.lengths
            span = batch.answer_positions - start + 1
            offsets = torch.arange(int(span.max())).unsqueeze(0)
            index = (start.unsqueeze(1) + offsets).clamp_max(batch.input_ids.shape[1] - 1)
            new_mask = (offsets < span.unsqueeze(1)).long()
            embeds = self._embeds(
                batch.input_ids.gather(1, index), batch.soft_positions - start.unsqueeze(1), vectors, dtype
            )
            hidden = fastpath.forward_after_prefix(model, batch.prefix, embeds, new_mask)
            return hidden[rows, span - 1]
        embeds = self._embeds(batch.input_ids, batch.soft_positions, vectors, dtype)
        out = model.base_model(inputs_embeds=embeds, attention_mask=batch.attention_mask.to(self.device))
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return hidden[rows, batch.answer_positions]

    def _head_rows(self, candidate_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight, bias = self._output_layer.weight, getattr(self._output_layer, "bias", None)
        if candidate_ids is None:
            return weight, bias
        key = ("head_rows", hashlib.sha1(candidate_ids.cpu().numpy().tobytes()).hexdigest())

        def select():
            with torch.inference_mode(False), torch.no_grad():  # a cached tensor must stay usable by autograd
                idx = candidate_ids.to(weight.device)
                return weight.index_select(0, idx).float().contiguous(), None if bias is None else bias.index_select(
                    0, idx
                ).float()

        return self.memo.get(key, select)

    def answer_logits(
        self,
        batch: EncodedBatch,
        vectors: torch.Tensor | None = None,
        candidate_ids: torch.Tensor | None = None,
        model=None,
    ) -> torch.Tensor:
        """Logits at the answer position for the candidate rows only, [B, C] (all V when candidate_ids is None)."""
        model = model if model is not None else self.model
        if self.kind == ModelKind.MASKED and self._head_transform is None:
            return self._full_answer_logits(batch, vectors, candidate_ids, model)
        hidden = self.answer_hidden(batch, vectors, model)
        # The head runs in float32 on the loaded model's weights: cheap for the rows needed, and it keeps
        # bfloat16 bodies' predictions close to float32 ones.
        features = self._head_transform(hidden.float()) if self._head_transform is not None else hidden.float()
        weight, bias = self._head_rows(candidate_ids)
        logits = F.linear(features, weight.float(), None if bias is None else bias.float())
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def _full_answer_logits(self, batch, vectors, candidate_ids, model):
        """Fallback for masked-LM heads we do not know how to split: full forward, then gather."""
        dtype = next(model.parameters()).dtype
        embeds = self._embeds(batch.input_ids, batch.soft_positions, vectors, dtype)
        logits = model(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits
        logits = logits[torch.arange(len(batch)), batch.answer_positions].float()
        return logits if candidate_ids is None else logits[:, candidate_ids.to(logits.device)]

    def __repr__(self) -> str:
        return f"PromptedLM({self.name!r}, kind={self.kind.value}, width={self.width}, vocab={self.vocab_size})"


def infer_kind(model) -> ModelKind:
    cls = type(model).__name__
    if cls.endswith(("ForMaskedLM", "ForPreTraining")):
        return ModelKind.MASKED
    if cls.endswith(("ForCausalLM", "LMHeadModel")):
        return ModelKind.CAUSAL
    raise NoLMHeadError(f"{cls} is neither a masked LM nor a causal LM: it has no language-modelling head")


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """Ids the tokenizer adds before and after a text, found by probing rather than per-family rules."""
    bare = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return [], []
