"""`Vault`: the reversible mapping between placeholders (`<PHONE_1>`) and the values they stand for.

One vault per session (or per call): the same value always gets the same placeholder in it, so a model sees a
consistent conversation, and `restore` puts the real values back into its answer. `StreamRestorer` does that on
a token stream, holding back text that may be the start of a placeholder split across chunks.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["StreamRestorer", "Vault", "normalize_value"]

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9]*(?:_[A-Z][A-Z0-9]*)*)_(\d+)>")
# what models write back: `<PHONE_1>`, but small models also drop the `>` or switch to brackets (`[PHONE_1]`)
_LOOSE = re.compile(r"[<\[]([A-Z][A-Z0-9]*(?:_[A-Z][A-Z0-9]*)*)_(\d+)(?:[>\]]|(?![A-Za-z0-9_]))")
_PARTIAL = re.compile(r"[<\[][A-Z0-9_]{0,40}$")
_MAX_PLACEHOLDER = 48

_DIGIT_TYPES = frozenset({"phone", "landline", "id_card", "bank_card", "passport", "plate", "qq"})


def normalize_value(entity_type: str, value: str) -> str:
    """The form two mentions of one value share: separators dropped from numbers, emails lowercased."""
    if entity_type in _DIGIT_TYPES:
        return "".join(ch for ch in value if ch.isalnum()).upper()
    if entity_type in ("email", "ipv6"):
        return value.lower()
    return value


class Vault:
    """Placeholders for values, per entity type: `<PHONE_1>`, `<PHONE_2>`, `<EMAIL_1>` ... Thread-safe.

    `placeholder(type, value)` returns the value's placeholder (a new one the first time); `restore(text)` puts
    the original values back (placeholders this vault did not issue are left as they are). Save it with
    `to_dict` / `save` to restore later, e.g. per chat session.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], str] = {}
        self._values: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def placeholder(self, entity_type: str, value: str) -> str:
        """The placeholder of `value` (an entity of `entity_type`), issuing a new one on first sight."""
        key = (entity_type, normalize_value(entity_type, value))
        found = self._by_key.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._by_key.get(key)
            if found is None:
                label = entity_type.upper()
                n = self._counts.get(label, 0) + 1
                self._counts[label] = n
                found = f"<{label}_{n}>"
                self._by_key[key] = found
                self._values[found] = value
        return found

    def value(self, placeholder: str) -> str | None:
        """The value behind `placeholder`, or None if this vault did not issue it."""
        return self._values.get(placeholder)

    def restore(self, text: str) -> str:
        """`text` with every placeholder of this vault replaced by its value.

        Forgiving about what models write back: `<PHONE_1` (no `>`) and `[PHONE_1]` are restored too. Placeholders
        this vault did not issue are left as they are.
        """
        if not self._values or ("<" not in text and "[" not in text):
            return text
        return _LOOSE.sub(self._sub, text)

    def _sub(self, match: re.Match[str]) -> str:
        return self._values.get(f"<{match.group(1)}_{match.group(2)}>", match.group())

    def stream_restorer(self) -> StreamRestorer:
        """A `StreamRestorer` for restoring a stream of text pieces with this vault."""
        return StreamRestorer(self)

    @property
    def mapping(self) -> dict[str, str]:
        """A copy of the placeholder -> value mapping."""
        return dict(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, placeholder: object) -> bool:
        return placeholder in self._values

    def __repr__(self) -> str:
        return f"Vault({len(self)} values)"

    # ----------------------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: `{"version": 1, "entries": [[type, value, placeholder], ...]}`. It holds raw PII."""
        with self._lock:
            entries = [[t, self._values[p], p] for (t, _), p in self._by_key.items()]
        return {"version": 1, "entries": entries}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vault:
        """Rebuild a vault saved with `to_dict`."""
        entries = data.get("entries")
        if data.get("version") != 1 or not isinstance(entries, list):
            raise ValueError("not a saved vault: expected {'version': 1, 'entries': [...]}")
        vault = cls()
        for i, entry in enumerate(entries):
            if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(x, str) for x in entry)):
                raise ValueError(f"saved vault entry {i} must be [type, value, placeholder], got {entry!r}")
            etype, value, ph = entry
            m = PLACEHOLDER.fullmatch(ph)
            if m is None:
                raise ValueError(f"saved vault entry {i}: {ph!r} is not a placeholder like <PHONE_1>")
            vault._by_key[(etype, normalize_value(etype, value))] = ph
            vault._values[ph] = value
            vault._counts[m.group(1)] = max(vault._counts.get(m.group(1), 0), int(m.group(2)))
        return vault

    def save(self, path: str | Path) -> None:
        """Write the vault as JSON to `path` (it holds the raw values: keep it where the PII may live)."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vault:
        """Read a vault written by `save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a saved vault (invalid JSON: {e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a saved vault")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


class StreamRestorer:
    """Restores placeholders in a stream of text pieces, even when one is split across pieces.

    `feed(piece)` returns the text that is safe to emit now; a trailing `<PHO` is held back until the next piece
    decides it. `finish()` returns whatever is still held at the end of the stream.
    """

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._held = ""

    def feed(self, piece: str) -> str:
        """Restore `piece` (joined to any held text); returns what can be emitted now."""
        text = self._held + piece
        self._held = ""
        cut = max(text.rfind("<"), text.rfind("["))
        if cut >= 0 and len(text) - cut < _MAX_PLACEHOLDER and _PARTIAL.match(text, cut):
            self._held = text[cut:]
            text = text[:cut]
        return self.vault.restore(text)

    def finish(self) -> str:
        """The held text at the end of the stream (restored if it is a whole placeholder)."""
        rest, self._held = self._held, ""
        return self.vault.restore(rest)

    def restore_all(self, pieces: Iterable[str]) -> Iterator[str]:
        """Restore a whole stream of pieces; empty outputs are skipped."""
        for piece in pieces:
            out = self.feed(piece)
            if out:
                yield out
        tail = self.finish()
        if tail:
            yield tail
