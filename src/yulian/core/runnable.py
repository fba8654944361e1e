"""The Runnable contract: one abstract method, everything else with a working default.

A component subclasses `Runnable[In, Out]` and implements `invoke`. It then has `ainvoke`, `batch`, `abatch`,
`stream`, `astream`, `transform` and `atransform`, and composes with `|`. It overrides `stream` when it can produce
output in pieces (a model emitting tokens), `transform` when it can consume its input in pieces (a parser reading
tokens), `ainvoke` when it has native async I/O, and `batch` when it can process many inputs at once (a model's
batched forward pass).

`blocking` tells the defaults whether `invoke` waits on I/O or heavy compute: then `ainvoke` runs it in a worker
thread and `batch` runs items on a thread pool. Function steps (`runnable(f)`) are glue and run inline unless
declared `blocking=True`; subclasses are blocking unless they say otherwise.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, overload

from yulian.core.config import RunConfig, _ambient, _reset, _set, current_config, ensure_config
from yulian.core.tracing import end_span, start_span

if TYPE_CHECKING:
    from yulian.core.compose import Sequence as SequenceRunnable
    from yulian.core.wrappers import Configured, Fallbacks, Retry

__all__ = [
    "Lambda",
    "Runnable",
    "Transform",
    "aiterate_in",
    "coerce",
    "error_path",
    "iterate_in",
    "runnable",
    "transform",
]

In = TypeVar("In")
Out = TypeVar("Out")
Other = TypeVar("Other")

ConfigLike = RunConfig | Mapping[str, Any] | None


class Runnable(Generic[In, Out]):
    """A unit of work with sync, async, batch and streaming entry points."""

    _name: str | None = None

    stream_snapshots: bool = False
    """Whether each piece of `stream` is the whole output so far (not a delta): a next step joining the pieces
    then keeps the last one instead of adding them up."""

    blocking: bool = True
    """Whether `invoke` blocks (I/O, heavy compute): async offloads it to a thread, batch uses a thread pool."""

    # ----------------------------------------------------------------------------------------- the contract
    def invoke(self, input: In, config: ConfigLike = None) -> Out:
        """Run on one input and return the output."""
        raise NotImplementedError(f"{type(self).__name__} must implement invoke()")

    async def ainvoke(self, input: In, config: ConfigLike = None) -> Out:
        """Async `invoke`. Default: a worker thread for blocking components, inline otherwise."""
        if self.blocking:
            import asyncio

            return await asyncio.to_thread(self.invoke, input, config)  # copies the context (config, trace)
        return self.invoke(input, config)

    def stream(self, input: In, config: ConfigLike = None) -> Iterator[Out]:
        """Yield the output in pieces. Default: one piece, the whole output."""
        yield self.invoke(input, config)

    async def astream(self, input: In, config: ConfigLike = None) -> AsyncIterator[Out]:
        """Async `stream`. Default: pulls a sync `stream` if the class has one, else one piece from `ainvoke`."""
        if type(self).stream is Runnable.stream:
            yield await self.ainvoke(input, config)
            return
        iterator = self.stream(input, config)
        if not self.blocking:
            for item in iterator:
                yield item
            return
        import asyncio

        done: Any = object()
        while True:
            item = await asyncio.to_thread(_next_or, iterator, done)
            if item is done:
                return
            yield item

    def transform(self, inputs: Iterable[In], config: ConfigLike = None) -> Iterator[Out]:
        """Consume an input stream and yield an output stream. Default: join the input pieces, then `stream`."""
        yield from self.stream(aggregate(inputs), config)

    async def atransform(self, inputs: AsyncIterator[In], config: ConfigLike = None) -> AsyncIterator[Out]:
        """Async `transform`. Default: join the input pieces, then `astream`."""
        async for item in self.astream(await aaggregate(inputs), config):
            yield item

    def batch(
        self,
        inputs: Sequence[In],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Out]:
        """Run on many inputs; outputs keep the input order.

        Blocking components run on a thread pool of at most `max_concurrency` workers (or the config's); others
        run in a plain loop. With `return_exceptions=True` a failing item yields its exception in place.
        """
        inputs = list(inputs)
        if not inputs:
            return []
        if config is None:
            return self._batch_items(inputs, max_concurrency, return_exceptions)
        token = _set(ensure_config(config))
        try:
            return self._batch_items(inputs, max_concurrency, return_exceptions)
        finally:
            _reset(token)

    def _batch_items(self, inputs: list[In], max_concurrency: int | None, return_exceptions: bool) -> list[Out]:
        limit = max_concurrency or current_config().max_concurrency
        call = self._fast_call() if _ambient() is None else self.invoke
        if not self.blocking or len(inputs) == 1 or limit == 1:
            if not return_exceptions:
                return [call(x) for x in inputs]
            return [_capture(call, x) for x in inputs]
        from concurrent.futures import ThreadPoolExecutor
        from contextvars import copy_context

        with ThreadPoolExecutor(max_workers=min(limit or 16, len(inputs)), thread_name_prefix="yulian") as pool:
            if return_exceptions:
                futures = [pool.submit(copy_context().run, _capture, call, x) for x in inputs]
            else:
                futures = [pool.submit(copy_context().run, call, x) for x in inputs]
            return [f.result() for f in futures]

    async def abatch(
        self,
        inputs: Sequence[In],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Out]:
        """Async `batch`: items run as concurrent tasks, at most `max_concurrency` at once."""
        inputs = list(inputs)
        if not inputs:
            return []
        if config is None:
            return await self._abatch_items(inputs, max_concurrency, return_exceptions)
        cfg = ensure_config(config)
        token = _set(cfg)
        try:
            results: list[Out] = await with_deadline(
                self._abatch_items(inputs, max_concurrency, return_exceptions), cfg, self.name
            )
            return results
        finally:
            _reset(token)

    async def _abatch_items(self, inputs: list[In], max_concurrency: int | None, return_exceptions: bool) -> list[Out]:
        import asyncio

        limit = max_concurrency or current_config().max_concurrency
        if len(inputs) == 1:
            return [await _acapture(self.ainvoke, inputs[0], return_exceptions)]
        sem = asyncio.Semaphore(limit) if limit else None

        async def one(x: In) -> Any:
            if sem is None:
                return await _acapture(self.ainvoke, x, return_exceptions)
            async with sem:
                return await _acapture(self.ainvoke, x, return_exceptions)

        return list(await asyncio.gather(*(one(x) for x in inputs)))

    # ----------------------------------------------------------------------------------------- description
    @property
    def name(self) -> str:
        """A short name used in errors, traces and `describe()`."""
        return getattr(self, "_name", None) or type(self).__name__

    @property
    def input_type(self) -> Any:
        """The input type, from the class's type parameters or annotations (`Any` when unknown)."""
        return _generic_arg(type(self), 0)

    @property
    def output_type(self) -> Any:
        """The output type, from the class's type parameters or annotations (`Any` when unknown)."""
        return _generic_arg(type(self), 1)

    def describe(self) -> str:
        """A readable outline of this runnable and its steps, with their input and output types."""
        return "\n".join(self._describe_lines(0))

    def _describe_lines(self, depth: int) -> list[str]:
        return [f"{'  ' * depth}{self.name}: {_type_name(self.input_type)} -> {_type_name(self.output_type)}"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})" if getattr(self, "_name", None) else f"{type(self).__name__}()"

    # ----------------------------------------------------------------------------------------- composition
    def __or__(self, other: Any) -> SequenceRunnable[In, Any]:
        from yulian.core.compose import Sequence

        return Sequence(self, coerce(other, side="right of |"))

    def __ror__(self, other: Any) -> SequenceRunnable[Any, Out]:
        from yulian.core.compose import Sequence

        return Sequence(coerce(other, side="left of |"), self)

    def pipe(self, *others: Any) -> SequenceRunnable[In, Any]:
        """`a.pipe(b, c)` is `a | b | c`."""
        from yulian.core.compose import Sequence

        return Sequence(self, *(coerce(o, side="pipe()") for o in others))

    def with_retry(
        self,
        attempts: int = 3,
        *,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        jitter: bool = True,
    ) -> Retry[In, Out]:
        """Retry failures of the types in `retry_on`, up to `attempts` tries in all, with exponential backoff.

        The wait before try n+1 is `backoff * 2**(n-1)` seconds (capped by `max_backoff`, randomised by up to
        +50% with `jitter`). A retry never starts past the call's deadline.
        """
        from yulian.core.wrappers import Retry

        return Retry(
            self,
            attempts=attempts,
            retry_on=retry_on,
            backoff=backoff,
            max_backoff=max_backoff,
            jitter=jitter,
        )

    def with_fallbacks(
        self,
        fallbacks: Sequence[Any],
        *,
        exceptions: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    ) -> Fallbacks[In, Out]:
        """Try `fallbacks` in order when this runnable raises one of `exceptions`."""
        from yulian.core.wrappers import Fallbacks

        return Fallbacks(self, [coerce(f, side="with_fallbacks()") for f in fallbacks], exceptions=exceptions)

    def with_config(self, config: RunConfig | None = None, **options: Any) -> Configured[In, Out]:
        """Bind config options (tags, metadata, callbacks, max_concurrency, timeout, run_name) to every call."""
        from yulian.core.wrappers import Configured

        bound = config if config is not None else RunConfig()
        return Configured(self, bound.merge(options) if options else bound)

    def map(self) -> Runnable[list[In], list[Out]]:
        """A runnable that applies this one to every element of a list input (using `batch`)."""
        from yulian.core.flow import Each

        return Each(self)

    def named(self, name: str) -> Runnable[In, Out]:
        """Give this runnable a name for errors, traces and `describe()`; returns self."""
        self._name = name
        return self

    # ----------------------------------------------------------------------------------------- internals
    _traces_itself: ClassVar[bool] = False
    """Composites record their own span; a parent records spans only for steps that do not."""

    def _fast_call(self) -> Callable[[Any], Any]:
        """The cheapest callable equivalent to `self.invoke(x)` when no config is active."""
        return self.invoke


