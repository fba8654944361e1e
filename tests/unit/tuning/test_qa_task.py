"""The "qa" task on tiny BERT models built here: answer positions in windows, [CLS] for answers out of a window
and unanswerable questions, n-best post-processing on hand-crafted logits, evaluation against a crafted reader,
and a plain training loop that lowers the loss."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from tiny_hf import save_crafted_reader, save_random, save_tokenizer, single_thread  # noqa: F401

from yulian.tuning.data import QAExample
from yulian.tuning.tasks import TaskConfig, get_task
from yulian.tuning.tasks.qa import QATask, postprocess

pytestmark = pytest.mark.usefixtures("single_thread")

FILLER = "the quick brown fox jumps over the lazy dog . "
CONTEXT = FILLER * 3 + "John Smith lives in Paris now . " + FILLER
ANSWER = "Paris"
LONG = QAExample("q1", "where does john live?", CONTEXT, [{"text": ANSWER, "start": CONTEXT.index(ANSWER)}])
SHORT_CONTEXT = "John Smith lives in New York ."
SHORT = QAExample("q2", "where is it?", SHORT_CONTEXT, [{"text": "New York", "start": SHORT_CONTEXT.index("New")}])
NONE = QAExample("q3", "who is it?", SHORT_CONTEXT, [], is_impossible=True)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return save_tokenizer(tmp_path_factory.mktemp("tok"))


def _task(**config: Any) -> QATask:
    task = get_task("qa", TaskConfig(**config))
    assert isinstance(task, QATask)
    return task


def test_positions_point_at_the_answer_tokens(tokenizer: Any) -> None:
    [feature] = _task().encode([SHORT], tokenizer)
    s, e = feature["start_positions"], feature["end_positions"]
    assert tokenizer.decode(feature["input_ids"][s : e + 1]) == "new york"
    a, b = feature["offsets"][s][0], feature["offsets"][e][1]
    assert SHORT_CONTEXT[a:b] == "New York"
    assert feature["offsets"][0] is None and feature["cls"] == 0  # the question and [CLS] are not context


def test_an_answer_in_a_later_window_and_cls_elsewhere(tokenizer: Any) -> None:
    features = _task(max_length=24, stride=4).encode([LONG], tokenizer)
    assert len(features) > 3 and all(len(f["input_ids"]) <= 24 for f in features)
    holding = [f for f in features if f["start_positions"] != 0]
    assert holding and features.index(holding[0]) >= 1  # not in the first window
    for f in holding:
        ids = f["input_ids"][f["start_positions"] : f["end_positions"] + 1]
        assert tokenizer.decode(ids) == "paris"
    for f in features:
        if f not in holding:
            assert f["start_positions"] == f["end_positions"] == f["cls"] == 0
    # every window that holds the answer's characters is labelled with it
    a = CONTEXT.index(ANSWER)
    inside = [f for f in features if any(o is not None and o[0] <= a < o[1] for o in f["offsets"])]
    assert inside == holding


def test_unanswerable_questions_point_at_cls(tokenizer: Any) -> None:
    task = _task(max_length=12, stride=2)
    features = task.encode([NONE], tokenizer)
    assert len(features) >= 2
    assert all(f["start_positions"] == f["end_positions"] == 0 for f in features)
    batch = task.collate(features, tokenizer)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    assert batch["start_positions"].tolist() == [0] * len(features)


def test_a_question_leaving_no_room_is_a_clear_error(tokenizer: Any) -> None:
    long_question = QAExample("q9", "where " * 20, SHORT_CONTEXT, [])
    with pytest.raises(ValueError, match=r"q9.*leaves"):
        _task(max_length=24, stride=4).encode([long_question], tokenizer)


def _logits(features: list[dict[str, Any]], spans: dict[int, tuple[int, int, float]], cls: float = 0.0) -> Any:
    starts, ends = [], []
    for w, f in enumerate(features):
        s = [-5.0] * len(f["input_ids"])
        e = [-5.0] * len(f["input_ids"])
        s[0] = e[0] = cls
        if w in spans:
            i, j, v = spans[w]
            s[i], e[j] = v, v
        starts.append(s)
        ends.append(e)
    return starts, ends


def test_postprocess_recovers_the_gold_span_from_crafted_logits(tokenizer: Any) -> None:
    features = _task(max_length=24, stride=4).encode([LONG], tokenizer)
    w = next(i for i, f in enumerate(features) if f["start_positions"] != 0)
    f = features[w]
    # a weaker decoy span in the first window, the answer in window w
    decoy = next(i for i, o in enumerate(features[0]["offsets"]) if o is not None)
    starts, ends = _logits(features, {0: (decoy, decoy, 2.0), w: (f["start_positions"], f["end_positions"], 4.0)})
    assert postprocess([CONTEXT], features, starts, ends) == [ANSWER]
    # the no-answer score wins only with handle_unanswerable
    starts, ends = _logits(features, {w: (f["start_positions"], f["end_positions"], 4.0)}, cls=9.0)
    assert postprocess([CONTEXT], features, starts, ends) == [ANSWER]
    assert postprocess([CONTEXT], features, starts, ends, handle_unanswerable=True) == [""]
    # end before start, or longer than max_answer_len, is never an answer
    s = f["start_positions"]
    starts, ends = _logits(features, {w: (s, s, 0.0)})
    starts[w][s] = 6.0
    ends[w][s - 1] = 9.0  # end before start: skipped
    ends[w][s + 3] = 5.0  # 4 tokens
    four = CONTEXT[f["offsets"][s][0] : f["offsets"][s + 3][1]]
    assert four == "Paris now . the"
    assert postprocess([CONTEXT], features, starts, ends, max_answer_len=4) == [four]
    assert postprocess([CONTEXT], features, starts, ends, max_answer_len=3) == [ANSWER]


def test_evaluate_with_a_crafted_reader(tmp_path: Path) -> None:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    folder = save_crafted_reader(tmp_path / "reader", starts={"paris", "new"}, ends={"paris", "york"}, no_answer=1.0)
    model = AutoModelForQuestionAnswering.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    task = _task(max_length=24, stride=4)
    assert task.predict(model, tok, [LONG, SHORT]) == [ANSWER, "New York"]
    assert task.evaluate(model, tok, [LONG, SHORT]) == {"exact_match": 1.0, "f1": 1.0}
    wrong = QAExample("q4", "where is it?", SHORT_CONTEXT, [{"text": "York", "start": SHORT_CONTEXT.index("York")}])
    # "New York" vs "York": P = 1/2, R = 1 -> F1 2/3
    assert task.evaluate(model, tok, [wrong]) == {"exact_match": 0.0, "f1": pytest.approx(2 / 3)}
    unanswerable = QAExample("q5", "who is it?", FILLER, [], is_impossible=True)
    aware = _task(max_length=24, stride=4, handle_unanswerable=True)
    assert aware.predict(model, tok, [unanswerable, SHORT]) == ["", "New York"]
    assert "unanswerable" in aware.report(model, tok, [unanswerable, SHORT])
    predictor = aware.predictor(folder)
    assert predictor.invoke({"question": "where is it?", "context": SHORT_CONTEXT}).text == "New York"


def test_a_plain_training_loop_lowers_the_loss(tmp_path: Path) -> None:
    import torch

    task = _task(max_length=32, stride=8)
    task.setup([LONG, SHORT, NONE], "unused")
    model, tokenizer = task.build_model(save_random(tmp_path / "base", "BertModel"))
    batch = task.collate(task.encode([LONG, SHORT, NONE], tokenizer), tokenizer)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(20):
        loss = task.loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
