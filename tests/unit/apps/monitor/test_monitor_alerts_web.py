"""Alert delivery (JSONL, webhook against a local http.server) and the dashboard router (fastapi TestClient)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from yulian.apps.monitor.alerts import AlertsFile, Webhook
from yulian.apps.monitor.detector import Alert
from yulian.apps.monitor.store import MonitorStore, ScoredText

ALERT = Alert("ACME", 1_767_225_900.0, 1_767_225_600.0, 3600.0, 0.7, 0.1, 20, 14, 6.2, 0.0, "zscore")


class Hook:
    """A local webhook receiver: answers with the queued status codes (then 200) and records the bodies."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = owner.statuses.pop(0) if owner.statuses else 200
                owner.bodies.append({"status": status, "json": json.loads(body), "type": self.headers["Content-Type"]})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook_factory() -> Iterator[Any]:
    hooks: list[Hook] = []

    def make(statuses: list[int] | None = None) -> Hook:
        hooks.append(Hook(list(statuses or [])))
        return hooks[-1]

    yield make
    for hook in hooks:
        hook.server.shutdown()
        hook.server.server_close()


def test_webhook_posts_the_alert_json(hook_factory: Any) -> None:
    hook = hook_factory()
    webhook = Webhook(hook.url)
    assert webhook.send(ALERT) is True
    sent = hook.bodies[0]
    assert sent["type"] == "application/json"
    assert sent["json"]["entity"] == "ACME" and sent["json"]["iso_time"] == "2026-01-01T00:05:00Z"
    assert "negative share 70%" in sent["json"]["message"]
    assert webhook.sent == 1 and webhook.failed == 0


def test_webhook_retries_server_errors_then_succeeds(hook_factory: Any) -> None:
    hook = hook_factory([500, 503])
    webhook = Webhook(hook.url, retries=3, backoff=0.01)
    assert webhook.send(ALERT) is True
    assert [b["status"] for b in hook.bodies] == [500, 503, 200]


def test_webhook_gives_up_without_raising(hook_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    hook = hook_factory([500, 500, 500])
    webhook = Webhook(hook.url, retries=2, backoff=0.01)
    with caplog.at_level(logging.WARNING, logger="yulian.apps.monitor"):
        assert webhook.send(ALERT) is False
    assert len(hook.bodies) == 3 and webhook.failed == 1
    assert "failed after 3 attempt(s): HTTP 500" in caplog.text
    rejected = hook_factory([400])
    assert Webhook(rejected.url, retries=3, backoff=0.01).send(ALERT) is False
    assert len(rejected.bodies) == 1  # a client error is not retried
    # nothing listening: connection refused, logged, not raised
    port = hook.server.server_address[1]
    hook.server.shutdown()
    hook.server.server_close()
    assert Webhook(f"http://127.0.0.1:{port}/", retries=1, backoff=0.01, timeout=1).send(ALERT) is False


def test_webhook_url_is_checked() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        Webhook("ftp://example.com")


def test_alerts_file_appends_json_lines(tmp_path: Path) -> None:
    sink = AlertsFile(tmp_path / "out" / "alerts.jsonl")
    sink.write(ALERT)
    sink.write(ALERT)
    lines = (tmp_path / "out" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["z"] == 6.2


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from yulian.apps.monitor.web import create_app

    store = MonitorStore(tmp_path / "m.sqlite", window=3600)
    start = 1_767_225_600.0
    items = [
        ScoredText(
            start + h * 3600 + i, f"text {h}-{i}", "negative" if i < 2 else "neutral", 0.9, i < 2, ("ACME", "ALL")
        )
        for h in range(5)
        for i in range(6)
    ]
    store.add(items, [ALERT])
    store.add([ScoredText(start, "腾讯 up", "positive", 0.8, False, ("Tencent", "ALL"), positive=True)])
    with TestClient(create_app(store)) as c:
        yield c


def test_router_json_endpoints(client: Any) -> None:
    entities = client.get("/apps/monitor/api/entities").json()
    assert [e["entity"] for e in entities] == ["ALL", "ACME", "Tencent"]
    assert entities[1]["texts"] == 30 and entities[1]["alerts"] == 1 and entities[1]["share"] == pytest.approx(1 / 3)
    series = client.get("/apps/monitor/api/series", params={"entity": "ACME"}).json()
    assert series["window"] == 3600 and len(series["points"]) == 5
    assert series["points"][0] == {"start": 1_767_225_600.0, "n": 6, "neg": 2, "pos": 0, "share": pytest.approx(1 / 3)}
    assert client.get("/apps/monitor/api/series", params={"entity": "NOPE"}).status_code == 404
    alerts = client.get("/apps/monitor/api/alerts", params={"entity": "ACME"}).json()
    assert alerts[0]["message"].startswith("ACME: negative share 70%")
    assert client.get("/apps/monitor/api/alerts", params={"entity": "Tencent"}).json() == []
    texts = client.get("/apps/monitor/api/texts", params={"entity": "Tencent"}).json()
    assert texts == [
        {
            "ts": 1_767_225_600.0,
            "text": "腾讯 up",
            "label": "positive",
            "score": 0.8,
            "entities": ["Tencent", "ALL"],
            "source": "",
        }
    ]


def test_router_page_and_png(client: Any) -> None:
    page = client.get("/apps/monitor/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="plots"' in page.text and "api/entities" in page.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/apps/monitor/"
    png = client.get("/apps/monitor/plot.png", params={"entity": "ACME"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 5000
    assert client.get("/apps/monitor/plot.png", params={"entity": "NOPE"}).status_code == 404
