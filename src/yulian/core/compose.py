"""Composition: sequences and parallel maps, and the plumbing every composite shares.

Every composite has two paths. The fast path (no config passed, none active) calls its steps directly: a
3-step chain of functions costs a loop and three calls. The traced path sets the run context, records spans
when callbacks are present, and checks the timeout between steps.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar, cast

from yulian.core.config import RunConfig, _ambient, _reset, _set, ensure_config
from yulian.core.runnable import (
    ConfigLike,
    Runnable,
    add_pieces,
    alast_piece,
    annotate,
    coerce,
    last_piece,
    trace_call,
    with_deadline,
)
from yulian.core.tracing import end_span, start_span

__all__ = ["Composite", "Parallel", "Sequence", "parallel"]

In = TypeVar("In")
Out = TypeVar("Out")


# ============================================================================================ shared plumbing
class Composite(Runnable[In, Out]):
    """Base of runnables made of other runnables: runs the traced path and records its own span."""

    _traces_itself = True

    def _run(self, input: Any, config: ConfigLike, body: Callable[[Any, RunConfig], Any], kind: str = "chain") -> Any:
        cfg = ensure_config(config)
        if cfg.callbacks:
            return trace_call(self, kind, input, cfg, lambda child: body(input, child))
        token = _set(cfg.for_child())
        try:
            return body(input, cfg)
        finally:
            _reset(token)

    async def _arun(self, input: Any, config: ConfigLike, body: Callable[[Any, RunConfig], Any]) -> Any:
        cfg = ensure_config(config)
        if cfg.callbacks:
            span = start_span(
                cfg.run_name or self.name, "chain", input, cfg.callbacks, cfg.parent, cfg.tags, cfg.metadata
            )
            child = replace(cfg, parent=span, run_name=None)
        else:
            span, child = None, cfg.for_child()
        token = _set(child)
        try:
            out = await with_deadline(body(input, child), cfg, self.name)
        except BaseException as e:
            if span is not None:
                end_span(span, cfg.callbacks, error=e)
            raise
        finally:
            _reset(token)
        if span is not None:
            end_span(span, cfg.callbacks, outputs=out)
        return out

    def _stream_run(self, input: Any, config: ConfigLike, make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
        cfg = ensure_config(config)
        yield from traced_iter(self, "chain", input, make, cfg)

    async def _astream_run(
        self, input: Any, config: ConfigLike, make: Callable[[], AsyncIterator[Any]]
    ) -> AsyncIterator[Any]:
        cfg = ensure_config(config)
        async for item in atraced_iter(self, "chain", input, make, cfg):
            yield item


def call_step(step: Runnable[Any, Any], x: Any, cfg: RunConfig, label: str) -> Any:
    """Invoke one step on the traced path: a span for leaf steps, the step's path on its errors."""
    try:
        if cfg.callbacks and not step._traces_itself:
            return trace_call(step, "step", x, cfg, lambda _child: step.invoke(x))
        return step.invoke(x)
    except Exception as e:
        annotate(e, label)
        raise


async def acall_step(step: Runnable[Any, Any], x: Any, cfg: RunConfig, label: str) -> Any:
    try:
        if cfg.callbacks and not step._traces_itself:
            span = start_span(step.name, "step", x, cfg.callbacks, cfg.parent, cfg.tags, cfg.metadata)
            token = _set(replace(cfg, parent=span))
            try:
                out = await step.ainvoke(x)
            except BaseException as e:
                end_span(span, cfg.callbacks, error=e)
                raise
            finally:
                _reset(token)
            end_span(span, cfg.callbacks, outputs=out)
            return out
        return await step.ainvoke(x)
    except Exception as e:
        annotate(e, label)
        raise


def check_deadline(cfg: RunConfig, what: str) -> None:
    if cfg.deadline is not None and time.monotonic() > cfg.deadline:
        raise TimeoutError(f"{what} did not start: the call ran past its timeout of {cfg.timeout} s")


