"""Graceful shutdown on a real uvicorn: requests in flight when the server is told to stop still finish."""

from __future__ import annotations

import socket
import threading
import time

import pytest

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from yulian.serving import KeyConfig, ModelConfig, ServeConfig, hash_key  # noqa: E402
from yulian.serving.app import create_app  # noqa: E402
from yulian.testing import FakeChatModel  # noqa: E402

pytestmark = pytest.mark.integration


def test_in_flight_requests_finish_on_shutdown() -> None:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ServeConfig(
        models=[ModelConfig(name="slow", model=FakeChatModel(["one two three four five"], delay=0.2))],
        keys=[KeyConfig(id="k", sha256=hash_key("yl-k"), models=["*"])],
    )
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=10)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    results: list[int] = []

    def call() -> None:
        body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer yl-k"}, timeout=20)
        results.append(r.status_code)

    clients = [threading.Thread(target=call) for _ in range(3)]
    for c in clients:
        c.start()
    time.sleep(0.3)  # the requests are in flight (each takes ~1 s)
    server.should_exit = True  # what SIGTERM does
    for c in clients:
        c.join(timeout=20)
    thread.join(timeout=20)
    assert results == [200, 200, 200]
    assert app.state.yulian.draining and not app.state.yulian.ready
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/healthz", timeout=1)
