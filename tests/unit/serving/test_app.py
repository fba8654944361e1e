"""The app through FastAPI's TestClient: auth, scopes, limits, every route's shape, errors, audit, metrics."""

from __future__ import annotations

import base64
import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import AUTH, LIMITED_KEY, SlowLoading, config

from yulian.serving import KeyConfig, LimitsConfig, ModelConfig, ServeConfig, hash_key
from yulian.serving.app import create_app


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


# ============================================================================================ auth
def test_every_route_but_health_needs_a_key(client: Any) -> None:
    paths = {(m, r.path) for r in client.app.routes for m in getattr(r, "methods", ()) if m in ("GET", "POST")}
    assert len(paths) >= 14
    for method, path in sorted(paths):
        concrete = path.replace("{name}", "upper").replace("{model:path}", "bot")
        response = client.request(method, concrete, json={})
        if path in ("/healthz", "/readyz"):
            assert response.status_code == 200, path
        else:
            assert response.status_code == 401, (method, path)
            assert _error(response)["type"] == "authentication_error"
            assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/nowhere").status_code == 401  # unknown paths too: deny by default
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer yl-wrong"})
    assert wrong.status_code == 401
    assert client.get("/v1/models", headers={"x-api-key": "yl-test-key"}).status_code == 200


def test_scopes_limit_models_and_metrics(client: Any) -> None:
    limited = {"Authorization": f"Bearer {LIMITED_KEY}"}
    ids = [m["id"] for m in client.get("/v1/models", headers=limited).json()["data"]]
    assert ids == ["emb"]
    r = client.post(
        "/v1/chat/completions", headers=limited, json={"model": "bot", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 403 and _error(r)["code"] == "model_not_allowed"
    assert client.get("/metrics", headers=limited).status_code == 403
    assert client.post("/v1/chains/upper/invoke", headers=limited, json={"input": "x"}).status_code == 403


def test_unknown_model_is_404_and_wrong_task_400(client: Any) -> None:
    r = client.post("/v1/embeddings", headers=AUTH, json={"model": "nope", "input": "x"})
    assert r.status_code == 404 and _error(r)["param"] == "model"
    r = client.post("/v1/embeddings", headers=AUTH, json={"model": "bot", "input": "x"})
    assert r.status_code == 400 and _error(r)["code"] == "wrong_task"


# ============================================================================================ limits
def test_rate_limit_answers_429_with_retry_after(client: Any) -> None:
    limited = {"Authorization": f"Bearer {LIMITED_KEY}"}
    codes = [
        client.post("/v1/embeddings", headers=limited, json={"model": "emb", "input": "x"}).status_code
        for _ in range(5)
    ]
    assert codes == [200, 200, 200, 200, 429]  # burst 4, then 1 per second
    r = client.post("/v1/embeddings", headers=limited, json={"model": "emb", "input": "x"})
    assert r.status_code == 429 and _error(r)["type"] == "rate_limit_error"
    assert r.headers["retry-after"] == "1" and 0 < int(r.headers["retry-after-ms"]) <= 1000


def test_size_and_token_limits(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    cfg = config(limits=LimitsConfig(max_request_bytes=2000, max_input_tokens=50, max_output_tokens=20, max_items=3))
    with TestClient(create_app(cfg), raise_server_exceptions=False) as c:
        time.sleep(0.05)
        r = c.post("/v1/embeddings", headers=AUTH, json={"model": "emb", "input": "x" * 5000})
        assert r.status_code == 413 and "limit is 2,000" in _error(r)["message"]
        r = c.post("/v1/embeddings", headers=AUTH, json={"model": "emb", "input": "word " * 60})
        assert r.status_code == 400 and _error(r)["code"] == "context_length_exceeded"
        r = c.post("/v1/embeddings", headers=AUTH, json={"model": "emb", "input": ["a", "b", "c", "d"]})
        assert r.status_code == 400 and _error(r)["code"] == "too_many_inputs"
        msgs = [{"role": "user", "content": "hi"}]
        r = c.post("/v1/chat/completions", headers=AUTH, json={"model": "bot", "messages": msgs, "max_tokens": 21})
        assert r.status_code == 400 and _error(r)["param"] == "max_tokens"
        body = json.dumps({"model": "emb", "input": "y" * 3000}).encode()
        r = c.post(
            "/v1/embeddings",
            headers={**AUTH, "content-type": "application/json"},
            content=iter([body[:1000], body[1000:]]),
        )  # chunked: no content-length
        assert r.status_code == 413


def test_concurrency_cap(tmp_path: Path) -> None:
    from yulian.serving.auth import KeyStore
    from yulian.serving.limits import Limiter

    store = KeyStore([KeyConfig(id="a", sha256=hash_key("k"), models=["*"], max_concurrency=1)])
    principal = store.authenticate("k")
    assert principal is not None
    limiter = Limiter(LimitsConfig())
    slot = limiter.admit(principal)
    assert not isinstance(slot, tuple)
    refused = limiter.admit(principal)
    assert isinstance(refused, tuple) and "concurrent" in refused[0]
    slot.release()
    slot.release()  # idempotent
    assert limiter.in_flight("a") == 0 and not isinstance(limiter.admit(principal), tuple)


# ============================================================================================ routes
def test_chat_completion_with_options(client: Any) -> None:
    bot = client.app_state.models["bot"].obj
    body = {
        "model": "bot",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three four five"}],
        "max_tokens": 3,
        "temperature": 0.5,
        "stop": ["four"],
        "seed": 7,
    }
    r = client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "chat.completion" and data["model"] == "bot"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "one two three"}
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    options = bot.call_options[-1]
    assert (options.max_tokens, options.temperature, options.stop, options.seed) == (3, 0.5, ("four",), 7)
    r = client.post("/v1/chat/completions", headers=AUTH, json={**body, "max_tokens": None})
    assert r.json()["choices"][0]["message"]["content"] == "one two three "
    assert r.json()["choices"][0]["finish_reason"] == "stop"


def test_chat_stream_is_sse_and_ends_with_done(client: Any) -> None:
    body = {
        "model": "bot",
        "messages": [{"role": "user", "content": "你好 world again"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    r = client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "你好 world again"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) >= 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_response_format_json(client: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from yulian.testing import FakeChatModel

    cfg = config(
        models=[ModelConfig(name="bot", model=FakeChatModel(['Sure! {"a": 1} hope it helps', "no json"]))],
        keys=[KeyConfig(id="t", sha256=hash_key("yl-test-key"), models=["*"])],
        chains=[],
    )
    with TestClient(create_app(cfg), raise_server_exceptions=False) as c:
        time.sleep(0.05)
        body = {
            "model": "bot",
            "messages": [{"role": "user", "content": "json please"}],
            "response_format": {"type": "json_object"},
        }
        r = c.post("/v1/chat/completions", headers=AUTH, json=body)
        assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"a": 1}
        bot = c.app.state.yulian.models["bot"].obj
        assert bot.calls[-1][0].role == "system" and "JSON" in bot.calls[-1][0].content
        r = c.post("/v1/chat/completions", headers=AUTH, json=body)
        assert r.status_code == 422 and _error(r)["code"] == "invalid_json_output"


def test_completions(client: Any) -> None:
    r = client.post("/v1/completions", headers=AUTH, json={"model": "bot", "prompt": ["alpha beta", "gamma"]})
    data = r.json()
    assert data["object"] == "text_completion" and [c["text"] for c in data["choices"]] == ["alpha beta", "gamma"]
    r = client.post("/v1/completions", headers=AUTH, json={"model": "bot", "prompt": "a b c", "stream": True})
    frames = [f[6:] for f in r.text.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    assert "".join(json.loads(f)["choices"][0]["text"] for f in frames[:-1]) == "a b c"


def test_embeddings_float_and_base64_are_batched(client: Any) -> None:
    emb = client.app_state.models["emb"].obj
    from yulian.testing import FakeEmbedder

    expected = FakeEmbedder(dim=8).embed(["red apple", "blue sky"])
    r = client.post("/v1/embeddings", headers=AUTH, json={"model": "emb", "input": ["red apple", "blue sky"]})
    data = r.json()
    assert [d["index"] for d in data["data"]] == [0, 1]
    for got, want in zip([d["embedding"] for d in data["data"]], expected, strict=True):
        assert got == pytest.approx(want)
    assert emb.calls[-1] == ["red apple", "blue sky"]  # one call for the request's two texts
    r = client.post(
        "/v1/embeddings", headers=AUTH, json={"model": "emb", "input": "red apple", "encoding_format": "base64"}
    )
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert list(struct.unpack("<8f", raw)) == pytest.approx(expected[0], abs=1e-6)
    r = client.post("/v1/embeddings", headers=AUTH, json={"model": "emb", "input": [[1, 2, 3]]})
    assert r.status_code == 400 and _error(r)["code"] == "unsupported"
    r = client.post("/v1/embeddings", headers=AUTH, json={"model": "emb", "input": "x", "dimensions": 4})
    assert r.status_code == 400 and _error(r)["param"] == "dimensions"


def test_task_routes(client: Any) -> None:
    r = client.post("/v1/classify", headers=AUTH, json={"model": "cls", "input": ["a good film", "bad"]})
    data = r.json()["data"]
    assert [(d["index"], d["label"]) for d in data] == [(0, "pos"), (1, "neg")]
    assert data[0]["scores"] == {"pos": 0.9, "neg": 0.1} and data[0]["labels"] == ["pos"]
    r = client.post("/v1/classify", headers=AUTH, json={"model": "cls", "input": ["fine", "boom"]})
    assert r.status_code == 400 and "boom" in _error(r)["message"]  # the model's ValueError: bad input
    r = client.post("/v1/ner", headers=AUTH, json={"model": "tagger", "input": "where does John Smith live"})
    entities = r.json()["data"][0]["entities"]
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in entities] == [
        ("John", "PER", 11, 15),
        ("Smith", "PER", 16, 21),
    ]
    r = client.post("/v1/qa", headers=AUTH, json={"model": "reader", "question": "where?", "context": "in Paris"})
    assert r.json()["data"][0] == {"index": 0, "text": "Paris", "start": 3, "end": 8, "score": 0.5}
    r = client.post("/v1/qa", headers=AUTH, json={"model": "reader", "question": "where?"})
    assert r.status_code == 400


def test_chain_routes(client: Any) -> None:
    r = client.post("/v1/chains/upper/invoke", headers=AUTH, json={"input": "hello"})
    assert r.json() == {"output": {"role": "assistant", "content": "HELLO"}}
    r = client.post("/v1/chains/upper/batch", headers=AUTH, json={"inputs": ["a", "b"]})
    assert [o["content"] for o in r.json()["outputs"]] == ["A", "B"]
    r = client.post("/v1/chains/upper/stream", headers=AUTH, json={"input": "one two"})
    frames = [f[6:] for f in r.text.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]" and len(frames) >= 3
    assert "".join(json.loads(f)["chunk"]["content"] for f in frames[:-1]) == "ONE TWO"
    assert client.post("/v1/chains/nope/invoke", headers=AUTH, json={"input": 1}).status_code == 404


def test_internal_errors_hide_details(client: Any) -> None:
    r = client.post("/v1/chains/explode/invoke", headers=AUTH, json={"input": "x"})
    assert r.status_code == 500
    error = _error(r)
    assert error["type"] == "server_error" and "secret" not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"] in error["message"]
    r = client.post("/v1/chat/completions", headers={**AUTH, "content-type": "application/json"}, content=b"{nope")
    assert r.status_code == 400 and _error(r)["type"] == "invalid_request_error"
    r = client.post("/v1/chat/completions", headers=AUTH, json={"model": "bot", "messages": []})
    assert r.status_code == 400 and _error(r)["param"] == "messages"


# ============================================================================================ operations
def test_audit_log_has_who_what_status_and_no_content(client: Any) -> None:
    secret = "my card number is 6222 0000 1111 2222"
    client.post(
        "/v1/chat/completions", headers=AUTH, json={"model": "bot", "messages": [{"role": "user", "content": secret}]}
    )
    client.post("/v1/embeddings", headers={"Authorization": "Bearer nope"}, json={"model": "emb", "input": secret})
    text = client.audit_path.read_text()
    assert "6222" not in text and "card" not in text and "yl-test-key" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    ok = next(x for x in lines if x["route"] == "/v1/chat/completions")
    assert ok["key"] == "tester" and ok["model"] == "bot" and ok["status"] == 200 and ok["latency_ms"] > 0
    assert ok["input_tokens"] > 0 and ok["output_tokens"] > 0 and ok["request_id"].startswith("req_")
    assert lines[-1]["status"] == 401 and lines[-1]["key"] is None


def test_metrics(client: Any) -> None:
    client.post("/v1/embeddings", headers=AUTH, json={"model": "emb", "input": ["a", "b", "c"]})
    text = client.get("/metrics", headers=AUTH).text
    assert 'yulian_requests_total{model="emb",route="/v1/embeddings",status="200"} 1.0' in text
    assert 'yulian_batch_size_bucket{le="4.0",model="emb"} 1.0' in text
    for name in (
        "yulian_request_latency_seconds_bucket",
        "yulian_queue_depth",
        "yulian_tokens_total",
        "yulian_in_flight_requests",
        "yulian_ready 1.0",
    ):
        assert name in text, name


def test_readiness_is_false_while_loading() -> None:
    from fastapi.testclient import TestClient

    cfg = ServeConfig(
        models=[ModelConfig(name="slow", model=SlowLoading(0.4))],
        keys=[KeyConfig(id="t", sha256=hash_key("yl-test-key"), models=["*"])],
    )
    with TestClient(create_app(cfg), raise_server_exceptions=False) as c:
        assert c.get("/readyz").status_code == 503 and c.get("/readyz").json()["status"] == "loading"
        assert c.get("/healthz").status_code == 200
        r = c.post("/v1/embeddings", headers=AUTH, json={"model": "slow", "input": "x"})
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        for _ in range(100):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.02)
        assert c.get("/readyz").json() == {"ready": True, "status": "ready"}
        assert c.post("/v1/embeddings", headers=AUTH, json={"model": "slow", "input": "x"}).status_code == 200


def test_docs_need_a_key_unless_public() -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(config()), raise_server_exceptions=False) as c:
        assert c.get("/openapi.json").status_code == 401 and c.get("/docs").status_code == 401
        spec = c.get("/openapi.json", headers=AUTH).json()
        assert "/v1/chat/completions" in spec["paths"] and "/v1/chains/{name}/stream" in spec["paths"]
    with TestClient(create_app(config(public_docs=True)), raise_server_exceptions=False) as c:
        assert c.get("/openapi.json").status_code == 200 and c.get("/docs").status_code == 200
        assert c.get("/v1/models").status_code == 401
