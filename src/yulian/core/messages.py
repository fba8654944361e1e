"""Chat messages: the values that flow between chat prompts, chat models and parsers.

A `Message` has a role (`system`, `user`, `assistant` or `tool`) and text content; assistant messages may carry
`ToolCall`s and tool messages answer one by `tool_call_id`. Models stream `MessageChunk`s, which join with `+`
(so `aggregate` turns a stream back into one chunk) and become a `Message` with `.to_message()`.

`to_messages` accepts the shapes people write by hand: a string (one user message), `Message`s, `(role, text)`
tuples and OpenAI-style `{"role": ..., "content": ...}` dicts. `Message.to_dict()` goes the other way.
Standard library only: importing this module is instant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

__all__ = [
    "Message",
    "MessageChunk",
    "MessageLike",
    "MessagesInput",
    "Role",
    "ToolCall",
    "assistant",
    "system",
    "to_messages",
    "tool",
    "user",
]

Role = Literal["system", "user", "assistant", "tool"]
_ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")
_ALIASES = {"human": "user", "ai": "assistant", "bot": "assistant", "model": "assistant", "developer": "system"}


def _check_role(role: object, where: str) -> Role:
    if role in _ROLES:
        return role
    hint = f" (did you mean {_ALIASES[role]!r}?)" if isinstance(role, str) and role in _ALIASES else ""
    raise ValueError(f"{where}: unknown role {role!r}{hint}; roles are {', '.join(_ROLES)}")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A request from the model to call the tool `name` with `arguments` (already decoded from JSON)."""

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire form: `{"id", "type": "function", "function": {"name", "arguments": <JSON text>}}`."""
        arguments = json.dumps(dict(self.arguments), ensure_ascii=False)
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": arguments}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        """Read the OpenAI wire form (arguments as JSON text or a dict) or the flat `{"id", "name", "arguments"}`."""
        fn = data.get("function", data)
        if not isinstance(fn, Mapping) or "name" not in fn:
            raise ValueError(f"a tool call needs a function name, got {dict(data)!r}")
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError as e:
                raise ValueError(f"tool call {fn['name']!r} has arguments that are not valid JSON: {e}") from None
        if not isinstance(args, Mapping):
            raise ValueError(f"tool call {fn['name']!r} arguments must be a JSON object, got {args!r}")
        return cls(id=str(data.get("id", "")), name=str(fn["name"]), arguments=dict(args))


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message.

    Attributes:
        role: `system`, `user`, `assistant` or `tool` (checked on construction).
        content: the text.
        name: optional name of the speaker (OpenAI's `name` field).
        tool_calls: tool calls requested by an assistant message.
        tool_call_id: for a `tool` message, the id of the call it answers (required there).
        metadata: free-form data (token usage, finish reason, ...); not part of equality.
    """

    role: Role
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        _check_role(self.role, "Message")
        content: object = self.content  # checked at run time: callers are not always typed
        if not isinstance(content, str):
            raise TypeError(f"Message content must be a str, got {type(content).__name__}: {content!r:.80}")
        calls: object = self.tool_calls
        if not isinstance(calls, tuple):
            object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, not {self.role} messages")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI chat-completions form of this message (metadata is left out)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [call.to_dict() for call in self.tool_calls]
            if not self.content:
                out["content"] = None
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Read an OpenAI-style dict; `content` may be None or a list of `{"type": "text", "text": ...}` parts."""
        if "role" not in data:
            raise ValueError(f"a message dict needs a 'role' key, got keys: {', '.join(map(str, data)) or 'none'}")
        role = _check_role(data["role"], "message dict")
        content = data.get("content")
        if content is None:
            content = ""
        elif isinstance(content, list):
            texts = []
            for part in content:
                if not (isinstance(part, Mapping) and part.get("type") == "text"):
                    raise ValueError(f"only text content parts are supported, got {part!r}")
                texts.append(str(part.get("text", "")))
            content = "".join(texts)
        calls = tuple(ToolCall.from_dict(c) for c in data.get("tool_calls") or ())
        return cls(role, content, data.get("name"), calls, data.get("tool_call_id"))


@dataclass(frozen=True, slots=True)
class MessageChunk(Message):
    """A piece of a streamed message. `a + b` joins two chunks: text concatenates, tool calls and metadata add up.

    A chunk is a `Message` too, so code that reads `.content` works on a joined stream as on an `invoke` result.
    """

    def __add__(self, other: object) -> MessageChunk:
        if isinstance(other, MessageChunk):
            return MessageChunk(
                self.role,
                self.content + other.content,
                self.name or other.name,
                self.tool_calls + other.tool_calls,
                self.tool_call_id or other.tool_call_id,
                {**self.metadata, **other.metadata} if other.metadata else self.metadata,
            )
        if isinstance(other, str):
            return replace(self, content=self.content + other)
        return NotImplemented

    def to_message(self) -> Message:
        """The complete message this (joined) chunk stands for, as a plain `Message`."""
        return Message(
            self.role, self.content, self.name, self.tool_calls, self.tool_call_id, metadata=dict(self.metadata)
        )


def system(text: str) -> Message:
    """A system message."""
    return Message("system", text)


def user(text: str, *, name: str | None = None) -> Message:
    """A user message."""
    return Message("user", text, name=name)


def assistant(text: str = "", *, tool_calls: Sequence[ToolCall] = ()) -> Message:
    """An assistant message, optionally requesting tool calls."""
    return Message("assistant", text, tool_calls=tuple(tool_calls))


def tool(text: str, tool_call_id: str) -> Message:
    """A tool message: the result of the tool call `tool_call_id`."""
    return Message("tool", text, tool_call_id=tool_call_id)


MessageLike: TypeAlias = Message | tuple[str, str] | Mapping[str, Any]
"""One message in any accepted shape: a `Message` (or chunk), a `(role, text)` tuple or an OpenAI-style dict."""

MessagesInput: TypeAlias = str | Message | Sequence[MessageLike]
"""What `to_messages` (and so every chat model) accepts: a string is one user message."""


def to_messages(value: MessagesInput) -> list[Message]:
    """Normalise `value` to a list of messages.

    A string becomes one user message; a `Message` or `MessageChunk` a list of one; a list or tuple is read element
    by element, each a `Message`, `MessageChunk`, `(role, text)` tuple or `{"role", "content"}` dict. Errors name
    the bad element and its index.
    """
    if isinstance(value, str):
        return [Message("user", value)]
    if isinstance(value, MessageChunk):
        return [value.to_message()]
    if isinstance(value, Message):
        return [value]
    if isinstance(value, Mapping):
        raise TypeError(
            "expected messages, got a dict: wrap one message dict in a list, "
            "or fill a prompt first (ChatPrompt turns a dict of variables into messages)"
        )
    if not isinstance(value, Sequence):
        raise TypeError(f"expected a str, a Message or a list of messages, got {type(value).__name__}: {value!r}")
    return [_to_message(item, i) for i, item in enumerate(value)]


def _to_message(item: object, index: int) -> Message:
    if isinstance(item, MessageChunk):
        return item.to_message()
    if isinstance(item, Message):
        return item
    if isinstance(item, Mapping):
        try:
            return Message.from_dict(item)
        except (TypeError, ValueError) as e:
            raise type(e)(f"message {index}: {e}") from None
    if isinstance(item, tuple) and len(item) == 2:
        role, text = item
        if not isinstance(text, str):
            raise TypeError(f"message {index}: text must be a str, got {type(text).__name__}: {text!r}")
        return Message(_check_role(role, f"message {index}"), text)
    hint = " (to pass one (role, text) tuple, wrap it in a list)" if isinstance(item, str) else ""
    raise TypeError(
        f"message {index}: expected a Message, a (role, text) tuple or a {{'role', 'content'}} dict, "
        f"got {type(item).__name__}: {item!r}{hint}"
    )
