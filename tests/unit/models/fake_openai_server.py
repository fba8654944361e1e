"""A fake OpenAI-compatible HTTP server for offline tests: a real socket on 127.0.0.1, standard library only.

    with FakeOpenAIServer() as server:
        server.reply("Hello there")                       # the next chat request gets this answer
        server.fail(429, "slow down", headers={"retry-after-ms": "10"})
        client = OpenAI(base_url=server.base_url, api_key="test")
        ...
        server.requests[-1].body                          # what the client sent

Routes: `POST /v1/chat/completions` (JSON, or server-sent events with `"stream": true`, usage in a last chunk when
`stream_options.include_usage`), `POST /v1/embeddings` (deterministic vectors; float or base64), and errors in the
API's envelope `{"error": {"message", "type", "param", "code"}}`. Scripted actions (`reply`, `fail`, `hang`) are
served first-in first-out, one per request; with none queued, chat echoes the last user message and embeddings
embed. With `api_key` set, requests without `Authorization: Bearer <api_key>` get 401.

Self-contained (no yulian imports), so it can move into `yulian.testing` as is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAIServer", "Recorded", "fake_vector"]

_PIECE = re.compile(r"\s*\S+|\s+")


def fake_vector(text: str, dim: int) -> list[float]:
    """The unit vector the fake server returns for `text`: deterministic, from the text's sha256."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dim:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw.extend(b / 127.5 - 1.0 for b in digest)
        counter += 1
    vec = raw[:dim]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


