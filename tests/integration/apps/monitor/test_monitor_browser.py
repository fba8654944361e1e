"""The monitor's dashboard in a real headless Chromium: the page's JS draws plots with alert markers and fills the
tables from the JSON endpoints; a screenshot is taken and must not be blank."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from yulian.apps.monitor.data import LabelledText
from yulian.apps.monitor.pipeline import Monitor
from yulian.apps.monitor.replay import build_replay, evaluate_replay, parse_burst
from yulian.apps.monitor.store import MonitorStore

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Oracle:
    def batch(self, texts: list[str]) -> list[str]:
        return ["negative" if t.startswith("bad") else "neutral" for t in texts]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=50, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install -y --no-install-recommends chromium")
def test_dashboard_renders_plots_alerts_and_a_screenshot(tmp_path: Path) -> None:
    from yulian.apps.monitor.web import PREFIX, serve

    pool = [LabelledText(f"bad news {i}", "negative") for i in range(10)]
    pool += [LabelledText(f"fine news {i}", "neutral") for i in range(90)]
    store = MonitorStore(tmp_path / "m.sqlite")
    burst = parse_burst("ACME@+48h", rate=20)
    result = evaluate_replay(Monitor(Oracle(), store), build_replay(pool, bursts=[burst]), [burst], deadline=7200)
    assert result["bursts"][0]["detected"]
    port = free_port()
    server = serve(store, port=port, block=False)
    url = f"http://127.0.0.1:{port}{PREFIX}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "api/entities", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        dom = chromium("--dump-dom", url).stdout
        shot = tmp_path / "dashboard.png"
        chromium(f"--screenshot={shot}", "--window-size=1280,900", url)
    finally:
        server.should_exit = True
    assert dom.count('class="plot"') == 6  # ALL + the five entities
    assert dom.count('class="series"') == 6 and "<polyline" in dom
    assert dom.count('class="alert-mark"') >= 2  # ACME's alert (and ALL's) marked on the plots
    assert 'data-entity="ACME"' in dom and 'class="alert-row"' in dom
    assert 'id="status">6 entities · ' in dom  # the status line, not "error: ..."
    assert shot.exists() and shot.stat().st_size > 20_000
    from matplotlib.image import imread

    pixels = imread(str(shot))
    assert pixels.shape[:2] == (900, 1280)
    assert pixels[..., :3].std() > 0.05  # not blank: plots, text and tables drawn