def traced_iter(
    runnable: Runnable[Any, Any], kind: str, input: Any, make: Callable[[], Iterator[Any]], cfg: RunConfig
) -> Iterator[Any]:
    """Iterate `make()` with `cfg` as run context during each pull; one span over the whole stream."""
    span = None
    if cfg.callbacks and (kind != "step" or not runnable._traces_itself):
        span = start_span(cfg.run_name or runnable.name, kind, input, cfg.callbacks, cfg.parent, cfg.tags, cfg.metadata)
        cfg = replace(cfg, parent=span, run_name=None)
    else:
        cfg = cfg.for_child()
    acc: Any = _NOTHING
    try:
        token = _set(cfg)
        try:
            iterator = make()
        finally:
            _reset(token)
        while True:
            token = _set(cfg)
            try:
                item = next(iterator)
            except StopIteration:
                break
            finally:
                _reset(token)
            if span is not None:
                acc = item if acc is _NOTHING else add_pieces(acc, item)
            yield item
    except BaseException as e:
        if span is not None:
            end_span(span, cfg.callbacks, error=e)
        raise
    if span is not None:
        end_span(span, cfg.callbacks, outputs=None if acc is _NOTHING else acc)


async def atraced_iter(
    runnable: Runnable[Any, Any],
    kind: str,
    input: Any,
    make: Callable[[], AsyncIterator[Any]],
    cfg: RunConfig,
) -> AsyncIterator[Any]:
    span = None
    if cfg.callbacks and (kind != "step" or not runnable._traces_itself):
        span = start_span(cfg.run_name or runnable.name, kind, input, cfg.callbacks, cfg.parent, cfg.tags, cfg.metadata)
        cfg = replace(cfg, parent=span, run_name=None)
    else:
        cfg = cfg.for_child()
    acc: Any = _NOTHING
    try:
        token = _set(cfg)
        try:
            iterator = make()
        finally:
            _reset(token)
        while True:
            if cfg.deadline is not None:
                check_deadline(cfg, runnable.name)
            token = _set(cfg)
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                break
            finally:
                _reset(token)
            if span is not None:
                acc = item if acc is _NOTHING else add_pieces(acc, item)
            yield item
    except BaseException as e:
        if span is not None:
            end_span(span, cfg.callbacks, error=e)
        raise
    if span is not None:
        end_span(span, cfg.callbacks, outputs=None if acc is _NOTHING else acc)


_NOTHING: Any = object()


def _drop_config(fn: Callable[[Any], Any], x: Any, _cfg: RunConfig) -> Any:
    return fn(x)


def _annotated(iterator: Iterator[Any], label: str, pipeline: object | None = None) -> Iterator[Any]:
    """Name `label` on errors raised while pulling `iterator`.

    In a streamed pipeline every step pulls from the one before it, so an error raised in step 2 passes through
    the wrappers of steps 3, 4...: `pipeline` (one marker per stream) lets only the first wrapper annotate it.
    """
    try:
        yield from iterator
    except Exception as e:
        _annotate_once(e, label, pipeline)
        raise


async def _aannotated(iterator: AsyncIterator[Any], label: str, pipeline: object | None = None) -> AsyncIterator[Any]:
    try:
        async for item in iterator:
            yield item
    except Exception as e:
        _annotate_once(e, label, pipeline)
        raise


def _consumes_stream(step: Runnable[Any, Any]) -> bool:
    """Whether `step` reads its input piece by piece (it overrides `transform`) rather than joining it."""
    return type(step).transform is not Runnable.transform


def _annotate_once(e: BaseException, label: str, pipeline: object | None) -> None:
    if pipeline is None:
        annotate(e, label)
    elif getattr(e, "_yulian_pipeline", None) is not pipeline:
        annotate(e, label)
        with suppress(AttributeError):
            e._yulian_pipeline = pipeline  # type: ignore[attr-defined]


async def _aiter_one(x: Any) -> AsyncIterator[Any]:
    yield x


