"""Entity tagging (dictionary, aliases, tickers) and the SQLite store (windows, alerts, positions)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from yulian.apps.monitor.detector import Alert
from yulian.apps.monitor.store import MonitorStore, ScoredText
from yulian.apps.monitor.tagger import EntityTagger, normalize_ticker

DICTIONARY = {
    "Apple": ["AAPL", "Apple Inc", "苹果公司"],
    "Kweichow Moutai": ["600519", "贵州茅台", "茅台"],
    "Tencent": ["腾讯", "0700.HK"],
    "IT services": ["IT"],
}


def test_dictionary_aliases_and_tickers() -> None:
    tagger = EntityTagger(DICTIONARY)
    text = "$AAPL falls; 贵州茅台(600519) flat, 00700.HK up; it rains; $msft and 000001 up; apple pie"
    assert tagger.tag(text) == ["000001.SZ", "Apple", "Kweichow Moutai", "MSFT", "Tencent"]
    assert tagger.tag("IT spending rises") == ["IT services"]  # short capitals match case-sensitively only
    assert tagger.tag("Pineapple Inc. rises") == []  # whole words: no match inside "Pineapple"
    assert tagger.tag("苹果公司发布新品") == ["Apple"]
    assert tagger.tag("营收600519元，增长30%") == []  # an amount, not a stock code
    assert EntityTagger(DICTIONARY, tickers=False).tag("$MSFT 600000 up") == []


def test_normalize_ticker() -> None:
    assert normalize_ticker("$brk.b") == "BRK.B"
    assert normalize_ticker("700.hk") == "00700.HK"
    assert normalize_ticker("600519") == "600519.SH"
    assert normalize_ticker("300750.SZ") == "300750.SZ"
    assert normalize_ticker("000001.ss") == "000001.SH"
    assert normalize_ticker("Apple") is None


def test_load_json_and_csv_dictionaries(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text(json.dumps({"Apple": ["AAPL"], "Nokia": "NOK"}), encoding="utf-8")
    assert EntityTagger.load(tmp_path / "e.json").tag("$NOK and AAPL") == ["Apple", "Nokia"]
    (tmp_path / "e.csv").write_text("# name,aliases\nNokia,Nokia Oyj,诺基亚\nApple,AAPL\n", encoding="utf-8")
    assert EntityTagger.load(tmp_path / "e.csv").tag("诺基亚 and Nokia Oyj") == ["Nokia"]
    (tmp_path / "bad.json").write_text('{"a": [1,\n}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json line 2: not valid JSON"):
        EntityTagger.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="entity dictionary"):
        EntityTagger.load(tmp_path / "none.json")


def item(ts: float, negative: bool, *entities: str, text: str = "t") -> ScoredText:
    label = "negative" if negative else "neutral"
    return ScoredText(ts, text, label, 0.9, negative, entities)


def alert(entity: str, ts: float) -> Alert:
    return Alert(entity, ts, ts // 3600 * 3600, 3600.0, 0.7, 0.1, 20, 14, 6.0, 0.0, "zscore")


def test_windows_accumulate_across_batches(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "m.sqlite", window=3600)
    store.add([item(10, True, "A", "ALL"), item(20, False, "A", "ALL"), item(3700, True, "B", "ALL")])
    store.add([item(30, True, "A", "ALL", text="苹果下跌")], [alert("A", 30)])
    assert store.series("A") == [{"start": 0.0, "n": 3, "neg": 2, "pos": 0, "share": 2 / 3}]
    assert [p["n"] for p in store.series("ALL")] == [3, 1]
    entities = {e["entity"]: e for e in store.entities()}
    assert entities["ALL"]["texts"] == 4 and entities["A"]["alerts"] == 1 and entities["B"]["share"] == 1.0
    assert store.alerts()[0]["entity"] == "A" and store.alerts("B") == []
    assert store.last_alert_window("A") == 0 and store.last_alert_window("B") is None
    assert [w.n for w in store.windows("ALL", 5)] == [3, 1]
    assert store.texts("A", limit=1)[0]["text"] == "苹果下跌" and len(store.texts("B")) == 1
    assert store.count() == 4
    mode = sqlite3.connect(tmp_path / "m.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()
    reopened = MonitorStore(tmp_path / "m.sqlite", window=3600)
    assert reopened.series("A")[0]["n"] == 3


def test_window_mismatch_and_positions(tmp_path: Path) -> None:
    MonitorStore(tmp_path / "m.sqlite", window=3600).close()
    with pytest.raises(ValueError, match="created with --window 3600 s, not 60 s"):
        MonitorStore(tmp_path / "m.sqlite", window=60)
    store = MonitorStore(tmp_path / "m.sqlite")
    assert store.position("feed.jsonl") is None
    store.save_position("feed.jsonl", 42, 1000, 17)
    assert store.position("feed.jsonl") == (42, 1000, 17)
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="not a usable SQLite database"):
        MonitorStore(tmp_path / "junk.sqlite")


def test_failed_batch_rolls_back(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "m.sqlite", keep_texts=True)
    store.add([item(1, True, "A")])
    broken = ScoredText(2, None, "negative", 0.9, True, ("A",))  # type: ignore[arg-type]  # text NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        store.add([broken])
    assert store.series("A")[0]["n"] == 1 and store.count() == 1
