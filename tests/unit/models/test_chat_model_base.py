"""The ChatModel and Embedder base classes, through minimal backends that implement one method."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from yulian.core.config import RunConfig, current_config
from yulian.core.messages import Message, MessageChunk, assistant, system, user
from yulian.core.runnable import aggregate
from yulian.models import ChatModel, Embedder, GenerationConfig
from yulian.prompts import ChatPrompt


class Last(ChatModel):
    """Replies with the last message's content, upper-cased: only `_generate`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seen: list[list[Message]] = []
        self.threads: list[str] = []

    def _generate(self, messages: list[Message], options: GenerationConfig) -> Message:
        self.seen.append(messages)
        self.threads.append(threading.current_thread().name)
        return assistant(messages[-1].content.upper())


class Pieces(ChatModel):
    """Streams fixed pieces; records whether its generator was closed."""

    blocking = False

    def __init__(self, pieces: list[str], **options: Any) -> None:
        super().__init__(**options)
        self.pieces = pieces
        self.closed = False
        self.pulled = 0

    def _generate(self, messages: list[Message], options: GenerationConfig) -> Message:
        return assistant("".join(self.pieces))

    def _stream(self, messages: list[Message], options: GenerationConfig) -> Iterator[MessageChunk]:
        try:
            for p in self.pieces:
                self.pulled += 1
                yield MessageChunk("assistant", p)
        finally:
            self.closed = True


def contents(chunks: Iterator[MessageChunk] | list[MessageChunk]) -> list[str]:
    return [c.content for c in chunks]


async def collect(stream: AsyncIterator[MessageChunk]) -> list[MessageChunk]:
    return [c async for c in stream]


# ============================================================================================ inputs
def test_accepts_every_message_shape() -> None:
    model = Last()
    assert model.invoke("hi") == assistant("HI")
    assert model.invoke([("system", "s"), ("user", "u")]).content == "U"
    assert model.invoke([{"role": "user", "content": "d"}]).content == "D"
    prompt = ChatPrompt([("system", "s"), ("user", "{q}")])
    assert (prompt | model).invoke({"q": "chained"}).content == "CHAINED"
    assert model.seen[-1] == [system("s"), user("chained")]


def test_bad_input_names_the_element() -> None:
    with pytest.raises(TypeError, match="message 1"):
        Last().invoke([user("a"), 3])  # type: ignore[list-item]


def test_missing_generate_is_a_clear_error() -> None:
    with pytest.raises(NotImplementedError, match="ChatModel must implement _generate"):
        ChatModel().invoke("x")


# ============================================================================================ defaults
def test_default_stream_is_one_chunk_and_async_uses_a_thread() -> None:
    model = Last()
    assert contents(model.stream("a")) == ["A"]
    assert asyncio.run(model.ainvoke("b")) == assistant("B")
    assert contents(asyncio.run(collect(model.astream("c")))) == ["C"]
    assert model.threads[0] == "MainThread"
    assert model.threads[1] != "MainThread"  # blocking by default: async runs it off the event loop


def test_custom_stream_is_used_by_async_stream() -> None:
    model = Pieces(["a", "b", "c"])
    assert contents(asyncio.run(collect(model.astream("x")))) == ["a", "b", "c"]
    assert model.invoke("x").content == "abc"


def test_batch_keeps_order() -> None:
    assert [m.content for m in Last().batch(["a", "b", "c"], max_concurrency=2)] == ["A", "B", "C"]


# ============================================================================================ options
def test_generation_config_validates_in_one_place() -> None:
    assert GenerationConfig(stop="\n").stop == ("\n",)  # type: ignore[arg-type]
    assert GenerationConfig(stop=["a", "b"]).stop == ("a", "b")  # type: ignore[arg-type]
    for bad, match in [
        ({"max_tokens": 0}, "max_tokens must be an int >= 1"),
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"top_p": 0}, r"top_p must be in \(0, 1\]"),
        ({"stop": ("",)}, "stop sequences must be non-empty strings"),
    ]:
        with pytest.raises(ValueError, match=match):
            GenerationConfig(**bad)  # type: ignore[arg-type]


def test_unknown_option_suggests_the_closest() -> None:
    with pytest.raises(TypeError, match=r"unknown generation option 'temprature'.*Did you mean 'temperature'\?"):
        Last(temprature=0.5)
    with pytest.raises(TypeError, match=r"extra=\{\.\.\.\}"):
        Last().bind(repetition_penalty=1.1)