# ============================================================================================ function steps
class Lambda(Runnable[In, Out]):
    """A plain function as a step. Built by `runnable(f)`, or implicitly by `|` and `dict` coercion.

    - `def f(x)`: `invoke` calls it. A parameter named `config` receives the current `RunConfig`.
    - `async def f(x)`: native `ainvoke`; `invoke` runs it in a private event loop.
    - `def f(x)` that yields: a streaming step; `invoke` joins the pieces.
    - `async def f(x)` that yields: a native async streaming step.
    The signature is read once, here, never per call.
    """

    def __init__(self, func: Callable[..., Any], *, name: str | None = None, blocking: bool = False) -> None:
        if not callable(func):
            raise TypeError(f"runnable() needs a callable, got {type(func).__name__}: {func!r}")
        self.func = func
        self._name = name or getattr(func, "__name__", None) or type(func).__name__
        if self._name == "<lambda>":
            self._name = "lambda"
        self.blocking = blocking
        target = inspect.unwrap(func)
        self._is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
            getattr(target, "__call__", None)  # noqa: B004 - an object with an async __call__
        )
        self._is_gen = inspect.isgeneratorfunction(target)
        self._is_agen = inspect.isasyncgenfunction(target)
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):  # some builtins have no signature
            params = {}  # type: ignore[assignment]
        self._wants_config = "config" in params
        self._hints: tuple[Any, Any] | None = None

    # sync ------------------------------------------------------------------------------------------------
    def invoke(self, input: In, config: ConfigLike = None) -> Out:
        if self._is_async or self._is_agen:
            return cast(Out, _run_sync(self.ainvoke(input, config), self.name))
        if self._is_gen:
            return cast(Out, aggregate(self.stream(input, config)))
        if self._wants_config:
            return cast(Out, self.func(input, config=ensure_config(config)))
        if config is None:
            return cast(Out, self.func(input))
        return cast(Out, self._with_config(config, self.func, input))

    def stream(self, input: In, config: ConfigLike = None) -> Iterator[Out]:
        if not self._is_gen:
            yield self.invoke(input, config)
            return
        kwargs = {"config": ensure_config(config)} if self._wants_config else {}
        if config is None:
            yield from self.func(input, **kwargs)
            return
        token = _set(ensure_config(config))
        try:
            iterator = self.func(input, **kwargs)
        finally:
            _reset(token)
        yield from iterate_in(iterator, ensure_config(config))

    def _with_config(self, config: ConfigLike, func: Callable[[Any], Any], input: Any) -> Any:
        token = _set(ensure_config(config))
        try:
            return func(input)
        finally:
            _reset(token)

    # async -----------------------------------------------------------------------------------------------
    async def ainvoke(self, input: In, config: ConfigLike = None) -> Out:
        if self._is_agen:
            return cast(Out, await aaggregate(self.astream(input, config)))
        if not self._is_async:
            return await super().ainvoke(input, config)
        kwargs = {"config": ensure_config(config)} if self._wants_config else {}
        if config is None:
            return cast(Out, await self.func(input, **kwargs))
        token = _set(ensure_config(config))
        try:
            return cast(Out, await self.func(input, **kwargs))
        finally:
            _reset(token)

    async def astream(self, input: In, config: ConfigLike = None) -> AsyncIterator[Out]:
        if not self._is_agen:
            if self._is_gen:
                async for item in super().astream(input, config):
                    yield item
            else:
                yield await self.ainvoke(input, config)
            return
        kwargs = {"config": ensure_config(config)} if self._wants_config else {}
        agen = self.func(input, **kwargs)
        if config is None:
            async for item in agen:
                yield item
            return
        async for item in aiterate_in(agen, ensure_config(config)):
            yield item

    # description -----------------------------------------------------------------------------------------
    def _type_hints(self) -> tuple[Any, Any]:
        if self._hints is None:
            import typing

            try:
                hints = typing.get_type_hints(self.func)
            except Exception:  # unresolvable forward references: types stay unknown
                hints = {}
            params = [p for p in _params(self.func) if p != "config"]
            self._hints = (hints.get(params[0], Any) if params else Any, hints.get("return", Any))
        return self._hints

    @property
    def input_type(self) -> Any:
        return self._type_hints()[0]

    @property
    def output_type(self) -> Any:
        return self._type_hints()[1]

    def __repr__(self) -> str:
        return f"runnable({self.name})"

    def _fast_call(self) -> Callable[[Any], Any]:
        if self._is_async or self._is_gen or self._is_agen or self._wants_config:
            return self.invoke
        return self.func


