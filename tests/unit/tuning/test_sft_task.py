"""The "sft" task on a tiny random Llama built here: assistant-only labels, multi-turn, templates and the
fallback transcript, truncation, evaluation and a plain training loop that lowers the loss."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from tiny_chat_lm import build, one_thread

from yulian.tuning.data import ChatExample
from yulian.tuning.tasks import TaskConfig, get_task
from yulian.tuning.tasks.sft import SFTTask

ONE = ChatExample(
    [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is the capital of france?"},
        {"role": "assistant", "content": "paris is the capital of france."},
    ],
    line=1,
)
TWO = ChatExample(
    [
        {"role": "user", "content": "hello world"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "the quick brown fox"},
        {"role": "assistant", "content": "jumps over the lazy dog"},
    ],
    line=2,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    yield from one_thread()


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="module")
def loaded(lm: Path) -> tuple[SFTTask, Any, Any]:
    task = _task()
    task.setup([ONE, TWO], lm)
    model, tokenizer = task.build_model(lm)
    return task, model, tokenizer


def _task(**config: Any) -> SFTTask:
    task = get_task("sft", TaskConfig(**config))
    assert isinstance(task, SFTTask)
    return task


def _labelled(tokenizer: Any, feature: dict[str, Any]) -> str:
    return "".join(
        tokenizer.decode([token])
        for token, label in zip(feature["input_ids"], feature["labels"], strict=True)
        if label != -100
    )


def test_labels_cover_only_assistant_tokens(loaded: tuple[SFTTask, Any, Any]) -> None:
    task, _, tokenizer = loaded
    [one, two] = task.encode([ONE, TWO], tokenizer)
    assert _labelled(tokenizer, one) == "paris is the capital of france.<|im_end|>\n"
    assert _labelled(tokenizer, two) == "hello<|im_end|>\njumps over the lazy dog<|im_end|>\n"
    for feature in (one, two):  # labelled tokens carry their own ids; the rest (system, user, template) -100
        assert all(label in (-100, token) for token, label in zip(feature["input_ids"], feature["labels"], strict=True))
    user_end = tokenizer.decode(one["input_ids"]).index("paris")
    prefix = len(tokenizer(tokenizer.decode(one["input_ids"])[:user_end], add_special_tokens=False)["input_ids"])
    assert set(one["labels"][:prefix]) == {-100} and -100 not in one["labels"][prefix:]
    everything = _task(answer_only_loss=False).encode([ONE], tokenizer)[0]
    assert everything["labels"] == everything["input_ids"]


def test_tokenizer_without_template_uses_the_fallback_transcript(tmp_path: Path) -> None:
    folder = build(tmp_path / "plain", template=False)
    task = _task()
    _, tokenizer = task.build_model(folder)
    [feature] = task.encode([ONE], tokenizer)
    text = tokenizer.decode(feature["input_ids"])
    assert text.startswith("System: be brief\n\nUser: what is the capital of france?\n\nAssistant: paris")
    assert _labelled(tokenizer, feature) == " paris is the capital of france.<|im_end|>"


def test_truncation_keeps_the_end_or_drops(loaded: tuple[SFTTask, Any, Any]) -> None:
    _, _, tokenizer = loaded
    full = _task().encode([TWO], tokenizer)[0]
    left = _task(max_length=12, stride=0).encode([TWO], tokenizer)[0]
    assert left["input_ids"] == full["input_ids"][-12:] and left["labels"] == full["labels"][-12:]
    short = ChatExample([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}])
    limit = len(_task().encode([short], tokenizer)[0]["input_ids"])
    assert limit < len(full["input_ids"])
    drop = _task(max_length=limit, stride=0, extra={"truncation": "drop"})
    with pytest.warns(UserWarning, match="1 of 2 conversations dropped"):
        features = drop.encode([TWO, short], tokenizer)
    assert len(features) == 1 and drop.dropped == 1 and len(features[0]["input_ids"]) == limit
    with pytest.raises(ValueError, match="truncation"):
        _task(extra={"truncation": "middle"})
    with pytest.raises(ValueError, match="line 3 has no assistant turn"):
        _task().setup([ChatExample([{"role": "user", "content": "hi"}], line=3)], "unused")


def test_collate_pads_right_with_ignored_labels(loaded: tuple[SFTTask, Any, Any]) -> None:
    task, _, tokenizer = loaded
    features = task.encode([ONE, TWO], tokenizer)
    batch = task.collate(features, tokenizer)
    short = min(range(2), key=lambda i: len(features[i]["input_ids"]))
    n = len(features[short]["input_ids"])
    assert batch["input_ids"][short, n:].tolist() == [tokenizer.pad_token_id] * (batch["input_ids"].shape[1] - n)
    assert set(batch["labels"][short, n:].tolist()) == {-100}
    assert batch["attention_mask"][short].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)


def test_evaluate_and_a_plain_training_loop(lm: Path) -> None:
    import torch

    task = _task()
    assert task.greater_is_better is False and task.metrics[0] == "loss"
    model, tokenizer = task.build_model(lm)
    [feature] = task.encode([ONE], tokenizer)
    with torch.no_grad():
        expected = float(model(**task.collate([feature], tokenizer)).loss)
    before = task.evaluate(model, tokenizer, [ONE])
    assert before["loss"] == pytest.approx(expected, rel=1e-4)  # the mean over label tokens, like the model's loss
    assert before["perplexity"] == pytest.approx(math.exp(before["loss"]))
    batch = task.collate(task.encode([ONE, TWO], tokenizer), tokenizer)
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
    after = task.evaluate(model, tokenizer, [ONE, TWO])
    assert after["loss"] < before["loss"] and after["token_accuracy"] > 0.3
    assert model.training
