"""Plumbing shared by `OpenAIChatModel` and `OpenAIEmbedder`: clients, wire format, errors, retry policy.

The lazily created openai clients; tool specs and tool choice in; `Message`s, streamed `MessageChunk`s and vectors
out; the client's exceptions mapped to `RemoteModelError`s with clear messages; the retry policy used when a run
deadline is in force. Nothing here imports `openai` at module level.
"""

from __future__ import annotations

import json
import random
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from yulian._optional import require
from yulian.core.messages import Message, MessageChunk, ToolCall

if TYPE_CHECKING:
    from yulian.models.openai_models import OpenAIEndpoint

__all__ = [
    "RemoteAuthError",
    "RemoteConnectionError",
    "RemoteModelError",
    "RemoteRateLimitError",
    "RemoteRequestError",
    "RemoteResponseError",
    "RemoteServerError",
    "RemoteTimeoutError",
]


# ============================================================================================ clients
class Clients:
    """The openai clients of one endpoint, created on first use and shared by a model and its `bind` copies.

    One sync client (plus a no-retry twin for calls under a deadline, where yulian retries itself) and one async
    client per event loop: an async client's connections belong to the loop that opened them.
    """

    def __init__(self, endpoint: OpenAIEndpoint) -> None:
        self.endpoint = endpoint
        self.lock = threading.Lock()
        self.module: Any = None
        self._sync: dict[bool, Any] = {}
        self._async: weakref.WeakKeyDictionary[Any, dict[bool, Any]] = weakref.WeakKeyDictionary()

    def openai(self) -> Any:
        if self.module is None:
            self.module = require("openai", extra="openai", purpose="OpenAI-compatible models")
        return self.module

    def _kwargs(self) -> dict[str, Any]:
        ep = self.endpoint
        return {
            "api_key": ep.api_key or "no-key",  # the client insists on a key; a keyless local server ignores it
            "base_url": ep.url,
            "organization": ep.organization,
            "timeout": ep.timeout,
            "max_retries": ep.max_retries,
            "default_headers": dict(ep.default_headers) or None,
        }

    def sync(self, retries: bool = True) -> Any:
        client = self._sync.get(retries)
        if client is None:
            with self.lock:
                if True not in self._sync:
                    self._sync[True] = self.openai().OpenAI(**self._kwargs())
                if not retries and False not in self._sync:
                    self._sync[False] = self._sync[True].with_options(max_retries=0)
                client = self._sync[retries]
        return client

    def async_(self, retries: bool = True) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        clients = self._async.get(loop)
        if clients is None:
            with self.lock:
                clients = self._async.setdefault(loop, {})
        client = clients.get(retries)
        if client is None:
            if True not in clients:
                clients[True] = self.openai().AsyncOpenAI(**self._kwargs())
            if not retries and False not in clients:
                clients[False] = clients[True].with_options(max_retries=0)
            client = clients[retries]
        return client

    def close(self) -> None:
        with self.lock:
            clients, self._sync = self._sync, {}
        if True in clients:
            clients[True].close()  # the no-retry twin shares its connection pool

    async def aclose(self) -> None:
        import asyncio

        clients = self._async.pop(asyncio.get_running_loop(), {})
        if True in clients:
            await clients[True].close()


# ============================================================================================ errors
class RemoteModelError(RuntimeError):
    """A remote model endpoint failed; the message says which endpoint and why, `__cause__` is the client's error.

    Attributes:
        status_code: the HTTP status of the failed response, when there was one.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RemoteAuthError(RemoteModelError, PermissionError):
    """The endpoint rejected the API key (401), or the key may not use this model (403)."""


class RemoteConnectionError(RemoteModelError, ConnectionError):
    """The endpoint could not be reached, or the connection dropped mid-answer."""


class RemoteTimeoutError(RemoteModelError, TimeoutError):
    """No answer within the request timeout or before the run's deadline."""


