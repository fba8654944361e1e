"""The monitor end to end on small inline data: Monitor, the CLI commands (run / replay / plot), resume, and a
tiny random transformers classifier loaded from a folder."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from yulian.apps.monitor import EntityTagger, KeywordSentiment, Monitor, MonitorStore, Record
from yulian.apps.monitor.commands import MONITOR_COMMANDS, load_classifier
from yulian.apps.monitor.data import LabelledText
from yulian.apps.monitor.replay import Burst, build_replay, evaluate_replay, parse_burst
from yulian.cli import main

START = 1_767_225_600.0  # 2026-01-01T00:00Z


def feed_lines(hours: int, burst_hour: int | None, seed: int = 0) -> list[str]:
    """Acme Corp news: 10 texts an hour, ~10% with a negative keyword; in `burst_hour`, 16 of 20 negative."""
    rng = random.Random(seed)
    lines = []
    for h in range(hours):
        n, neg = (20, 16) if h == burst_hour else (10, 1)
        flags = [True] * neg + [False] * (n - neg)
        rng.shuffle(flags)
        for i, negative in enumerate(flags):
            text = f"Acme Corp {'reported a loss' if negative else 'held its meeting'} number {h}.{i}"
            lines.append(json.dumps({"text": text, "time": START + h * 3600 + i * 3600 / n}))
    return lines


def test_monitor_raises_one_alert_per_burst_and_stores_everything(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "m.sqlite")
    seen: list = []
    monitor = Monitor(KeywordSentiment(), store, EntityTagger({"ACME": ["Acme Corp"]}), on_alert=seen.append)
    records = [Record(json.loads(x)["text"], json.loads(x)["time"]) for x in feed_lines(40, burst_hour=30)]
    alerts = [a for i in range(0, len(records), 16) for a in monitor.process(records[i : i + 16])]
    assert sorted(a.entity for a in alerts) == ["ACME", "ALL"]
    assert all(START + 30 * 3600 <= a.time < START + 31 * 3600 for a in alerts)
    assert seen == alerts
    assert store.count() == len(records)
    assert {e["entity"] for e in store.entities()} == {"ACME", "ALL"}
    assert len(store.alerts()) == 2


def test_classify_accepts_labels_dicts_and_predictions(tmp_path: Path) -> None:
    class Fake:
        def batch(self, texts: list[str]) -> list[Any]:
            return ["negative", {"label": "positive", "score": 0.7}, KeywordSentiment().invoke("loss")][: len(texts)]

    monitor = Monitor(Fake(), MonitorStore(tmp_path / "m.sqlite"))
    assert monitor.classify(["a", "b", "c"]) == [("negative", 1.0), ("positive", 0.7), ("negative", 1.0)]


def cli(*args: str) -> int:
    return main(["monitor", *args], commands={"monitor": MONITOR_COMMANDS})


def test_cli_run_writes_alerts_webhook_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lines = feed_lines(40, burst_hour=30)
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(lines[:200]) + "\n{broken\n", encoding="utf-8")
    (tmp_path / "entities.json").write_text(json.dumps({"ACME": ["Acme Corp"]}), encoding="utf-8")
    common = ["--model", "lexicon", "--db", str(tmp_path / "m.sqlite"), "--alerts", str(tmp_path / "alerts.jsonl")]
    common += [
        "--entities",
        str(tmp_path / "entities.json"),
        "--webhook",
        f"http://127.0.0.1:{server.server_address[1]}/",
    ]
    try:
        assert cli("run", "--input", str(feed), *common) == 0
        first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert first["texts"] == 200 and first["bad_lines"] == 1 and first["alerts"] == 0
        with open(feed, "a", encoding="utf-8") as f:  # the feed grows; the next run resumes where this one stopped
            f.write("\n".join(lines[200:]) + "\n")
        assert cli("run", "--input", str(feed), "--follow", "--idle-exit", "0.3", *common) == 0
        second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    finally:
        server.shutdown()
        server.server_close()
    assert second["texts"] == len(lines) - 200 and second["bad_lines"] == 0 and second["alerts"] == 2
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(a["entity"] for a in alerts) == ["ACME", "ALL"]
    assert sorted(r["entity"] for r in received) == ["ACME", "ALL"]
    assert MonitorStore(tmp_path / "m.sqlite").count() == len(lines)  # nothing read twice
    png = tmp_path / "m.png"
    assert cli("plot", "--db", str(tmp_path / "m.sqlite"), "--out", str(png), "--entity", "ACME") == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text('{"text": "a"}\n{oops\n', encoding="utf-8")
    assert cli("run", "--input", str(feed), "--model", "lexicon", "--db", str(tmp_path / "m.sqlite"), "--strict") == 1
    assert f"error: {feed}:2: not valid JSON" in capsys.readouterr().err
    assert cli("run", "--input", str(feed), "--model", str(tmp_path / "none"), "--db", str(tmp_path / "x.db")) == 1
    assert "yulian app monitor train --out" in capsys.readouterr().err
    assert cli("run", "--input", str(feed), "--model", "lexicon", "--z-threshold", "-2") == 1
    assert "DetectorConfig.z_threshold" in capsys.readouterr().err
    assert cli("replay", "--data", "imdb", "--model", "lexicon") == 1
    assert "--data must be one of fpb, finfe" in capsys.readouterr().err
    assert cli("plot", "--db", str(tmp_path / "none.sqlite")) == 1
    assert "does not exist" in capsys.readouterr().err


def test_replay_with_an_oracle_detects_bursts_and_stays_quiet_when_clean(tmp_path: Path) -> None:
    pool = [LabelledText(f"bad {i}", "negative") for i in range(12)] + [
        LabelledText(f"fine {i}", "neutral") for i in range(88)
    ]

    class Oracle:
        def batch(self, texts: list[str]) -> list[str]:
            return ["negative" if t.startswith("bad") else "neutral" for t in texts]

    burst = parse_burst("ACME@+48h", rate=20)
    assert burst == Burst("ACME", START + 48 * 3600, 7200.0, 20)
    for seed in range(3):
        clean = build_replay(pool, hours=72, per_hour=60, seed=seed)
        assert len({r.entities for r, _ in clean}) == 5
        monitor = Monitor(Oracle(), MonitorStore(":memory:"))
        quiet = evaluate_replay(monitor, clean, [], deadline=7200)
        assert quiet["false_alerts"] == 0 and quiet["alerts"] == []
        noisy = build_replay(pool, hours=72, per_hour=60, seed=seed, bursts=[burst])
        assert len(noisy) > len(clean) and all(noisy[i][0].time <= noisy[i + 1][0].time for i in range(len(noisy) - 1))
        result = evaluate_replay(Monitor(Oracle(), MonitorStore(":memory:")), noisy, [burst], deadline=7200)
        assert result["bursts"][0]["detected"] and 0 < result["bursts"][0]["delay_s"] <= 3600
        assert result["false_alerts"] == 0
    with pytest.raises(ValueError, match="ENTITY@TIME"):
        parse_burst("ACME")


def tiny_classifier(folder: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "profit", "loss", "acme", "up", "down"]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    BertForSequenceClassification(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def test_a_transformers_folder_is_loaded_and_runs(tmp_path: Path) -> None:
    model = load_classifier(str(tiny_classifier(tmp_path / "tiny")))
    monitor = Monitor(model, MonitorStore(tmp_path / "m.sqlite"))
    labels = monitor.classify(["acme profit up", "acme loss down"])
    assert [label for label, _ in labels] == [p.label for p in model.batch(["acme profit up", "acme loss down"])]
    assert all(label in ("negative", "neutral", "positive") and 0 < score <= 1 for label, score in labels)
    no_negative = tmp_path / "bad"
    tiny_classifier(no_negative)
    cfg = json.loads((no_negative / "config.json").read_text())
    cfg["id2label"] = {"0": "a", "1": "b", "2": "c"}
    cfg["label2id"] = {"a": 0, "b": 1, "c": 2}
    (no_negative / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="no 'negative' label"):
        load_classifier(str(no_negative))
