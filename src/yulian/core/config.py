"""Per-call configuration, carried through nested and async calls by a context variable.

A `RunConfig` travels with one call of a chain: tags and metadata for tracing, callbacks, a concurrency cap for
batches and a timeout. It is set in a `contextvars.ContextVar`, so a component that invokes another chain inside
its own `invoke` (or inside an `asyncio` task) keeps the same callbacks, and its spans keep their trace parent.

Nothing here costs anything when no config is given: a chain's fast path reads the context variable once and,
finding it empty, calls its steps directly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from yulian.core.tracing import Callback, Span

__all__ = ["RunConfig", "current_config", "ensure_config", "use_config"]


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Options for one call of a runnable, inherited by every step it runs.

    Attributes:
        tags: labels copied onto every span of the call (child configs add to them).
        metadata: free-form key/values copied onto every span (child configs update them).
        callbacks: tracers and other observers; see `yulian.core.tracing.Callback`. Empty means no tracing.
        max_concurrency: the most items a `batch` / `abatch` runs at once (None: the component decides).
        timeout: seconds the whole call may take; sync chains check it between steps, async chains cancel.
        run_name: the name of the root span (defaults to the runnable's name).
        deadline: absolute `time.monotonic()` deadline, set by yulian from `timeout` when a call starts.
        parent: the span of the step in progress, so nested calls record their trace parent (set by yulian).
    """

    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    callbacks: Sequence[Callback] = ()
    max_concurrency: int | None = None
    timeout: float | None = None
    run_name: str | None = None
    deadline: float | None = None
    parent: Span | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"RunConfig.max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"RunConfig.timeout must be > 0 seconds, got {self.timeout}")
        # accept lists from callers; keep tuples so configs stay hashable-ish and immutable
        object.__setattr__(self, "tags", tuple(cast(Iterable[str], self.tags)))
        object.__setattr__(self, "callbacks", tuple(cast("Iterable[Callback]", self.callbacks)))

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None when there is no timeout); use it for I/O timeouts."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def merge(self, child: RunConfig | Mapping[str, Any] | None) -> RunConfig:
        """This config refined by `child`: tags and callbacks accumulate, metadata updates, the rest overrides.

        The earlier of the two deadlines wins, so a nested call can shorten but never extend its parent's time.
        """
        if child is None:
            return self
        if not isinstance(child, RunConfig):
            child = RunConfig(**child)
        deadline = _earliest(self.deadline, child.deadline)
        return RunConfig(
            tags=_union(self.tags, child.tags),
            metadata={**self.metadata, **child.metadata} if child.metadata else self.metadata,
            callbacks=_union(self.callbacks, child.callbacks),
            max_concurrency=child.max_concurrency or self.max_concurrency,
            timeout=child.timeout or self.timeout,
            run_name=child.run_name or self.run_name,
            deadline=deadline,
            parent=child.parent or self.parent,
        )

    def for_child(self) -> RunConfig:
        """The config a step inherits: everything but the run name, which names only the root."""
        return self if self.run_name is None else replace(self, run_name=None)


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _union(a: Sequence[Any], b: Sequence[Any]) -> tuple[Any, ...]:
    if not b:
        return tuple(a)
    return tuple(a) + tuple(x for x in b if x not in a)


_EMPTY = RunConfig()
_CURRENT: ContextVar[RunConfig | None] = ContextVar("yulian_run_config", default=None)


def current_config() -> RunConfig:
    """The config of the call in progress (an empty one outside any call).

    Components use it to read the deadline (`current_config().remaining()`) or tags without taking a parameter.
    """
    return _CURRENT.get() or _EMPTY


def ensure_config(config: RunConfig | Mapping[str, Any] | None) -> RunConfig:
    """The effective config of a call: the ambient one refined by what the caller passed."""
    ambient = _CURRENT.get()
    if config is None:
        return ambient or _EMPTY
    passed = config if isinstance(config, RunConfig) else RunConfig(**config)
    cfg = passed if ambient is None else ambient.merge(passed)
    if passed.timeout is not None:  # the clock starts when the call starts, not when the config was built
        cfg = replace(cfg, deadline=_earliest(cfg.deadline, time.monotonic() + passed.timeout))
    return cfg


@contextmanager
def use_config(config: RunConfig | Mapping[str, Any] | None) -> Iterator[RunConfig]:
    """Make `config` (refining the ambient one) the run context inside the block; a no-op for None.

    Components that take `config=` and call other code use it so that code sees the same tags, callbacks and
    deadline: `with use_config(config): return self._generate(messages)`. Works in sync and async code.
    """
    if config is None:
        yield current_config()
        return
    cfg = ensure_config(config)
    token = _CURRENT.set(cfg)
    try:
        yield cfg
    finally:
        _CURRENT.reset(token)


def _set(config: RunConfig) -> Token[RunConfig | None]:
    return _CURRENT.set(config)


def _reset(token: Token[RunConfig | None]) -> None:
    _CURRENT.reset(token)


def _ambient() -> RunConfig | None:
    return _CURRENT.get()