class Transform(Lambda[In, Out]):
    """A function that consumes its input as a stream and yields output pieces: `def f(pieces) -> Iterator`.

    Built by `transform(f)`. Streams flow through it piece by piece; `invoke(x)` feeds it the single piece `x`.
    An async generator function receives an async iterator of pieces.
    """

    def invoke(self, input: In, config: ConfigLike = None) -> Out:
        if self._is_agen:
            return cast(Out, _run_sync(self.ainvoke(input, config), self.name))
        return cast(Out, aggregate(self.transform(iter((input,)), config)))

    def stream(self, input: In, config: ConfigLike = None) -> Iterator[Out]:
        return self.transform(iter((input,)), config)

    def transform(self, inputs: Iterable[In], config: ConfigLike = None) -> Iterator[Out]:
        if self._is_agen:
            raise TypeError(f"{self.name} is an async transform: use astream/atransform or ainvoke")
        if config is None:
            yield from self.func(iter(inputs))
        else:
            yield from iterate_in(self.func(iter(inputs)), ensure_config(config))

    async def ainvoke(self, input: In, config: ConfigLike = None) -> Out:
        return cast(Out, await aaggregate(self.astream(input, config)))

    async def astream(self, input: In, config: ConfigLike = None) -> AsyncIterator[Out]:
        async for item in self.atransform(_aiter_one(input), config):
            yield item

    async def atransform(self, inputs: AsyncIterator[In], config: ConfigLike = None) -> AsyncIterator[Out]:
        if self._is_agen:
            agen = self.func(inputs)
            source = agen if config is None else aiterate_in(agen, ensure_config(config))
            async for item in source:
                yield item
        else:  # a sync transform fed from an async source: collect, then run
            pieces = [x async for x in inputs]
            for item in self.transform(pieces, config):
                yield item

    def _fast_call(self) -> Callable[[Any], Any]:
        return self.invoke


