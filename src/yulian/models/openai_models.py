"""Remote models over any OpenAI-compatible endpoint: `OpenAIChatModel` and `OpenAIEmbedder`.

Works with the official API and with local servers that speak its protocol (vLLM, llama.cpp, Ollama, LM Studio,
`yulian serve`): give `base_url` (ending in `/v1`) and, if the server wants one, `api_key`.

    llm = OpenAIChatModel("gpt-4o-mini", temperature=0)                  # key from OPENAI_API_KEY
    local = OpenAIChatModel("qwen2.5", base_url="http://127.0.0.1:8000/v1")
    weather = llm.bind_tools([{"name": "get_weather", "parameters": {...}}], tool_choice="auto")
    vectors = OpenAIEmbedder("text-embedding-3-small", dimensions=256).batch(texts)

The official `openai` client does the HTTP (install `yulian[openai]`); it is imported on first use, and the sync and
async clients are created once and shared by every copy `bind` makes. Retries and backoff are the client's own
(`max_retries`; `retry-after` is honoured). When the run has a deadline (`RunConfig(timeout=...)`), each request's
timeout is cut to the time left and no retry starts past the deadline. Failures raise `RemoteModelError`
subclasses with a clear message; the client's exception stays as `__cause__`.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from yulian.core.config import current_config
from yulian.core.messages import Message, MessageChunk
from yulian.models._openai_wire import (
    Clients,
    RemoteAuthError,
    RemoteConnectionError,
    RemoteModelError,
    RemoteRateLimitError,
    RemoteRequestError,
    RemoteResponseError,
    RemoteServerError,
    RemoteTimeoutError,
    StreamAssembler,
    decode_vector,
    map_error,
    message_from_completion,
    response_format_param,
    retry_delay,
    root_reason,
    tool_choice_param,
    tool_spec,
)
from yulian.models.base import ChatModel, Embedder, GenerationConfig

__all__ = [
    "OpenAIChatModel",
    "OpenAIEmbedder",
    "OpenAIEndpoint",
    "RemoteAuthError",
    "RemoteConnectionError",
    "RemoteModelError",
    "RemoteRateLimitError",
    "RemoteRequestError",
    "RemoteResponseError",
    "RemoteServerError",
    "RemoteTimeoutError",
]

T = TypeVar("T")
OFFICIAL_BASE_URL = "https://api.openai.com/v1"
_MAX_STOP = 4  # the API takes at most 4 stop sequences; the rest are cut on our side (ChatModel does it)


# ============================================================================================ endpoint
@dataclass(frozen=True, slots=True)
class OpenAIEndpoint:
    """Where and how to reach an OpenAI-compatible server; validated here, once, for chat models and embedders.

    Attributes:
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1` (None: `OPENAI_BASE_URL`, else the official API).
        api_key: the key sent as `Authorization: Bearer` (None: `OPENAI_API_KEY`; a local server may need none).
        organization: OpenAI organization id, sent as `OpenAI-Organization`.
        timeout: seconds one request may take (connect, each read); a run deadline shortens it.
        max_retries: retries after a connection error, timeout, 408/409/429 or 5xx, with the client's backoff.
        default_headers: extra HTTP headers on every request.
    """

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    organization: str | None = None
    timeout: float = 60.0
    max_retries: int = 2
    default_headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        base_url = self.base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = self.api_key or os.environ.get("OPENAI_API_KEY") or None
        if base_url is not None:
            if not base_url.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
            base_url = base_url.rstrip("/")
        elif api_key is None:
            raise ValueError(
                "no API key for the official OpenAI endpoint: pass api_key=... or set OPENAI_API_KEY; "
                "for a local OpenAI-compatible server pass base_url='http://HOST:PORT/v1' (or set OPENAI_BASE_URL)"
            )
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float) or self.timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {self.timeout!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        object.__setattr__(self, "base_url", base_url)
        object.__setattr__(self, "api_key", api_key)
        object.__setattr__(self, "timeout", float(self.timeout))
        object.__setattr__(self, "default_headers", dict(self.default_headers or {}))

    @property
    def url(self) -> str:
        """The API root requests go to."""
        return self.base_url or OFFICIAL_BASE_URL


class _Remote:
    """What the chat model and the embedder share: the endpoint, its clients, deadline-aware calls, clear errors."""

    model: str
    endpoint: OpenAIEndpoint
    _clients: Clients

    def _setup(self, model: str, endpoint: OpenAIEndpoint) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"{type(self).__name__} needs a model name, got {model!r}")
        self.model = model
        self.endpoint = endpoint
        self._clients = Clients(endpoint)

    @property
    def _where(self) -> str:
        return f"{type(self).__name__}({self.model!r}) at {self.endpoint.url}"

    def warm_up(self) -> None:
        """Import the client and create the sync HTTP client now (no request is sent)."""
        self._clients.sync()

    def close(self) -> None:
        """Close the sync HTTP client's connections (a later call opens new ones)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the async HTTP client of the running event loop."""
        await self._clients.aclose()

    def _call(self, call: Callable[[Any, Any], T]) -> T:
        """`call(client, timeout)`, with the client's retries, or under the run deadline with ours; clear errors."""
        oa = self._clients.openai()
        left = current_config().remaining()
        if left is None:
            try:
                return call(self._clients.sync(), oa.NOT_GIVEN)
            except (oa.OpenAIError, OSError) as e:
                raise self._error(e, self.endpoint.max_retries) from e
        deadline = time.monotonic() + left
        client = self._clients.sync(retries=False)
        attempt = 0
        while True:
            timeout = self._timeout_before(deadline)
            try:
                return call(client, timeout)
            except (oa.OpenAIError, OSError) as e:
                delay = self._next_delay(e, attempt, deadline)
                if delay is None:
                    raise self._error(e, attempt, deadline) from e
            time.sleep(delay)
            attempt += 1

    async def _acall(self, call: Callable[[Any, Any], Awaitable[T]]) -> T:
        """Async `_call`."""
        import asyncio

        oa = self._clients.openai()
        left = current_config().remaining()
        if left is None:
            try:
                return await call(self._clients.async_(), oa.NOT_GIVEN)
            except (oa.OpenAIError, OSError) as e:
                raise self._error(e, self.endpoint.max_retries) from e
        deadline = time.monotonic() + left
        client = self._clients.async_(retries=False)
        attempt = 0
        while True:
            timeout = self._timeout_before(deadline)
            try:
                return await call(client, timeout)
            except (oa.OpenAIError, OSError) as e:
                delay = self._next_delay(e, attempt, deadline)
                if delay is None:
                    raise self._error(e, attempt, deadline) from e
            await asyncio.sleep(delay)
            attempt += 1

    def _timeout_before(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._deadline_error("the run's deadline passed before the request was sent")
        return min(self.endpoint.timeout, left)

    def _next_delay(self, error: BaseException, attempt: int, deadline: float) -> float | None:
        if attempt >= self.endpoint.max_retries:
            return None
        delay = retry_delay(self._clients.openai(), error, attempt)
        if delay is None or time.monotonic() + delay >= deadline:
            return None
        return delay

    def _error(self, error: BaseException, retries: int, deadline: float | None = None) -> RemoteModelError:
        if isinstance(error, RemoteModelError):
            return error
        mapped = map_error(self._clients.openai(), error, self._where, self.endpoint.url, retries)
        if deadline is not None and isinstance(mapped, RemoteTimeoutError) and time.monotonic() >= deadline - 0.05:
            return self._deadline_error("no answer before the run's deadline")
        return mapped

    def _deadline_error(self, what: str) -> RemoteTimeoutError:
        timeout = current_config().timeout
        limit = f" of {timeout:g} s" if timeout else ""
        return RemoteTimeoutError(f"{self._where}: {what} (RunConfig timeout{limit})")

    def _stream_error(self, error: BaseException, deadline: float | None) -> RemoteModelError:
        mapped = self._error(error, 0, deadline)
        if type(mapped) is RemoteConnectionError:
            return RemoteConnectionError(f"{self._where}: the connection was lost mid-answer{root_reason(error)}")
        return mapped

    def _check_deadline(self, deadline: float | None) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise self._deadline_error("the answer ran past the run's deadline")


def _deadline() -> float | None:
    left = current_config().remaining()
    return None if left is None else time.monotonic() + left


# ============================================================================================ chat model
class OpenAIChatModel(_Remote, ChatModel):
    """A chat model served by an OpenAI-compatible endpoint (`/v1/chat/completions`).

    Args:
        model: the model name the server knows (`"gpt-4o-mini"`, `"qwen2.5-7b-instruct"`, ...).
        base_url: the API root, ending in `/v1` (default: `OPENAI_BASE_URL`, else the official API).
        api_key: the API key (default: `OPENAI_API_KEY`); required for the official API.
        organization: OpenAI organization id.
        timeout: seconds one request may take; shortened to the time left when the run has a deadline.
        max_retries: retries on connection errors, timeouts, 408/409/429 and 5xx (the client's backoff,
            honouring `retry-after`).
        default_headers: extra HTTP headers on every request.
        tools: JSON-schema function specs the model may call (`{"name", "description", "parameters"}` or the
            API's `{"type": "function", "function": {...}}`); replies then may carry `tool_calls`.
        tool_choice: "auto", "none", "required", the name of one of `tools`, or the API's dict.
        response_format: "json_object", or a dict such as `{"type": "json_schema", "json_schema": {...}}`.
        stream_usage: ask for token usage at the end of a stream (`stream_options.include_usage`); turn off for
            servers that reject `stream_options`.
        options / **overrides: generation options (`max_tokens`, `temperature`, `top_p`, `stop`, `seed`, and
            `extra={...}` for any other request field, sent as is).
    """

    blocking = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        organization: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        default_headers: Mapping[str, str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: str | Mapping[str, Any] | None = None,
        stream_usage: bool = True,
        options: GenerationConfig | None = None,
        **overrides: Any,
    ) -> None:
        ChatModel.__init__(self, options=options, **overrides)
        endpoint = OpenAIEndpoint(base_url, api_key, organization, timeout, max_retries, default_headers or {})
        self._setup(model, endpoint)
        self.stream_usage = stream_usage
        self.tools: tuple[dict[str, Any], ...] = ()
        self.tool_choice: Any = None
        self.response_format: dict[str, Any] | None = None
        self._set_tools(tools or (), tool_choice)
        self.response_format = response_format_param(response_format)

    def __repr__(self) -> str:
        return f"OpenAIChatModel({self.model!r}, base_url={self.endpoint.url!r})"

    # ----------------------------------------------------------------------------------------- binding
    def bind(self, **options: Any) -> OpenAIChatModel:
        """A copy with options changed: generation options, and `tools`, `tool_choice`, `response_format`.

        The copy shares this model's HTTP clients.
        """
        tools = options.pop("tools", None)
        choice = options.pop("tool_choice", None)
        fmt = options.pop("response_format", None)
        bound = super().bind(**options)
        if tools is not None or choice is not None:
            if choice is None and tools and isinstance(self.tool_choice, str):
                choice = self.tool_choice  # "auto", "none" or "required" carries over to new tools
            bound._set_tools(self.tools if tools is None else tools, choice)
        if fmt is not None:
            bound.response_format = response_format_param(fmt)
        return bound

    def bind_tools(
        self, tools: Sequence[Mapping[str, Any]], *, tool_choice: str | Mapping[str, Any] | None = None
    ) -> OpenAIChatModel:
        """A copy that offers `tools` to the model (JSON-schema function specs), with an optional `tool_choice`."""
        return self.bind(tools=tools, tool_choice=tool_choice)

    def _set_tools(self, tools: Sequence[Mapping[str, Any]], choice: str | Mapping[str, Any] | None) -> None:
        if isinstance(tools, Mapping | str):
            raise TypeError("tools must be a list of function specs (wrap a single tool in a list)")
        self.tools = tuple(tool_spec(t, i) for i, t in enumerate(tools))
        names = [t["function"]["name"] for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique, got {', '.join(names)}")
        self.tool_choice = tool_choice_param(choice, self.tools)

    # ----------------------------------------------------------------------------------------- requests
    def request_params(self, messages: list[Message], options: GenerationConfig, *, stream: bool) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` for `messages` (what goes on the wire)."""
        params: dict[str, Any] = {"model": self.model, "messages": [m.to_dict() for m in messages]}
        if options.max_tokens is not None:
            params["max_tokens"] = options.max_tokens
        if options.temperature is not None:
            params["temperature"] = options.temperature
        if options.top_p is not None:
            params["top_p"] = options.top_p
        if options.stop:
            params["stop"] = list(options.stop[:_MAX_STOP])
        if options.seed is not None:
            params["seed"] = options.seed
        if self.tools:
            params["tools"] = [dict(t) for t in self.tools]
        if self.tool_choice is not None:
            params["tool_choice"] = self.tool_choice
        if self.response_format is not None:
            params["response_format"] = self.response_format
        if stream:
            params["stream"] = True
            if self.stream_usage:
                params["stream_options"] = {"include_usage": True}
        if options.extra:
            params["extra_body"] = dict(options.extra)
        return params

    def _generate(self, messages: list[Message], options: GenerationConfig) -> Message:
        params = self.request_params(messages, options, stream=False)
        completion = self._call(lambda client, timeout: client.chat.completions.create(**params, timeout=timeout))
        return message_from_completion(completion, self._where)

    async def _agenerate(self, messages: list[Message], options: GenerationConfig) -> Message:
        params = self.request_params(messages, options, stream=False)

        async def create(client: Any, limit: Any) -> Any:
            return await client.chat.completions.create(**params, timeout=limit)

        return message_from_completion(await self._acall(create), self._where)

    def _stream(self, messages: list[Message], options: GenerationConfig) -> Iterator[MessageChunk]:
        params = self.request_params(messages, options, stream=True)
        deadline = _deadline()
        stream = self._call(lambda client, timeout: client.chat.completions.create(**params, timeout=timeout))
        oa = self._clients.openai()
        assembler = StreamAssembler(self._where)
        try:
            for chunk in stream:
                piece = assembler.feed(chunk)
                if piece is not None:
                    yield piece
                self._check_deadline(deadline)
            last = assembler.finish()
        except RemoteModelError:
            raise
        except (oa.OpenAIError, OSError) as e:
            raise self._stream_error(e, deadline) from e
        finally:
            stream.close()
        if last is not None:
            yield last

    async def _astream(self, messages: list[Message], options: GenerationConfig) -> AsyncIterator[MessageChunk]:
        params = self.request_params(messages, options, stream=True)
        deadline = _deadline()

        async def create(client: Any, limit: Any) -> Any:
            return await client.chat.completions.create(**params, timeout=limit)

        stream = await self._acall(create)
        oa = self._clients.openai()
        assembler = StreamAssembler(self._where)
        try:
            async for chunk in stream:
                piece = assembler.feed(chunk)
                if piece is not None:
                    yield piece
                self._check_deadline(deadline)
            last = assembler.finish()
        except RemoteModelError:
            raise
        except (oa.OpenAIError, OSError) as e:
            raise self._stream_error(e, deadline) from e
        finally:
            await stream.close()
        if last is not None:
            yield last


# ============================================================================================ embedder
class OpenAIEmbedder(_Remote, Embedder):
    """Text embeddings from an OpenAI-compatible endpoint (`/v1/embeddings`).

    Texts are sent `batch_size` per request (the API caps inputs per request); vectors come back in input order.
    `aembed` sends up to `max_concurrency` requests at once.

    Args:
        model: the embedding model name (`"text-embedding-3-small"`, `"bge-m3"`, ...).
        base_url, api_key, organization, timeout, max_retries, default_headers: as for `OpenAIChatModel`.
        dimensions: ask for vectors of this size (models that support shortening, e.g. text-embedding-3-*).
        batch_size: texts per request (default 256).
        max_concurrency: requests in flight at once in `aembed` (default 4).
        encoding_format: "base64" (the official client's default: ~10x less CPU to read than JSON numbers; a
            server that ignores it and sends numbers still works) or "float" for a server that rejects it.
    """

    blocking = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        organization: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        default_headers: Mapping[str, str] | None = None,
        dimensions: int | None = None,
        batch_size: int = 256,
        max_concurrency: int = 4,
        encoding_format: Literal["float", "base64"] = "base64",
    ) -> None:
        endpoint = OpenAIEndpoint(base_url, api_key, organization, timeout, max_retries, default_headers or {})
        self._setup(model, endpoint)
        for name, value in (("batch_size", batch_size), ("max_concurrency", max_concurrency)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
        ):
            raise ValueError(f"dimensions must be an int >= 1, got {dimensions!r}")
        if encoding_format not in ("float", "base64"):
            raise ValueError(f"encoding_format must be 'float' or 'base64', got {encoding_format!r}")
        self.dimensions = dimensions
        self.dim = dimensions
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.encoding_format = encoding_format

    def __repr__(self) -> str:
        return f"OpenAIEmbedder({self.model!r}, base_url={self.endpoint.url!r})"

    def _params(self, texts: list[str]) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": self.encoding_format}
        if self.dimensions is not None:
            params["dimensions"] = self.dimensions
        return params

    def _chunks(self, texts: list[str]) -> list[list[str]]:
        return [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order; `batch_size` texts per request, one request after another."""
        out: list[list[float]] = []
        for chunk in self._chunks(list(texts)):
            params = self._params(chunk)

            def create(client: Any, limit: Any, params: dict[str, Any] = params) -> Any:
                return client.embeddings.create(**params, timeout=limit)

            out.extend(self._vectors(self._call(create), len(chunk)))
        return out

    async def aembed(self, texts: list[str]) -> list[list[float]]:
        """Async `embed`: the requests run concurrently, at most `max_concurrency` at once; order is kept."""
        import asyncio

        sem = asyncio.Semaphore(self.max_concurrency)

        async def one(chunk: list[str]) -> list[list[float]]:
            params = self._params(chunk)

            async def create(client: Any, limit: Any) -> Any:
                return await client.embeddings.create(**params, timeout=limit)

            async with sem:
                return self._vectors(await self._acall(create), len(chunk))

        parts = await asyncio.gather(*(one(c) for c in self._chunks(list(texts))))
        return [v for part in parts for v in part]

    def _vectors(self, response: Any, expected: int) -> list[list[float]]:
        data = sorted(getattr(response, "data", None) or (), key=lambda d: d.index)
        if len(data) != expected or [d.index for d in data] != list(range(expected)):
            raise RemoteResponseError(f"{self._where}: sent {expected} texts, got {len(data)} vectors back")
        vectors = [decode_vector(d.embedding) for d in data]
        if self.dim is None and vectors:
            self.dim = len(vectors[0])
        return vectors
