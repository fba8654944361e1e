"""Replays for evaluating the monitor: a labelled data set becomes a timed stream over synthetic entities, with
optional injected bursts of negative texts, and the alerts are scored against the bursts.

    stream = build_replay(pool, hours=72, per_hour=60, seed=1, bursts=[Burst("ACME", start=48 * 3600)])
    result = evaluate_replay(monitor, stream, bursts, deadline=2 * 3600)
    result["detected"], result["delay_s"], result["false_alerts"]

Background texts are drawn (with replacement) from the whole pool, so each entity's negative share is the data
set's; a burst adds `rate` negative texts per hour for `duration` seconds, all for one entity.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yulian.apps.monitor.data import LabelledText
from yulian.apps.monitor.sources import Record, parse_time

__all__ = ["ENTITIES", "Burst", "CachedClassifier", "build_replay", "evaluate_replay", "parse_burst"]

ENTITIES = ("ACME", "BOLT", "CRUX", "DYNA", "EPIC")
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: where replays start


@dataclass(frozen=True)
class Burst:
    """Extra negative texts for one entity: `rate` per hour from `start` (epoch seconds) for `duration` seconds."""

    entity: str
    start: float
    duration: float = 7200.0
    rate: float = 12.0


class CachedClassifier:
    """Wraps a classifier with `batch(texts)` and remembers each text's output: replays draw their texts from a
    fixed pool with replacement, so after the first replay the model is not run again (a deterministic model gives
    the same outputs either way). `calls` counts the texts actually sent to the model."""

    def __init__(self, classifier: Any) -> None:
        """Wrap `classifier`."""
        self.classifier = classifier
        self.cache: dict[str, Any] = {}
        self.calls = 0

    def batch(self, texts: Sequence[str]) -> list[Any]:
        """The outputs for `texts`, running the model only on texts not seen before."""
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            self.calls += len(todo)
            self.cache.update(zip(todo, self.classifier.batch(todo), strict=True))
        return [self.cache[t] for t in texts]


def parse_burst(spec: str, start: float = EPOCH, duration: float = 7200.0, rate: float = 12.0) -> Burst:
    """`ENTITY@TIME`: TIME is ISO 8601, epoch seconds, or `+HOURSh` after the replay's start (`ACME@+48h`)."""
    entity, sep, when = spec.rpartition("@")
    if not sep or not entity.strip() or not when.strip():
        raise ValueError(f"--inject-burst takes ENTITY@TIME (e.g. ACME@+48h or ACME@2026-01-03T00:00Z), got {spec!r}")
    when = when.strip()
    if when.startswith("+") and when.endswith("h"):
        try:
            at = start + float(when[1:-1]) * 3600
        except ValueError:
            raise ValueError(f"--inject-burst: bad offset {when!r} (use +48h)") from None
    else:
        at = parse_time(when)
    return Burst(entity.strip(), at, duration, rate)


def build_replay(
    pool: Sequence[LabelledText],
    *,
    hours: float = 72.0,
    per_hour: float = 60.0,
    entities: Sequence[str] = ENTITIES,
    bursts: Sequence[Burst] = (),
    seed: int = 0,
    start: float = EPOCH,
) -> list[tuple[Record, str]]:
    """A timed stream of (Record, true label): Poisson arrivals at `per_hour`, each text for one random entity,
    plus each burst's negative texts; sorted by time."""
    if not pool:
        raise ValueError("build_replay needs a non-empty pool of labelled texts")
    rng = random.Random(seed)
    negatives = [t for t in pool if t.label == "negative"]
    out: list[tuple[Record, str]] = []
    t = start
    end = start + hours * 3600
    while True:
        t += rng.expovariate(per_hour / 3600)
        if t >= end:
            break
        item = rng.choice(pool)
        out.append((Record(item.text, t, (rng.choice(list(entities)),), source="replay"), item.label))
    for burst in bursts:
        if not negatives:
            raise ValueError("the pool has no negative texts to inject")
        t = burst.start
        while True:
            t += rng.expovariate(burst.rate / 3600)
            if t >= burst.start + burst.duration:
                break
            item = rng.choice(negatives)
            out.append((Record(item.text, t, (burst.entity,), source="burst"), item.label))
    out.sort(key=lambda x: x[0].time)
    return out


def evaluate_replay(
    monitor: Any, stream: Sequence[tuple[Record, str]], bursts: Sequence[Burst], deadline: float, batch_size: int = 64
) -> dict[str, Any]:
    """Run `monitor` over the stream; an alert for a burst's entity between its start and start + deadline detects
    it; every other alert is false. Returns detections, delays, false alerts and the alerts themselves."""
    alerts = []
    records = [r for r, _ in stream]
    for i in range(0, len(records), batch_size):
        alerts += monitor.process(records[i : i + batch_size])
    found: list[dict[str, Any]] = []
    used: set[int] = set()
    for burst in bursts:
        hits = [
            (j, a)
            for j, a in enumerate(alerts)
            if a.entity == burst.entity and burst.start <= a.time <= burst.start + deadline
        ]
        if hits:
            first = hits[0][1]
            used.update(k for k, _ in hits)
            found.append({"entity": burst.entity, "detected": True, "delay_s": first.time - burst.start})
        else:
            found.append({"entity": burst.entity, "detected": False, "delay_s": None})
    # alerts during a burst on the overall topic are true as well (the burst moves it); others are false
    in_burst = [
        j
        for j, a in enumerate(alerts)
        if any(b.start <= a.time <= b.start + b.duration + deadline for b in bursts) and a.entity == monitor.overall
    ]
    false = [a for j, a in enumerate(alerts) if j not in used and j not in in_burst]
    return {
        "texts": len(records),
        "bursts": found,
        "alerts": [a.to_dict() for a in alerts],
        "false_alerts": len(false),
        "false_alert_list": [a.message for a in false],
    }
