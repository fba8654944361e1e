"""Experience replay for continual learning: mix a stratified, seeded sample of the old task's examples into the new
training set, and keep a capped reservoir sample of everything a model was trained on next to the model
(`OUT/replay.jsonl`), so that the next re-tune can replay without the user keeping the old file.

```python
from yulian.tuning.continual_replay import ReplayBuffer, replay_mix

mixed = replay_mix(new_examples, old_examples, ratio=0.1, seed=0)   # + 10% as many old examples, every old label kept
buffer = ReplayBuffer.load("runs/a")                                 # what runs/a was trained on (a uniform sample)
buffer.add(new_examples).save("runs/b")                              # runs/b/replay.jsonl now samples both tasks
```

`replay.jsonl` holds one example per line; classification examples are written as `{"text", "label"}` (or
`"labels"`, `"text_pair"`), so the file is also ordinary training data for `yulian train --train`. Other example
kinds (NER, QA, chat) carry a `"type"` field. `replay.json` beside it records how many examples the sample stands
for (`seen`), the cap and the seed. Mind that the buffer holds training texts: leave it out (cap 0) when a model
folder is shared where the data must not go.

Standard library only.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from yulian.tuning.data_types import ChatExample, DataError, QAExample, TextExample, TokenExample

__all__ = [
    "REPLAY_FILE",
    "REPLAY_META",
    "ReplayBuffer",
    "label_key",
    "read_examples",
    "replay_count",
    "replay_mix",
    "replay_sample",
]

REPLAY_FILE = "replay.jsonl"
REPLAY_META = "replay.json"
_KINDS: dict[str, type[Any]] = {
    "TextExample": TextExample,
    "TokenExample": TokenExample,
    "QAExample": QAExample,
    "ChatExample": ChatExample,
}


def label_key(example: Any) -> str | None:
    """The stratum of an example: its label (or its sorted labels joined by "|" for multi-label), None for
    examples without one (NER, QA, chat: those are sampled uniformly)."""
    targets = getattr(example, "targets", None)
    if not isinstance(targets, list) or not targets:
        return None
    return "|".join(sorted(str(t) for t in targets))


def _quotas(sizes: dict[str, int], n: int) -> dict[str, int]:
    """How many to draw from each stratum: proportional to its size (largest remainder), at least one from each
    stratum when `n` allows, never more than a stratum holds. The quotas sum to `n` (`n` < the total)."""
    total = sum(sizes.values())
    exact = {k: n * size / total for k, size in sizes.items()}
    quota = {k: math.floor(v) for k, v in exact.items()}
    if n >= len(sizes):
        for k in quota:
            quota[k] = max(quota[k], 1)
    while sum(quota.values()) > n:  # the at-least-one rule overshot: take back from the biggest quotas
        biggest = max(quota, key=lambda k: (quota[k], k))
        quota[biggest] -= 1
    order = sorted(sizes, key=lambda k: (-(exact[k] - math.floor(exact[k])), k))
    while sum(quota.values()) < n:
        grew = False
        for k in order:
            if sum(quota.values()) >= n:
                break
            if quota[k] < sizes[k]:
                quota[k] += 1
                grew = True
        if not grew:
            break
    return quota


def replay_sample(
    examples: Sequence[Any],
    n: int,
    *,
    seed: int = 0,
    stratify: bool = True,
    key: Callable[[Any], str | None] = label_key,
) -> list[Any]:
    """`n` examples drawn without replacement, seeded; stratified by label (proportional, every label at least
    once when `n` is at least the number of labels). All of them, shuffled, when `n` >= len(examples)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"the number of replayed examples must be a whole number >= 0, got {n!r}")
    rng = random.Random(seed)
    pool = list(examples)
    if n >= len(pool):
        rng.shuffle(pool)
        return pool
    groups: dict[str, list[Any]] = {}
    for example in pool:
        label = key(example) if stratify else None
        groups.setdefault("" if label is None else label, []).append(example)
    quotas = _quotas({k: len(v) for k, v in groups.items()}, n)
    out: list[Any] = []
    for label in sorted(groups):
        out += rng.sample(groups[label], quotas[label])
    rng.shuffle(out)
    return out


def replay_count(n_new: int, n_old: int, *, ratio: float | None = None, count: int | None = None) -> int:
    """How many old examples to replay next to `n_new` new ones: `count`, or `ratio` old examples per new one
    (0.1: one old example for ten new ones), at most the `n_old` there are."""
    if (ratio is None) == (count is None):
        raise ValueError("give either a replay ratio or a replay count (not both, not neither)")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"replay count must be a whole number >= 0, got {count!r}")
        wanted = count
    else:
        if not isinstance(ratio, int | float) or isinstance(ratio, bool) or ratio < 0 or math.isnan(ratio):
            raise ValueError(f"replay ratio must be a number >= 0 (old examples per new one), got {ratio!r}")
        wanted = round(ratio * n_new)
    return min(wanted, n_old)


