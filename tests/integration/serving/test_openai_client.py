"""The official `openai` client, unchanged, against `yulian serve` on a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from yulian.serving import KeyConfig, ModelConfig, ServeConfig, hash_key  # noqa: E402
from yulian.serving.app import create_app  # noqa: E402
from yulian.testing import FakeChatModel, FakeEmbedder  # noqa: E402

pytestmark = pytest.mark.integration

KEY = "yl-integration"
SLOW_KEY = "yl-slow"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    import httpx
    import uvicorn

    config = ServeConfig(
        models=[ModelConfig(name="bot", model=FakeChatModel()), ModelConfig(name="emb", model=FakeEmbedder(dim=16))],
        keys=[
            KeyConfig(id="it", sha256=hash_key(KEY), models=["*"]),
            KeyConfig(id="slow", sha256=hash_key(SLOW_KEY), models=["*"], rate_per_minute=120, burst=1),
        ],
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    else:
        pytest.fail("the server did not become ready")
    yield url + "/v1"
    server.should_exit = True
    thread.join(timeout=10)


def test_chat_and_stream(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key=KEY)
    reply = client.chat.completions.create(
        model="bot", messages=[{"role": "user", "content": "我的卡丢了 please help"}], max_tokens=3, temperature=0
    )
    assert reply.choices[0].message.content == "我的卡"
    assert reply.choices[0].finish_reason == "length" and reply.usage is not None and reply.usage.total_tokens > 0
    stream = client.chat.completions.create(
        model="bot",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stop=["three"],
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two "
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_embeddings(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key=KEY)
    result = client.embeddings.create(model="emb", input=["red apple", "blue sky"])  # base64 on the wire
    expected = FakeEmbedder(dim=16).embed(["red apple", "blue sky"])
    for got, want in zip(result.data, expected, strict=True):
        assert got.embedding == pytest.approx(want, abs=1e-6)
    floats = client.embeddings.create(model="emb", input="red apple", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(expected[0], abs=1e-9)


def test_errors_map_to_client_exceptions(base_url: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="yl-wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="bot", messages=[])
    assert {m.id for m in client.models.list()} == {"bot", "emb"}


def test_rate_limit_429_is_retried_after_retry_after(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key=SLOW_KEY, max_retries=0)
    client.embeddings.create(model="emb", input="x")  # takes the bucket's only token (2 per second refill)
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="emb", input="x")
    retrying = openai.OpenAI(base_url=base_url, api_key=SLOW_KEY, max_retries=3)
    started = time.perf_counter()
    result: Any = retrying.embeddings.create(model="emb", input="x")  # 429, waits retry-after-ms, succeeds
    assert len(result.data) == 1 and time.perf_counter() - started < 5


def test_completions(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key=KEY)
    result = client.completions.create(model="bot", prompt="say this back", max_tokens=2)
    assert result.choices[0].text == "say this" and result.choices[0].finish_reason == "length"
    pieces = [c.choices[0].text for c in client.completions.create(model="bot", prompt="a b c", stream=True)]
    assert "".join(pieces) == "a b c" and len(pieces) >= 3
