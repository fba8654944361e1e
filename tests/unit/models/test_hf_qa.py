"""HFQuestionAnswerer on a hand-crafted tiny BERT (tiny_hf.save_crafted_reader): answers start on "new" or "paris"
and end on "york" or "paris", so spans, character offsets, windowing over long contexts and n-best are exact."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_hf import save_crafted_reader, single_thread  # noqa: F401 - fixture

from yulian.models import hf_encoder
from yulian.models.hf_qa import HFQuestionAnswerer
from yulian.models.predictions import Answer

QUESTION = "where is it?"

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def reader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_crafted_reader(tmp_path_factory.mktemp("qa"), starts={"new", "paris"}, ends={"york", "paris"})


@pytest.fixture(scope="module")
def reader(reader_dir: Path) -> HFQuestionAnswerer:
    return HFQuestionAnswerer(str(reader_dir), dtype="float32", max_length=64, stride=16)


def test_answer_span_and_offsets(reader: HFQuestionAnswerer) -> None:
    context = "I live in  New   York now."
    answer = reader.invoke({"question": QUESTION, "context": context})
    assert answer == Answer("New   York", 11, 21, answer.score)
    assert context[answer.start : answer.end] == answer.text
    assert 0.5 < answer.score <= 1.0
    assert reader.invoke((QUESTION, context)) == answer  # a (question, context) tuple works too


def test_chinese_context_offsets(reader: HFQuestionAnswerer) -> None:
    context = "张三住在北京，工作在 Paris 。"
    answer = reader.invoke({"question": "他在哪里工作？", "context": context})
    assert (answer.text, answer.start, answer.end) == ("Paris", 11, 16)


def test_answer_in_a_later_window_is_found(reader: HFQuestionAnswerer, reader_dir: Path) -> None:
    context = "filler word " * 60 + "the city is Paris , and " + "filler " * 10
    tokens = len(context.split())
    assert tokens > 2 * 64  # three windows of 64 tokens
    answer = reader.invoke({"question": QUESTION, "context": context})
    assert (answer.text, answer.start) == ("Paris", context.index("Paris"))
    truncated = HFQuestionAnswerer(str(reader_dir), dtype="float32", max_length=64, stride=16)
    assert truncated.invoke({"question": QUESTION, "context": context[:200]}).text != "Paris"


def test_answer_across_a_window_boundary(reader_dir: Path) -> None:
    # "New York" lands at every position relative to the window edges as the prefix grows
    small = HFQuestionAnswerer(str(reader_dir), dtype="float32", max_length=32, stride=8)
    contexts = ["filler " * pad + "New York" for pad in range(40, 60)]
    answers = small.batch([{"question": QUESTION, "context": c} for c in contexts])
    assert [(a.text, a.start) for a in answers] == [("New York", c.index("New")) for c in contexts]


def test_max_answer_len(reader_dir: Path) -> None:
    context = "new filler filler filler york"
    short = HFQuestionAnswerer(str(reader_dir), dtype="float32", max_length=64, stride=16, max_answer_len=3)
    assert short.invoke({"question": QUESTION, "context": context}).text != context
    long = short.with_options(max_answer_len=5)
    assert long.invoke({"question": QUESTION, "context": context}).text == context


def test_nbest_is_sorted_and_distinct(reader: HFQuestionAnswerer) -> None:
    context = "filler new york or paris or the new filler york filler"
    answers = reader.answers({"question": QUESTION, "context": context}, k=4)
    assert len(answers) == 4
    assert answers[0] == reader.invoke({"question": QUESTION, "context": context})
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    assert len({(a.start, a.end) for a in answers}) == 4
    for a in answers:  # every candidate starts on a start token and ends on an end token
        assert context[a.start : a.end] == a.text
        assert a.text.split()[0] in {"new", "paris"} and a.text.split()[-1] in {"york", "paris"}


def test_unanswerable(tmp_path: Path) -> None:
    folder = save_crafted_reader(tmp_path, starts={"new", "paris"}, ends={"york", "paris"}, no_answer=1.5)
    context = "the quick brown fox jumps over the lazy dog"
    forced = HFQuestionAnswerer(str(folder), dtype="float32", max_length=64, stride=16)
    assert forced.invoke({"question": QUESTION, "context": context}).text != ""
    allowed = forced.with_options(handle_unanswerable=True)
    assert allowed.invoke({"question": QUESTION, "context": context}).text == ""
    assert allowed.invoke({"question": QUESTION, "context": "it is in paris"}).text == "paris"
    assert forced.invoke({"question": QUESTION, "context": ""}) == Answer("", 0, 0, 0.0)


def test_batch_equals_one_by_one(reader: HFQuestionAnswerer) -> None:
    inputs = [
        {"question": QUESTION, "context": "filler " * 80 + "paris"},
        {"question": "谁？", "context": "张三在 New York"},
        {"question": QUESTION, "context": "new york"},
    ]
    together = reader.with_options(batch_size=2).batch(inputs)
    assert [a.text for a in together] == ["paris", "New York", "new york"]
    for one, many in zip((reader.invoke(x) for x in inputs), together, strict=True):
        assert (one.start, one.end) == (many.start, many.end) and one.score == pytest.approx(many.score, abs=1e-5)
    assert [a.text for a in asyncio.run(reader.abatch(inputs))] == [a.text for a in together]


def test_bad_inputs_are_named(reader: HFQuestionAnswerer) -> None:
    with pytest.raises(ValueError, match="'context'"):
        reader.invoke({"question": QUESTION, "contxt": "paris"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="question is empty"):
        reader.invoke({"question": " ", "context": "paris"})
    with pytest.raises(TypeError, match="question"):
        reader.invoke("paris")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shorten the question"):
        reader.invoke({"question": "where " * 60, "context": "paris"})
    with pytest.raises(ValueError, match="stride"):
        HFQuestionAnswerer(str(reader.options.path), max_length=64, stride=64)


@pytest.mark.timeout(60)
def test_auto_dtype(reader_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_encoder, "native_bf16", lambda torch, device: True)
    auto = HFQuestionAnswerer(str(reader_dir), max_length=64, stride=16)
    assert auto.runtime_info()["dtype"] == "bfloat16"
    assert auto.invoke({"question": QUESTION, "context": "filler " * 70 + "New York"}).text == "New York"
    monkeypatch.setattr(hf_encoder, "BF16_MAX_PROB_DIFF", -1.0)
    assert HFQuestionAnswerer(str(reader_dir), max_length=64, stride=16).runtime_info()["dtype"] == "float32"