class RemoteRateLimitError(RemoteModelError):
    """The endpoint kept answering 429 (rate limit or quota) after the retries."""


class RemoteRequestError(RemoteModelError, ValueError):
    """The endpoint refused the request (400, 404, 409, 422): the message carries the server's explanation."""


class RemoteServerError(RemoteModelError):
    """The endpoint kept failing with 5xx after the retries."""


class RemoteResponseError(RemoteModelError, ValueError):
    """The endpoint answered with something that is not a valid reply (no choices, tool arguments not JSON)."""


def server_message(error: Any) -> str:
    """The server's own explanation inside an openai `APIError` (the `error.message` of the JSON envelope)."""
    body = getattr(error, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return str(getattr(error, "message", None) or error)


def map_error(oa: ModuleType, error: BaseException, where: str, base_url: str, retries: int) -> RemoteModelError:
    """A clear `RemoteModelError` for an exception of the openai client (or its HTTP layer).

    `where` names the model and endpoint, `retries` how many retries were made before giving up.
    """
    after = f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""
    status = getattr(error, "status_code", None)
    if isinstance(error, oa.APITimeoutError) or _is_transport(error, "TimeoutException"):
        return RemoteTimeoutError(f"{where}: no answer in time{after} (raise timeout=, or check the server load)")
    if isinstance(error, oa.APIConnectionError) or _is_transport(error, "TransportError"):
        reason = root_reason(error)
        return RemoteConnectionError(f"{where}: cannot reach {base_url}{after}{reason}; is the server running?")
    if not isinstance(error, oa.APIStatusError):
        if isinstance(error, oa.APIError):  # an error event inside a stream
            return RemoteModelError(f"{where}: the endpoint reported an error: {server_message(error)}")
        return RemoteModelError(f"{where}: {type(error).__name__}: {error}")
    message = server_message(error)
    if status == 401:
        return RemoteAuthError(
            f"{where}: the endpoint rejected the API key (401: {message}); check api_key= or OPENAI_API_KEY",
            status_code=status,
        )
    if status == 403:
        return RemoteAuthError(f"{where}: the API key may not do this (403: {message})", status_code=status)
    if status == 429:
        return RemoteRateLimitError(
            f"{where}: rate limited{after} (429: {message}); slow down or raise max_retries=", status_code=status
        )
    if status == 404:
        return RemoteRequestError(
            f"{where}: not found (404: {message}); check the model name and that base_url ends with /v1",
            status_code=status,
        )
    if status is not None and status >= 500:
        return RemoteServerError(f"{where}: server error{after} ({status}: {message})", status_code=status)
    return RemoteRequestError(f"{where}: the endpoint refused the request ({status}: {message})", status_code=status)


def _is_transport(error: BaseException, name: str) -> bool:
    """Whether `error` is an `httpx`/`httpx2` exception of class `name` (raised mid-stream by older clients)."""
    return any(c.__name__ == name and c.__module__.startswith("httpx") for c in type(error).__mro__)


def root_reason(error: BaseException) -> str:
    """`" (the innermost cause)"` of `error`, e.g. `" ([Errno 111] Connection refused)"`, or "" if there is none."""
    cause: BaseException | None = error
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    if cause is None or cause is error or not str(cause):
        return ""
    return f" ({str(cause)[:200]})"


# ============================================================================================ retries
_RETRY_STATUS = frozenset({408, 409, 429})
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 120.0


def retry_delay(oa: ModuleType, error: BaseException, attempt: int) -> float | None:
    """Seconds to wait before retrying after `error` (attempt 0 is the first retry), or None: do not retry.

    The openai client's own policy, reproduced for calls under a deadline (where yulian retries itself so that no
    retry starts past the deadline): connection errors, timeouts, 408, 409, 429 and 5xx are retried; the server's
    `retry-after-ms` / `retry-after` is honoured up to two minutes; otherwise 0.5 s doubling, capped at 8 s, with
    up to 25% jitter.
    """
    if isinstance(error, oa.APIStatusError):
        headers = error.response.headers
        should = headers.get("x-should-retry")
        if should == "false" or (
            should != "true" and error.status_code not in _RETRY_STATUS and error.status_code < 500
        ):
            return None
        after = _retry_after(headers)
        if after is not None:
            return after if after <= MAX_RETRY_AFTER else None
    elif not isinstance(error, oa.APIConnectionError):
        return None
    return min(INITIAL_RETRY_DELAY * 2.0**attempt, MAX_RETRY_DELAY) * (1 - 0.25 * random.random())


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                seconds = float(value) / divisor
            except ValueError:
                continue
            if seconds > 0:
                return seconds
    return None


# ============================================================================================ requests
def tool_spec(spec: object, index: int) -> dict[str, Any]:
    """One tool in the API's form `{"type": "function", "function": {"name", "description", "parameters"}}`.

    Accepts that form or the bare function spec `{"name", "description", "parameters"}`.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"tools[{index}] must be a dict (a JSON-schema function spec), got {type(spec).__name__}")
    fn = spec.get("function") if spec.get("type", "function") == "function" and "function" in spec else spec
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
        keys = ", ".join(map(str, spec)) or "none"
        raise ValueError(
            f"tools[{index}] needs a function name: give {{'name', 'description', 'parameters'}} or "
            f"{{'type': 'function', 'function': {{...}}}} (got keys: {keys})"
        )
    params = fn.get("parameters")
    if params is not None and not isinstance(params, Mapping):
        raise ValueError(f"tools[{index}] ({fn['name']}): parameters must be a JSON schema dict, got {params!r:.80}")
    return {"type": "function", "function": dict(fn)}


def tool_choice_param(choice: object, tools: Sequence[Mapping[str, Any]]) -> Any:
    """The API's `tool_choice`: "auto", "none", "required", a bound tool's name, or a dict passed through."""
    if choice is None or isinstance(choice, Mapping):
        return None if choice is None else dict(choice)
    if not isinstance(choice, str):
        raise TypeError(f"tool_choice must be a str or a dict, got {type(choice).__name__}")
    if choice in ("auto", "none", "required"):
        return choice
    names = [t["function"]["name"] for t in tools]
    if choice not in names:
        raise ValueError(
            f"tool_choice {choice!r} is not 'auto', 'none', 'required' or a bound tool "
            f"(tools: {', '.join(names) or 'none bound'})"
        )
    return {"type": "function", "function": {"name": choice}}


def response_format_param(fmt: object) -> dict[str, Any] | None:
    """The API's `response_format`: "json_object" / "text" shorthands, or a dict (e.g. json_schema) passed through."""
    if fmt is None:
        return None
    if isinstance(fmt, str):
        if fmt not in ("json_object", "text"):
            raise ValueError(f"response_format {fmt!r}: use 'json_object', 'text' or a dict such as a json_schema")
        return {"type": fmt}
    if isinstance(fmt, Mapping) and "type" in fmt:
        return dict(fmt)
    raise ValueError(
        "response_format must be 'json_object', 'text' or a dict with a 'type' "
        f"(e.g. {{'type': 'json_schema', 'json_schema': {{...}}}}), got {fmt!r:.80}"
    )


# ============================================================================================ responses
def message_from_completion(completion: Any, where: str) -> Message:
    """The assistant `Message` of a (non-streamed) chat completion, with finish reason and usage in metadata."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise RemoteResponseError(f"{where}: the endpoint answered with no choices")
    choice = choices[0]
    msg = choice.message
    calls = tuple(
        _tool_call(c.id or f"call_{i}", c.function.name, c.function.arguments or "", where)
        for i, c in enumerate(getattr(msg, "tool_calls", None) or ())
    )
    meta = _metadata(completion, choice.finish_reason)
    if getattr(msg, "refusal", None):
        meta["refusal"] = msg.refusal
    return Message("assistant", msg.content or "", tool_calls=calls, metadata=meta)


def _metadata(response: Any, finish_reason: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if finish_reason:
        meta["finish_reason"] = finish_reason
    usage = getattr(response, "usage", None)
    if usage is not None:
        meta["usage"] = _usage(usage)
    if getattr(response, "model", None):
        meta["model"] = response.model
    if getattr(response, "id", None):
        meta["id"] = response.id
    return meta


def _usage(usage: Any) -> dict[str, int]:
    return {
        key: value
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(value := getattr(usage, key, None), int)
    }


def _tool_call(call_id: str, name: str, arguments: str, where: str) -> ToolCall:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as e:
        raise RemoteResponseError(
            f"{where}: the model called tool {name!r} with arguments that are not valid JSON ({e.msg}): "
            f"{arguments[:200]!r}"
        ) from e
    if not isinstance(args, dict):
        raise RemoteResponseError(f"{where}: the model called tool {name!r} with non-object arguments {args!r:.80}")
    return ToolCall(call_id, name, args)


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamAssembler:
    """Turns streamed chat-completion chunks into `MessageChunk`s.

    Text deltas pass through as they come. Tool-call deltas (id and name first, then the JSON arguments in pieces,
    keyed by index) are assembled and emitted whole, on the last chunk, together with the finish reason and the
    usage (sent by the server in a final chunk when `stream_options.include_usage` is on).
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.calls: dict[int, _PartialCall] = {}
        self.meta: dict[str, Any] = {}
        self.emitted = False

    def feed(self, chunk: Any) -> MessageChunk | None:
        """The text delta of `chunk` as a `MessageChunk`, or None when it carries no text."""
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.meta["usage"] = _usage(usage)
        if not self.meta.get("model") and getattr(chunk, "model", None):
            self.meta["model"] = chunk.model
        if not self.meta.get("id") and getattr(chunk, "id", None):
            self.meta["id"] = chunk.id
        choices = getattr(chunk, "choices", None)
        if not choices:
            return None
        choice = choices[0]
        if choice.finish_reason:
            self.meta["finish_reason"] = choice.finish_reason
        delta = choice.delta
        if delta is None:
            return None
        for call in getattr(delta, "tool_calls", None) or ():
            self._add_call(call)
        text = delta.content or ""
        if not text:
            return None
        self.emitted = True
        return MessageChunk("assistant", text)

    def _add_call(self, delta: Any) -> None:
        index = delta.index
        if index is None:  # servers that omit the index: a new id starts a new call
            index = len(self.calls) if delta.id or not self.calls else max(self.calls)
        part = self.calls.setdefault(index, _PartialCall())
        if delta.id:
            part.id = delta.id
        fn = delta.function
        if fn is None:
            return
        if fn.name and fn.name != part.name:
            part.name = fn.name if not part.name else part.name + fn.name
        if fn.arguments:
            part.arguments.append(fn.arguments)

    def finish(self) -> MessageChunk | None:
        """The last chunk: the assembled tool calls and the metadata (None if there is nothing to add)."""
        calls = tuple(
            _tool_call(p.id or f"call_{i}", p.name, "".join(p.arguments), self.where)
            for i, p in sorted(self.calls.items())
        )
        if not calls and not self.meta and self.emitted:
            return None
        return MessageChunk("assistant", "", tool_calls=calls, metadata=dict(self.meta))


def decode_vector(embedding: Any) -> list[float]:
    """A vector from the wire: a list of numbers, or base64 little-endian float32 (encoding_format="base64")."""
    if isinstance(embedding, str):
        import array
        import base64
        import sys

        values = array.array("f", base64.b64decode(embedding))
        if sys.byteorder == "big":
            values.byteswap()
        return values.tolist()
    return list(embedding)
