"""HFClassifier and HFTokenClassifier on tiny BERTs built inline.

The classifier is an untrained random model: its probabilities are checked against a plain forward pass. The
token classifier is hand-crafted (tiny_hf.save_crafted_tagger): every token's tag is known in advance, so entity
spans, character offsets (English and Chinese), tag-scheme merging and long-text windowing are checked exactly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from tiny_hf import save_crafted_tagger, save_random, single_thread  # noqa: F401 - fixture

from yulian.models import hf_encoder
from yulian.models.hf_tasks import HFClassifier, HFTokenClassifier, split_tag
from yulian.models.predictions import Entity, Prediction

LABELS3 = {0: "negative", 1: "positive", 2: "neutral"}
TEXTS = ["a great film", "this was very bad", "我的卡丢了", "the quick brown fox jumps over the lazy dog " * 3]

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
BIO_TAGS = {
    "john": "B-PER",
    "smith": "I-PER",
    "paris": "B-LOC",
    "new": "B-LOC",
    "york": "I-LOC",
    "张": "B-PER",
    "三": "I-PER",
    "北": "B-LOC",
    "京": "I-LOC",
    "上": "B-LOC",
    "海": "I-LOC",
}

pytestmark = pytest.mark.usefixtures("single_thread")


# ============================================================================================ classifier
@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random(
        tmp_path_factory.mktemp("cls"),
        "BertForSequenceClassification",
        num_labels=3,
        initializer_range=0.3,  # spread the logits: an untrained model's probabilities are otherwise ~1/3 each
        id2label=LABELS3,
        label2id={v: k for k, v in LABELS3.items()},
    )


@pytest.fixture(scope="module")
def classifier(classifier_dir: Path) -> HFClassifier:
    return HFClassifier(str(classifier_dir), dtype="float32", batch_size=2)


def plain_probs(model_dir: Path, text: str | tuple[str, str], multi: bool = False) -> list[float]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    enc = tokenizer(*((text,) if isinstance(text, str) else text), return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0]
    return (torch.sigmoid(logits) if multi else torch.softmax(logits, -1)).tolist()


def test_prediction_matches_a_plain_forward_pass(classifier: HFClassifier, classifier_dir: Path) -> None:
    for text in TEXTS[:2]:
        pred = classifier.invoke(text)
        expected = dict(zip(LABELS3.values(), plain_probs(classifier_dir, text), strict=True))
        assert isinstance(pred, Prediction)
        assert pred.scores == pytest.approx(expected, abs=1e-5)
        assert sum(pred.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert pred.label == max(expected, key=expected.__getitem__) and pred.labels == (pred.label,)
        assert pred.score == pytest.approx(max(expected.values()), abs=1e-5)
        assert list(pred.scores.values()) == sorted(pred.scores.values(), reverse=True)
    assert classifier.labels == ["negative", "positive", "neutral"]


def test_batch_is_batched_and_equals_one_by_one(classifier: HFClassifier) -> None:
    together = classifier.batch(TEXTS)
    for text, pred in zip(TEXTS, together, strict=True):
        single = classifier.invoke(text)
        assert pred.label == single.label
        assert pred.scores == pytest.approx(single.scores, abs=1e-5)
    assert asyncio.run(classifier.abatch(TEXTS)) == together
    alone = asyncio.run(classifier.ainvoke(TEXTS[0]))
    assert alone.label == together[0].label and alone.scores == pytest.approx(together[0].scores, abs=1e-5)


def test_text_pairs_use_token_types(classifier: HFClassifier, classifier_dir: Path) -> None:
    pair = ("a great film", "this was very bad")
    pred = classifier.invoke(pair)
    expected = plain_probs(classifier_dir, pair)
    assert list(pred.scores[label] for label in LABELS3.values()) == pytest.approx(expected, abs=1e-5)
    mixed = classifier.batch(["a great film", pair, {"text": "a great film", "text_pair": "this was very bad"}])
    assert mixed[1].scores == pytest.approx(pred.scores, abs=1e-5) == mixed[2].scores
    assert mixed[0].scores != pytest.approx(pred.scores, abs=1e-3)  # the pair is not the first text alone
    longer_single_first = classifier.batch(["a great film " * 6, pair])  # one padded batch: single, then pair
    assert longer_single_first[1].scores == pytest.approx(pred.scores, abs=1e-5)


def test_top_k(classifier_dir: Path) -> None:
    pred = HFClassifier(str(classifier_dir), dtype="float32", top_k=2).invoke("a great film")
    assert len(pred.scores) == 2 and next(iter(pred.scores)) == pred.label


def test_multi_label_uses_sigmoid_and_threshold(classifier_dir: Path) -> None:
    expected = plain_probs(classifier_dir, "a great film", multi=True)
    multi = HFClassifier(str(classifier_dir), dtype="float32", multi_label=True, threshold=0.0)
    pred = multi.invoke("a great film")
    assert [pred.scores[label] for label in LABELS3.values()] == pytest.approx(expected, abs=1e-5)
    assert sum(pred.scores.values()) != pytest.approx(1.0, abs=1e-3)
    assert set(pred.labels) == set(LABELS3.values())  # threshold 0: every label
    middle = sorted(expected)[1]
    some = multi.with_options(threshold=middle).invoke("a great film")
    assert len(some.labels) == 2 and some.labels[0] == some.label
    assert multi.with_options(threshold=1.0).invoke("a great film").labels == ()


def test_multi_label_read_from_model_config(tmp_path: Path) -> None:
    folder = save_random(tmp_path, "BertForSequenceClassification", num_labels=2)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder))
    config.problem_type = "multi_label_classification"
    config.save_pretrained(str(folder))
    clf = HFClassifier(str(folder), dtype="float32")
    assert clf.is_multi_label and set(clf.invoke("dog").scores) == {"LABEL_0", "LABEL_1"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("multi_label", [False, True])
def test_auto_dtype_checks_probabilities(
    classifier_dir: Path, monkeypatch: pytest.MonkeyPatch, multi_label: bool
) -> None:
    exact = HFClassifier(str(classifier_dir), dtype="float32", multi_label=multi_label).invoke("a great film")
    monkeypatch.setattr(hf_encoder, "native_bf16", lambda torch, device: True)
    auto = HFClassifier(str(classifier_dir), multi_label=multi_label)
    info = auto.runtime_info()
    assert "probability" in info["dtype_reason"]
    if info["dtype"] == "bfloat16":
        assert auto.invoke("a great film").scores == pytest.approx(exact.scores, abs=hf_encoder.BF16_MAX_PROB_DIFF)
    monkeypatch.setattr(hf_encoder, "BF16_MAX_PROB_DIFF", -1.0)  # nothing passes: float32 is kept
    assert HFClassifier(str(classifier_dir), multi_label=multi_label).runtime_info()["dtype"] == "float32"


def test_bad_inputs_are_named(classifier: HFClassifier) -> None:
    with pytest.raises(TypeError, match="position 0"):
        classifier.invoke(42)  # type: ignore[arg-type]
    out = classifier.batch(["a great film", 42], return_exceptions=True)  # type: ignore[list-item]
    assert isinstance(out[0], Prediction) and isinstance(out[1], TypeError) and "position 1" in str(out[1])
    with pytest.raises(ValueError, match="threshold"):
        HFClassifier(str(classifier.options.path), threshold=2)


# ============================================================================================ token classifier
@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_crafted_tagger(tmp_path_factory.mktemp("ner"), BIO, BIO_TAGS)


def spans(entities: list[Entity]) -> list[tuple[str, str, int, int]]:
    return [(e.text, e.type, e.start, e.end) for e in entities]


def test_english_entities_with_exact_offsets(tagger_dir: Path) -> None:
    text = "  John   Smith lives in Paris, near New York."
    entities = HFTokenClassifier(str(tagger_dir), dtype="float32").invoke(text)
    assert spans(entities) == [("John   Smith", "PER", 2, 14), ("Paris", "LOC", 24, 29), ("New York", "LOC", 36, 44)]
    for e in entities:
        assert text[e.start : e.end] == e.text
        assert 0.5 < e.score <= 1.0


def test_chinese_entities_character_offsets(tagger_dir: Path) -> None:
    text = "我的卡丢了，张三在北京工作，不在上海。"
    entities = HFTokenClassifier(str(tagger_dir), dtype="float32").invoke(text)
    assert spans(entities) == [("张三", "PER", 6, 8), ("北京", "LOC", 9, 11), ("上海", "LOC", 16, 18)]
    assert all(text[e.start : e.end] == e.text for e in entities)


def test_word_aggregation_strategies(tagger_dir: Path) -> None:
    text = "John lives in Parisian cities"  # paris|##ian: the first piece is B-LOC, the second O
    simple = HFTokenClassifier(str(tagger_dir), dtype="float32").invoke(text)
    assert ("Paris", "LOC", 14, 19) in spans(simple)
    for how in ("first", "max"):
        words = HFTokenClassifier(str(tagger_dir), dtype="float32", aggregation=how).invoke(text)
        assert ("Parisian", "LOC", 14, 22) in spans(words), how
    none = HFTokenClassifier(str(tagger_dir), dtype="float32", aggregation="none").invoke("John Smith")
    assert spans(none) == [("John", "B-PER", 0, 4), ("Smith", "I-PER", 5, 10)]


def test_agrees_with_the_transformers_pipeline(tagger_dir: Path) -> None:
    from transformers import pipeline

    text = "John Smith lives in Paris. 张三在北京工作。"
    theirs = pipeline("token-classification", model=str(tagger_dir), aggregation_strategy="simple")(text)
    ours = HFTokenClassifier(str(tagger_dir), dtype="float32").invoke(text)
    assert [(e["entity_group"], e["start"], e["end"]) for e in theirs] == [(e.type, e.start, e.end) for e in ours]
    assert [float(e["score"]) for e in theirs] == pytest.approx([e.score for e in ours], abs=1e-5)


def test_long_texts_are_windowed_with_stride(tagger_dir: Path) -> None:
    text = "filler word " * 30 + "John Smith lives in New York. " + "张三在北京工作。" * 4 + "filler " * 20 + "Paris"
    whole = HFTokenClassifier(str(tagger_dir), dtype="float32", max_length=128).invoke(text)
    for max_length, stride in [(16, 4), (24, 8), (12, 1)]:
        windowed = HFTokenClassifier(str(tagger_dir), dtype="float32", max_length=max_length, stride=stride)
        assert windowed.invoke(text) == whole, (max_length, stride)
    assert spans(whole)[0] == ("John Smith", "PER", 360, 370) and spans(whole)[-1][:2] == ("Paris", "LOC")
    assert len(whole) == 1 + 1 + 4 * 2 + 1


def test_bioes_tags_are_merged(tmp_path: Path) -> None:
    labels = ["O", "B-PER", "I-PER", "E-PER", "S-LOC", "S-PER"]
    tags = {"张": "B-PER", "三": "I-PER", "丰": "E-PER", "京": "S-LOC", "john": "S-PER", "smith": "S-PER"}
    tagger = HFTokenClassifier(str(save_crafted_tagger(tmp_path, labels, tags)), dtype="float32")
    text = "张三丰在京，john smith"
    assert spans(tagger.invoke(text)) == [
        ("张三丰", "PER", 0, 3),
        ("京", "LOC", 4, 5),
        ("john", "PER", 6, 10),  # S- closes an entity: two singles stay two entities
        ("smith", "PER", 11, 16),
    ]


def test_split_tag() -> None:
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("E_ORG") == ("E", "ORG")
    assert split_tag("M-LOC") == ("M", "LOC")
    assert split_tag("O") == ("O", "")
    assert split_tag("PER") == ("I", "PER")
    assert split_tag("Bank") == ("I", "Bank")


def test_batch_of_texts_and_empty_text(tagger_dir: Path) -> None:
    tagger = HFTokenClassifier(str(tagger_dir), dtype="float32", batch_size=2)
    texts = ["John Smith", "", "北京", "filler " * 50 + "Paris"]
    together = tagger.batch(texts)
    assert together == [tagger.invoke(t) for t in texts]
    assert together[1] == [] and spans(together[2]) == [("北京", "LOC", 0, 2)]
    assert Entity("北京", "LOC", 0, 2, 1.0).to_dict() == {
        "text": "北京",
        "type": "LOC",
        "start": 0,
        "end": 2,
        "score": 1.0,
    }


def test_token_classifier_options_are_checked(tagger_dir: Path) -> None:
    with pytest.raises(ValueError, match="Did you mean 'simple'"):
        HFTokenClassifier(str(tagger_dir), aggregation="simpel")
    with pytest.raises(ValueError, match="stride"):
        HFTokenClassifier(str(tagger_dir), max_length=16, stride=16)


@pytest.mark.timeout(60)
def test_token_classifier_auto_dtype(tagger_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_encoder, "native_bf16", lambda torch, device: True)
    tagger = HFTokenClassifier(str(tagger_dir))
    assert tagger.runtime_info()["dtype"] == "bfloat16"  # crafted tags are far from any decision boundary
    assert spans(tagger.invoke("张三在北京")) == [("张三", "PER", 0, 2), ("北京", "LOC", 3, 5)]
