"""The monitor's SQLite store (WAL mode): texts, per-entity window counts, alerts and followed-file positions.

    store = MonitorStore("monitor.sqlite", window=3600)
    store.add(items)                              # one transaction per batch
    store.entities(); store.series("ACME"); store.alerts()

Several readers (the dashboard) may read while one writer (the monitor) writes. A database remembers its window
length: opening it with another one is an error, not a silent mix of window sizes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yulian.apps.monitor.detector import Alert, WindowCount

__all__ = ["MonitorStore", "ScoredText"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS texts (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, text TEXT NOT NULL, label TEXT NOT NULL, score REAL NOT NULL,
    negative INTEGER NOT NULL, entities TEXT NOT NULL, source TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS texts_ts ON texts(ts);
CREATE TABLE IF NOT EXISTS windows (
    entity TEXT NOT NULL, idx INTEGER NOT NULL, n INTEGER NOT NULL, neg INTEGER NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (entity, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, entity TEXT NOT NULL, ts REAL NOT NULL, window_start REAL NOT NULL, share REAL NOT NULL,
    baseline REAL NOT NULL, n INTEGER NOT NULL, z REAL NOT NULL, reason TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_entity ON alerts(entity, ts);
CREATE TABLE IF NOT EXISTS positions (path TEXT PRIMARY KEY, inode INTEGER NOT NULL, offset INTEGER NOT NULL,
    line INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class ScoredText:
    """A text after the model and the tagger: what the store keeps."""

    ts: float
    text: str
    label: str
    score: float
    negative: bool
    entities: Sequence[str] = field(default_factory=tuple)
    source: str = ""
    positive: bool = False


class MonitorStore:
    """SQLite persistence of the monitor (see the module docstring). One connection, guarded by a lock."""

    def __init__(self, path: str | Path, window: float = 3600.0, keep_texts: bool = True) -> None:
        """Open (or create) the database; `window` must match the one it was created with."""
        self.path = str(path)
        self.keep_texts = keep_texts
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ValueError(f"{self.path}: not a usable SQLite database ({e})") from None
        self._lock = threading.Lock()
        stored = self._db.execute("SELECT value FROM meta WHERE key='window'").fetchone()
        if stored is None:
            self._db.execute("INSERT INTO meta VALUES ('window', ?)", (repr(float(window)),))
            self.window = float(window)
        else:
            self.window = float(stored[0])
            if abs(self.window - float(window)) > 1e-9:
                raise ValueError(
                    f"{self.path} was created with --window {self.window:g} s, not {float(window):g} s: "
                    "use the same window or another database"
                )

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # writing ----------------------------------------------------------------------------------------------------
    def add(self, items: Sequence[ScoredText], alerts: Iterable[Alert] = ()) -> None:
        """Store a batch of scored texts, their window counts and any alerts, in one transaction."""
        counts: dict[tuple[str, int], list[int]] = {}
        for item in items:
            idx = int(item.ts // self.window)
            for entity in item.entities:
                c = counts.setdefault((entity, idx), [0, 0, 0])
                c[0] += 1
                c[1] += int(item.negative)
                c[2] += int(item.positive)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                if self.keep_texts:
                    self._db.executemany(
                        "INSERT INTO texts (ts, text, label, score, negative, entities, source) VALUES (?,?,?,?,?,?,?)",
                        [
                            (i.ts, i.text, i.label, i.score, int(i.negative), json.dumps(list(i.entities)), i.source)
                            for i in items
                        ],
                    )
                self._db.executemany(
                    "INSERT INTO windows VALUES (?,?,?,?,?) ON CONFLICT(entity, idx) DO UPDATE SET "
                    "n = n + excluded.n, neg = neg + excluded.neg, pos = pos + excluded.pos",
                    [(e, idx, c[0], c[1], c[2]) for (e, idx), c in counts.items()],
                )
                for alert in alerts:
                    self._db.execute(
                        "INSERT INTO alerts (entity, ts, window_start, share, baseline, n, z, reason, data) "
                        "VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            alert.entity,
                            alert.time,
                            alert.window_start,
                            alert.share,
                            alert.baseline,
                            alert.n,
                            alert.z,
                            alert.reason,
                            json.dumps(alert.to_dict(), ensure_ascii=False),
                        ),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def save_position(self, path: str, inode: int, offset: int, line: int) -> None:
        """Remember how far a followed file was read (to resume after a restart)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO positions VALUES (?,?,?,?)", (path, inode, offset, line))

    def position(self, path: str) -> tuple[int, int, int] | None:
        """`(inode, offset, line)` saved for `path`, or None."""
        row = self._query("SELECT inode, offset, line FROM positions WHERE path=?", (path,))
        return (int(row[0][0]), int(row[0][1]), int(row[0][2])) if row else None

    # reading ----------------------------------------------------------------------------------------------------
    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def entities(self) -> list[dict[str, Any]]:
        """Every entity with its texts, negatives, overall share, last window start and alert count, busiest first."""
        rows = self._query(
            "SELECT w.entity, SUM(w.n), SUM(w.neg), SUM(w.pos), MAX(w.idx), "
            "(SELECT COUNT(*) FROM alerts a WHERE a.entity = w.entity) FROM windows w GROUP BY w.entity "
            "ORDER BY SUM(w.n) DESC, w.entity"
        )
        return [
            {
                "entity": e,
                "texts": n,
                "negatives": neg,
                "positives": pos,
                "share": neg / n if n else 0.0,
                "last": idx * self.window,
                "alerts": alerts,
            }
            for e, n, neg, pos, idx, alerts in rows
        ]

    def series(self, entity: str, limit: int = 500) -> list[dict[str, Any]]:
        """The entity's last `limit` windows, oldest first: start (epoch seconds), n, neg, pos, share."""
        rows = self._query(
            "SELECT idx, n, neg, pos FROM windows WHERE entity=? ORDER BY idx DESC LIMIT ?", (entity, int(limit))
        )
        return [
            {"start": idx * self.window, "n": n, "neg": neg, "pos": pos, "share": neg / n if n else 0.0}
            for idx, n, neg, pos in reversed(rows)
        ]

    def windows(self, entity: str, last: int) -> list[WindowCount]:
        """The entity's last `last` windows as WindowCount, oldest first (to restore a detector)."""
        rows = self._query(
            "SELECT idx, n, neg FROM windows WHERE entity=? ORDER BY idx DESC LIMIT ?", (entity, int(last))
        )
        return [WindowCount(idx, n, neg) for idx, n, neg in reversed(rows)]

    def entity_names(self) -> list[str]:
        """All entity names."""
        return [r[0] for r in self._query("SELECT DISTINCT entity FROM windows ORDER BY entity")]

    def alerts(self, entity: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Alerts as stored (Alert.to_dict()), newest first, optionally of one entity."""
        if entity is None:
            rows = self._query("SELECT data FROM alerts ORDER BY ts DESC, id DESC LIMIT ?", (int(limit),))
        else:
            rows = self._query(
                "SELECT data FROM alerts WHERE entity=? ORDER BY ts DESC, id DESC LIMIT ?", (entity, int(limit))
            )
        return [json.loads(r[0]) for r in rows]

    def last_alert_window(self, entity: str) -> int | None:
        """The window index of the entity's latest alert."""
        rows = self._query("SELECT MAX(window_start) FROM alerts WHERE entity=?", (entity,))
        return None if not rows or rows[0][0] is None else round(rows[0][0] / self.window)

    def texts(self, entity: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest stored texts (optionally mentioning `entity`), newest first."""
        sql = "SELECT ts, text, label, score, entities, source FROM texts"
        args: list[Any] = []
        if entity is not None:
            sql += " WHERE EXISTS (SELECT 1 FROM json_each(texts.entities) WHERE value = ?)"
            args.append(entity)
        rows = self._query(sql + " ORDER BY ts DESC, id DESC LIMIT ?", (*args, int(limit)))
        return [
            {"ts": ts, "text": text, "label": label, "score": score, "entities": json.loads(ents), "source": source}
            for ts, text, label, score, ents, source in rows
        ]

    def count(self) -> int:
        """How many texts are stored."""
        return int(self._query("SELECT COUNT(*) FROM texts")[0][0])
