"""The monitor with the real fine-tuned sentiment model on a small replay of Financial PhraseBank dev texts.

Needs the model trained once (`yulian app monitor train --lang en`, a few minutes; it is cached under
runs/apps/monitor/en, or set YULIAN_MONITOR_MODEL) and the data sets (../shared/datasets or YULIAN_DATASETS).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from yulian.apps.monitor.commands import MONITOR_COMMANDS, load_classifier
from yulian.apps.monitor.pipeline import Monitor
from yulian.apps.monitor.replay import CachedClassifier, build_replay, evaluate_replay, parse_burst
from yulian.apps.monitor.store import MonitorStore
from yulian.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[4]
MODEL = Path(os.environ.get("YULIAN_MONITOR_MODEL", ROOT / "runs/apps/monitor/en"))


@pytest.fixture(scope="module")
def model() -> object:
    if not (MODEL / "config.json").exists():
        pytest.skip(f"no trained monitor model in {MODEL}: run `yulian app monitor train --lang en` first")
    try:
        from yulian.apps.monitor.data import load_split

        load_split("en")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return CachedClassifier(load_classifier(str(MODEL)))


def test_real_model_reads_financial_sentiment(model: CachedClassifier) -> None:
    texts = [
        "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007 .",
        "The company reported a net loss of EUR 2.1 mn and announced 200 layoffs .",
        "The annual general meeting will be held in Helsinki on 25 March .",
    ]
    assert [p.label for p in model.batch(texts)] == ["positive", "negative", "neutral"]


def test_replay_alerts_on_the_burst_and_not_on_the_clean_stream(model: CachedClassifier) -> None:
    from yulian.apps.monitor.data import load_split

    _, dev = load_split("en")
    burst = parse_burst("ACME@+30h", rate=16)
    clean = evaluate_replay(Monitor(model, MonitorStore(":memory:")), build_replay(dev, hours=40, seed=3), [], 7200)
    assert clean["false_alerts"] == 0, clean["false_alert_list"]
    stream = build_replay(dev, hours=40, seed=3, bursts=[burst])
    result = evaluate_replay(Monitor(model, MonitorStore(":memory:")), stream, [burst], deadline=7200)
    assert result["bursts"][0]["detected"], result["alerts"]
    assert result["bursts"][0]["delay_s"] <= 7200 and result["false_alerts"] == 0


def test_train_command_reuses_the_cached_model(capsys: pytest.CaptureFixture[str]) -> None:
    marker = MODEL / "monitor_train.json"
    if not marker.exists():
        pytest.skip(f"{marker} missing: the model was not trained by `yulian app monitor train`")
    assert main(["monitor", "train", "--lang", "en", "--out", str(MODEL)], commands={"monitor": MONITOR_COMMANDS}) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["cached"] is True and out["dev_accuracy"] > 0.6
