"""Splits (stratified, by article, random) and batching (length grouping, dynamic padding)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from yulian.tuning.data import (
    PadCollator,
    QAExample,
    TextExample,
    TokenExample,
    length_grouped_batches,
    pad_sequences,
    padding_efficiency,
    random_split,
    split_by_article,
    stratified_split,
    train_dev_split,
)


def classification(n_per_label: dict[str, int]) -> list[TextExample]:
    examples = [TextExample(f"{label} {i}", label=label) for label, n in n_per_label.items() for i in range(n)]
    random.Random(0).shuffle(examples)
    for line, example in enumerate(examples, 2):
        example.line = line
    return examples


def test_stratified_split_keeps_each_label_share_and_is_deterministic() -> None:
    examples = classification({"a": 500, "b": 300, "c": 150, "d": 45, "e": 4, "single": 1})
    split = stratified_split(examples, dev_fraction=0.1, seed=7)
    assert len(split.dev) == round(len(examples) * 0.1)
    dev = Counter(e.label for e in split.dev)
    assert dev["a"] == 50 and dev["b"] == 30 and dev["c"] == 15 and dev["d"] in (4, 5)
    assert dev["single"] == 0  # a label's only example stays in train
    assert sorted(split.train_index + split.dev_index) == list(range(len(examples)))
    assert [examples[i] for i in split.dev_index] == split.dev
    again = stratified_split(examples, dev_fraction=0.1, seed=7)
    assert again.dev_index == split.dev_index
    assert stratified_split(examples, dev_fraction=0.1, seed=8).dev_index != split.dev_index
    manifest = split.manifest()
    assert manifest["method"] == "stratified" and manifest["dev"] == [e.line for e in split.dev]


def test_stratified_split_multi_label_strata() -> None:
    examples = [TextExample(str(i), labels=["x", "y"] if i % 2 else ["x"]) for i in range(40)]
    split = stratified_split(examples, dev_fraction=0.25, seed=1)
    assert Counter(tuple(e.targets) for e in split.dev) == {("x", "y"): 5, ("x",): 5}


def test_split_by_article_keeps_articles_whole() -> None:
    examples = [QAExample(f"q{i}", "?", "ctx", [], True, i, article=f"art{i % 7}") for i in range(70)]
    split = split_by_article(examples, fraction=0.3, seed=3)
    dev_articles = {e.article for e in split.dev}
    assert len(dev_articles) == 2 and not dev_articles & {e.article for e in split.train}
    assert split_by_article(examples, 0.3, seed=3).dev_index == split.dev_index
    assert split.manifest()["dev"] == [e.id for e in split.dev]
    tiny = split_by_article(examples[:2], fraction=0.01, seed=0)  # two articles: one goes to dev whatever the fraction
    assert len({e.article for e in tiny.dev}) == 1


def test_random_split_and_dispatch() -> None:
    tokens = [TokenExample([str(i)], ["O"], i) for i in range(50)]
    split = random_split(tokens, 0.2, seed=5)
    assert len(split.dev) == 10 and split.dev_index == random_split(tokens, 0.2, seed=5).dev_index
    assert train_dev_split(tokens, 0.2, seed=5).method == "random"
    assert train_dev_split(classification({"a": 10}), 0.2).method == "stratified"
    with pytest.raises(ValueError, match=r"dev_fraction must be in \[0, 1\)"):
        random_split(tokens, 1.5)


def test_length_grouped_batches_are_deterministic_complete_and_tight() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(3, 120) for _ in range(2000)]
    batches = length_grouped_batches(lengths, batch_size=16, seed=11, mega_batch=10)
    assert batches == length_grouped_batches(lengths, batch_size=16, seed=11, mega_batch=10)
    assert batches != length_grouped_batches(lengths, batch_size=16, seed=12, mega_batch=10)
    assert sorted(i for b in batches for i in b) == list(range(2000))
    assert Counter(len(b) for b in batches) == {16: 125}
    shuffled = list(range(2000))
    rng.shuffle(shuffled)
    random_batches = [shuffled[i : i + 16] for i in range(0, 2000, 16)]
    grouped, plain = padding_efficiency(lengths, batches), padding_efficiency(lengths, random_batches)
    assert grouped > 0.9 and plain < 0.65
    # batch order is shuffled: not longest-first
    grouped_maxima = [max(lengths[i] for i in b) for b in batches]
    assert grouped_maxima != sorted(grouped_maxima, reverse=True)
    ordered = length_grouped_batches(lengths, 16, shuffle=False)
    maxima = [max(lengths[i] for i in b) for b in ordered]
    assert maxima == sorted(maxima, reverse=True)
    assert all(len(b) == 16 for b in length_grouped_batches(lengths, 16, seed=1, drop_last=True))


def test_pad_collator_pads_to_the_batch_and_builds_the_mask() -> None:
    features = [
        {"input_ids": [5, 6, 7], "labels": [1, 2, 3], "label": 1},
        {"input_ids": [8], "labels": [4], "label": 0},
    ]
    batch = PadCollator(pad_id=9, return_tensors=None)(features)
    assert batch == {
        "input_ids": [[5, 6, 7], [8, 9, 9]],
        "labels": [[1, 2, 3], [4, -100, -100]],
        "label": [1, 0],
        "attention_mask": [[1, 1, 1], [1, 0, 0]],
    }
    left = PadCollator(pad_id=0, padding_side="left", pad_to_multiple_of=4, return_tensors=None)(features)
    assert left["input_ids"] == [[0, 5, 6, 7], [0, 0, 0, 8]] and left["attention_mask"][1] == [0, 0, 0, 1]


def test_pad_collator_tensors_and_multi_hot_labels() -> None:
    import torch

    features = [
        {"input_ids": [1, 2], "token_type_ids": [0, 0], "labels": [0.0, 1.0, 1.0]},
        {"input_ids": [3, 4, 5, 6], "token_type_ids": [0, 0, 1, 1], "labels": [1.0, 0.0, 0.0]},
    ]
    batch = PadCollator(return_tensors="pt")(features)
    assert batch["input_ids"].shape == (2, 4) and batch["input_ids"].dtype == torch.int64
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    with pytest.raises(ValueError, match="different lengths"):
        PadCollator(return_tensors=None)([{"input_ids": [1], "x": [1, 2]}, {"input_ids": [1], "x": [1]}])
    assert pad_sequences([[1], [1, 2, 3]], 0, side="left") == [[0, 0, 1], [1, 2, 3]]


def test_pad_collator_keeps_multi_hot_labels_and_pads_offset_pairs() -> None:
    from yulian.tuning.data import PadCollator

    features = [{"input_ids": [5, 6, 7], "labels": [1, 0, 1]}, {"input_ids": [5, 6], "labels": [0, 1, 1]}]
    batch = PadCollator(return_tensors=None, pad_to_multiple_of=8, token_labels=False)(features)
    assert batch["labels"] == [[1, 0, 1], [0, 1, 1]]
    assert len(batch["input_ids"][0]) == 8
    tagged = [{"input_ids": [5, 6, 7], "labels": [1, 0, 1]}, {"input_ids": [5, 6], "labels": [0, 1]}]
    tokens = PadCollator(return_tensors=None, token_labels=True)(tagged)
    assert tokens["labels"] == [[1, 0, 1], [0, 1, -100]]
    with_offsets = PadCollator()(
        [{"input_ids": [1, 2], "offset_mapping": [(0, 1), (1, 2)]}, {"input_ids": [1], "offset_mapping": [(0, 3)]}]
    )
    assert with_offsets["offset_mapping"].tolist() == [[[0, 1], [1, 2]], [[0, 3], [0, 0]]]
