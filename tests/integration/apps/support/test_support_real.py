"""The support bot on the real packaged models (the embedded demo bot: MiniLM + multilingual-e5 classifiers and
FAQ indexes, SmolLM2 generator), and its chat page in a real headless Chromium."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

UNIT = Path(__file__).resolve().parents[3] / "unit" / "apps" / "support"


@pytest.fixture(scope="module")
def demo_folder() -> Path:
    """The embedded demo bot: cached after its first build (which fine-tunes two classifiers: minutes on a loaded
    2-core machine; every later run loads it in seconds)."""
    from yulian.apps.support import demo_bot

    return demo_bot(progress=True)


@pytest.mark.timeout(1200)  # the first run builds the cached demo bot; the turns themselves take seconds
def test_demo_bot_routes_answers_and_hands_off(demo_folder: Path) -> None:
    from yulian.apps.support import SupportBot

    bot = SupportBot.load(demo_folder, memory=":memory:").warm_up()  # loading the 3 models is not a turn
    start = time.perf_counter()
    en = bot.chat("it", "I lost my card, please help. My phone is 13812345678")
    assert en.lang == "en" and en.intent == "card_lost" and not en.handoff, en
    assert en.answer and en.sources and en.sources[0]["id"] == "en-card-lost"
    assert "<PHONE_1>" not in en.answer  # a placeholder the model echoed is restored
    assert any(s["cited"] for s in en.sources)  # generated and cited, or the FAQ answer cited [1]
    print("en answer:", en.answer, en.timings)
    zh = bot.chat("it", "我的银行卡丢了怎么办")
    assert zh.lang == "zh" and zh.intent == "card_lost" and not zh.handoff, zh
    assert zh.sources[0]["id"] == "zh-card-lost" and zh.answer.endswith("[1]")
    oos = bot.chat("it", "what's the weather like tomorrow?")
    assert oos.handoff and oos.reason in ("out_of_scope", "low_intent_confidence", "low_retrieval_score"), oos
    human = bot.chat("it", "转人工")
    assert human.handoff, human
    assert len(bot.history("it")) == 8
    assert time.perf_counter() - start < 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The support routes on a uvicorn server in a thread, over the unit tests' fake bot (fast, deterministic)."""
    import uvicorn

    sys.path.insert(0, str(UNIT))
    from support_fakes import make_bot

    from yulian.apps.support.web import app
    from yulian.testing import FakeChatModel

    bot = make_bot(tmp_path, FakeChatModel(["Freeze your card in the app [1]."]))
    port = _free_port()
    config = uvicorn.Config(app(bot), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("chromium is not installed (apt-get install -y --no-install-recommends chromium)")
    return found


def _run(args: list[str], tmp_path: Path) -> Any:
    return subprocess.run(
        [
            _chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=8000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(120)
def test_chat_page_sends_a_message_and_renders_the_answer(server: str, tmp_path: Path) -> None:
    url = f"{server}/apps/support/?session=browser&q=I%20lost%20my%20card"
    dom = _run(["--dump-dom", url], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert '<div class="msg user">I lost my card</div>' in html
    assert "Freeze your card in the app [1]." in html  # the bot's answer, rendered by the page's JS
    assert "card_lost 92%" in html and '<li class="cited"' in html  # intent badge and the cited FAQ entry
    shot = tmp_path / "support.png"
    result = _run(["--screenshot=" + str(shot), "--window-size=1280,900", url], tmp_path)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000  # a rendered page, not a blank image
    Path(__file__).resolve().parents[4].joinpath("runs").mkdir(exist_ok=True)
    shutil.copy(shot, Path(__file__).resolve().parents[4] / "runs" / "support-page.png")
