"""Base classes for chat models and embedders: every backend (local, remote, fake) subclasses these.

A chat model implements `_generate(messages, options) -> Message`; it gets `invoke`, `batch`, `stream` (one
chunk), async twins (a worker thread), input normalisation, option binding and stop sequences for free. It
overrides `_stream` to emit tokens, and `_agenerate` / `_astream` when it has native async I/O.

An embedder implements `embed(texts) -> vectors`; `invoke` embeds one text and `batch` embeds many in one call.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Self, TypeVar

from yulian.core.config import ensure_config, use_config
from yulian.core.messages import Message, MessageChunk, MessagesInput, to_messages
from yulian.core.runnable import ConfigLike, Runnable, aiterate_in, iterate_in

__all__ = ["ChatInput", "ChatModel", "Embedder", "GenerationConfig"]

ChatInput = MessagesInput
"""What a chat model accepts: a str (one user message), a Message, or a list of messages in any shape."""

T = TypeVar("T")


# ============================================================================================ options
@dataclass(frozen=True, slots=True)
class GenerationConfig:
    """How a chat model generates; validated here, once, for every backend.

    Attributes:
        max_tokens: the most new tokens to generate (None: the backend's default).
        temperature: sampling temperature, >= 0; 0 means greedy (None: the backend's default).
        top_p: nucleus sampling mass, in (0, 1] (None: the backend's default).
        stop: strings that end the output; the output is cut before the first one (also across streamed chunks).
        seed: a random seed, for backends that support reproducible sampling.
        extra: backend-specific options passed through untouched (e.g. `{"repetition_penalty": 1.1}`).
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stop: object = self.stop  # a str or a list is accepted and stored as a tuple
        if isinstance(stop, str):
            object.__setattr__(self, "stop", (stop,))
        elif not isinstance(stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or self.max_tokens < 1):
            raise ValueError(f"max_tokens must be an int >= 1, got {self.max_tokens!r}")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop sequences must be non-empty strings, got {self.stop!r}")

    def merge(self, **options: Any) -> GenerationConfig:
        """A copy with `options` changed; unknown names raise a TypeError that suggests the closest one."""
        known = [f.name for f in fields(self)]
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise TypeError(
                    f"unknown generation option {name!r} (options: {', '.join(known)}).{hint} "
                    "Pass backend-specific options as extra={...}."
                )
        if "extra" in options:
            options["extra"] = {**self.extra, **options["extra"]}
        return replace(self, **options)


# ============================================================================================ chat models
class ChatModel(Runnable[ChatInput, Message]):
    """Base of chat models: messages in, one assistant `Message` out (or a stream of `MessageChunk`s).

    Subclasses implement `_generate`; they may override `_stream` (token streaming), `_agenerate` and `_astream`
    (native async). Construct with generation options, `Model(..., temperature=0, stop=["\\n"])`, or derive a
    variant with `model.bind(max_tokens=64)`.
    """

    options: GenerationConfig = GenerationConfig()
    """The generation options of this model (set by `__init__` and `bind`)."""

    def __init__(self, *, options: GenerationConfig | None = None, **overrides: Any) -> None:
        base = options if options is not None else GenerationConfig()
        self.options = base.merge(**overrides) if overrides else base

    # ----------------------------------------------------------------------------------------- for backends
    def _generate(self, messages: list[Message], options: GenerationConfig) -> Message:
        """Generate the reply to `messages`. The one method a backend must implement."""
        raise NotImplementedError(f"{type(self).__name__} must implement _generate()")

    def _stream(self, messages: list[Message], options: GenerationConfig) -> Iterator[MessageChunk]:
        """Yield the reply in pieces. Default: one chunk holding the whole reply of `_generate`."""
        yield _as_chunk(self._generate(messages, options))

    async def _agenerate(self, messages: list[Message], options: GenerationConfig) -> Message:
        """Async `_generate`. Default: `_generate` in a worker thread (inline for non-blocking models)."""
        if self.blocking:
            import asyncio  # imported on first async use: `import yulian` stays light

            return await asyncio.to_thread(self._generate, messages, options)
        return self._generate(messages, options)

    async def _astream(self, messages: list[Message], options: GenerationConfig) -> AsyncIterator[MessageChunk]:
        """Async `_stream`. Default: pulls a custom `_stream` (in a thread when blocking), else `_agenerate`."""
        if type(self)._stream is ChatModel._stream:
            yield _as_chunk(await self._agenerate(messages, options))
            return
        iterator = self._stream(messages, options)
        if not self.blocking:
            for chunk in iterator:
                yield chunk
            return
        import asyncio

        done: Any = object()
        while (chunk := await asyncio.to_thread(next, iterator, done)) is not done:
            yield chunk

    # ----------------------------------------------------------------------------------------- public API
    def bind(self, **options: Any) -> Self:
        """A copy of this model with generation options changed: `llm.bind(temperature=0, stop=["\\n\\n"])`.

        The copy is shallow: it shares loaded weights, clients and other state with this model.
        """
        bound = copy.copy(self)
        bound.options = self.options.merge(**options)
        return bound

    def invoke(self, input: ChatInput, config: ConfigLike = None) -> Message:
        """Reply to `input` (a str, a Message, or a list of messages in any shape `to_messages` accepts)."""
        messages = to_messages(input)
        reply = _in_config(config, self._generate, messages, self.options)
        return _cut_message(reply, self.options.stop)

    async def ainvoke(self, input: ChatInput, config: ConfigLike = None) -> Message:
        """Async `invoke`."""
        messages = to_messages(input)
        reply = await _ain_config(config, self._agenerate(messages, self.options))
        return _cut_message(reply, self.options.stop)

    def stream(self, input: ChatInput, config: ConfigLike = None) -> Iterator[MessageChunk]:
        """Yield the reply as `MessageChunk`s; join them with `+` (or `aggregate`) for the whole reply."""
        messages = to_messages(input)
        raw = self._stream(messages, self.options)
        chunks = raw if config is None else iterate_in(raw, ensure_config(config))
        if not self.options.stop:
            yield from chunks
            return
        cutter = _StopCutter(self.options.stop)
        try:
            for chunk in chunks:
                out = cutter.feed(chunk)
                if out is not None:
                    yield out
                if cutter.stopped:
                    return
        finally:
            _close(raw)  # stop generating once a stop sequence has been seen
        yield from cutter.finish()

    async def astream(self, input: ChatInput, config: ConfigLike = None) -> AsyncIterator[MessageChunk]:
        """Async `stream`."""
        messages = to_messages(input)
        raw = self._astream(messages, self.options)
        chunks = raw if config is None else aiterate_in(raw, ensure_config(config))
        cutter = _StopCutter(self.options.stop) if self.options.stop else None
        try:
            async for chunk in chunks:
                if cutter is None:
                    yield chunk
                    continue
                out = cutter.feed(chunk)
                if out is not None:
                    yield out
                if cutter.stopped:
                    return
        finally:
            aclose = getattr(raw, "aclose", None)
            if aclose is not None:
                await aclose()
        if cutter is not None:
            for rest in cutter.finish():
                yield rest


# ============================================================================================ helpers
def _in_config(config: ConfigLike, fn: Callable[..., T], *args: Any) -> T:
    """Call `fn(*args)` with `config` as the run context, so backends can read `current_config().remaining()`."""
    with use_config(config):
        return fn(*args)


async def _ain_config(config: ConfigLike, awaitable: Awaitable[T]) -> T:
    """Await `awaitable` with `config` as the run context."""
    with use_config(config):
        return await awaitable


def _close(iterator: Iterator[Any]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _as_chunk(message: Message) -> MessageChunk:
    return MessageChunk(
        message.role, message.content, message.name, message.tool_calls, message.tool_call_id, message.metadata
    )


def _cut_message(message: Message, stops: Sequence[str]) -> Message:
    """`message` with its content cut before the first stop sequence, if any occurs."""
    if not stops:
        return message
    cut = min((i for s in stops if (i := message.content.find(s)) >= 0), default=-1)
    if cut < 0:
        return message
    return replace(message, content=message.content[:cut], metadata={**message.metadata, "finish_reason": "stop"})


class _StopCutter:
    """Cuts a chunk stream before the first stop sequence, even when it is split across chunks.

    Text that might be the start of a stop sequence is held back until the next chunk decides it.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.held = ""
        self.stopped = False
        self.emitted = False
        self.role: Any = "assistant"

    def feed(self, chunk: MessageChunk) -> MessageChunk | None:
        self.role = chunk.role
        text = self.held + chunk.content
        cut = min((i for s in self.stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self.held = ""
            return self._emit(replace(chunk, content=text[:cut], metadata={**chunk.metadata, "finish_reason": "stop"}))
        keep = max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        self.held = text[len(text) - keep :] if keep else ""
        out = replace(chunk, content=text[: len(text) - keep])
        if out.content or out.tool_calls or out.metadata:
            return self._emit(out)
        return None

    def finish(self) -> Iterator[MessageChunk]:
        if self.held or not self.emitted:
            yield self._emit(MessageChunk(self.role, self.held))
        self.held = ""

    def _emit(self, chunk: MessageChunk) -> MessageChunk:
        self.emitted = True
        return chunk


# ============================================================================================ embedders
class Embedder(Runnable[str, list[float]]):
    """Base of text embedders: `embed(texts)` is the one method to implement.

    `invoke(text)` embeds one text; `batch(texts)` calls `embed` once on all of them (so a backend batches its
    forward pass); async twins run in a worker thread unless `aembed` is overridden.
    """

    dim: int | None = None
    """The size of the vectors, when known."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        raise NotImplementedError(f"{type(self).__name__} must implement embed()")

    async def aembed(self, texts: list[str]) -> list[list[float]]:
        """Async `embed`. Default: `embed` in a worker thread (inline for non-blocking embedders)."""
        if self.blocking:
            import asyncio

            return await asyncio.to_thread(self.embed, texts)
        return self.embed(texts)

    def invoke(self, input: str, config: ConfigLike = None) -> list[float]:
        """The vector of one text."""
        return _in_config(config, self._embed_checked, [_check_text(input, 0)])[0]

    async def ainvoke(self, input: str, config: ConfigLike = None) -> list[float]:
        """Async `invoke`."""
        return (await _ain_config(config, self._aembed_checked([_check_text(input, 0)])))[0]

    def batch(
        self,
        inputs: Sequence[str],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[list[float]]:
        """Vectors of many texts, from one `embed` call. With `return_exceptions`, a failure is returned per item."""
        texts = [_check_text(t, i) for i, t in enumerate(inputs)]
        if not texts:
            return []
        try:
            return _in_config(config, self._embed_checked, texts)
        except Exception as e:
            if not return_exceptions:
                raise
            return [e for _ in texts]  # type: ignore[misc]

    async def abatch(
        self,
        inputs: Sequence[str],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[list[float]]:
        """Async `batch`."""
        texts = [_check_text(t, i) for i, t in enumerate(inputs)]
        if not texts:
            return []
        try:
            return await _ain_config(config, self._aembed_checked(texts))
        except Exception as e:
            if not return_exceptions:
                raise
            return [e for _ in texts]  # type: ignore[misc]

    def _embed_checked(self, texts: list[str]) -> list[list[float]]:
        return self._check_count(self.embed(texts), texts)

    async def _aembed_checked(self, texts: list[str]) -> list[list[float]]:
        return self._check_count(await self.aembed(texts), texts)

    def _check_count(self, vectors: list[list[float]], texts: list[str]) -> list[list[float]]:
        if len(vectors) != len(texts):
            raise RuntimeError(f"{self.name}.embed returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors


def _check_text(text: object, index: int) -> str:
    if not isinstance(text, str):
        raise TypeError(f"embedders take text, got {type(text).__name__} at position {index}: {text!r:.80}")
    return text
