"""A structured JSONL audit log: who (key id), which route and model, status, latency, sizes; never raw content.

    {"ts": "2026-11-29T03:12:45.120Z", "request_id": "req_3f...", "key": "alice", "method": "POST",
     "route": "/v1/chat/completions", "model": "support-bot", "status": 200, "latency_ms": 41.7,
     "request_bytes": 182, "items": 1, "input_tokens": 12, "output_tokens": 9}

Nothing a client wrote or a model said is logged: only counts and sizes. Free-text fields that the server adds
(error codes and messages) pass through `mask`, the hook where the privacy module's PII masking plugs in:
`create_app` installs `yulian.privacy.mask_text` (phones, ID numbers, cards, emails... redacted) unless another
masker was set; with none installed, free text is replaced by its length.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

__all__ = ["AuditLog", "audit_masker", "mask", "set_masker"]

_masker: Callable[[str], str] | None = None


def set_masker(masker: Callable[[str], str] | None) -> None:
    """Install the function that masks PII in free text before it is logged (None: the strict default)."""
    global _masker
    _masker = masker


def audit_masker() -> Callable[[str], str] | None:
    """The installed masker (None: the strict default)."""
    return _masker


def mask(text: str) -> str:
    """`text` as it may be logged: through the installed masker, or, by default, replaced by its length."""
    if _masker is not None:
        return _masker(text)
    return f"<{len(text)} chars>"


class AuditLog:
    """Appends one JSON line per request to a file (line-buffered, thread-safe); a no-op without a path."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._file: TextIO | None = None
        self._lock = threading.Lock()
        self.open()

    def open(self) -> None:
        """Open the file for appending (done by the constructor; again after `close`)."""
        with self._lock:
            if self.path is not None and self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8", buffering=1)

    def write(self, record: Mapping[str, Any]) -> None:
        """Append `record` (only counts, sizes, ids and codes: the caller never puts content in it)."""
        if self._file is None:
            return
        line = json.dumps({"ts": _now(), **record}, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
