"""The applications inside `yulian serve`: open pages with the auth script, key-checked APIs, public apps, and
configuration errors that name the field."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import AUTH, config

from yulian.serving.apps import AppConfig
from yulian.serving.config import ConfigError, config_from_dict


def _client(tmp_path: Path, apps: list[AppConfig]) -> Any:
    from fastapi.testclient import TestClient

    from yulian.serving.app import create_app

    return TestClient(create_app(config(tmp_path, apps=apps)), raise_server_exceptions=False)


def _db(tmp_path: Path) -> str:
    from yulian.apps.monitor.store import MonitorStore

    path = tmp_path / "monitor.sqlite"
    MonitorStore(path, window=3600.0)
    return str(path)


def test_an_app_page_is_open_and_its_api_needs_the_key(tmp_path: Path) -> None:
    with _client(tmp_path, [AppConfig("monitor", _db(tmp_path))]) as c:
        for _ in range(200):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.01)
        page = c.get("/apps/monitor/")
        assert page.status_code == 200 and '<script src="/apps/_auth.js"></script>' in page.text
        script = c.get("/apps/_auth.js")
        assert script.status_code == 200 and "Authorization" in script.text
        assert script.headers["content-type"].startswith("text/javascript")
        assert c.get("/apps/monitor/api/entities").status_code == 401
        answer = c.get("/apps/monitor/api/entities", headers=AUTH)
        assert answer.status_code == 200 and isinstance(answer.json(), list | dict)
        assert c.get("/apps/recommend/").status_code == 401  # not configured: an ordinary unknown route


def test_a_public_app_needs_no_key(tmp_path: Path) -> None:
    with _client(tmp_path, [AppConfig("monitor", _db(tmp_path), public=True)]) as c:
        assert c.get("/apps/monitor/api/entities").status_code == 200
        assert c.get("/v1/models").status_code == 401  # the rest of the server is not opened


def test_app_configuration_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"<dict>: apps\[0\]: unknown app 'shop' \(apps: monitor, recommend"):
        config_from_dict({"apps": [{"name": "shop"}]})
    with pytest.raises(ConfigError, match=r"apps\[0\]: app 'monitor' needs a path \(its SQLite database\)"):
        config_from_dict({"apps": [{"name": "monitor"}]})
    with pytest.raises(ConfigError, match=r"apps\[0\]: unknown field 'db'"):
        config_from_dict({"apps": [{"name": "monitor", "db": "x"}]})
    parsed = config_from_dict({"apps": [{"name": "support"}, {"name": "monitor", "path": "m.sqlite", "public": True}]})
    assert [(a.name, a.path, a.public) for a in parsed.apps] == [
        ("support", None, False),
        ("monitor", "m.sqlite", True),
    ]