def test_bind_returns_a_copy_with_merged_options() -> None:
    model = Last(temperature=0.7, extra={"a": 1})
    cold = model.bind(temperature=0, max_tokens=5, extra={"b": 2})
    assert cold is not model and isinstance(cold, Last)
    assert (cold.options.temperature, cold.options.max_tokens) == (0, 5)
    assert dict(cold.options.extra) == {"a": 1, "b": 2}
    assert model.options.temperature == 0.7 and model.options.max_tokens is None
    cold.invoke("x")
    assert model.seen  # shallow copy: state is shared


# ============================================================================================ stop sequences
def test_stop_cuts_invoke_output() -> None:
    reply = Last(stop=["##", "B"]).invoke("aaa##bbb")
    assert reply.content == "AAA"
    assert reply.metadata["finish_reason"] == "stop"
    assert Last(stop=["zz"]).invoke("abc").content == "ABC"


def test_stop_split_across_chunks_is_found_and_generation_stops() -> None:
    model = Pieces(["Hello", " wor", "ld#", "#after", "never"], stop=["##"])
    out = list(model.stream("x"))
    assert "".join(contents(out)) == "Hello world"
    assert aggregate(out).metadata["finish_reason"] == "stop"
    assert model.closed
    assert model.pulled == 4  # the last piece was never generated


def test_held_back_prefix_is_released_when_no_stop_follows() -> None:
    out = list(Pieces(["a#", "x", "b#"], stop=["##"]).stream("x"))
    assert contents(out) == ["a", "#x", "b", "#"]


def test_earliest_stop_wins_and_empty_output_is_still_one_chunk() -> None:
    assert "".join(contents(Pieces(["one. two\n"], stop=["\n", "."]).stream("x"))) == "one"
    out = list(Pieces(["STOP now"], stop=["STOP"]).stream("x"))
    assert "".join(contents(out)) == "" and len(out) >= 1


def test_stop_applies_to_async_stream_and_ainvoke() -> None:
    model = Pieces(["ab", "c|", "|d"], stop=["||"])
    assert "".join(contents(asyncio.run(collect(model.astream("x"))))) == "abc"
    assert asyncio.run(model.ainvoke("x")).content == "abc"


# ============================================================================================ config
def test_backends_see_the_call_config() -> None:
    seen: list[tuple[str, ...]] = []

    class Spy(Pieces):
        def _generate(self, messages: list[Message], options: GenerationConfig) -> Message:
            seen.append(current_config().tags)
            return assistant("ok")

        def _stream(self, messages: list[Message], options: GenerationConfig) -> Iterator[MessageChunk]:
            seen.append(current_config().tags)
            yield MessageChunk("assistant", "ok")

    model = Spy([])
    cfg = RunConfig(tags=("t",))
    model.invoke("x", cfg)
    list(model.stream("x", cfg))
    asyncio.run(model.ainvoke("x", cfg))
    assert seen == [("t",), ("t",), ("t",)]
    assert current_config().tags == ()  # nothing leaks out


# ============================================================================================ embedders
class Lengths(Embedder):
    blocking = False

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(texts)
        return [[float(len(t)), 1.0] for t in texts]


def test_embedder_invoke_and_batch_in_one_call() -> None:
    e = Lengths()
    assert e.invoke("abc") == [3.0, 1.0]
    assert e.batch(["a", "bb"]) == [[1.0, 1.0], [2.0, 1.0]]
    assert e.calls == [["abc"], ["a", "bb"]]
    assert e.batch([]) == []


def test_embedder_async_twins() -> None:
    e = Lengths()
    assert asyncio.run(e.ainvoke("ab")) == [2.0, 1.0]
    assert asyncio.run(e.abatch(["a", "b"])) == [[1.0, 1.0], [1.0, 1.0]]
    assert e.calls == [["ab"], ["a", "b"]]


def test_embedder_checks_inputs_and_outputs() -> None:
    with pytest.raises(TypeError, match="embedders take text, got int at position 1"):
        Lengths().batch(["a", 2])  # type: ignore[list-item]

    class Short(Lengths):
        def embed(self, texts: list[str]) -> list[list[float]]:
            return []

    with pytest.raises(RuntimeError, match=r"Short.embed returned 0 vectors for 2 texts"):
        Short().batch(["a", "b"])
    errors = Short().batch(["a", "b"], return_exceptions=True)
    assert all(isinstance(x, RuntimeError) for x in errors)
    with pytest.raises(NotImplementedError, match="must implement embed"):
        Embedder().invoke("x")
