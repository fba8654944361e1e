"""Chat details: tools through `bind_tools`, tool calls in replies and streams, errors in the middle of a stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from serving_helpers import AUTH, KEY

from yulian.core.messages import Message, MessageChunk, ToolCall
from yulian.models.base import ChatModel, GenerationConfig
from yulian.serving import KeyConfig, ModelConfig, ServeConfig, hash_key
from yulian.serving.app import create_app
from yulian.testing import FakeChatModel


class ToolModel(FakeChatModel):
    """Calls the first bound tool; fails mid-stream when asked to."""

    tools: tuple[dict[str, Any], ...] = ()
    _agenerate = ChatModel._agenerate  # the base's async paths call the sync ones below
    _astream = ChatModel._astream

    def bind_tools(self, tools: list[dict[str, Any]], *, tool_choice: Any = None) -> ToolModel:
        if not all("name" in t.get("function", t) for t in tools):
            raise ValueError("tools need a name")
        bound = self.bind()
        bound.tools = tuple(tools)
        return bound

    def _generate(self, messages: list[Message], options: GenerationConfig) -> Message:
        if self.tools:
            name = self.tools[0]["function"]["name"]
            return Message("assistant", "", tool_calls=(ToolCall("call_1", name, {"city": "Paris"}),))
        return super()._generate(messages, options)

    def _stream(self, messages: list[Message], options: GenerationConfig) -> Iterator[MessageChunk]:
        if messages[-1].content == "fail":
            yield MessageChunk("assistant", "partial ")
            raise RuntimeError("the GPU caught fire at /secret/path")
        if self.tools:
            yield MessageChunk("assistant", "", tool_calls=self._generate(messages, options).tool_calls)
            return
        yield from super()._stream(messages, options)


@pytest.fixture
def tool_client() -> Iterator[Any]:
    from fastapi.testclient import TestClient

    cfg = ServeConfig(
        models=[ModelConfig(name="tooly", model=ToolModel(), batch=_no_batch())],
        keys=[KeyConfig(id="t", sha256=hash_key(KEY), models=["*"])],
    )
    with TestClient(create_app(cfg), raise_server_exceptions=False) as c:
        time.sleep(0.05)
        yield c


def _no_batch() -> Any:
    from yulian.serving import BatchConfig

    return BatchConfig(max_batch=1, max_wait_ms=0)


WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def test_tools_reach_the_model_and_calls_come_back(tool_client: Any) -> None:
    body = {"model": "tooly", "messages": [{"role": "user", "content": "weather in Paris?"}], "tools": [WEATHER]}
    r = tool_client.post("/v1/chat/completions", headers=AUTH, json=body)
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    r = tool_client.post("/v1/chat/completions", headers=AUTH, json={**body, "stream": True})
    frames = [json.loads(f[6:]) for f in r.text.split("\n\n") if f.startswith("data: {")]
    calls = [c for f in frames for c in f["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["index"] == 0 and calls[0]["function"]["name"] == "weather"
    assert frames[-1]["choices"][0]["finish_reason"] == "tool_calls"
    r = tool_client.post(
        "/v1/chat/completions", headers=AUTH, json={**body, "tools": [{"type": "function", "function": {}}]}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_tools"


def test_a_failure_mid_stream_ends_with_an_error_event(tool_client: Any) -> None:
    body = {"model": "tooly", "messages": [{"role": "user", "content": "fail"}], "stream": True}
    r = tool_client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 200  # the status was sent with the first chunk
    frames = [f[6:] for f in r.text.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])["error"]
    assert error["type"] == "server_error" and "secret" not in r.text and "fire" not in r.text
    assert json.loads(frames[1])["choices"][0]["delta"]["content"] == "partial "


def test_bad_response_format_is_400(tool_client: Any) -> None:
    body = {"model": "tooly", "messages": [{"role": "user", "content": "x"}], "response_format": {"kind": "json"}}
    r = tool_client.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
