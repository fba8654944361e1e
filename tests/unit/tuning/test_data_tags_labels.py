"""Tag schemes (BIO/BIOES/BMES conversion) and LabelMap (order, lookups, labels.json round trip)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yulian.tuning.data import (
    DataError,
    LabelMap,
    Span,
    TextExample,
    TokenExample,
    convert_tags,
    detect_scheme,
    spans_to_tags,
    split_tag,
    tags_to_spans,
)

BMES = ["B-NR", "M-NR", "E-NR", "O", "S-NS", "B-NT", "E-NT", "S-NT"]
BIO = ["B-NR", "I-NR", "I-NR", "O", "B-NS", "B-NT", "I-NT", "B-NT"]
BIOES = ["B-NR", "I-NR", "E-NR", "O", "S-NS", "B-NT", "E-NT", "S-NT"]


def test_conversions_between_the_three_schemes_and_back() -> None:
    assert convert_tags(BMES, to="bio") == BIO
    assert convert_tags(BMES, to="bioes") == BIOES
    assert convert_tags(BIO, to="bmes") == BMES
    assert convert_tags(BIOES, to="bmes") == BMES
    for tags in (BMES, BIO, BIOES):
        scheme = detect_scheme(tags)
        for other in ("bio", "bioes", "bmes"):
            assert convert_tags(convert_tags(tags, to=other), to=scheme) == tags


def test_schemes_are_detected() -> None:
    assert (detect_scheme(BMES), detect_scheme(BIO), detect_scheme(BIOES)) == ("bmes", "bio", "bioes")


def test_spans_read_leniently_and_write_back() -> None:
    assert tags_to_spans(BIO) == [Span("NR", 0, 3), Span("NS", 4, 5), Span("NT", 5, 7), Span("NT", 7, 8)]
    # an I- that does not continue its type starts an entity; E- closes one; types with dots and dashes survive
    assert tags_to_spans(["I-PER", "I-LOC", "E-LOC", "O", "E-ORG"]) == [
        Span("PER", 0, 1),
        Span("LOC", 1, 3),
        Span("ORG", 4, 5),
    ]
    assert tags_to_spans(["B-PER.NAM", "I-PER.NAM"]) == [Span("PER.NAM", 0, 2)]
    assert spans_to_tags([Span("X", 1, 3)], 4, "bmes") == ["O", "B-X", "E-X", "O"]
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([Span("X", 0, 2), Span("Y", 1, 3)], 4)
    with pytest.raises(ValueError, match="unknown tag scheme 'iob3'"):
        convert_tags(BIO, to="iob3")


def test_split_tag_and_segmentation_tags() -> None:
    assert split_tag("M-NT") == ("I", "NT")
    assert split_tag("B_PER") == ("B", "PER")
    assert split_tag("O") == ("O", "")
    assert split_tag("PER") == ("I", "PER")
    seg = ["B", "E", "S", "B", "M", "E"]  # word segmentation: bare B/M/E/S
    assert tags_to_spans(seg) == [Span("", 0, 2), Span("", 2, 3), Span("", 3, 6)]
    assert convert_tags(convert_tags(seg, "bio"), "bmes") == seg


def test_label_map_order_is_stable_and_natural() -> None:
    assert LabelMap(["pos", "neg", "pos"]).labels == ("neg", "pos")
    assert LabelMap(["10", "2", "1"]).labels == ("1", "2", "10")
    assert LabelMap(["I-X", "O", "B-X"]).labels == ("O", "B-X", "I-X")
    assert LabelMap(["b", "a"]) == LabelMap(["a", "b"])


def test_label_map_lookups_and_errors() -> None:
    labels = LabelMap(["negative", "positive"])
    assert labels.id("positive") == 1 and labels.label(0) == "negative"
    assert labels.encode(["positive", "negative"]) == [1, 0] and labels.decode([1]) == ["positive"]
    assert labels.id2label == {0: "negative", 1: "positive"} and labels.label2id["negative"] == 0
    assert labels.multi_hot(["positive"]) == [0.0, 1.0]
    assert "positive" in labels and "neutral" not in labels and len(labels) == 2
    with pytest.raises(
        DataError, match=r"^unknown label 'postive' \(labels: negative, positive\). Did you mean 'positive'\?$"
    ):
        labels.id("postive")
    with pytest.raises(IndexError, match="out of range"):
        labels.label(2)


def test_label_map_round_trip_keeps_saved_order(tmp_path: Path) -> None:
    labels = LabelMap(["b", "a", "c"], multi_label=True)
    written = labels.save(tmp_path / "model")
    assert written == tmp_path / "model" / "labels.json"
    assert json.loads(written.read_text()) == {"labels": ["a", "b", "c"], "multi_label": True}
    assert LabelMap.load(tmp_path / "model") == labels
    # a saved order is kept as is: ids must not move under a trained model
    (tmp_path / "custom.json").write_text(json.dumps({"labels": ["z", "a"]}))
    assert LabelMap.load(tmp_path / "custom.json").labels == ("z", "a")
    (tmp_path / "bad.json").write_text('{"labels": ["a", "a"]}')
    with pytest.raises(DataError, match="duplicate labels: a"):
        LabelMap.load(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text('{"labels": [}')
    with pytest.raises(DataError, match=r"broken.json line 1: not valid JSON"):
        LabelMap.load(tmp_path / "broken.json")
    with pytest.raises(DataError, match="no such file"):
        LabelMap.load(tmp_path / "nothing")


def test_label_map_from_examples() -> None:
    text = [TextExample("a", label="x"), TextExample("b", labels=["y", "z"])]
    assert LabelMap.from_examples(text) == LabelMap(["x", "y", "z"], multi_label=True)
    tokens = [TokenExample(["a", "b"], ["B-P", "I-P"]), TokenExample(["c"], ["O"])]
    assert LabelMap.from_examples(tokens).labels == ("O", "B-P", "I-P")