# ============================================================================================ public helpers
@overload
def runnable(func: Callable[..., Any], /, *, name: str | None = None, blocking: bool = False) -> Lambda[Any, Any]: ...
@overload
def runnable(
    func: None = None, /, *, name: str | None = None, blocking: bool = False
) -> Callable[[Callable[..., Any]], Lambda[Any, Any]]: ...
def runnable(
    func: Callable[..., Any] | None = None, /, *, name: str | None = None, blocking: bool = False
) -> Lambda[Any, Any] | Callable[[Callable[..., Any]], Lambda[Any, Any]]:
    """Turn a plain function into a Runnable step; usable as `runnable(f)` or as a decorator.

    `blocking=True` marks a function that waits on I/O or heavy compute: `ainvoke` then runs it in a worker
    thread and `batch` on a thread pool. By default a function step is cheap glue and runs inline.
    """
    if func is None:
        return lambda f: Lambda(f, name=name, blocking=blocking)
    if isinstance(func, Runnable):
        raise TypeError(f"runnable() got {func!r}, which is already a Runnable")
    return Lambda(func, name=name, blocking=blocking)


def transform(func: Callable[..., Any], /, *, name: str | None = None) -> Transform[Any, Any]:
    """Turn a generator function over an input stream into a streaming step (see `Transform`)."""
    return Transform(func, name=name)


