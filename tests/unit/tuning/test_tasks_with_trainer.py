"""The ner, qa and sft tasks driven by the real `Trainer` on tiny models: the contract holds end to end (fit,
evaluate, save, reload the task and its predictor from the output folder)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from tiny_chat_lm import build
from tiny_hf import save_random, single_thread  # noqa: F401

from yulian.tuning import trainer
from yulian.tuning.data import ChatExample, QAExample, TokenExample
from yulian.tuning.tasks import Task, TaskConfig, get_task

pytestmark = pytest.mark.usefixtures("single_thread")


def _fit(task: Task, train: list[object], base: Path, out: Path, **config: object) -> None:
    settings: dict[str, object] = {"epochs": 3, "batch_size": 4, "lr": 1e-3, "precision": "fp32", "progress": False}
    settings.update(config)
    result = trainer.Trainer(task, trainer.TrainConfig(**settings), out_dir=out).fit(train, train, base_model=base)
    assert result.losses[-1] < result.losses[0]
    loaded = Task.from_dir(out)
    assert loaded.name == task.name and loaded.state() == task.state()
    assert loaded.predictor(out) is not None


def test_ner_through_the_trainer(tmp_path: Path) -> None:
    ner = [
        TokenExample(list("张三丰在北京工作"), ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"], sep=""),
        TokenExample(["john", "smith", "lives", "in", "paris"], ["B-PER", "I-PER", "O", "O", "B-LOC"]),
    ] * 4
    bert = save_random(tmp_path / "bert", "BertModel")
    _fit(get_task("ner", TaskConfig(max_length=32, stride=8)), list(ner), bert, tmp_path / "ner")


def test_qa_through_the_trainer(tmp_path: Path) -> None:
    context = "john smith lives in new york ."
    qa = [QAExample(f"q{i}", "where is it?", context, [{"text": "new york", "start": 20}]) for i in range(8)]
    bert = save_random(tmp_path / "bert", "BertModel")
    _fit(get_task("qa", TaskConfig(max_length=32, stride=8)), list(qa), bert, tmp_path / "qa")


CHATS = [ChatExample([{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}])] * 8


def test_sft_through_the_trainer(tmp_path: Path) -> None:
    task = get_task("sft", TaskConfig(max_length=64, stride=8))
    _fit(task, list(CHATS), build(tmp_path / "lm"), tmp_path / "sft")  # best checkpoint by "loss", lower is better