# ============================================================================================ sequence
class Sequence(Composite[In, Out]):
    """Steps run one after the other, each on the previous step's output. Built by `a | b | c`.

    Nested unnamed sequences are flattened, so `(a | b) | c` has three steps. Streams flow through: each step's
    `transform` consumes the previous step's stream, so a parser after a model sees tokens as they come.
    """

    def __init__(self, *steps: Any, name: str | None = None) -> None:
        flat: list[Runnable[Any, Any]] = []
        for step in steps:
            r = coerce(step, side="sequence step")
            if isinstance(r, Sequence) and not getattr(r, "_name", None):
                flat.extend(r.steps)
            else:
                flat.append(r)
        if not flat:
            raise ValueError("a sequence needs at least one step")
        self.steps: tuple[Runnable[Any, Any], ...] = tuple(flat)
        self._name = name
        self._fns = tuple(s._fast_call() for s in flat)
        self._labels = tuple(f"step {i} ({s.name})" for i, s in enumerate(flat, 1))
        self.blocking = any(s.blocking for s in flat)

    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or " | ".join(s.name for s in self.steps)

    @property
    def input_type(self) -> Any:
        return self.steps[0].input_type

    @property
    def output_type(self) -> Any:
        return self.steps[-1].output_type

    def __repr__(self) -> str:
        return f"Sequence({' | '.join(s.name for s in self.steps)})"

    def _describe_lines(self, depth: int) -> list[str]:
        lines = [f"{'  ' * depth}{self!r}"]
        for i, step in enumerate(self.steps, 1):
            sub = step._describe_lines(depth + 1)
            sub[0] = f"{'  ' * (depth + 1)}{i}. {sub[0].lstrip()}"
            lines.extend(sub)
        return lines

    # invoke ----------------------------------------------------------------------------------------------
    def invoke(self, input: In, config: ConfigLike = None) -> Out:
        if config is None and _ambient() is None:
            x: Any = input
            i = 0
            try:
                for f in self._fns:
                    x = f(x)
                    i += 1
            except Exception as e:
                annotate(e, self._labels[i])
                raise
            return cast(Out, x)
        return cast(Out, self._run(input, config, self._invoke_steps))

    def _invoke_steps(self, x: Any, cfg: RunConfig) -> Any:
        for step, label in zip(self.steps, self._labels, strict=True):
            if cfg.deadline is not None:
                check_deadline(cfg, label)
            x = call_step(step, x, cfg, label)
        return x

    async def ainvoke(self, input: In, config: ConfigLike = None) -> Out:
        if config is None and _ambient() is None:
            x: Any = input
            i = 0
            try:
                for step in self.steps:
                    x = await step.ainvoke(x)
                    i += 1
            except Exception as e:
                annotate(e, self._labels[i])
                raise
            return cast(Out, x)
        return cast(Out, await self._arun(input, config, self._ainvoke_steps))

    async def _ainvoke_steps(self, x: Any, cfg: RunConfig) -> Any:
        for step, label in zip(self.steps, self._labels, strict=True):
            x = await acall_step(step, x, cfg, label)
        return x

    # batch -----------------------------------------------------------------------------------------------
    def batch(
        self,
        inputs: Iterable[In],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Out]:
        """Step by step over the whole batch, so a model step gets all its inputs at once."""
        items: list[Any] = list(inputs)
        if not items:
            return []
        if config is None and _ambient() is None and not return_exceptions:
            i = 0
            try:
                for step in self.steps:
                    items = step.batch(items, max_concurrency=max_concurrency)
                    i += 1
            except Exception as e:
                annotate(e, self._labels[i])
                raise
            return items
        body = lambda xs, cfg: self._batch_steps(xs, cfg, max_concurrency, return_exceptions)  # noqa: E731
        return cast(list[Out], self._run(items, config, body, kind="batch"))

    def _batch_steps(
        self, items: list[Any], cfg: RunConfig, max_concurrency: int | None, return_exceptions: bool
    ) -> list[Any]:
        results: list[Any] = [None] * len(items)
        alive = list(range(len(items)))
        for step, label in zip(self.steps, self._labels, strict=True):
            if cfg.deadline is not None:
                check_deadline(cfg, label)

            def run(xs: list[Any], step: Runnable[Any, Any] = step) -> list[Any]:
                return step.batch(xs, max_concurrency=max_concurrency, return_exceptions=return_exceptions)

            try:
                if cfg.callbacks and not step._traces_itself:
                    out = trace_call(step, "batch", items, cfg, partial(_drop_config, run, items))
                else:
                    out = run(items)
            except Exception as e:
                annotate(e, label)
                raise
            items, still = [], []
            for pos, o in zip(alive, out, strict=True):
                if return_exceptions and isinstance(o, Exception):
                    annotate(o, label)
                    results[pos] = o
                else:
                    items.append(o)
                    still.append(pos)
            alive = still
            if not items:
                break
        for pos, o in zip(alive, items, strict=True):
            results[pos] = o
        return results

    async def abatch(
        self,
        inputs: Iterable[In],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Out]:
        items = list(inputs)
        if not items:
            return []

        async def body(xs: list[Any], cfg: RunConfig) -> list[Any]:
            results: list[Any] = [None] * len(xs)
            alive = list(range(len(xs)))
            for step, label in zip(self.steps, self._labels, strict=True):
                try:
                    out = await step.abatch(xs, max_concurrency=max_concurrency, return_exceptions=return_exceptions)
                except Exception as e:
                    annotate(e, label)
                    raise
                xs, still = [], []
                for pos, o in zip(alive, out, strict=True):
                    if return_exceptions and isinstance(o, Exception):
                        annotate(o, label)
                        results[pos] = o
                    else:
                        xs.append(o)
                        still.append(pos)
                alive = still
            for pos, o in zip(alive, xs, strict=True):
                results[pos] = o
            return results

        if config is None and _ambient() is None:
            return cast(list[Out], await body(items, RunConfig()))
        return cast(list[Out], await self._arun(items, config, body))

    # stream ----------------------------------------------------------------------------------------------
    def _pipeline(self, source: Iterator[Any], cfg: RunConfig | None) -> Iterator[Any]:
        it = source
        marker = object()
        previous: Runnable[Any, Any] | None = None
        for step, label in zip(self.steps, self._labels, strict=True):
            if previous is not None and previous.stream_snapshots and not _consumes_stream(step):
                it = last_piece(it)
            previous = step
            if cfg is not None and cfg.callbacks and not step._traces_itself:
                it = traced_iter(step, "step", None, partial(step.transform, it), cfg)
            else:
                it = step.transform(it)
            it = _annotated(it, label, marker)
        return it

    def stream(self, input: In, config: ConfigLike = None) -> Iterator[Out]:
        if config is None and _ambient() is None:
            return self._pipeline(iter((input,)), None)
        return self._stream_run(input, config, lambda: self._pipeline(iter((input,)), ensure_config(None)))

    def transform(self, inputs: Iterable[In], config: ConfigLike = None) -> Iterator[Out]:
        if config is None and _ambient() is None:
            return self._pipeline(iter(inputs), None)
        return self._stream_run(None, config, lambda: self._pipeline(iter(inputs), ensure_config(None)))

    def _apipeline(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        it = source
        marker = object()
        previous: Runnable[Any, Any] | None = None
        for step, label in zip(self.steps, self._labels, strict=True):
            if previous is not None and previous.stream_snapshots and not _consumes_stream(step):
                it = alast_piece(it)
            previous = step
            it = _aannotated(step.atransform(it), label, marker)
        return it

    async def astream(self, input: In, config: ConfigLike = None) -> AsyncIterator[Out]:
        source = self._apipeline(_aiter_one(input))
        if config is None and _ambient() is None:
            async for item in source:
                yield item
            return
        async for item in self._astream_run(input, config, lambda: self._apipeline(_aiter_one(input))):
            yield item

    async def atransform(self, inputs: AsyncIterator[In], config: ConfigLike = None) -> AsyncIterator[Out]:
        if config is None and _ambient() is None:
            async for item in self._apipeline(inputs):
                yield item
            return
        async for item in self._astream_run(None, config, lambda: self._apipeline(inputs)):
            yield item


# ============================================================================================ parallel
class Parallel(Composite[In, dict[str, Any]]):
    """Named branches run on the same input; the output maps each name to its branch's output.

    Built from a dict inside `|` or by `parallel(a=..., b=...)`. Sync `invoke` runs blocking branches on threads
    and cheap ones inline; `ainvoke` runs all branches as concurrent tasks; streams yield `{name: piece}` dicts.
    """

    def __init__(self, branches: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        merged = {**(branches or {}), **more}
        if not merged:
            raise ValueError("parallel() needs at least one branch")
        for key in merged:
            if not isinstance(key, str):
                raise TypeError(f"parallel branch names must be strings, got {key!r}")
        self.branches: dict[str, Runnable[Any, Any]] = {k: coerce(v, side=f"branch {k!r}") for k, v in merged.items()}
        self._fast = tuple((k, r._fast_call()) for k, r in self.branches.items())
        self.blocking = any(r.blocking for r in self.branches.values())
        self._threaded = self.blocking and len(self.branches) > 1

    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or "{" + ", ".join(self.branches) + "}"

    @property
    def output_type(self) -> Any:
        return dict[str, Any]

    def _describe_lines(self, depth: int) -> list[str]:
        lines = [f"{'  ' * depth}Parallel{{{', '.join(self.branches)}}}"]
        for key, branch in self.branches.items():
            sub = branch._describe_lines(depth + 1)
            sub[0] = f"{'  ' * (depth + 1)}{key}: {sub[0].lstrip()}"
            lines.extend(sub)
        return lines

    def invoke(self, input: In, config: ConfigLike = None) -> dict[str, Any]:
        if config is None and _ambient() is None and not self._threaded:
            out: dict[str, Any] = {}
            key = ""
            try:
                for key, f in self._fast:
                    out[key] = f(input)
            except Exception as e:
                annotate(e, f"branch {key!r}")
                raise
            return out
        return cast(dict[str, Any], self._run(input, config, self._invoke_branches))

    def _invoke_branches(self, x: Any, cfg: RunConfig) -> dict[str, Any]:
        if not self._threaded:
            return {k: call_step(r, x, cfg, f"branch {k!r}") for k, r in self.branches.items()}
        from concurrent.futures import ThreadPoolExecutor
        from contextvars import copy_context

        with ThreadPoolExecutor(max_workers=len(self.branches), thread_name_prefix="yulian") as pool:
            futures = {
                k: pool.submit(copy_context().run, call_step, r, x, cfg, f"branch {k!r}")
                for k, r in self.branches.items()
            }
            return {k: f.result() for k, f in futures.items()}

    async def ainvoke(self, input: In, config: ConfigLike = None) -> dict[str, Any]:
        return cast(dict[str, Any], await self._arun(input, config, self._ainvoke_branches))

    async def _ainvoke_branches(self, x: Any, cfg: RunConfig) -> dict[str, Any]:
        import asyncio

        keys = list(self.branches)
        results = await asyncio.gather(*(acall_step(self.branches[k], x, cfg, f"branch {k!r}") for k in keys))
        return dict(zip(keys, results, strict=True))

    def stream(self, input: In, config: ConfigLike = None) -> Iterator[dict[str, Any]]:
        def pieces() -> Iterator[dict[str, Any]]:
            for key, branch in self.branches.items():
                for piece in _annotated(branch.stream(input), f"branch {key!r}"):
                    yield {key: piece}

        if config is None and _ambient() is None:
            return pieces()
        return self._stream_run(input, config, pieces)

    async def astream(self, input: In, config: ConfigLike = None) -> AsyncIterator[dict[str, Any]]:
        """Branches stream concurrently; pieces arrive in the order they are produced."""
        import asyncio

        async def pieces() -> AsyncIterator[dict[str, Any]]:
            queue: asyncio.Queue[tuple[str, Any, BaseException | None, bool]] = asyncio.Queue()

            async def pump(key: str, branch: Runnable[Any, Any]) -> None:
                try:
                    async for piece in branch.astream(input):
                        await queue.put((key, piece, None, False))
                except Exception as e:
                    annotate(e, f"branch {key!r}")
                    await queue.put((key, None, e, True))
                    return
                await queue.put((key, None, None, True))

            tasks = [asyncio.ensure_future(pump(k, b)) for k, b in self.branches.items()]
            pending = len(tasks)
            try:
                while pending:
                    key, piece, error, done = await queue.get()
                    if error is not None:
                        raise error
                    if done:
                        pending -= 1
                    else:
                        yield {key: piece}
            finally:
                for t in tasks:
                    t.cancel()

        if config is None and _ambient() is None:
            async for item in pieces():
                yield item
            return
        async for item in self._astream_run(input, config, pieces):
            yield item


# ============================================================================================ constructors
def parallel(branches: Mapping[str, Any] | None = None, /, **more: Any) -> Parallel[Any]:
    """Run named branches on the same input: `parallel(context=retriever, question=passthrough())`."""
    return Parallel(branches, **more)
