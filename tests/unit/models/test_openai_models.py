"""OpenAIChatModel and OpenAIEmbedder against a fake OpenAI-compatible server on a real local socket."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAIServer, fake_vector

from yulian.core.config import RunConfig
from yulian.core.messages import Message, MessageChunk, ToolCall, assistant, tool, user
from yulian.core.runnable import aggregate
from yulian.models.openai_models import (
    OpenAIChatModel,
    OpenAIEmbedder,
    RemoteAuthError,
    RemoteConnectionError,
    RemoteRateLimitError,
    RemoteRequestError,
    RemoteResponseError,
    RemoteServerError,
    RemoteTimeoutError,
)
from yulian.prompts import ChatPrompt

openai = pytest.importorskip("openai")

KEY = "sk-test-123"
CHAT = "/v1/chat/completions"
EMB = "/v1/embeddings"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(server: FakeOpenAIServer) -> None:
    server.reset()
    server.chunk_delay = 0.0
    server.reverse_embeddings = False


@pytest.fixture
def make(server: FakeOpenAIServer) -> Callable[..., OpenAIChatModel]:
    def build(**kwargs: Any) -> OpenAIChatModel:
        kwargs.setdefault("base_url", server.base_url)
        kwargs.setdefault("api_key", KEY)
        return OpenAIChatModel("fake-model", **kwargs)

    return build


def f32(vector: list[float]) -> list[float]:
    """`vector` rounded to float32, as it comes back base64-encoded."""
    return list(struct.unpack(f"<{len(vector)}f", struct.pack(f"<{len(vector)}f", *vector)))


async def collect(stream: AsyncIterator[MessageChunk]) -> list[MessageChunk]:
    return [c async for c in stream]


# ============================================================================================ chat: basics
def test_invoke_returns_the_reply_with_usage(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    reply = make().invoke("hello there")
    assert reply == assistant("echo: hello there")
    assert reply.metadata["finish_reason"] == "stop"
    assert reply.metadata["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    request = server.requests[-1]
    assert request.path == CHAT and request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["messages"] == [{"role": "user", "content": "hello there"}]
    assert "stream" not in request.body


def test_stream_yields_pieces_that_join_to_the_invoke_text(
    make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer
) -> None:
    model = make()
    text = model.invoke("one two three four").content
    chunks = list(model.stream("one two three four"))
    assert len([c for c in chunks if c.content]) >= 4
    joined = aggregate(chunks)
    assert joined.content == text == "echo: one two three four"
    assert joined.metadata["finish_reason"] == "stop"
    assert joined.metadata["usage"]["completion_tokens"] == 5
    body = server.requests[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_stream_usage_can_be_turned_off(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    joined = aggregate(make(stream_usage=False).stream("hi"))
    assert "stream_options" not in server.requests[-1].body
    assert "usage" not in joined.metadata and joined.metadata["finish_reason"] == "stop"


def test_generation_options_are_sent(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    model = make(temperature=0.3, top_p=0.9, max_tokens=3, seed=7, stop=["four"], extra={"presence_penalty": 0.5})
    reply = model.invoke("one two three four five")
    body = server.requests[-1].body
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["seed"] == 7
    assert body["max_tokens"] == 3 and body["stop"] == ["four"] and body["presence_penalty"] == 0.5
    assert reply.content == "echo: one two" and reply.metadata["finish_reason"] == "length"
    model.bind(temperature=0).invoke("x")
    assert server.requests[-1].body["temperature"] == 0


def test_more_than_four_stops_are_cut_on_our_side(
    make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer
) -> None:
    server.reply("alpha beta gamma delta")
    reply = make(stop=["s1", "s2", "s3", "s4", "gamma"]).invoke("x")
    assert server.requests[-1].body["stop"] == ["s1", "s2", "s3", "s4"]  # the API takes at most 4
    assert reply.content == "alpha beta "


def test_works_in_a_chain_with_batch(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    chain = ChatPrompt([("system", "Be brief."), ("user", "{q}")]) | make() | (lambda m: m.content.upper())
    assert chain.invoke({"q": "ping"}) == "ECHO: PING"
    assert chain.batch([{"q": "a"}, {"q": "b"}, {"q": "c"}], max_concurrency=3) == ["ECHO: A", "ECHO: B", "ECHO: C"]
    assert server.requests[0].body["messages"][0] == {"role": "system", "content": "Be brief."}


# ============================================================================================ tools, formats
def test_tool_call_round_trip(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    model = make().bind_tools([WEATHER, TIME], tool_choice="auto")
    server.reply(tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": {"city": "北京"}}])
    first = model.invoke("天气如何?")
    assert first.tool_calls == (ToolCall("call_1", "get_weather", {"city": "北京"}),)
    assert first.content == "" and first.metadata["finish_reason"] == "tool_calls"
    sent = server.requests[-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
    assert sent["tools"][0] == {"type": "function", "function": WEATHER} and sent["tool_choice"] == "auto"

    server.reply("北京 is sunny, 25°C.")
    history = [user("天气如何?"), first, tool('{"temp": 25, "sky": "sunny"}', tool_call_id="call_1")]
    final = model.invoke(history)
    assert final.content == "北京 is sunny, 25°C." and not final.tool_calls
    sent_messages = server.requests[-1].body["messages"]
    assert sent_messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}
        ],
    }
    assert sent_messages[2] == {"role": "tool", "content": '{"temp": 25, "sky": "sunny"}', "tool_call_id": "call_1"}


def test_streamed_tool_call_arguments_are_assembled(
    make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer
) -> None:
    args = {"city": "Shanghai", "days": 3, "units": "metric", "note": "a long argument so it arrives in pieces"}
    server.reply(
        "Let me check.",
        tool_calls=[
            {"id": "c1", "name": "get_weather", "arguments": args},
            {"id": "c2", "name": "get_time", "arguments": {}},
        ],
    )
    chunks = list(make(tools=[WEATHER, TIME], tool_choice="required").stream("weather and time"))
    assert sum(1 for c in chunks if c.tool_calls) == 1  # whole calls, once, on the last chunk
    joined = aggregate(chunks)
    assert joined.content == "Let me check."
    assert joined.tool_calls == (ToolCall("c1", "get_weather", args), ToolCall("c2", "get_time", {}))
    assert joined.metadata["finish_reason"] == "tool_calls"
    assert server.requests[-1].body["tool_choice"] == "required"


def test_tool_choice_by_name_and_bad_specs(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    model = make(tools=[WEATHER], tool_choice="get_weather")
    server.reply(tool_calls=[{"id": "c", "name": "get_weather", "arguments": '{"city": "Paris"}'}])
    assert model.invoke("x").tool_calls[0].arguments == {"city": "Paris"}
    assert server.requests[-1].body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    with pytest.raises(ValueError, match=r"tool_choice 'get_wether'.*tools: get_weather"):
        model.bind(tool_choice="get_wether")
    with pytest.raises(ValueError, match=r"tools\[1\] needs a function name.*got keys: description"):
        make(tools=[WEATHER, {"description": "no name"}])
    with pytest.raises(TypeError, match="wrap a single tool in a list"):
        make(tools=WEATHER)
    required = make(tools=[WEATHER], tool_choice="required")
    assert required.bind_tools([TIME]).tool_choice == "required"  # a mode carries over to new tools
    assert model.bind_tools([TIME]).tool_choice is None  # a choice naming a tool does not
    assert required.bind(tools=[]).tools == () and required.bind(tools=[]).tool_choice is None


def test_bad_tool_arguments_from_the_model_are_a_clear_error(
    make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer
) -> None:
    server.reply(tool_calls=[{"id": "c", "name": "get_weather", "arguments": '{"city": "Par'}])
    with pytest.raises(RemoteResponseError, match=r"tool 'get_weather' with arguments that are not valid JSON"):
        make(tools=[WEATHER]).invoke("x")


def test_response_format_is_passed_through(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    make(response_format="json_object").invoke("x")
    assert server.requests[-1].body["response_format"] == {"type": "json_object"}
    schema = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": True}}
    make().bind(response_format=schema).invoke("x")
    assert server.requests[-1].body["response_format"] == schema
    with pytest.raises(ValueError, match="response_format 'json'"):
        make(response_format="json")


# ============================================================================================ retries, errors
def test_429_is_retried_honouring_retry_after(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    model = make(max_retries=2)
    model.invoke("warm")  # import, client and connection set up outside the timing
    server.fail(
        429, "Rate limit reached", type="requests", code="rate_limit_exceeded", headers={"retry-after-ms": "150"}
    )
    start = time.perf_counter()
    assert model.invoke("again").content == "echo: again"
    elapsed = time.perf_counter() - start
    assert len(server.bodies()) == 3  # warm, 429, retry
    assert 0.15 <= elapsed < 0.37, elapsed  # the server's 150 ms, not the client's default 0.375-0.5 s backoff


def test_rate_limit_after_retries_is_clear(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    for _ in range(2):
        server.fail(429, "You exceeded your current quota.", type="insufficient_quota", headers={"retry-after-ms": "1"})
    with pytest.raises(RemoteRateLimitError, match=r"rate limited after 1 retry \(429: You exceeded") as info:
        make(max_retries=1).invoke("x")
    assert isinstance(info.value.__cause__, openai.RateLimitError) and info.value.status_code == 429
    assert len(server.bodies()) == 2


def test_server_errors_are_retried_then_reported(
    make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer
) -> None:
    server.fail(500, "boom", headers={"retry-after-ms": "1"})
    assert make(max_retries=1).invoke("x").content == "echo: x"
    for _ in range(2):
        server.fail(503, "overloaded", headers={"retry-after-ms": "1"})
    with pytest.raises(RemoteServerError, match=r"server error after 1 retry \(503: overloaded\)"):
        make(max_retries=1).invoke("x")


def test_401_is_a_clear_auth_error_and_not_retried(
    make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer
) -> None:
    with pytest.raises(RemoteAuthError, match=r"the endpoint rejected the API key \(401: Incorrect API key") as info:
        make(api_key="sk-wrong", max_retries=2).invoke("x")
    assert isinstance(info.value, PermissionError) and isinstance(info.value.__cause__, openai.AuthenticationError)
    assert "sk-wrong" not in str(info.value)
    assert len(server.requests) == 1


def test_bad_request_carries_the_server_message(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    server.fail(400, "'temperature' must be <= 2", type="invalid_request_error", param="temperature")
    with pytest.raises(RemoteRequestError, match=r"refused the request \(400: 'temperature' must be <= 2\)") as info:
        make().invoke("x")
    assert isinstance(info.value, ValueError) and isinstance(info.value.__cause__, openai.BadRequestError)
    server.fail(404, "The model 'nope' does not exist", type="invalid_request_error", code="model_not_found")
    with pytest.raises(RemoteRequestError, match=r"404: The model 'nope' does not exist.*ends with /v1"):
        make().invoke("x")


def test_unreachable_endpoint_names_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # a port nobody listens on once the socket is closed
    url = f"http://127.0.0.1:{port}/v1"
    model = OpenAIChatModel("m", base_url=url, max_retries=0)
    with pytest.raises(RemoteConnectionError, match=f"cannot reach {url}") as info:
        model.invoke("x")
    assert isinstance(info.value, ConnectionError) and isinstance(info.value.__cause__, openai.APIConnectionError)


def test_dropped_connection_is_a_connection_error(
    make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer
) -> None:
    server.drop()
    with pytest.raises(RemoteConnectionError):
        make(max_retries=0).invoke("x")


# ============================================================================================ timeouts
def test_run_timeout_bounds_the_request(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    model = make(max_retries=2)
    model.invoke("warm")
    server.hang(5)
    start = time.perf_counter()
    with pytest.raises(RemoteTimeoutError, match=r"no answer before the run's deadline \(RunConfig timeout of 0.3 s\)"):
        model.invoke("x", RunConfig(timeout=0.3))
    assert time.perf_counter() - start < 1.0  # no retries past the deadline
    assert len(server.bodies()) == 2


def test_model_timeout_is_a_timeout_error(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    server.hang(5)
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match="no answer in time"):
        make(timeout=0.2, max_retries=0).invoke("x")
    assert time.perf_counter() - start < 1.0


def test_retries_under_a_deadline(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    model = make(max_retries=2)
    server.fail(429, "slow down", headers={"retry-after-ms": "20"})
    assert model.invoke("x", RunConfig(timeout=5)).content == "echo: x"  # retried within the deadline
    server.fail(429, "slow down", headers={"retry-after": "10"})
    start = time.perf_counter()
    with pytest.raises(RemoteRateLimitError):
        model.invoke("x", RunConfig(timeout=2))  # waiting 10 s would pass the deadline: fail now
    assert time.perf_counter() - start < 1.0


def test_stream_past_the_deadline_stops(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    server.chunk_delay = 0.1
    server.reply(" ".join(["word"] * 30))
    got: list[str] = []

    def consume() -> None:
        for chunk in make().stream("x", RunConfig(timeout=0.45)):
            got.append(chunk.content)

    start = time.perf_counter()
    with pytest.raises(RemoteTimeoutError, match="ran past the run's deadline") as info:
        consume()
    assert info.value.__cause__ is None
    assert 1 <= len(got) < 10 and time.perf_counter() - start < 1.5


# ============================================================================================ async
def test_async_invoke_and_stream_without_threads(
    make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sync_path(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("async calls must not run the sync path in a worker thread")

    monkeypatch.setattr(OpenAIChatModel, "_generate", sync_path)
    monkeypatch.setattr(OpenAIChatModel, "_stream", sync_path)
    model = make()

    async def main() -> tuple[Message, list[MessageChunk], list[Message]]:
        reply = await model.ainvoke("async one")
        chunks = await collect(model.astream("async two three"))
        many = await model.abatch(["a", "b", "c"])
        await model.aclose()
        return reply, chunks, many

    reply, chunks, many = asyncio.run(main())
    assert reply.content == "echo: async one"
    assert len([c for c in chunks if c.content]) >= 3 and aggregate(chunks).content == "echo: async two three"
    assert aggregate(chunks).metadata["usage"]["total_tokens"] > 0
    assert [m.content for m in many] == ["echo: a", "echo: b", "echo: c"]


def test_async_requests_run_concurrently(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    model = make()
    server.chunk_delay = 0.1  # 5 events per stream: each call takes ~0.5 s

    async def main() -> float:
        await model.ainvoke("warm")
        start = time.perf_counter()
        await asyncio.gather(*(collect(model.astream("x")) for _ in range(4)))
        return time.perf_counter() - start

    assert asyncio.run(main()) < 1.2  # ~0.5 s together, ~2 s one after another


def test_async_retry_and_errors(make: Callable[..., OpenAIChatModel], server: FakeOpenAIServer) -> None:
    model = make(max_retries=1)

    async def main() -> None:
        server.fail(429, "slow", headers={"retry-after-ms": "10"})
        assert (await model.ainvoke("x")).content == "echo: x"
        server.fail(429, "slow", headers={"retry-after-ms": "10"})
        assert (await model.ainvoke("y", RunConfig(timeout=5))).content == "echo: y"
        with pytest.raises(RemoteAuthError):
            await make(api_key="bad").ainvoke("x")
        server.hang(5)
        start = time.perf_counter()
        with pytest.raises(RemoteTimeoutError, match="deadline"):
            await model.ainvoke("x", RunConfig(timeout=0.3))
        assert time.perf_counter() - start < 1.0

    asyncio.run(main())


# ============================================================================================ set-up
def test_clients_are_created_once_and_shared_by_copies(make: Callable[..., OpenAIChatModel]) -> None:
    model = make()
    model.invoke("a")
    client = model._clients.sync()
    bound = model.bind(temperature=0)
    bound.invoke("b")
    model.bind_tools([WEATHER]).invoke("c")
    assert bound._clients.sync() is client and model._clients.sync() is client


def test_endpoint_settings_and_headers(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url + "/")
    model = OpenAIChatModel("env-model", organization="org-1", default_headers={"x-team": "yulian"})
    assert model.invoke("env").content == "echo: env"
    headers = server.requests[-1].headers
    assert headers["authorization"] == f"Bearer {KEY}" and headers["openai-organization"] == "org-1"
    assert headers["x-team"] == "yulian"
    assert KEY not in repr(model) and KEY not in repr(model.endpoint)


def test_official_endpoint_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match=r"no API key for the official OpenAI endpoint.*OPENAI_API_KEY.*base_url"):
        OpenAIChatModel("gpt-4o")
    with pytest.raises(ValueError, match="no API key"):
        OpenAIEmbedder("text-embedding-3-small")
    assert OpenAIChatModel("gpt-4o", api_key="k").endpoint.url == "https://api.openai.com/v1"
    with pytest.raises(ValueError, match="base_url must start with http"):
        OpenAIChatModel("m", base_url="localhost:8000/v1")
    with pytest.raises(ValueError, match="timeout must be"):
        OpenAIChatModel("m", api_key="k", timeout=0)
    with pytest.raises(ValueError, match="max_retries must be"):
        OpenAIChatModel("m", api_key="k", max_retries=-1)
    with pytest.raises(TypeError, match="Did you mean 'temperature'"):
        OpenAIChatModel("m", api_key="k", temprature=0)


def test_keyless_local_server(server: FakeOpenAIServer) -> None:
    server.api_key = None
    try:
        assert OpenAIChatModel("m", base_url=server.base_url).invoke("hi").content == "echo: hi"
    finally:
        server.api_key = KEY


def test_construction_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from yulian.models.openai_models import OpenAIChatModel, OpenAIEmbedder\n"
        "OpenAIChatModel('m', base_url='http://127.0.0.1:9/v1').bind(temperature=0)\n"
        "OpenAIEmbedder('e', base_url='http://127.0.0.1:9/v1')\n"
        "print(','.join(m for m in ('openai', 'httpx', 'httpx2', 'pydantic', 'asyncio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ============================================================================================ embeddings
def test_embeddings_are_batched_and_keep_order(server: FakeOpenAIServer) -> None:
    server.reverse_embeddings = True  # the server lists results out of order: the client sorts by index
    embedder = OpenAIEmbedder("fake-embedder", base_url=server.base_url, api_key=KEY)
    texts = [f"text number {i}" for i in range(600)]
    vectors = embedder.batch(texts)
    sizes = [len(b["input"]) for b in server.bodies(EMB)]
    assert sizes == [256, 256, 88]
    assert vectors == [f32(fake_vector(t, 8)) for t in texts]  # base64 float32 by default
    assert embedder.dim == 8
    assert embedder.invoke("one") == f32(fake_vector("one", 8))
    assert server.bodies(EMB)[-1]["encoding_format"] == "base64"


def test_embedding_options_and_json_floats(server: FakeOpenAIServer) -> None:
    embedder = OpenAIEmbedder(
        "e", base_url=server.base_url, api_key=KEY, dimensions=4, batch_size=2, encoding_format="float"
    )
    vectors = embedder.batch(["a", "b", "c"])
    bodies = server.bodies(EMB)
    assert [b["input"] for b in bodies] == [["a", "b"], ["c"]]
    assert all(b["dimensions"] == 4 and b["encoding_format"] == "float" for b in bodies)
    assert vectors == [fake_vector(t, 4) for t in "abc"] and embedder.dim == 4  # JSON round-trips floats exactly
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        OpenAIEmbedder("e", base_url=server.base_url, batch_size=0)


def test_embedding_errors_are_clear(server: FakeOpenAIServer) -> None:
    embedder = OpenAIEmbedder("e", base_url=server.base_url, api_key=KEY)
    with pytest.raises(RemoteRequestError, match="cannot contain empty strings"):
        embedder.batch(["fine", ""])
    with pytest.raises(RemoteAuthError):
        OpenAIEmbedder("e", base_url=server.base_url, api_key="nope").invoke("x")


def test_async_embeddings_are_concurrent_and_ordered(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def sync_path(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("aembed must not run embed in a worker thread")

    monkeypatch.setattr(OpenAIEmbedder, "embed", sync_path)
    embedder = OpenAIEmbedder("e", base_url=server.base_url, api_key=KEY, batch_size=100, dimensions=6)
    texts = [f"t{i}" for i in range(600)]
    vectors = asyncio.run(embedder.abatch(texts))
    assert len(server.bodies(EMB)) == 6
    assert vectors == [f32(fake_vector(t, 6)) for t in texts]


def test_fake_server_speaks_the_protocol(server: FakeOpenAIServer) -> None:
    """The fake is checked against the official client directly, so the tests above test our code, not it."""
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "echo: x"
    events = list(
        client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "a b"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(e.choices[0].delta.content or "" for e in events if e.choices) == "echo: a b"
    assert events[-1].usage is not None and events[-1].usage.completion_tokens == 3
    emb = client.embeddings.create(model="e", input=["a"], encoding_format="float")
    assert emb.data[0].embedding == pytest.approx(fake_vector("a", 8))
    client.close()
