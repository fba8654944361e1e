"""The shipped fakes: FakeChatModel, FakeEmbedder, FailingRunnable, and chains built offline with them."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from yulian.core.messages import Message, MessageChunk, ToolCall, assistant, user
from yulian.core.runnable import aggregate
from yulian.prompts import ChatPrompt, JsonParser, LabelParser, Prompt, TextParser
from yulian.testing import FailingRunnable, FakeChatModel, FakeEmbedder, split_tokens


# ============================================================================================ tokens
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello, world!", ["Hello,", " world!"]),
        ("  two  spaces ", ["  two", "  spaces", " "]),
        ("你好，世界。", ["你", "好", "，", "世", "界", "。"]),
        ("用 Python 写", ["用", " Python", " 写"]),
        ("", []),
    ],
)
def test_split_tokens(text: str, tokens: list[str]) -> None:
    assert split_tokens(text) == tokens
    assert "".join(split_tokens(text)) == text


# ============================================================================================ FakeChatModel
def test_responses_cycle_in_order() -> None:
    model = FakeChatModel(["one", "two"])
    assert [model.invoke("x").content for _ in range(3)] == ["one", "two", "one"]
    model.reset()
    assert model.invoke("x").content == "one"
    assert len(model.calls) == 1


def test_echo_answers_with_the_last_user_message() -> None:
    model = FakeChatModel()
    reply = model.invoke([("system", "s"), ("user", "first"), ("assistant", "a"), ("user", "last")])
    assert reply == assistant("last")
    assert model.calls == [
        [Message("system", "s"), user("first"), assistant("a"), user("last")],
    ]
    assert model.invoke([("system", "only")]).content == ""


def test_stream_yields_tokens() -> None:
    chunks = list(FakeChatModel(["你好, world"]).stream("x"))
    assert [c.content for c in chunks] == ["你", "好", ",", " world"]
    assert all(isinstance(c, MessageChunk) for c in chunks)


def test_message_responses_keep_tool_calls_when_streamed() -> None:
    call = ToolCall("c1", "weather", {"city": "上海"})
    model = FakeChatModel([assistant("Let me check.", tool_calls=[call])])
    assert model.invoke("x").tool_calls == (call,)
    joined = aggregate(model.stream("x"))
    assert joined.content == "Let me check." and joined.tool_calls == (call,)


def test_max_tokens_and_stop_apply() -> None:
    model = FakeChatModel(["Answer: 42\nExplanation follows"])
    short = model.bind(max_tokens=2).invoke("x")
    assert short.content == "Answer: 42"
    assert short.metadata["finish_reason"] == "length"
    assert "".join(c.content for c in model.bind(stop=["\n"]).stream("x")) == "Answer: 42"
    assert [o.max_tokens for o in model.call_options] == [2, None]  # bound copies share the record


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="nothing to say"):
        FakeChatModel([])
    with pytest.raises(TypeError, match="response 1 must be a str or a Message"):
        FakeChatModel(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="delay must be >= 0"):
        FakeChatModel(delay=-1)
    assert FakeChatModel("single").invoke("x").content == "single"
    assert FakeChatModel().blocking is False
    assert FakeChatModel(delay=0.01).blocking is True


def test_async_calls_run_concurrently_on_the_event_loop() -> None:
    model = FakeChatModel(["a b c d e"], delay=0.04)  # 5 tokens: 0.2 s per call

    async def run() -> tuple[list[Message], float]:
        start = time.perf_counter()
        replies = await asyncio.gather(*(model.ainvoke(str(i)) for i in range(5)))
        return list(replies), time.perf_counter() - start

    replies, elapsed = asyncio.run(run())
    assert [r.content for r in replies] == ["a b c d e"] * 5
    assert elapsed < 0.6  # one after another would take 1 s


def test_async_stream_yields_tokens_with_delay() -> None:
    model = FakeChatModel(["x y z"], delay=0.001)

    async def run() -> list[str]:
        return [c.content async for c in model.astream("q")]

    assert asyncio.run(run()) == ["x", " y", " z"]


# ============================================================================================ chains
def test_prompt_model_parser_chain_streams_several_pieces() -> None:
    chain = ChatPrompt([("system", "Be brief."), ("user", "{question}")]) | FakeChatModel() | TextParser()
    assert chain.invoke({"question": "What is 语链?"}) == "What is 语链?"
    pieces = list(chain.stream({"question": "What is 语链?"}))
    assert pieces == ["What", " is", " 语", "链", "?"]


def test_chain_async_stream_and_invoke() -> None:
    chain = Prompt("Say {word} twice") | FakeChatModel(["ok ok"]) | TextParser()

    async def run() -> tuple[list[str], str]:
        pieces = [p async for p in chain.astream("hi")]
        return pieces, await chain.ainvoke("hi")

    pieces, whole = asyncio.run(run())
    assert pieces == ["ok", " ok"]
    assert whole == "ok ok"


def test_chain_receives_the_filled_prompt() -> None:
    model = FakeChatModel(["正面"])
    chain = ChatPrompt([("system", "情感分类"), ("user", "{text}")]) | model | LabelParser(["正面", "负面"])
    assert chain.batch(["好吃", "不错"]) == ["正面", "正面"]
    assert [call[-1].content for call in model.calls] == ["好吃", "不错"]


def test_json_chain_streams_partial_objects() -> None:
    chain = Prompt("{q}") | FakeChatModel(['{"answer": "forty two", "ok": true}']) | JsonParser(partial=True)
    snapshots = list(chain.stream("q"))
    assert len(snapshots) > 1
    assert snapshots[-1] == {"answer": "forty two", "ok": True}
    assert chain.invoke("q") == {"answer": "forty two", "ok": True}


# ============================================================================================ FakeEmbedder
def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_fake_embedder_is_deterministic_and_normalised() -> None:
    e = FakeEmbedder(dim=32)
    v = e.invoke("hello world")
    assert len(v) == 32
    assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0)
    assert FakeEmbedder(dim=32).invoke("hello world") == v
    assert e.invoke("HELLO   World") == v  # case and spacing do not matter
    assert math.isclose(math.sqrt(sum(x * x for x in e.invoke(""))), 1.0)  # no words: still a unit vector


def test_fake_embedder_similarity_follows_shared_words() -> None:
    e = FakeEmbedder(dim=256)
    query, near, far = e.batch(["how to reset my password", "reset the password", "weather in paris today"])
    assert cosine(query, near) > cosine(query, far) + 0.3
    zh_query, zh_near, zh_far = e.batch(["银行卡丢了怎么办", "我的银行卡丢了", "今天天气很好"])
    assert cosine(zh_query, zh_near) > cosine(zh_query, zh_far) + 0.3
    assert e.calls[0] == ["how to reset my password", "reset the password", "weather in paris today"]


def test_fake_embedder_validates_dim() -> None:
    with pytest.raises(ValueError, match="dim must be >= 2"):
        FakeEmbedder(dim=1)


# ============================================================================================ FailingRunnable
def test_failing_runnable_fails_then_echoes() -> None:
    step = FailingRunnable(fail_times=2, error=TimeoutError)
    for attempt in (1, 2):
        with pytest.raises(TimeoutError, match=f"planned failure {attempt} of 2"):
            step.invoke("x")
    assert step.invoke("x") == "x"
    assert step.calls == 3


def test_failing_runnable_with_retry_and_fallbacks() -> None:
    assert FailingRunnable(fail_times=2).with_retry(attempts=3, backoff=0).invoke("ok") == "ok"
    always = FailingRunnable(fail_times=10, error=ValueError("bad"))
    assert always.with_fallbacks([FailingRunnable(0, result="fallback")]).invoke("x") == "fallback"


def test_failing_runnable_raises_a_fresh_copy_of_an_instance() -> None:
    original = ValueError("bad")
    step = FailingRunnable(fail_times=2, error=original)
    raised = []
    for _ in range(2):
        with pytest.raises(ValueError, match="bad") as info:
            step.invoke(1)
        raised.append(info.value)
    assert raised[0] is not raised[1] and original not in raised
    with pytest.raises(ValueError, match="fail_times must be >= 0"):
        FailingRunnable(-1)


def test_failing_runnable_async() -> None:
    step = FailingRunnable(fail_times=1)
    with pytest.raises(RuntimeError):
        asyncio.run(step.ainvoke("x"))
    assert asyncio.run(step.ainvoke("x")) == "x"
