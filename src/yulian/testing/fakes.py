"""Deterministic fakes for building and testing chains offline: a chat model, an embedder, a flaky step."""

from __future__ import annotations

import copy
import hashlib
import math
import re
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from yulian.core.messages import Message, MessageChunk
from yulian.core.runnable import ConfigLike, Runnable
from yulian.models.base import ChatModel, Embedder, GenerationConfig

__all__ = ["FailingRunnable", "FakeChatModel", "FakeEmbedder", "split_tokens"]

# CJK scripts and CJK/full-width punctuation: one token per character
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u3001-\u303f\uff00-\uffef"
_TOKEN = re.compile(rf"\s*(?:[{_CJK}]|[^\s{_CJK}]+)|\s+")


def split_tokens(text: str) -> list[str]:
    """Split text the way `FakeChatModel` streams it: words with their leading spaces, CJK per character.

    `"".join(split_tokens(text)) == text` always holds.
    """
    return _TOKEN.findall(text)


# ============================================================================================ chat model
@dataclass
class _Record:
    """State shared by a fake model and the copies `bind` makes of it."""

    calls: list[list[Message]] = field(default_factory=list)
    options: list[GenerationConfig] = field(default_factory=list)
    turn: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeChatModel(ChatModel):
    """A deterministic chat model for tests and offline demos.

    It answers with `responses` in order, starting over after the last, or, without responses, echoes the last
    user message. Replies stream as tokens (`split_tokens`), so streaming chains show several pieces. `max_tokens`
    cuts the reply (finish reason "length"); stop sequences apply as for any `ChatModel`. Every call is recorded
    in `calls` (the messages received) and `call_options` (the generation options used).

    `delay` seconds pass per token: with `time.sleep` in sync calls, `asyncio.sleep` in async ones (so async
    calls really run concurrently). The model is non-blocking when `delay` is 0.
    """

    def __init__(
        self,
        responses: Sequence[str | Message] | None = None,
        *,
        delay: float = 0.0,
        options: GenerationConfig | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(options=options, **overrides)
        if isinstance(responses, str):
            responses = [responses]
        if responses is not None:
            if not responses:
                raise ValueError("FakeChatModel(responses=[]) has nothing to say: give replies, or omit it to echo")
            for i, r in enumerate(responses):
                if not isinstance(r, str | Message):
                    raise TypeError(f"response {i} must be a str or a Message, got {type(r).__name__}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay}")
        self.responses: tuple[str | Message, ...] | None = None if responses is None else tuple(responses)
        self.delay = delay
        self.blocking = delay > 0
        self._record = _Record()

    @property
    def calls(self) -> list[list[Message]]:
        """The message lists received, one per call, in call order."""
        return self._record.calls

    @property
    def call_options(self) -> list[GenerationConfig]:
        """The generation options of each call, in call order."""
        return self._record.options

    def reset(self) -> None:
        """Forget recorded calls and start the responses over."""
        with self._record.lock:
            self._record.calls.clear()
            self._record.options.clear()
            self._record.turn = 0

    def _reply(self, messages: list[Message], options: GenerationConfig) -> Message:
        with self._record.lock:
            self._record.calls.append(list(messages))
            self._record.options.append(options)
            turn = self._record.turn
            self._record.turn += 1
        if self.responses is None:
            last = next((m.content for m in reversed(messages) if m.role == "user"), "")
            reply = Message("assistant", last)
        else:
            chosen = self.responses[turn % len(self.responses)]
            reply = chosen if isinstance(chosen, Message) else Message("assistant", chosen)
        if options.max_tokens is not None:
            tokens = split_tokens(reply.content)
            if len(tokens) > options.max_tokens:
                content = "".join(tokens[: options.max_tokens])
                return replace(reply, content=content, metadata={**reply.metadata, "finish_reason": "length"})
        return reply

    def _generate(self, messages: list[Message], options: GenerationConfig) -> Message:
        reply = self._reply(messages, options)
        if self.delay:
            time.sleep(self.delay * max(1, len(split_tokens(reply.content))))
        return reply

    def _stream(self, messages: list[Message], options: GenerationConfig) -> Iterator[MessageChunk]:
        for chunk in _chunks(self._reply(messages, options)):
            if self.delay:
                time.sleep(self.delay)
            yield chunk

    async def _agenerate(self, messages: list[Message], options: GenerationConfig) -> Message:
        reply = self._reply(messages, options)
        if self.delay:
            import asyncio  # imported on first async use: `import yulian.testing` stays light

            await asyncio.sleep(self.delay * max(1, len(split_tokens(reply.content))))
        return reply

    async def _astream(self, messages: list[Message], options: GenerationConfig) -> AsyncIterator[MessageChunk]:
        for chunk in _chunks(self._reply(messages, options)):
            if self.delay:
                import asyncio

                await asyncio.sleep(self.delay)
            yield chunk

    def __repr__(self) -> str:
        what = "echo" if self.responses is None else f"{len(self.responses)} responses"
        return f"FakeChatModel({what})"


def _chunks(reply: Message) -> Iterator[MessageChunk]:
    """A reply as a token stream; tool calls and metadata ride on a last, empty chunk."""
    tokens = split_tokens(reply.content)
    for token in tokens:
        yield MessageChunk("assistant", token)
    if reply.tool_calls or reply.metadata or not tokens:
        yield MessageChunk("assistant", "", tool_calls=reply.tool_calls, metadata=dict(reply.metadata))


# ============================================================================================ embedder
_WORDS = re.compile(rf"([{_CJK}]+)|([^\W_]+)")


def _features(text: str) -> list[str]:
    """Hashing features: words of space-separated scripts, character bigrams of CJK runs (the char if alone)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    features: list[str] = []
    for cjk, word in _WORDS.findall(folded):
        if word:
            features.append(word)
        elif len(cjk) == 1:
            features.append(cjk)
        else:
            features.extend(cjk[i : i + 2] for i in range(len(cjk) - 1))
    return features


class FakeEmbedder(Embedder):
    """Deterministic text vectors from hashed words (and Chinese character bigrams), L2-normalised.

    Texts that share words get a higher cosine similarity than texts that do not, which is enough to test
    retrieval offline. The same text gives the same vector in every process. Calls are recorded in `calls`.
    """

    blocking = False

    def __init__(self, dim: int = 64) -> None:
        if dim < 2:
            raise ValueError(f"dim must be >= 2, got {dim}")
        self.dim = dim
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> list[float]:
        assert self.dim is not None
        vector = [0.0] * self.dim
        for feature in _features(text) or [text]:  # a text without words still gets its own vector
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dim
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:  # features cancelled out: fall back to the whole text's own direction
            digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
            vector[int.from_bytes(digest[:4], "little") % self.dim] = norm = 1.0
        return [x / norm for x in vector]

    def __repr__(self) -> str:
        return f"FakeEmbedder(dim={self.dim})"


# ============================================================================================ failures
_ECHO: Any = object()


class FailingRunnable(Runnable[Any, Any]):
    """Fails its first `fail_times` calls, then returns its input (or `result`): for testing retries and fallbacks.

    `error` is an exception class (instantiated with a message naming the attempt) or an instance (a fresh copy
    is raised each time). `calls` counts every call, failed or not.
    """

    blocking = False

    def __init__(
        self,
        fail_times: int = 1,
        error: BaseException | type[BaseException] = RuntimeError,
        *,
        result: Any = _ECHO,
    ) -> None:
        if fail_times < 0:
            raise ValueError(f"fail_times must be >= 0, got {fail_times}")
        self.fail_times = fail_times
        self.error = error
        self.result = result
        self.calls = 0
        self._lock = threading.Lock()

    def invoke(self, input: Any, config: ConfigLike = None) -> Any:
        with self._lock:
            self.calls += 1
            attempt = self.calls
        if attempt <= self.fail_times:
            if isinstance(self.error, BaseException):
                raise copy.copy(self.error)
            raise self.error(f"FailingRunnable: planned failure {attempt} of {self.fail_times}")
        return input if self.result is _ECHO else self.result

    def __repr__(self) -> str:
        return f"FailingRunnable(fail_times={self.fail_times})"
