"""Message types: construction, validation, chunks, normalisation and the OpenAI dict form."""

from __future__ import annotations

from typing import Any

import pytest

from yulian.core.messages import (
    Message,
    MessageChunk,
    ToolCall,
    assistant,
    system,
    to_messages,
    tool,
    user,
)
from yulian.core.runnable import aggregate


def test_constructors_set_roles() -> None:
    assert [m.role for m in (system("s"), user("u"), assistant("a"), tool("t", "call_1"))] == [
        "system",
        "user",
        "assistant",
        "tool",
    ]
    assert user("hi") == Message("user", "hi")


def test_unknown_role_is_rejected_with_a_hint() -> None:
    with pytest.raises(ValueError, match=r"unknown role 'human' \(did you mean 'user'\?\)"):
        Message("human", "hi")  # type: ignore[arg-type]


def test_content_must_be_text() -> None:
    with pytest.raises(TypeError, match="content must be a str, got int"):
        Message("user", 3)  # type: ignore[arg-type]


def test_tool_messages_need_a_call_id_and_only_assistants_call_tools() -> None:
    with pytest.raises(ValueError, match="tool_call_id"):
        Message("tool", "42")
    with pytest.raises(ValueError, match="only assistant messages carry tool_calls"):
        Message("user", "x", tool_calls=(ToolCall("1", "f"),))


def test_messages_are_immutable_and_metadata_is_not_part_of_equality() -> None:
    m = Message("assistant", "hi", metadata={"tokens": 3})
    with pytest.raises(AttributeError):
        m.content = "changed"  # type: ignore[misc]
    assert m == Message("assistant", "hi")
    assert hash(m) == hash(Message("assistant", "hi"))


def test_to_dict_is_openai_compatible() -> None:
    call = ToolCall("call_1", "weather", {"city": "北京"})
    assert assistant(tool_calls=[call]).to_dict() == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "北京"}'}}
        ],
    }
    assert tool("晴", "call_1").to_dict() == {"role": "tool", "content": "晴", "tool_call_id": "call_1"}
    assert user("hi", name="ada").to_dict() == {"role": "user", "content": "hi", "name": "ada"}


def test_from_dict_round_trips_and_reads_content_parts() -> None:
    original = assistant("ok", tool_calls=[ToolCall("c", "f", {"x": [1, 2]})])
    assert Message.from_dict(original.to_dict()) == original
    parts = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    assert Message.from_dict(parts) == user("ab")


def test_from_dict_rejects_bad_tool_arguments() -> None:
    bad = {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{nope"}}]}
    with pytest.raises(ValueError, match="tool call 'f' has arguments that are not valid JSON"):
        Message.from_dict(bad)


def test_chunks_join_with_plus_and_aggregate() -> None:
    pieces = [
        MessageChunk("assistant", "Hel"),
        MessageChunk("assistant", "lo", metadata={"a": 1}),
        MessageChunk("assistant", "", tool_calls=(ToolCall("1", "f"),), metadata={"b": 2}),
    ]
    joined = aggregate(pieces)
    assert isinstance(joined, MessageChunk)
    assert joined.content == "Hello"
    assert joined.tool_calls == (ToolCall("1", "f"),)
    assert dict(joined.metadata) == {"a": 1, "b": 2}
    message = joined.to_message()
    assert type(message) is Message
    assert message == assistant("Hello", tool_calls=[ToolCall("1", "f")])


def test_a_chunk_is_a_message() -> None:
    assert isinstance(MessageChunk("assistant", "x"), Message)
    assert MessageChunk("assistant", "x") + "y" == MessageChunk("assistant", "xy")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hi", [user("hi")]),
        (system("s"), [system("s")]),
        (MessageChunk("assistant", "a"), [assistant("a")]),
        ([("system", "s"), ("user", "u")], [system("s"), user("u")]),
        ([{"role": "assistant", "content": "a"}, user("u")], [assistant("a"), user("u")]),
        ((("user", "u"),), [user("u")]),
        ([], []),
    ],
)
def test_to_messages_normalises_every_shape(value: Any, expected: list[Message]) -> None:
    out = to_messages(value)
    assert out == expected
    assert all(type(m) is Message for m in out)


def test_to_messages_errors_name_the_element_and_its_index() -> None:
    with pytest.raises(TypeError, match=r"message 1: expected a Message.*got int: 42"):
        to_messages([user("ok"), 42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"message 0: unknown role 'robot'"):
        to_messages([("robot", "beep")])
    with pytest.raises(ValueError, match=r"message 0: a message dict needs a 'role' key, got keys: content"):
        to_messages([{"content": "x"}])
    with pytest.raises(TypeError, match=r"message 1: text must be a str"):
        to_messages([("user", "a"), ("user", 2)])  # type: ignore[list-item]


def test_to_messages_hints_at_common_slips() -> None:
    with pytest.raises(TypeError, match=r"wrap it in a list"):
        to_messages(("user", "hi"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got a dict"):
        to_messages({"role": "user", "content": "hi"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a str, a Message or a list"):
        to_messages(3.5)  # type: ignore[arg-type]
