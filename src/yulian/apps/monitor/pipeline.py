"""The monitor: texts -> sentiment model + entity tagger -> SQLite windows -> change detector -> alerts.

    monitor = Monitor(HFClassifier("runs/apps/monitor/en"), MonitorStore("monitor.sqlite"), EntityTagger.load(...),
                      alerts=AlertsFile("alerts.jsonl"), webhook=Webhook("http://..."))
    stats = monitor.run(open_source("news.jsonl", follow=True))

The classifier is any Runnable (or object with `batch(texts)`) returning `Prediction`s (or label strings); texts
are classified in batches as they arrive. Each text counts for the entities the tagger finds, those of the
record's entity field, and the overall topic `ALL` (unless `overall=""`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from yulian.apps.monitor.alerts import AlertsFile, Webhook
from yulian.apps.monitor.detector import Alert, ChangeDetector, DetectorConfig
from yulian.apps.monitor.sources import BadLine, Record, Source
from yulian.apps.monitor.store import MonitorStore, ScoredText
from yulian.apps.monitor.tagger import EntityTagger

__all__ = ["Monitor", "MonitorStats"]

log = logging.getLogger("yulian.apps.monitor")


@dataclass
class MonitorStats:
    """What a run did: texts processed, bad lines, alerts raised, seconds and texts/s."""

    texts: int = 0
    bad_lines: int = 0
    alerts: list[Alert] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def texts_per_second(self) -> float:
        """Throughput of the whole pipeline."""
        return self.texts / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "texts": self.texts,
            "bad_lines": self.bad_lines,
            "alerts": len(self.alerts),
            "seconds": round(self.seconds, 3),
            "texts_per_second": round(self.texts_per_second, 1),
        }


def _label_of(output: Any) -> tuple[str, float, Any]:
    if isinstance(output, str):
        return output, 1.0, None
    label = getattr(output, "label", None)
    if label is None and isinstance(output, dict):
        label = output.get("label")
        return str(label), float(output.get("score", 1.0)), output.get("scores")
    return str(label), float(getattr(output, "score", 1.0)), getattr(output, "scores", None)


class Monitor:
    """Ties the parts together (see the module docstring)."""

    def __init__(
        self,
        classifier: Any,
        store: MonitorStore,
        tagger: EntityTagger | None = None,
        detector: DetectorConfig | ChangeDetector | None = None,
        *,
        alerts: AlertsFile | None = None,
        webhook: Webhook | None = None,
        negative_label: str = "negative",
        positive_label: str = "positive",
        overall: str = "ALL",
        on_alert: Callable[[Alert], None] | None = None,
    ) -> None:
        """Build the monitor; the detector's window must equal the store's (restored from the store)."""
        self.classifier = classifier
        self.store = store
        self.tagger = tagger or EntityTagger()
        if isinstance(detector, ChangeDetector):
            self.detector = detector
        else:
            config = detector or DetectorConfig(window=store.window)
            self.detector = ChangeDetector(config)
        if abs(self.detector.config.window - store.window) > 1e-9:
            raise ValueError(f"detector window {self.detector.config.window:g} s != store window {store.window:g} s")
        self.alerts_file = alerts
        self.webhook = webhook
        self.negative_label = negative_label
        self.positive_label = positive_label
        self.overall = overall
        self.on_alert = on_alert
        self._restore()

    def _restore(self) -> None:
        keep = self.detector.config.baseline + 1
        for entity in self.store.entity_names():
            windows = self.store.windows(entity, keep)
            self.detector.restore(entity, windows, self.store.last_alert_window(entity))

    def classify(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(label, score) for each text, in one batched call of the classifier."""
        outputs = self.classifier.batch(list(texts)) if hasattr(self.classifier, "batch") else self.classifier(texts)
        return [_label_of(o)[:2] for o in outputs]

    def entities_of(self, record: Record) -> list[str]:
        """The entities a record counts for."""
        found = set(self.tagger.tag(record.text)) | set(record.entities)
        if self.overall:
            found.add(self.overall)
        return sorted(found)

    def process(self, records: Sequence[Record]) -> list[Alert]:
        """Classify, tag, store and test a batch of records (in time order within the batch); return new alerts."""
        if not records:
            return []
        labels = self.classify([r.text for r in records])
        scored: list[ScoredText] = []
        raised: list[Alert] = []
        for record, (label, score) in sorted(zip(records, labels, strict=True), key=lambda x: x[0].time):
            negative = label == self.negative_label
            entities = self.entities_of(record)
            scored.append(
                ScoredText(
                    ts=record.time,
                    text=record.text,
                    label=label,
                    score=score,
                    negative=negative,
                    entities=tuple(entities),
                    source=record.source,
                    positive=label == self.positive_label,
                )
            )
            for entity in entities:
                alert = self.detector.update(entity, record.time, negative)
                if alert is not None:
                    raised.append(alert)
        self.store.add(scored, raised)
        for alert in raised:
            self._dispatch(alert)
        return raised

    def _dispatch(self, alert: Alert) -> None:
        log.warning("ALERT %s", alert.message)
        if self.alerts_file is not None:
            self.alerts_file.write(alert)
        if self.webhook is not None:
            self.webhook.send(alert)
        if self.on_alert is not None:
            self.on_alert(alert)

    def run(
        self,
        source: Source | Iterable[Sequence[Record | BadLine]],
        *,
        batch_size: int = 64,
        strict: bool = False,
        progress: bool = False,
    ) -> MonitorStats:
        """Process every batch of a Source until it ends; bad lines are logged (or raise with `strict`)."""
        stats = MonitorStats()
        start = time.perf_counter()
        batches = source.batches(batch_size) if isinstance(source, Source) else source
        last_report = start
        try:
            for batch in batches:
                records: list[Record] = []
                for item in batch:
                    if isinstance(item, BadLine):
                        if strict:
                            raise ValueError(str(item))
                        stats.bad_lines += 1
                        log.warning("skipped %s", item)
                    else:
                        records.append(item)
                stats.alerts += self.process(records)
                stats.texts += len(records)
                if isinstance(source, Source):
                    for follower in source.followers:
                        if follower.inode:
                            self.store.save_position(str(follower.path), follower.inode, follower.offset, follower.line)
                now = time.perf_counter()
                if progress and now - last_report >= 5:
                    last_report = now
                    print(
                        f"{stats.texts:,} texts, {len(stats.alerts)} alerts, {stats.texts / (now - start):.0f} texts/s",
                        file=sys.stderr,
                    )
        finally:
            stats.seconds = time.perf_counter() - start
            if isinstance(source, Source):
                source.close()
        return stats
