"""Chat memory: SQLite and in-memory histories, trimming, and `with_history` around real chains."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from yulian import runnable
from yulian.core.messages import Message, ToolCall, assistant, system, tool, user
from yulian.prompts import ChatPrompt, placeholder
from yulian.retrieval.memory import (
    InMemoryChatHistory,
    SQLiteChatHistory,
    SQLiteChatStore,
    approx_tokens,
    trim_messages,
    with_history,
)
from yulian.testing import FailingRunnable, FakeChatModel

PROMPT = ChatPrompt([("system", "Answer briefly."), placeholder("history"), ("user", "{question}")])


def seen(model: FakeChatModel, call: int = -1) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in model.calls[call]]


def stored(history: SQLiteChatHistory | InMemoryChatHistory) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in history.messages()]


# ============================================================================================ histories
@pytest.mark.parametrize("make", [lambda: SQLiteChatHistory(session_id="s"), lambda: InMemoryChatHistory("s")])
def test_history_round_trip(make) -> None:  # type: ignore[no-untyped-def]
    history = make()
    call = ToolCall("c1", "weather", {"city": "上海"})
    turn = [
        user("上海天气？"),
        assistant("", tool_calls=[call]),
        tool("晴，25度", "c1"),
        Message("assistant", "晴天。", name="bot", metadata={"usage": {"tokens": 3}}),
    ]
    history.add(turn)
    history.add("追问")  # any shape to_messages accepts
    got = history.messages()
    assert got == [*turn, user("追问")]
    assert got[1].tool_calls == (call,)
    assert got[3].metadata["usage"] == {"tokens": 3}
    assert all(isinstance(m.metadata["created_at"], float) for m in got)
    assert [m.content for m in history.messages(limit=2)] == ["晴天。", "追问"]
    assert history.messages(limit=0) == []
    with pytest.raises(ValueError, match="limit must be None or an int >= 0"):
        history.messages(limit=-1)
    history.clear()
    assert history.messages() == []


def test_sessions_are_separate_and_listed(tmp_path: Path) -> None:
    store = SQLiteChatStore(tmp_path / "chat.db")
    store.history("b").add("hi b")
    store.history("a").add([("user", "hi a"), ("assistant", "hello a")])
    store("b").add("again b")
    assert store.sessions() == ["b", "a"]
    assert stored(store.history("a")) == [("user", "hi a"), ("assistant", "hello a")]
    store.history("a").clear()
    assert store.sessions() == ["b"]


def test_file_database_persists_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with SQLiteChatStore(path) as store:
        store.history("u1").add([user("你好"), assistant("你好！")])
    reopened = SQLiteChatStore(path)
    assert stored(reopened.history("u1")) == [("user", "你好"), ("assistant", "你好！")]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # histories made per request share one store (one connection) per file
    assert SQLiteChatHistory(path, "x").store is SQLiteChatHistory(str(path), "y").store
    assert SQLiteChatHistory(session_id="x").store is not SQLiteChatHistory(session_id="x").store  # :memory:


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    store = SQLiteChatStore(tmp_path / "chat.db")

    def writer(n: int) -> None:
        history = store.history(f"s{n % 3}")
        for i in range(50):
            history.add([user(f"q{n}-{i}"), assistant(f"a{n}-{i}")])
            history.messages(limit=5)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(len(store.history(s).messages()) for s in store.sessions())
    assert total == 6 * 50 * 2
    for s in store.sessions():  # each turn's two messages stay adjacent (one transaction per add)
        msgs = store.history(s).messages()
        assert all(q.content[1:] == a.content[1:] for q, a in zip(msgs[::2], msgs[1::2], strict=True))


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="table must be a plain SQL name"):
        SQLiteChatStore(table="drop table; --")
    with pytest.raises(ValueError, match="session_id must be a non-empty str"):
        SQLiteChatHistory(session_id="")
    with pytest.raises(FileNotFoundError, match=r"folder .*missing does not exist"):
        SQLiteChatStore(tmp_path / "missing" / "chat.db").sessions()
    (tmp_path / "not.db").write_text("this is not a database, just text that is long enough" * 20)
    with pytest.raises(ValueError, match=r"cannot use .*not\.db as a chat database"):
        SQLiteChatStore(tmp_path / "not.db").sessions()


# ============================================================================================ trimming
CONVERSATION = [
    system("sys"),
    user("one"),
    assistant("reply one"),
    user("two"),
    assistant("reply two"),
    user("three"),
]


def test_trim_by_message_count_keeps_system_and_starts_on_user() -> None:
    assert [m.content for m in trim_messages(CONVERSATION, max_messages=3)] == ["sys", "two", "reply two", "three"]
    # 2 messages would open with "reply two": that reply loses its question, so it goes too
    assert [m.content for m in trim_messages(CONVERSATION, max_messages=2)] == ["sys", "three"]
    assert [m.content for m in trim_messages(CONVERSATION, max_messages=2, start_on_user=False)] == [
        "sys",
        "reply two",
        "three",
    ]
    assert [m.content for m in trim_messages(CONVERSATION, max_messages=3, keep_system=False)] == [
        "two",
        "reply two",
        "three",
    ]
    assert trim_messages(CONVERSATION) == CONVERSATION


def test_trim_by_tokens() -> None:
    count = lambda text: len(text.split())  # noqa: E731
    # sys 1 + three 1 + reply two 2 + two 1 = 5 tokens
    assert [m.content for m in trim_messages(CONVERSATION, max_tokens=5, token_counter=count)] == [
        "sys",
        "two",
        "reply two",
        "three",
    ]
    assert [m.content for m in trim_messages(CONVERSATION, max_tokens=4, token_counter=count)] == ["sys", "three"]
    assert approx_tokens("我们去 Beijing, 3 天!") == 8  # 我 们 去 Beijing , 3 天 !
    with pytest.raises(ValueError, match="max_tokens must be None or an int >= 0"):
        trim_messages(CONVERSATION, max_tokens=-1)


# ============================================================================================ with_history
def test_with_history_loads_and_saves_turns() -> None:
    store = SQLiteChatStore()
    llm = FakeChatModel(["你好小明！", "你叫小明。"])
    bot = with_history(PROMPT | llm, store)
    bot.invoke({"question": "我叫小明"}, config={"metadata": {"session_id": "u1"}})
    reply = bot.invoke({"question": "我叫什么？", "session_id": "u1"})
    assert reply.content == "你叫小明。"
    assert seen(llm) == [
        ("system", "Answer briefly."),
        ("user", "我叫小明"),
        ("assistant", "你好小明！"),
        ("user", "我叫什么？"),
    ]
    assert stored(store.history("u1")) == [
        ("user", "我叫小明"),
        ("assistant", "你好小明！"),
        ("user", "我叫什么？"),
        ("assistant", "你叫小明。"),
    ]
    bot.invoke("新会话", config={"metadata": {"session_id": "u2"}})  # a str input is the question
    assert seen(llm) == [("system", "Answer briefly."), ("user", "新会话")]


def test_window_and_token_limits_apply() -> None:
    history = InMemoryChatHistory("s")
    for i in range(10):
        history.add([user(f"q{i}"), assistant(f"a{i}")])
    llm = FakeChatModel(["ok"])
    with_history(PROMPT | llm, lambda sid: history, window=4).invoke({"question": "new", "session_id": "s"})
    assert [c for _, c in seen(llm)] == ["Answer briefly.", "q8", "a8", "q9", "a9", "new"]
    with_history(PROMPT | llm, lambda sid: history, window=None, max_tokens=3).invoke(
        {"question": "x", "session_id": "s"}
    )
    assert [c for _, c in seen(llm)] == ["Answer briefly.", "new", "ok", "x"]


def test_string_and_dict_outputs() -> None:
    history = InMemoryChatHistory("s")
    text_bot = with_history(PROMPT | FakeChatModel(["文本回答"]) | (lambda m: m.content), lambda sid: history)
    assert text_bot.invoke({"question": "q", "session_id": "s"}) == "文本回答"
    dict_chain = PROMPT | FakeChatModel(["答"]) | (lambda m: {"answer": m.content, "sources": []})
    with_history(dict_chain, lambda sid: history, output_key="answer").invoke({"question": "q2", "session_id": "s"})
    assert stored(history) == [("user", "q"), ("assistant", "文本回答"), ("user", "q2"), ("assistant", "答")]
    with pytest.raises(TypeError, match=r"returned a dict \(keys: answer, sources\); pass output_key="):
        with_history(dict_chain, lambda sid: history).invoke({"question": "q3", "session_id": "s"})
    assert len(history.messages()) == 4  # nothing saved from the failed turn


def test_stream_saves_after_completion_only() -> None:
    history = InMemoryChatHistory("s")
    bot = with_history(PROMPT | FakeChatModel(["你好 world again"]), lambda sid: history)
    pieces = list(bot.stream({"question": "hi", "session_id": "s"}))
    assert len(pieces) > 1
    assert stored(history) == [("user", "hi"), ("assistant", "你好 world again")]
    stream = bot.stream({"question": "abandoned", "session_id": "s"})
    next(stream)
    stream.close()
    assert len(history.messages()) == 2


def test_async_invoke_and_stream(tmp_path: Path) -> None:
    store = SQLiteChatStore(tmp_path / "chat.db")
    llm = FakeChatModel(["first answer", "second answer"])
    bot = with_history(PROMPT | llm, store)
    cfg = {"metadata": {"session_id": "a"}}

    async def main() -> list[str]:
        await bot.ainvoke({"question": "q1"}, config=cfg)
        return [c.content async for c in bot.astream({"question": "q2"}, config=cfg)]

    assert "".join(asyncio.run(main())) == "second answer"
    assert seen(llm)[1:] == [("user", "q1"), ("assistant", "first answer"), ("user", "q2")]
    assert stored(store.history("a"))[-1] == ("assistant", "second answer")


def test_batch_keeps_sessions_apart() -> None:
    store = SQLiteChatStore()
    bot = with_history(PROMPT | FakeChatModel(), store)  # echoes the question
    bot.batch([{"question": f"q{i}", "session_id": f"s{i}"} for i in range(4)])
    assert sorted(store.sessions()) == ["s0", "s1", "s2", "s3"]
    assert stored(store.history("s2")) == [("user", "q2"), ("assistant", "q2")]


def test_failures_save_nothing_and_errors_are_clear() -> None:
    history = InMemoryChatHistory("s")
    failing = with_history(runnable(lambda x: x) | FailingRunnable(1), lambda sid: history)
    with pytest.raises(RuntimeError, match="planned failure"):
        failing.invoke({"question": "q", "session_id": "s"})
    assert history.messages() == []
    bot = with_history(PROMPT | FakeChatModel(), lambda sid: history)
    with pytest.raises(ValueError, match=r"needs a session id: pass config=\{'metadata': \{'session_id'"):
        bot.invoke({"question": "q"})
    with pytest.raises(ValueError, match=r"the input has no 'question' key \(keys: text, session_id\)"):
        bot.invoke({"text": "q", "session_id": "s"})
    with pytest.raises(TypeError, match="history_factory must be a function"):
        with_history(PROMPT, history)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window must be None or an int >= 0"):
        with_history(PROMPT, lambda sid: history, window=-1)
