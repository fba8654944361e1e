"""The recommender page in a real headless Chromium: the JS fills the user list, the recommendations with their
reasons, the history table and the genre plot; a screenshot is taken and is not blank."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from yulian.apps.recommend import RecommendConfig, Recommender, TwoTowerConfig
from yulian.apps.recommend.synthetic import synthetic

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    import uvicorn
    from fastapi import FastAPI

    from yulian.apps.recommend.web import router

    data, text = synthetic()
    cfg = RecommendConfig(tower=TwoTowerConfig(dim=16, history=8, epochs=10, batch_size=32, lr=1e-2, threads=1), k=5)
    rec = Recommender.train(data, cfg=cfg, text=text).warm_up()
    app = FastAPI()
    app.include_router(router(rec))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/apps/recommend/"
    srv.should_exit = True
    thread.join(timeout=10)


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=50, check=False)


@pytest.mark.timeout(120)
def test_page_renders_recommendations_with_reasons(server: str, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium not installed: apt-get install -y --no-install-recommends chromium")
    dom = _chromium("--dump-dom", server + "?user=5").stdout
    assert dom.count('<option value="') == 48  # every user in the picker
    assert dom.count('<tr class="rec">') == 10  # top 10 filled in by the page's JS
    assert dom.count('<tr class="hist">') == 7  # user 5's seven ratings
    assert "because you rated Movie" in dom and 'class="reason"' in dom
    assert "user 5" in dom and 'class="bar"' in dom  # header and the genre plot (inline SVG)
    assert "error" not in dom.split('id="status">')[1][:40]

    from PIL import Image

    shot = tmp_path / "recommend.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,900", server + "?user=5")
    assert shot.is_file() and shot.stat().st_size > 10_000
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 900)
    lo, hi = image.getextrema()
    assert hi - lo > 100  # not a blank page
    colors = image.resize((64, 48)).getcolors(4096)
    assert colors is None or len(colors) > 20  # many grey levels: text, bars, tables