@dataclass
class Recorded:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Action:
    kind: str  # "reply" | "fail" | "hang" | "drop"
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    status: int = 200
    error: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class FakeOpenAIServer:
    """A threaded HTTP server speaking the OpenAI chat-completions and embeddings protocol.

    Args:
        api_key: when set, the Bearer key every request must carry (else 401 with the API's error envelope).
        chunk_delay: seconds between streamed chunks.
        embedding_dim: the size of embedding vectors when the request gives no `dimensions`.
        reverse_embeddings: list embedding results in reverse order (clients must sort by `index`).
        latency: seconds every request waits before it is answered (a stand-in for the network and the model).
        port: the port to listen on (0: a free one).
        record: keep every request in `requests` (turn off for long benchmark runs).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        chunk_delay: float = 0.0,
        embedding_dim: int = 8,
        reverse_embeddings: bool = False,
        latency: float = 0.0,
        port: int = 0,
        record: bool = True,
    ) -> None:
        self.api_key = api_key
        self.chunk_delay = chunk_delay
        self.embedding_dim = embedding_dim
        self.reverse_embeddings = reverse_embeddings
        self.latency = latency
        self.record = record
        self._bind_port = port
        self.requests: list[Recorded] = []
        self._actions: deque[_Action] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------- lifecycle
    def start(self) -> FakeOpenAIServer:
        """Listen on a free port of 127.0.0.1 and serve in a background thread."""
        server = self

        class Handler(_Handler):
            fake = server

        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", self._bind_port), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release hanging requests."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running: call start()")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The API root to give clients: `http://127.0.0.1:PORT/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    # ----------------------------------------------------------------------------------------- scripting
    def reply(
        self, text: str = "", *, tool_calls: list[dict[str, Any]] | None = None, finish_reason: str | None = None
    ) -> None:
        """Queue a chat answer. `tool_calls`: `[{"id", "name", "arguments": dict or JSON text}]`."""
        calls = [dict(c) for c in tool_calls or ()]
        reason = finish_reason or ("tool_calls" if calls else "stop")
        self._push(_Action("reply", text=text, tool_calls=calls, finish_reason=reason))

    def fail(
        self,
        status: int,
        message: str,
        *,
        type: str = "server_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queue an error response with the API's envelope."""
        error = {"message": message, "type": type, "param": param, "code": code}
        self._push(_Action("fail", status=status, error=error, headers=dict(headers or {})))

    def hang(self, seconds: float) -> None:
        """Queue a slow request: wait `seconds` (or until the server stops), then answer as usual."""
        self._push(_Action("hang", seconds=seconds))

    def drop(self) -> None:
        """Queue a request whose connection is closed without an answer."""
        self._push(_Action("drop"))

    def reset(self) -> None:
        """Forget recorded requests and queued actions."""
        with self._lock:
            self.requests.clear()
            self._actions.clear()

    def bodies(self, path: str = "/v1/chat/completions") -> list[Any]:
        """The JSON bodies of the requests received on `path`, in order."""
        with self._lock:
            return [r.body for r in self.requests if r.path == path]

    def _push(self, action: _Action) -> None:
        with self._lock:
            self._actions.append(action)

    def _next(self) -> _Action | None:
        with self._lock:
            return self._actions.popleft() if self._actions else None

    def _record(self, rec: Recorded) -> None:
        if not self.record:
            return
        with self._lock:
            self.requests.append(rec)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops connection bursts: the client then waits 1 s to retry its SYN

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hang up mid-stream or between requests
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: without this, +40 ms per answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.fake._record(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, None))
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "fake"}]})
        else:
            self._error(404, f"Unknown path {self.path}", "invalid_request_error")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake._record(Recorded(self.path, headers, body))
        if self.fake.api_key is not None and headers.get("authorization") != f"Bearer {self.fake.api_key}":
            self._error(401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key")
            return
        if self.fake.latency:
            self.fake._stopping.wait(self.fake.latency)
        action = self.fake._next()
        if action is not None and action.kind == "hang":
            self.fake._stopping.wait(action.seconds)
            action = None
        if action is not None and action.kind == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if action is not None and action.kind == "fail":
            err = action.error
            self._error(action.status, err["message"], err["type"], err["code"], err["param"], action.headers)
            return
        if not isinstance(body, dict):
            self._error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        elif self.path == "/v1/chat/completions":
            self._chat(body, action)
        elif self.path == "/v1/embeddings":
            self._embeddings(body)
        else:
            self._error(404, f"Invalid URL (POST {self.path})", "invalid_request_error")

    # ----------------------------------------------------------------------------------------- chat
    def _chat(self, body: dict[str, Any], action: _Action | None) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._error(400, "'messages' must be a non-empty array", "invalid_request_error", param="messages")
            return
        if action is None:
            last = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
            text, calls, reason = f"echo: {last.get('content') or ''}", [], "stop"
        else:
            text, calls, reason = action.text, action.tool_calls, action.finish_reason or "stop"
        pieces = _PIECE.findall(text)
        if isinstance(body.get("max_tokens"), int) and len(pieces) > body["max_tokens"]:
            pieces, reason = pieces[: body["max_tokens"]], "length"
        text = "".join(pieces)
        stops = body.get("stop") or []
        for stop in [stops] if isinstance(stops, str) else stops:
            if stop in text:
                text, reason = text[: text.index(stop)], "stop"
                pieces = _PIECE.findall(text)
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        wire_calls = [
            {
                "id": c.get("id") or f"call_{i}",
                "type": "function",
                "function": {
                    "name": c["name"],
                    "arguments": c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"]),
                },
            }
            for i, c in enumerate(calls)
        ]
        model = body.get("model", "fake-model")
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(model, pieces, wire_calls, reason, usage if include_usage else None)
            return
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not wire_calls else None}
        if wire_calls:
            message["tool_calls"] = wire_calls
        self._json(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": reason, "logprobs": None}],
                "usage": usage,
            },
        )

    def _stream(
        self,
        model: str,
        pieces: list[str],
        calls: list[dict[str, Any]],
        reason: str,
        usage: dict[str, int] | None,
    ) -> None:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": p}) for p in pieces]
        for i, call in enumerate(calls):
            fn = call["function"]
            start = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": fn["name"], "arguments": ""},
            }
            events.append(chunk({"tool_calls": [start]}))
            args = fn["arguments"]
            step = max(1, len(args) // 3)  # the arguments arrive in several pieces
            events += [
                chunk({"tool_calls": [{"index": i, "function": {"arguments": args[j : j + step]}}]})
                for j in range(0, len(args), step)
            ]
        events.append(chunk({}, reason))
        if usage is not None:
            events.append({**base, "choices": [], "usage": usage})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            for event in events:
                self._chunked(f"data: {json.dumps(event)}\n\n".encode())
                if self.fake.chunk_delay and self.fake._stopping.wait(self.fake.chunk_delay):
                    return
            self._chunked(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
            self.close_connection = True

    def _chunked(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # ----------------------------------------------------------------------------------------- embeddings
    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            self._error(400, "'input' must be a string or a non-empty array of strings", "invalid_request_error")
            return
        if any(not t for t in inputs):
            self._error(400, "'input' cannot contain empty strings", "invalid_request_error", param="input")
            return
        dim = body.get("dimensions") or self.fake.embedding_dim
        data = []
        for i, text in enumerate(inputs):
            vec = fake_vector(text, dim)
            value: Any = vec
            if body.get("encoding_format") == "base64":
                value = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        if self.fake.reverse_embeddings:
            data.reverse()
        tokens = sum(len(t.split()) for t in inputs)
        self._json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "fake-embedder"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # ----------------------------------------------------------------------------------------- responses
    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", "req_fake")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.close_connection = True

    def _error(
        self,
        status: int,
        message: str,
        type: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        envelope = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self._json(status, envelope, headers)


def main() -> None:
    """Run the fake server in the foreground: `python fake_openai_server.py [--port N] [--latency S]`.

    Prints the base URL on the first line of stdout once it is listening (port 0: a free port).
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--embedding-dim", type=int, default=8)
    args = parser.parse_args()
    server = FakeOpenAIServer(
        api_key=args.api_key, latency=args.latency, embedding_dim=args.embedding_dim, port=args.port, record=False
    )
    server.start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
