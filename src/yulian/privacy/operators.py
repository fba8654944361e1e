"""Operators: what replaces each entity in the masked text.

| operator | `13812345678` becomes | reversible |
|---|---|---|
| `Redact()` | `[PHONE]` (or a fixed string: `Redact("***")`) | no |
| `Mask()` | `138****5678` (ID numbers keep the first 6 and last 4; configurable per type) | no |
| `Hash(salt=...)` | `[PHONE:5f1c0a9e2b7d]` (salted SHA-256 prefix of the normalised value) | no |
| `Placeholder()` | `<PHONE_1>` (the same value gets the same placeholder in one `Vault`) | yes |

`get_operator("mask")` builds one by name; `apply_operator(text, entities, operator, vault)` rewrites a text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from yulian.privacy.entities import Entity
from yulian.privacy.vault import Vault, normalize_value

__all__ = ["OPERATORS", "Hash", "Mask", "Operator", "Placeholder", "Redact", "apply_operator", "get_operator"]


class Operator:
    """Turns one entity into its replacement text. Subclasses implement `replace`."""

    name: str = ""
    reversible: bool = False
    """Whether a `Vault` can give the original back (only placeholders)."""

    def replace(self, entity: Entity, vault: Vault | None) -> str:
        """The text that stands for `entity` in the output."""
        raise NotImplementedError(f"{type(self).__name__} must implement replace()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Redact(Operator):
    """Replace an entity with its type in brackets (`[PHONE]`), or with a fixed string."""

    name = "redact"

    def __init__(self, text: str | None = None) -> None:
        self.text = text

    def replace(self, entity: Entity, vault: Vault | None) -> str:
        return self.text if self.text is not None else f"[{entity.type.upper()}]"


DEFAULT_KEEP: Mapping[str, tuple[int, int]] = {
    "phone": (3, 4),
    "landline": (4, 2),
    "id_card": (6, 4),
    "bank_card": (6, 4),
    "passport": (1, 3),
    "plate": (2, 1),
    "person": (1, 0),
    "ipv4": (0, 0),
    "ipv6": (0, 0),
    "url_credentials": (0, 0),
}
"""Characters kept at the start and end, per entity type, by `Mask` (letters and digits count; separators stay)."""


class Mask(Operator):
    """Hide the middle of an entity with `char`, keeping a few characters: `138****5678`, `110105********002X`.

    `keep` maps entity types to (first, last) counts of letters/digits to keep (default `DEFAULT_KEEP`; other
    types keep `default_keep`). Separators (spaces, dashes, dots) are kept, so formats stay readable. Emails keep
    the first character and the domain (`w***@x.com`); IPv4 addresses keep the first two octets (`10.2.*.*`).
    """

    name = "mask"

    def __init__(
        self, char: str = "*", keep: Mapping[str, tuple[int, int]] | None = None, default_keep: tuple[int, int] = (1, 1)
    ) -> None:
        if len(char) != 1:
            raise ValueError(f"mask char must be one character, got {char!r}")
        self.char = char
        self.keep = {**DEFAULT_KEEP, **(keep or {})}
        self.default_keep = default_keep

    def replace(self, entity: Entity, vault: Vault | None) -> str:
        text = entity.text
        if entity.type == "email" and "@" in text:
            local, _, domain = text.rpartition("@")
            return local[:1] + self.char * max(3, len(local) - 1) + "@" + domain
        if entity.type == "ipv4":
            parts = text.split(".")
            return ".".join(parts[:2] + [self.char] * (len(parts) - 2))
        first, last = self.keep.get(entity.type, self.default_keep)
        n = sum(ch.isalnum() for ch in text)
        if first + last >= n:  # too short to keep anything and still hide something
            first, last = (1, 0) if n > 1 else (0, 0)
        out = []
        seen = 0
        for ch in text:
            if ch.isalnum():
                out.append(ch if seen < first or seen >= n - last else self.char)
                seen += 1
            else:
                out.append(ch)
        return "".join(out)


class Hash(Operator):
    """Replace an entity with a salted SHA-256 prefix of its normalised value: `[PHONE:5f1c0a9e2b7d]`.

    The same value (however it is formatted) gets the same hash under one salt, so masked data can still be
    joined and counted. Use a secret salt: phone numbers are few enough to hash all of them.
    """

    name = "hash"

    def __init__(self, salt: str | bytes = b"", length: int = 12) -> None:
        if not 4 <= length <= 64:
            raise ValueError(f"hash length must be in [4, 64] hex digits, got {length}")
        self.salt = salt.encode("utf-8") if isinstance(salt, str) else salt
        self.length = length

    def replace(self, entity: Entity, vault: Vault | None) -> str:
        digest = hashlib.sha256(self.salt + normalize_value(entity.type, entity.text).encode("utf-8")).hexdigest()
        return f"[{entity.type.upper()}:{digest[: self.length]}]"


class Placeholder(Operator):
    """Replace an entity with a reversible placeholder from a `Vault`: `<PHONE_1>`, `<EMAIL_2>`."""

    name = "placeholder"
    reversible = True

    def replace(self, entity: Entity, vault: Vault | None) -> str:
        if vault is None:
            raise ValueError("the placeholder operator needs a Vault to record what each placeholder stands for")
        return vault.placeholder(entity.type, entity.text)


OPERATORS: Mapping[str, type[Operator]] = {"hash": Hash, "mask": Mask, "placeholder": Placeholder, "redact": Redact}
"""The operators by name (what `--operator` and `mask(operator="...")` accept)."""


def get_operator(operator: str | Operator, *, salt: str | bytes | None = None) -> Operator:
    """An operator instance from a name (`redact`, `mask`, `hash`, `placeholder`) or an instance (returned as is)."""
    if isinstance(operator, Operator):
        return operator
    if operator not in OPERATORS:
        raise ValueError(f"unknown operator {operator!r}; operators: {', '.join(OPERATORS)}")
    if operator == "hash":
        return Hash(salt=salt or b"")
    return OPERATORS[operator]()


def apply_operator(text: str, entities: Sequence[Entity], operator: Operator, vault: Vault | None = None) -> str:
    """`text` with each of `entities` (non-overlapping, sorted by start) replaced by `operator`."""
    if not entities:
        return text
    out = []
    pos = 0
    for entity in entities:
        out.append(text[pos : entity.start])
        out.append(operator.replace(entity, vault))
        pos = entity.end
    out.append(text[pos:])
    return "".join(out)
