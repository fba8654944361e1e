"""The document type that loaders, splitters, indexes and retrievers exchange."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Document"]


@dataclass(frozen=True, slots=True)
class Document:
    """A piece of text with metadata (source file, line or page, title...) and a stable id.

    `id` defaults to a hash of the text and metadata `source`, so re-adding the same chunk is idempotent.
    Retrievers return documents with `score` set (higher is better; its scale depends on the retriever).
    """

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    score: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Document.text must be a str, got {type(self.text).__name__}")
        if not self.id:
            source = str(self.metadata.get("source", ""))
            digest = hashlib.sha1(f"{source}\x00{self.text}".encode(), usedforsecurity=False).hexdigest()[:16]
            object.__setattr__(self, "id", digest)

    def with_score(self, score: float) -> Document:
        """A copy carrying a retrieval score."""
        return Document(self.text, self.metadata, self.id, float(score))  # hot in search: skip replace()

    def with_metadata(self, **extra: Any) -> Document:
        """A copy with metadata keys added or replaced (the id is kept)."""
        return replace(self, metadata={**self.metadata, **extra})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text, "metadata": dict(self.metadata)}
        if self.score is not None:
            out["score"] = self.score
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Document:
        return cls(
            text=data["text"], metadata=dict(data.get("metadata", {})), id=data.get("id", ""), score=data.get("score")
        )
