"""Partitioners: IID, Dirichlet label skew, by field, and the --partition parser."""

from __future__ import annotations

from collections import Counter

import pytest

from yulian.federated.partition import (
    PartitionSpec,
    dirichlet_partition,
    field_partition,
    iid_partition,
    parse_partition,
)

ITEMS = [(i, "abcd"[i % 4]) for i in range(400)]


def _label(item: tuple[int, str]) -> str:
    return item[1]


def _skew(shards: list[list[tuple[int, str]]]) -> float:
    """Mean share of each shard's most common label (0.25 = balanced over 4 labels, 1.0 = one label)."""
    return sum(Counter(_label(x) for x in s).most_common(1)[0][1] / len(s) for s in shards) / len(shards)


def test_iid_is_a_seeded_partition_with_balanced_sizes() -> None:
    shards = iid_partition(ITEMS, 3, seed=1)
    assert sorted(x for s in shards for x in s) == ITEMS  # disjoint and complete
    assert sorted(len(s) for s in shards) == [133, 133, 134]
    assert shards == iid_partition(ITEMS, 3, seed=1)
    assert shards != iid_partition(ITEMS, 3, seed=2)
    assert _skew(shards) < 0.35


def test_dirichlet_skews_labels_more_as_alpha_falls_and_keeps_every_client() -> None:
    skewed = dirichlet_partition(ITEMS, 4, 0.1, _label, seed=3)
    mild = dirichlet_partition(ITEMS, 4, 100.0, _label, seed=3)
    for shards in (skewed, mild):
        assert sorted(x for s in shards for x in s) == ITEMS
        assert all(len(s) >= 1 for s in shards)
    assert _skew(skewed) > 0.6 > 0.35 > _skew(mild)
    assert dirichlet_partition(ITEMS, 4, 0.5, _label, seed=3) == dirichlet_partition(ITEMS, 4, 0.5, _label, seed=3)


def test_dirichlet_redraws_until_no_client_is_empty() -> None:
    few = [(i, "ab"[i % 2]) for i in range(12)]
    for seed in range(20):
        shards = dirichlet_partition(few, 6, 0.05, _label, seed=seed)
        assert min(len(s) for s in shards) >= 1
    with pytest.raises(ValueError, match="cannot give 20 clients"):
        dirichlet_partition(few, 20, 0.5, _label)


def test_field_partition_gives_one_client_per_value() -> None:
    records = [{"text": str(i), "source": ["bank-a", "bank-b", "shop"][i % 3]} for i in range(9)]
    names, shards = field_partition(records, lambda r: r["source"])
    assert names == ["bank-a", "bank-b", "shop"]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert all(r["source"] == n for n, s in zip(names, shards, strict=True) for r in s)
    spec = parse_partition("field:source")
    client_names, same = spec.split(records, clients=99, field_of=lambda r, f: r[f])
    assert client_names == ["source=bank-a", "source=bank-b", "source=shop"] and same == shards


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iid", PartitionSpec("iid")),
        ("dirichlet:0.5", PartitionSpec("dirichlet", alpha=0.5)),
        (" Dirichlet:2 ", PartitionSpec("dirichlet", alpha=2.0)),
        ("field:source", PartitionSpec("field", field="source")),
    ],
)
def test_parse_partition(text: str, expected: PartitionSpec) -> None:
    assert parse_partition(text) == expected
    assert parse_partition(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dirichlet:abc", "must be a number"),
        ("dirichlet:0", "finite number > 0"),
        ("dirichlet:-1", "finite number > 0"),
        ("field:", "name the field"),
        ("shards", r"unknown --partition 'shards' \(valid: iid, dirichlet:ALPHA, field:NAME\)"),
        ("iid:3", "unknown --partition"),
    ],
)
def test_parse_partition_errors_name_the_valid_forms(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_partition(text)


def test_split_needs_labels_for_dirichlet() -> None:
    with pytest.raises(ValueError, match="needs labels"):
        parse_partition("dirichlet:0.5").split(ITEMS, 4)
    with pytest.raises(ValueError, match="clients must be a whole number"):
        iid_partition(ITEMS, 0)
