"""Split one data set into per-client shards, the way federated experiments simulate data owners.

```python
from yulian.federated.partition import parse_partition

spec = parse_partition("dirichlet:0.5")          # or "iid", "field:source"
shards = spec.split(examples, clients=4, seed=42, label_of=lambda e: e.label)
```

- `iid`: a seeded shuffle dealt round-robin: every client gets the same label mix (sizes differ by at most one).
- `dirichlet:ALPHA`: label skew. For each label, the shares of the clients are drawn from Dirichlet(ALPHA) and its
  examples dealt out in those proportions; small ALPHA (0.1) gives clients dominated by one or two labels, large
  ALPHA (100) approaches IID. Redrawn (seeded) until every client has at least `min_size` examples.
- `field:NAME`: one client per distinct value of a record field (e.g. `field:source`, one client per data owner);
  the number of clients is the number of values.

Pure Python (the standard library's `random.gammavariate` draws the Dirichlet shares): no numpy needed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["PARTITIONS", "PartitionSpec", "dirichlet_partition", "field_partition", "iid_partition", "parse_partition"]

T = TypeVar("T")

PARTITIONS = ("iid", "dirichlet:ALPHA", "field:NAME")
"""The partition specs `parse_partition` understands."""

_MAX_DRAWS = 100


def iid_partition(items: Sequence[T], clients: int, seed: int = 42) -> list[list[T]]:
    """A seeded shuffle dealt round-robin to `clients` shards (sizes differ by at most one)."""
    _check_clients(clients, len(items))
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [[items[i] for i in order[c::clients]] for c in range(clients)]


def dirichlet_partition(
    items: Sequence[T],
    clients: int,
    alpha: float,
    label_of: Callable[[T], Hashable],
    seed: int = 42,
    min_size: int = 1,
) -> list[list[T]]:
    """Label-skewed shards: each label's examples split among clients in Dirichlet(`alpha`) proportions.

    Draws again (from the same seeded generator) until every shard holds at least `min_size` items; after
    100 draws (tiny alpha, few items) tops the small shards up from the largest. ValueError when there are
    fewer than `clients * min_size` items.
    """
    if not alpha > 0:
        raise ValueError(f"the Dirichlet alpha must be > 0, got {alpha!r}")
    _check_clients(clients, len(items), min_size)
    by_label: dict[Hashable, list[int]] = {}
    for i, item in enumerate(items):
        by_label.setdefault(label_of(item), []).append(i)
    rng = random.Random(seed)
    shards: list[list[int]] = []
    for _ in range(_MAX_DRAWS):
        shards = [[] for _ in range(clients)]
        for label in sorted(by_label, key=str):
            indices = list(by_label[label])
            rng.shuffle(indices)
            weights = [rng.gammavariate(alpha, 1.0) for _ in range(clients)]
            total = sum(weights) or 1.0
            cuts, acc = [], 0.0
            for w in weights[:-1]:
                acc += w / total
                cuts.append(round(acc * len(indices)))
            bounds = [0, *cuts, len(indices)]
            for c in range(clients):
                shards[c].extend(indices[bounds[c] : bounds[c + 1]])
        if min(len(s) for s in shards) >= min_size:
            break
    else:  # very small alpha with few items: top up the small shards from the largest (seeded)
        for shard in shards:
            while len(shard) < min_size:
                donor = max(shards, key=len)
                shard.append(donor.pop(rng.randrange(len(donor))))
    return [[items[i] for i in sorted(s)] for s in shards]


def field_partition(items: Sequence[T], value_of: Callable[[T], Any]) -> tuple[list[str], list[list[T]]]:
    """One shard per distinct value of `value_of(item)` (sorted by value): (the values, the shards)."""
    shards: dict[str, list[T]] = {}
    for item in items:
        value = value_of(item)
        shards.setdefault("" if value is None else str(value), []).append(item)
    names = sorted(shards)
    return names, [shards[n] for n in names]


def _check_clients(clients: int, n: int, min_size: int = 1) -> None:
    if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
        raise ValueError(f"the number of clients must be a whole number >= 1, got {clients!r}")
    if n < clients * min_size:
        raise ValueError(f"{n} examples cannot give {clients} clients at least {min_size} each")


@dataclass(frozen=True)
class PartitionSpec:
    """A parsed `--partition` value: kind ("iid", "dirichlet" or "field") and its argument."""

    kind: str
    alpha: float = 0.0
    field: str = ""

    def __str__(self) -> str:
        return {"iid": "iid", "dirichlet": f"dirichlet:{self.alpha:g}", "field": f"field:{self.field}"}[self.kind]

    def split(
        self,
        items: Sequence[T],
        clients: int,
        seed: int = 42,
        *,
        label_of: Callable[[T], Hashable] | None = None,
        field_of: Callable[[T, str], Any] | None = None,
    ) -> tuple[list[str], list[list[T]]]:
        """(client names, shards). `label_of` is needed by dirichlet, `field_of(item, field)` by field (whose
        number of shards is the number of values, whatever `clients` says)."""
        if self.kind == "field":
            if field_of is None:
                raise ValueError(f"partition {self} needs the records' field values")
            getter = field_of
            names, shards = field_partition(items, lambda item: getter(item, self.field))
            return [f"{self.field}={n}" for n in names], shards
        if self.kind == "dirichlet":
            if label_of is None:
                raise ValueError(f"partition {self} needs labels")
            shards = dirichlet_partition(items, clients, self.alpha, label_of, seed=seed)
        else:
            shards = iid_partition(items, clients, seed=seed)
        return [f"client-{c}" for c in range(len(shards))], shards


def parse_partition(spec: str) -> PartitionSpec:
    """`"iid"`, `"dirichlet:0.5"` or `"field:source"` -> a PartitionSpec; ValueError naming the valid forms."""
    text = (spec or "").strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    valid = f"valid: {', '.join(PARTITIONS)}"
    if kind == "iid" and not sep:
        return PartitionSpec("iid")
    if kind == "dirichlet":
        try:
            alpha = float(arg) if sep else 0.5
        except ValueError:
            raise ValueError(
                f"--partition {spec!r}: the Dirichlet alpha must be a number, e.g. dirichlet:0.5"
            ) from None
        if not alpha > 0 or alpha != alpha or alpha == float("inf"):
            raise ValueError(f"--partition {spec!r}: the Dirichlet alpha must be a finite number > 0")
        return PartitionSpec("dirichlet", alpha=alpha)
    if kind == "field":
        if not arg.strip():
            raise ValueError(f"--partition {spec!r}: name the field, e.g. field:source")
        return PartitionSpec("field", field=arg.strip())
    raise ValueError(f"unknown --partition {spec!r} ({valid})")