def replay_mix(
    new: Sequence[Any],
    old: Sequence[Any],
    ratio: float | None = None,
    *,
    count: int | None = None,
    seed: int = 0,
    stratify: bool = True,
) -> list[Any]:
    """The new examples plus a sample of the old ones (`ratio` old per new, or `count` of them; see
    `replay_sample`), shuffled with `seed`."""
    n = replay_count(len(new), len(old), ratio=ratio, count=count)
    mixed = list(new) + replay_sample(old, n, seed=seed, stratify=stratify)
    random.Random(seed + 1).shuffle(mixed)
    return mixed


# --------------------------------------------------------------------------------------------- reading/writing
def _to_record(example: Any) -> dict[str, Any]:
    if isinstance(example, TextExample):
        record: dict[str, Any] = {"text": example.text}
        if example.text_pair is not None:
            record["text_pair"] = example.text_pair
        if example.labels is not None:
            record["labels"] = list(example.labels)
        else:
            record["label"] = example.label
        return record
    kind = type(example).__name__
    if kind not in _KINDS:
        raise TypeError(f"cannot keep a {kind} in a replay buffer (kinds: {', '.join(_KINDS)})")
    data = {k: v for k, v in asdict(example).items() if k != "line"}
    return {"type": kind, **data}


def _from_record(record: dict[str, Any], where: str, line: int) -> Any:
    kind = str(record.get("type", "TextExample"))
    cls = _KINDS.get(kind)
    if cls is None:
        raise DataError(f"{where} line {line}: unknown example type {kind!r} (types: {', '.join(_KINDS)})", line=line)
    names = {f.name for f in fields(cls)}
    data = {k: v for k, v in record.items() if k in names and k != "line"}
    try:
        return cls(**data, line=line)
    except TypeError as e:
        raise DataError(f"{where} line {line}: not a {kind} ({e})", line=line) from None


def read_examples(path: str | Path) -> list[Any]:
    """The examples of a replay file (`replay.jsonl`, or a folder holding one)."""
    file = Path(path)
    if file.is_dir():
        file = file / REPLAY_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no replay buffer at {file}")
    out: list[Any] = []
    for number, raw in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"{file} line {number}: not valid JSON ({e.msg})", path=str(file), line=number) from None
        if not isinstance(record, dict):
            raise DataError(f"{file} line {number}: expected a JSON object", path=str(file), line=number)
        out.append(_from_record(record, str(file), number))
    return out


@dataclass
class ReplayBuffer:
    """A uniform sample (reservoir sampling, Vitter's algorithm R) of at most `cap` of the `seen` examples a model
    was trained on, over all the tasks it learned in turn.

    Attributes:
        examples: the sample. seen: how many examples it stands for. cap: its largest size. seed: seeds the
        sampling (the n-th addition draws from `seed` and `seen`, so a run is reproducible).
    """

    examples: list[Any] = field(default_factory=list)
    seen: int = 0
    cap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.cap, bool) or not isinstance(self.cap, int) or self.cap < 0:
            raise ValueError(f"ReplayBuffer.cap must be a whole number >= 0, got {self.cap!r}")

    def __len__(self) -> int:
        return len(self.examples)

    def add(self, examples: Iterable[Any]) -> ReplayBuffer:
        """Stream `examples` through the reservoir (each of all `seen` so far is kept with chance cap / seen);
        returns self."""
        rng = random.Random(self.seed * 1_000_003 + self.seen)
        if len(self.examples) > self.cap:  # the cap was lowered: keep a uniform subsample
            self.examples = rng.sample(self.examples, self.cap)
        for example in examples:
            if len(self.examples) < self.cap:
                self.examples.append(example)
            else:
                slot = rng.randrange(self.seen + 1)
                if slot < self.cap:
                    self.examples[slot] = example
            self.seen += 1
        return self

    def save(self, folder: str | Path) -> Path:
        """Write `folder/replay.jsonl` and `folder/replay.json` (atomically); returns the .jsonl path."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(_to_record(e), ensure_ascii=False) + "\n" for e in self.examples)
        tmp = out / (REPLAY_FILE + ".tmp")
        tmp.write_text(lines, encoding="utf-8")
        tmp.replace(out / REPLAY_FILE)
        meta = {"format": 1, "seen": self.seen, "cap": self.cap, "seed": self.seed, "size": len(self.examples)}
        (out / REPLAY_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return out / REPLAY_FILE

    @classmethod
    def load(cls, path: str | Path, *, cap: int | None = None) -> ReplayBuffer:
        """The buffer in a model folder (or at a replay.jsonl path); `cap` overrides the saved one (a buffer that
        has already dropped examples can only shrink)."""
        file = Path(path)
        folder = file if file.is_dir() else file.parent
        examples = read_examples(file)
        meta_file = folder / REPLAY_META
        meta: dict[str, Any] = {}
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        seen = max(int(meta.get("seen", len(examples))), len(examples))
        wanted = int(meta.get("cap", max(len(examples), 1))) if cap is None else cap
        if seen > len(examples):  # a full reservoir cannot grow and stay uniform (the dropped examples are gone)
            wanted = min(wanted, len(examples))
        return cls(examples, seen=seen, cap=wanted, seed=int(meta.get("seed", 0)))

    @staticmethod
    def exists(folder: str | Path) -> bool:
        """Whether `folder` holds a replay buffer."""
        return (Path(folder) / REPLAY_FILE).is_file()
