"""Wrappers that change how a runnable is called: retries, fallbacks, bound config."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, TypeVar

from yulian.core.config import RunConfig, ensure_config
from yulian.core.runnable import ConfigLike, Runnable, trace_call

__all__ = ["Configured", "Fallbacks", "Retry"]

In = TypeVar("In")
Out = TypeVar("Out")

ExcTypes = type[BaseException] | tuple[type[BaseException], ...]


class _Wrapper(Runnable[In, Out]):
    def __init__(self, bound: Runnable[In, Out]) -> None:
        self.bound = bound
        self.blocking = bound.blocking

    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or self.bound.name

    @property
    def input_type(self) -> Any:
        return self.bound.input_type

    @property
    def output_type(self) -> Any:
        return self.bound.output_type


class Retry(_Wrapper[In, Out]):
    """Retries the bound runnable on the given exception types with exponential backoff.

    Streams are retried only until their first piece has been yielded (after that a retry would repeat output).
    Batches retry only the items that failed.
    """

    def __init__(
        self,
        bound: Runnable[In, Out],
        *,
        attempts: int = 3,
        retry_on: ExcTypes = Exception,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        jitter: bool = True,
    ) -> None:
        super().__init__(bound)
        if attempts < 1:
            raise ValueError(f"with_retry(attempts=...) must be >= 1, got {attempts}")
        if backoff < 0 or max_backoff < 0:
            raise ValueError("with_retry backoff and max_backoff must be >= 0 seconds")
        self.attempts = attempts
        self.retry_on = retry_on
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.jitter = jitter

    def _wait(self, attempt: int) -> float:
        wait = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return wait * (1 + random.random() * 0.5) if self.jitter else wait

    def _give_up(self, error: BaseException, attempt: int, config: ConfigLike) -> bool:
        if attempt >= self.attempts:
            error.add_note(f"yulian: {self.bound.name} failed {attempt} time(s), giving up")
            return True
        cfg = ensure_config(config)
        if cfg.deadline is not None and time.monotonic() + self._wait(attempt) > cfg.deadline:
            error.add_note(f"yulian: {self.bound.name} not retried: the call's timeout would pass")
            return True
        return False

    def invoke(self, input: In, config: ConfigLike = None) -> Out:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.bound.invoke(input, config)
            except self.retry_on as e:
                if self._give_up(e, attempt, config):
                    raise
                time.sleep(self._wait(attempt))

    async def ainvoke(self, input: In, config: ConfigLike = None) -> Out:
        import asyncio

        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.bound.ainvoke(input, config)
            except self.retry_on as e:
                if self._give_up(e, attempt, config):
                    raise
                await asyncio.sleep(self._wait(attempt))

    def stream(self, input: In, config: ConfigLike = None) -> Iterator[Out]:
        attempt = 0
        while True:
            attempt += 1
            started = False
            try:
                for piece in self.bound.stream(input, config):
                    started = True
                    yield piece
                return
            except self.retry_on as e:
                if started or self._give_up(e, attempt, config):
                    raise
                time.sleep(self._wait(attempt))

    async def astream(self, input: In, config: ConfigLike = None) -> AsyncIterator[Out]:
        import asyncio

        attempt = 0
        while True:
            attempt += 1
            started = False
            try:
                async for piece in self.bound.astream(input, config):
                    started = True
                    yield piece
                return
            except self.retry_on as e:
                if started or self._give_up(e, attempt, config):
                    raise
                await asyncio.sleep(self._wait(attempt))

    def batch(
        self,
        inputs: Sequence[In],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Out]:
        items = list(inputs)
        results: list[Any] = [None] * len(items)
        todo = list(range(len(items)))
        for attempt in range(1, self.attempts + 1):
            out = self.bound.batch(
                [items[i] for i in todo], config, max_concurrency=max_concurrency, return_exceptions=True
            )
            failed: list[int] = []
            for i, o in zip(todo, out, strict=True):
                results[i] = o
                if isinstance(o, self.retry_on) and isinstance(o, Exception):
                    failed.append(i)
            todo = failed
            if not todo:
                break
            if attempt < self.attempts:
                time.sleep(self._wait(attempt))
        if not return_exceptions:
            for o in results:
                if isinstance(o, Exception):
                    raise o
        return results


class Fallbacks(_Wrapper[In, Out]):
    """Tries the bound runnable, then each fallback in turn, on the given exception types.

    When all fail, the first error is raised, with notes naming every fallback's error.
    """

    def __init__(
        self, bound: Runnable[In, Out], fallbacks: Sequence[Runnable[In, Out]], *, exceptions: ExcTypes
    ) -> None:
        super().__init__(bound)
        if not fallbacks:
            raise ValueError("with_fallbacks() needs at least one fallback")
        self.fallbacks = tuple(fallbacks)
        self.exceptions = exceptions
        self.blocking = bound.blocking or any(f.blocking for f in self.fallbacks)

    @property
    def runnables(self) -> tuple[Runnable[In, Out], ...]:
        return (self.bound, *self.fallbacks)

    def _describe_lines(self, depth: int) -> list[str]:
        lines = [f"{'  ' * depth}{self.bound.name} with fallbacks"]
        for r in self.runnables:
            lines.extend(r._describe_lines(depth + 1))
        return lines

    def _fail(self, first: BaseException, errors: list[BaseException]) -> BaseException:
        for r, e in zip(self.fallbacks, errors[1:], strict=False):
            first.add_note(f"yulian: fallback {r.name} also failed: {type(e).__name__}: {e}")
        return first

    def invoke(self, input: In, config: ConfigLike = None) -> Out:
        errors: list[BaseException] = []
        for r in self.runnables:
            try:
                return r.invoke(input, config)
            except self.exceptions as e:
                errors.append(e)
        raise self._fail(errors[0], errors)

    async def ainvoke(self, input: In, config: ConfigLike = None) -> Out:
        errors: list[BaseException] = []
        for r in self.runnables:
            try:
                return await r.ainvoke(input, config)
            except self.exceptions as e:
                errors.append(e)
        raise self._fail(errors[0], errors)

    def stream(self, input: In, config: ConfigLike = None) -> Iterator[Out]:
        errors: list[BaseException] = []
        for r in self.runnables:
            started = False
            try:
                for piece in r.stream(input, config):
                    started = True
                    yield piece
                return
            except self.exceptions as e:
                if started:
                    raise
                errors.append(e)
        raise self._fail(errors[0], errors)

    async def astream(self, input: In, config: ConfigLike = None) -> AsyncIterator[Out]:
        errors: list[BaseException] = []
        for r in self.runnables:
            started = False
            try:
                async for piece in r.astream(input, config):
                    started = True
                    yield piece
                return
            except self.exceptions as e:
                if started:
                    raise
                errors.append(e)
        raise self._fail(errors[0], errors)


class Configured(_Wrapper[In, Out]):
    """The bound runnable with config options applied to every call (`runnable.with_config(...)`).

    Options passed at call time refine the bound ones (tags and callbacks add up, the rest overrides).
    A leaf runnable bound with callbacks gets its own span.
    """

    _traces_itself = True

    def __init__(self, bound: Runnable[In, Out], config: RunConfig) -> None:
        super().__init__(bound)
        self.config = config
        self.blocking = bound.blocking

    def _cfg(self, config: ConfigLike) -> RunConfig:
        return self.config.merge(config)

    def invoke(self, input: In, config: ConfigLike = None) -> Out:
        cfg = self._cfg(config)
        if cfg.callbacks and not self.bound._traces_itself:
            full = ensure_config(cfg)
            return trace_call(self.bound, "step", input, full, lambda _c: self.bound.invoke(input))  # type: ignore[no-any-return]
        return self.bound.invoke(input, cfg)

    async def ainvoke(self, input: In, config: ConfigLike = None) -> Out:
        return await self.bound.ainvoke(input, self._cfg(config))

    def stream(self, input: In, config: ConfigLike = None) -> Iterator[Out]:
        return self.bound.stream(input, self._cfg(config))

    async def astream(self, input: In, config: ConfigLike = None) -> AsyncIterator[Out]:
        async for piece in self.bound.astream(input, self._cfg(config)):
            yield piece

    def transform(self, inputs: Any, config: ConfigLike = None) -> Iterator[Out]:
        return self.bound.transform(inputs, self._cfg(config))

    async def atransform(self, inputs: AsyncIterator[In], config: ConfigLike = None) -> AsyncIterator[Out]:
        async for piece in self.bound.atransform(inputs, self._cfg(config)):
            yield piece

    def batch(
        self,
        inputs: Sequence[In],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Out]:
        return self.bound.batch(
            inputs, self._cfg(config), max_concurrency=max_concurrency, return_exceptions=return_exceptions
        )

    async def abatch(
        self,
        inputs: Sequence[In],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Out]:
        return await self.bound.abatch(
            inputs, self._cfg(config), max_concurrency=max_concurrency, return_exceptions=return_exceptions
        )
