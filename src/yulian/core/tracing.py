"""Tracing: spans for every chain and step of a call, delivered to callbacks.

Pass callbacks in a `RunConfig` (`chain.invoke(x, config=RunConfig(callbacks=[JsonlTracer("trace.jsonl")]))`) or
bind them once with `chain.with_config(callbacks=[...])`. Each chain records a span for itself and one for every
leaf step it runs; nested chains (also those invoked from inside a function step, or in asyncio tasks) record their
parent through the run context. With no callbacks, none of this code runs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["Callback", "JsonlTracer", "MemoryTracer", "Span", "summarize"]

log = logging.getLogger("yulian.tracing")


@dataclass(slots=True)
class Span:
    """One timed unit of work: a chain or one of its steps."""

    run_id: str
    trace_id: str
    parent_id: str | None
    name: str
    kind: str
    inputs: Any
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    start: float = 0.0
    end: float | None = None
    outputs: Any = None
    error: str | None = None

    @property
    def duration_ms(self) -> float | None:
        return None if self.end is None else (self.end - self.start) * 1000.0

    def to_dict(self, max_chars: int = 300) -> dict[str, Any]:
        """A JSON-ready record with inputs and outputs summarised to at most `max_chars` characters."""
        return {
            "run_id": self.run_id,
            "trace_id": self.trace_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "duration_ms": None if self.duration_ms is None else round(self.duration_ms, 3),
            "inputs": summarize(self.inputs, max_chars),
            "outputs": summarize(self.outputs, max_chars),
            "error": self.error,
            "tags": list(self.tags),
            "metadata": {k: summarize(v, max_chars) for k, v in self.metadata.items()},
        }


def summarize(value: Any, max_chars: int = 300) -> Any:
    """A short JSON-safe rendering of a value: scalars as they are, the rest as a truncated repr."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else repr(value)
    if len(text) > max_chars:
        return text[: max_chars - 1] + "…"
    return text


class Callback:
    """Observer of spans. Override what you need; every method has a do-nothing default.

    Callbacks run inline on the calling thread: keep them quick. An exception inside a callback is logged and
    never breaks the chain.
    """

    def on_start(self, span: Span) -> None:
        """A chain or step started (`span.end` is None)."""

    def on_end(self, span: Span) -> None:
        """A chain or step finished; `span.error` is set when it failed."""


class MemoryTracer(Callback):
    """Keeps finished spans in a list (`tracer.spans`), handy in tests and notebooks."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def on_end(self, span: Span) -> None:
        with self._lock:
            self.spans.append(span)

    def tree(self) -> str:
        """The finished spans as an indented tree, children under their parents, in start order."""
        children: dict[str | None, list[Span]] = {}
        for s in sorted(self.spans, key=lambda s: s.start):
            children.setdefault(s.parent_id, []).append(s)
        lines: list[str] = []

        def walk(parent: str | None, depth: int) -> None:
            for s in children.get(parent, []):
                status = f"error: {s.error}" if s.error else f"{s.duration_ms or 0:.3f} ms"
                lines.append(f"{'  ' * depth}{s.name} [{s.kind}] {status}")
                walk(s.run_id, depth + 1)

        known = {s.run_id for s in self.spans}
        for root in [p for p in children if p is None or p not in known]:
            walk(root, 0)
        return "\n".join(lines)


class JsonlTracer(Callback):
    """Appends one JSON line per finished span to a file (or an open text stream).

    Lines are written whole under a lock and flushed, so a crash never leaves half a record and several threads
    can share one tracer. Inputs and outputs are summarised to `max_chars` characters.
    """

    def __init__(self, path: str | os.PathLike[str] | IO[str], max_chars: int = 300) -> None:
        self.max_chars = max_chars
        self._lock = threading.Lock()
        if isinstance(path, str | os.PathLike):
            self.path: Path | None = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._owns = True
        else:
            self.path = None
            self._file = path
            self._owns = False

    def on_end(self, span: Span) -> None:
        line = json.dumps(span.to_dict(self.max_chars), ensure_ascii=False, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._owns and not self._file.closed:
            self._file.close()

    def __enter__(self) -> JsonlTracer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _new_id() -> str:
    return os.urandom(8).hex()


def start_span(
    name: str,
    kind: str,
    inputs: Any,
    callbacks: Sequence[Callback],
    parent: Span | None,
    tags: Sequence[str],
    metadata: Any,
) -> Span:
    run_id = _new_id()
    span = Span(
        run_id=run_id,
        trace_id=parent.trace_id if parent is not None else run_id,
        parent_id=parent.run_id if parent is not None else None,
        name=name,
        kind=kind,
        inputs=inputs,
        tags=tuple(tags),
        metadata=dict(metadata),
        start=time.time(),
    )
    for cb in callbacks:
        try:
            cb.on_start(span)
        except Exception:  # a broken observer must not break the chain
            log.exception("callback %r failed in on_start", cb)
    return span


def end_span(
    span: Span, callbacks: Sequence[Callback], outputs: Any = None, error: BaseException | None = None
) -> None:
    span.end = time.time()
    span.outputs = outputs
    if error is not None:
        span.error = f"{type(error).__name__}: {error}"
    for cb in callbacks:
        try:
            cb.on_end(span)
        except Exception:
            log.exception("callback %r failed in on_end", cb)