def coerce(obj: Any, *, side: str = "") -> Runnable[Any, Any]:
    """A Runnable from a Runnable, a callable, or a dict of them (run in parallel on the same input)."""
    if isinstance(obj, Runnable):
        return obj
    if isinstance(obj, Mapping):
        from yulian.core.compose import Parallel

        return Parallel(obj)
    if callable(obj):
        return Lambda(obj)
    where = f" ({side})" if side else ""
    raise TypeError(
        f"cannot compose {type(obj).__name__} object {_short_repr(obj)}{where}: "
        "expected a Runnable, a callable, or a dict of them"
    )


def error_path(exc: BaseException) -> str | None:
    """The chain path where `exc` was raised (`"step 2 (parse_json)"`), or None if it came from outside a chain."""
    path = getattr(exc, "yulian_path", None)
    return " > ".join(path) if path else None


# ============================================================================================ internals
_NOTE_PREFIX = "yulian: "


def annotate(exc: BaseException, segment: str) -> None:
    """Record that `exc` passed through `segment` (e.g. "step 2 (parse_json)"), outermost first, as a note."""
    path: list[str] | None = getattr(exc, "yulian_path", None)
    try:
        if path is None:
            exc.yulian_path = path = [segment]  # type: ignore[attr-defined]
        else:
            path.insert(0, segment)
    except AttributeError:  # exceptions with __slots__: leave them alone
        return
    note = f"{_NOTE_PREFIX}{' > '.join(path)} failed"
    notes = getattr(exc, "__notes__", None)
    if notes:
        for i, existing in enumerate(notes):
            if isinstance(existing, str) and existing.startswith(_NOTE_PREFIX):
                notes[i] = note
                return
    exc.add_note(note)


def aggregate(pieces: Iterable[Any]) -> Any:
    """Join stream pieces: with `+` (text, message chunks, lists), dicts key by key."""
    iterator = iter(pieces)
    try:
        acc = next(iterator)
    except StopIteration:
        raise ValueError("cannot join an empty stream: the previous step produced no output") from None
    for piece in iterator:
        acc = add_pieces(acc, piece)
    return acc


async def aaggregate(pieces: AsyncIterator[Any]) -> Any:
    """Async `aggregate`."""
    sentinel = acc = object()
    async for piece in pieces:
        acc = piece if acc is sentinel else add_pieces(acc, piece)
    if acc is sentinel:
        raise ValueError("cannot join an empty stream: the previous step produced no output")
    return acc


