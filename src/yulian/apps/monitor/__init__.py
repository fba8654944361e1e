"""Financial sentiment monitor (`yulian app monitor`): texts streamed through a fine-tuned sentiment model and an
entity tagger; rolling negative share per entity in SQLite; alerts when it jumps; a dashboard and a PNG export.

    from yulian.apps.monitor import Monitor, MonitorStore, EntityTagger, DetectorConfig, open_source
    monitor = Monitor(HFClassifier("runs/apps/monitor/en"), MonitorStore("monitor.sqlite"), EntityTagger.load("e.json"))
    monitor.run(open_source("news.jsonl", follow=True))

Nothing heavy is imported here: torch/transformers load with the model, fastapi with the dashboard.
"""

from yulian.apps.monitor.alerts import AlertsFile, Webhook
from yulian.apps.monitor.detector import Alert, ChangeDetector, DetectorConfig
from yulian.apps.monitor.lexicon import KeywordSentiment
from yulian.apps.monitor.pipeline import Monitor, MonitorStats
from yulian.apps.monitor.sources import BadLine, FieldMap, FileFollower, Record, Source, open_source
from yulian.apps.monitor.store import MonitorStore, ScoredText
from yulian.apps.monitor.tagger import EntityTagger

__all__ = [
    "Alert",
    "AlertsFile",
    "BadLine",
    "ChangeDetector",
    "DetectorConfig",
    "EntityTagger",
    "FieldMap",
    "FileFollower",
    "KeywordSentiment",
    "Monitor",
    "MonitorStats",
    "MonitorStore",
    "Record",
    "ScoredText",
    "Source",
    "Webhook",
    "open_source",
]
