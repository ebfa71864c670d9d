"""Prompt templates: text with a subject slot [X], an answer slot [Y], soft-vector slots [V] and, optionally, [S].

[S] marks where the model's own start tokens (BOS, CLS) go; without it they come first. PEFT's prompt tuning puts
its virtual tokens before them, which is the template ``[V] … [V] [S][X] [Y] .``. A template is parsed once into
segments. Whitespace is kept with the *following* segment, because
BPE and SentencePiece vocabularies mark a word boundary at the start of a token (``Ġword``, ``▁word``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .config import Placement, parse_enum
from .errors import TemplateError

SUBJECT, ANSWER, SOFT, SPECIALS = "[X]", "[Y]", "[V]", "[S]"
_SLOT = re.compile(r"(\s*)(\[X\]|\[Y\]|\[V\]|\[S\])")


class SegmentKind(str, Enum):
    TEXT = "text"
    SUBJECT = "subject"
    ANSWER = "answer"
    SOFT = "soft"
    SPECIALS = "specials"  # the tokenizer's own leading special tokens


@dataclass(frozen=True)
class Segment:
    kind: SegmentKind
    text: str = ""  # literal text for TEXT segments
    leading_space: bool = False  # for slots: was the slot preceded by whitespace?


@dataclass(frozen=True)
class PromptTemplate:
    text: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, text: str) -> PromptTemplate:
        if not isinstance(text, str) or not text.strip():
            raise TemplateError("template is empty")
        for slot in (SUBJECT, ANSWER):
            count = text.count(slot)
            if count != 1:
                raise TemplateError(f"template {text!r} must contain {slot} exactly once (found {count})")
        if text.count(SPECIALS) > 1:
            raise TemplateError(f"template {text!r} may contain {SPECIALS} at most once")
        segments: list[Segment] = []
        pos = 0
        for match in _SLOT.finditer(text):
            if match.start() > pos:
                segments.append(Segment(SegmentKind.TEXT, text[pos : match.start()]))
            kind = {
                SUBJECT: SegmentKind.SUBJECT,
                ANSWER: SegmentKind.ANSWER,
                SOFT: SegmentKind.SOFT,
                SPECIALS: SegmentKind.SPECIALS,
            }[match.group(2)]
            segments.append(Segment(kind, leading_space=bool(match.group(1))))
            pos = match.end()
        if pos < len(text):
            segments.append(Segment(SegmentKind.TEXT, text[pos:]))
        fixed = tuple(segments)
        subject_at = next(i for i, s in enumerate(fixed) if s.kind == SegmentKind.SUBJECT)
        answer_at = next(i for i, s in enumerate(fixed) if s.kind == SegmentKind.ANSWER)
        if answer_at < subject_at:
            raise TemplateError(f"template {text!r}: [Y] must come after [X] so a causal LM can predict it")
        specials_at = next((i for i, s in enumerate(fixed) if s.kind == SegmentKind.SPECIALS), 0)
        if any(s.kind not in (SegmentKind.SOFT, SegmentKind.SPECIALS) for s in fixed[:specials_at]):
            raise TemplateError(f"template {text!r}: only [V] slots may come before {SPECIALS}")
        return cls(text=text, segments=fixed)

    @classmethod
    def soft(
        cls,
        n_vectors: int,
        placement: Placement | str = Placement.POSTFIX,
        split_at: int | None = None,
        suffix: str = " .",
    ) -> PromptTemplate:
        """The soft-prompt layout: postfix ``[X] v1…vm [Y] .``, prefix ``v1…vm [X] [Y] .``, split, or PEFT's
        ``v1…vm [S][X] [Y] .`` (the vectors before the model's start tokens, the text exactly as tokenised)."""
        placement = parse_enum(Placement, placement, "placement")
        if n_vectors < 1:
            raise TemplateError(f"a soft prompt needs at least one vector (got {n_vectors})")
        if placement == Placement.TEMPLATE:
            raise TemplateError("a template-shaped layout depends on the model and relation: resolve it first")
        if placement == Placement.PEFT:
            return cls.parse(" ".join([SOFT] * n_vectors) + f" {SPECIALS}{SUBJECT} {ANSWER}" + suffix)
        if placement == Placement.POSTFIX:
            before, after = 0, n_vectors
        elif placement == Placement.PREFIX:
            before, after = n_vectors, 0
        else:
            before = n_vectors - 1 if split_at is None else split_at
            if not 0 <= before <= n_vectors:
                raise TemplateError(f"split_at={split_at} must lie in 0..{n_vectors}")
            after = n_vectors - before
        parts = [SOFT] * before + [SUBJECT] + [SOFT] * after + [ANSWER]
        return cls.parse(" ".join(parts) + suffix)

    @property
    def n_soft(self) -> int:
        return sum(s.kind == SegmentKind.SOFT for s in self.segments)

    @property
    def soft_before_specials(self) -> bool:
        """True for PEFT-style layouts: the vectors precede the model's own start tokens."""
        return any(s.kind == SegmentKind.SPECIALS for s in self.segments)
