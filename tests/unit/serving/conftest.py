"""Fixtures: a TestClient over the app built from serving_helpers.config()."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest.importorskip("fastapi")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient
    from serving_helpers import config

    from yulian.serving.app import create_app

    app = create_app(config(tmp_path))
    with TestClient(app, raise_server_exceptions=False) as c:
        for _ in range(200):  # the models warm up in the background; wait until ready
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.01)
        c.app_state = app.state.yulian  # type: ignore[attr-defined]
        c.audit_path = tmp_path / "audit.jsonl"  # type: ignore[attr-defined]
        yield c
