"""Train/dev splits that are deterministic for a seed and record which records went where.

`stratified_split` keeps each label's share in both parts (classification); `split_by_article` keeps QA articles
whole (questions on one context must not leak between train and dev); `random_split` serves the other tasks;
`train_dev_split` picks the right one for the examples given. Standard library only.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from yulian.tuning.data_types import QAExample, TextExample

__all__ = ["Split", "random_split", "split_by_article", "stratified_split", "train_dev_split"]

E = TypeVar("E")


@dataclass
class Split(Generic[E]):
    """Two parts of a data set, in the original order, with the positions (in the input) that went to each."""

    train: list[E]
    dev: list[E]
    train_index: list[int]
    dev_index: list[int]
    method: str
    seed: int
    dev_fraction: float

    def manifest(self) -> dict[str, Any]:
        """What went where, for a report or a JSON file: record lines (or QA ids) of each part."""

        def ref(example: Any) -> Any:
            return example.id if isinstance(example, QAExample) else getattr(example, "line", None)

        return {
            "method": self.method,
            "seed": self.seed,
            "dev_fraction": self.dev_fraction,
            "train": [ref(e) for e in self.train],
            "dev": [ref(e) for e in self.dev],
        }


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"dev_fraction must be in [0, 1), not {fraction}")


def _make(examples: Sequence[E], dev: set[int], method: str, seed: int, fraction: float) -> Split[E]:
    train_index = [i for i in range(len(examples)) if i not in dev]
    dev_index = sorted(dev)
    return Split(
        [examples[i] for i in train_index],
        [examples[i] for i in dev_index],
        train_index,
        dev_index,
        method,
        seed,
        fraction,
    )


def _allocate(sizes: dict[str, int], fraction: float) -> dict[str, int]:
    """Dev count per stratum: proportional, summing to round(N * fraction) (largest remainders), and never taking
    a stratum's last example (each label keeps at least one training example)."""
    total = round(sum(sizes.values()) * fraction)
    quota = {key: n * fraction for key, n in sizes.items()}
    counts = {key: min(int(q), max(sizes[key] - 1, 0)) for key, q in quota.items()}
    order = sorted(sizes, key=lambda k: (-(quota[k] - int(quota[k])), k))
    left = total - sum(counts.values())
    while left > 0:
        progressed = False
        for key in order:
            if left > 0 and counts[key] < sizes[key] - 1:
                counts[key] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return counts


def stratified_split(examples: Sequence[TextExample], dev_fraction: float = 0.1, seed: int = 42) -> Split[TextExample]:
    """Split classification examples so each label (each label set, for multi-label) has its share in dev.

    Deterministic for a seed; a label with a single example stays in train.
    """
    _check_fraction(dev_fraction)
    strata: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        strata["\x1f".join(sorted(example.targets))].append(i)
    counts = _allocate({key: len(members) for key, members in strata.items()}, dev_fraction)
    rng = random.Random(seed)
    dev: set[int] = set()
    for key in sorted(strata):
        dev.update(rng.sample(strata[key], counts[key]))
    return _make(examples, dev, "stratified", seed, dev_fraction)


def random_split(examples: Sequence[E], dev_fraction: float = 0.1, seed: int = 42) -> Split[E]:
    """Split examples at random: round(N * dev_fraction) of them to dev. Deterministic for a seed."""
    _check_fraction(dev_fraction)
    rng = random.Random(seed)
    dev = set(rng.sample(range(len(examples)), round(len(examples) * dev_fraction)))
    return _make(examples, dev, "random", seed, dev_fraction)


def split_by_article(examples: Sequence[QAExample], fraction: float = 0.1, seed: int = 42) -> Split[QAExample]:
    """Split QA examples by article: a `fraction` of the articles (at least one, when there are two or more) go
    to dev with all their questions. Deterministic for a seed."""
    _check_fraction(fraction)
    articles = sorted({e.article for e in examples})
    n_dev = round(len(articles) * fraction)
    if fraction > 0 and len(articles) >= 2:
        n_dev = min(max(n_dev, 1), len(articles) - 1)
    chosen = set(random.Random(seed).sample(articles, n_dev))
    dev = {i for i, e in enumerate(examples) if e.article in chosen}
    return _make(examples, dev, "by_article", seed, fraction)


def train_dev_split(examples: Sequence[Any], dev_fraction: float = 0.1, seed: int = 42) -> Split[Any]:
    """The right split for the task: stratified for classification, by article for QA, random otherwise."""
    if examples and all(isinstance(e, TextExample) for e in examples):
        return stratified_split(examples, dev_fraction, seed)
    if examples and all(isinstance(e, QAExample) for e in examples):
        return split_by_article(examples, dev_fraction, seed)
    return random_split(examples, dev_fraction, seed)
