"""The values PII detection produces: `Entity` (one found span) and `MaskResult` (masked text + what was found)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yulian.privacy.vault import Vault

__all__ = ["Entity", "MaskResult"]


@dataclass(frozen=True, slots=True)
class Entity:
    """One piece of PII found in a text.

    Attributes:
        type: the entity type, a short lowercase name (`phone`, `id_card`, `bank_card`, `email`, ...).
        start: offset of the first character in the analysed text.
        end: offset just past the last character (`text[start:end] == entity.text`).
        text: the matched text, exactly as it appears.
        score: confidence in [0, 1]: checksum-verified identifiers score highest; context words raise a score.
        detector: the name of the detector that found it.
    """

    type: str
    start: int
    end: int
    text: str
    score: float = 1.0
    detector: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: `{"type", "start", "end", "text", "score"}`."""
        return {"type": self.type, "start": self.start, "end": self.end, "text": self.text, "score": self.score}


@dataclass(frozen=True, slots=True)
class MaskResult:
    """The output of `mask`: the masked text, the entities found in the original, and the vault used.

    `vault.restore(result.text)` gives back the original text when the operator was `placeholder`.
    """

    text: str
    entities: list[Entity] = field(default_factory=list)
    vault: Vault | None = None