def add_pieces(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        merged = dict(a)
        for k, v in b.items():
            merged[k] = add_pieces(merged[k], v) if k in merged else v
        return merged
    try:
        return a + b
    except TypeError:
        raise TypeError(
            f"cannot join stream pieces {type(a).__name__} + {type(b).__name__}: give the type an __add__, or set "
            "stream_snapshots = True on the step that streams them if each piece is the whole output so far"
        ) from None


def last_piece(pieces: Iterable[Any]) -> Iterator[Any]:
    """Only the last of a stream of snapshots (see `Runnable.stream_snapshots`)."""
    last: Any = _NO_PIECE
    for last in pieces:  # noqa: B007 - we want the final value
        pass
    if last is not _NO_PIECE:
        yield last


async def alast_piece(pieces: AsyncIterator[Any]) -> AsyncIterator[Any]:
    last: Any = _NO_PIECE
    async for last in pieces:  # noqa: B007
        pass
    if last is not _NO_PIECE:
        yield last


_NO_PIECE: Any = object()


def iterate_in(iterator: Iterator[Any], cfg: RunConfig) -> Iterator[Any]:
    """Pull `iterator` with `cfg` as the run context only while it runs, never while the consumer does."""
    while True:
        token = _set(cfg)
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            _reset(token)
        yield item


async def aiterate_in(iterator: AsyncIterator[Any], cfg: RunConfig) -> AsyncIterator[Any]:
    while True:
        token = _set(cfg)
        try:
            item = await anext(iterator)
        except StopAsyncIteration:
            return
        finally:
            _reset(token)
        yield item


async def _aiter_one(x: Any) -> AsyncIterator[Any]:
    yield x


def _run_sync(coro: Awaitable[Any], name: str) -> Any:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    if inspect.iscoroutine(coro):
        coro.close()
    raise RuntimeError(f"{name} is async and was called synchronously inside a running event loop: use ainvoke/astream")


def _next_or(iterator: Iterator[Any], default: Any) -> Any:
    return next(iterator, default)


def _capture(call: Callable[[Any], Any], x: Any) -> Any:
    try:
        return call(x)
    except Exception as e:
        return e


async def _acapture(call: Callable[..., Awaitable[Any]], x: Any, capture: bool) -> Any:
    if not capture:
        return await call(x)
    try:
        return await call(x)
    except Exception as e:
        return e


async def with_deadline(awaitable: Awaitable[Any], cfg: RunConfig, name: str) -> Any:
    """Await `awaitable`, cancelling it with a TimeoutError naming `name` when `cfg`'s deadline passes."""
    if cfg.deadline is None:
        return await awaitable
    import asyncio

    remaining = cfg.deadline - time.monotonic()
    try:
        async with asyncio.timeout(max(remaining, 0.0)) as scope:
            return await awaitable
    except TimeoutError as e:
        if scope.expired():
            raise TimeoutError(f"{name} ran past its timeout of {cfg.timeout} s") from e
        raise


def _params(func: Callable[..., Any]) -> list[str]:
    try:
        return list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return []


def _generic_arg(cls: type, index: int) -> Any:
    args = _runnable_args(cls)
    if args is None or isinstance(args[index], TypeVar):
        return Any
    return args[index]


def _runnable_args(cls: type) -> tuple[Any, ...] | None:
    """The (In, Out) a class binds on `Runnable`, resolved through intermediate generic bases."""
    import typing

    for base in getattr(cls, "__orig_bases__", ()):
        origin = typing.get_origin(base) or base
        if not (isinstance(origin, type) and issubclass(origin, Runnable)):
            continue
        args = typing.get_args(base)
        if origin is Runnable:
            return args if len(args) == 2 else None
        parent = _runnable_args(origin)
        if parent is None:
            continue
        mapping = dict(zip(getattr(origin, "__parameters__", ()), args, strict=False))
        return tuple(mapping.get(a, a) if isinstance(a, TypeVar) else a for a in parent)
    for base in cls.__bases__:
        if issubclass(base, Runnable) and base is not Runnable:
            found = _runnable_args(base)
            if found is not None:
                return found
    return None


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "Any"
    if isinstance(tp, type):
        return tp.__name__
    import re

    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", str(tp))  # collections.abc.Mapping -> Mapping


def _short_repr(obj: Any, limit: int = 60) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def trace_call(
    runnable: Runnable[Any, Any], kind: str, input: Any, cfg: RunConfig, call: Callable[[RunConfig], Any]
) -> Any:
    """Run `call(child_cfg)` inside a span for `runnable`, with the span as trace parent of what it starts."""
    from dataclasses import replace

    span = start_span(cfg.run_name or runnable.name, kind, input, cfg.callbacks, cfg.parent, cfg.tags, cfg.metadata)
    child = replace(cfg, parent=span, run_name=None)
    token = _set(child)
    try:
        out = call(child)
    except BaseException as e:
        end_span(span, cfg.callbacks, error=e)
        raise
    finally:
        _reset(token)
    end_span(span, cfg.callbacks, outputs=out)
    return out
