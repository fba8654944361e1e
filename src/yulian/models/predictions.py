"""What task predictors return: a class `Prediction`, named-entity `Entity` spans, extractive-QA `Answer`s.

Plain frozen dataclasses (standard library only, importing them is instant) with `to_dict()` for JSON output.
Character offsets always index the *original* input text: `text[entity.start:entity.end] == entity.text`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "Entity", "Prediction"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """The output of a text classifier.

    Attributes:
        label: the most probable label.
        score: its probability (softmax for single-label models, sigmoid for multi-label ones).
        scores: label -> probability, highest first (all labels, or the `top_k` best).
        labels: the labels predicted: `(label,)` for single-label models; for multi-label models every label whose
            probability reaches the threshold, highest first (possibly none).
    """

    label: str
    score: float
    scores: Mapping[str, float] = field(default_factory=dict)
    labels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """`{"label", "score", "scores", "labels"}`, JSON-ready."""
        return {"label": self.label, "score": self.score, "scores": dict(self.scores), "labels": list(self.labels)}


@dataclass(frozen=True, slots=True)
class Entity:
    """A typed span found by a token classifier (NER, slot filling).

    Attributes:
        text: the span as it appears in the input: `input[start:end]`.
        type: the entity type without its tag prefix (`PER`, not `B-PER`; with `aggregation="none"`, the raw tag).
        start: character offset of the first character in the input.
        end: character offset one past the last character.
        score: the mean probability of the tags that make up the span.
    """

    text: str
    type: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """`{"text", "type", "start", "end", "score"}`, JSON-ready."""
        return {"text": self.text, "type": self.type, "start": self.start, "end": self.end, "score": self.score}


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer span extracted from a context by a question-answering model.

    Attributes:
        text: the answer as it appears in the context: `context[start:end]` ("" when the model finds none).
        start: character offset of the answer in the context.
        end: character offset one past its last character.
        score: the model's probability for this span (start probability x end probability within its window).
    """

    text: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """`{"text", "start", "end", "score"}`, JSON-ready."""
        return {"text": self.text, "start": self.start, "end": self.end, "score": self.score}
