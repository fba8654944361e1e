"""Continual learning on the packaged MiniLM (bounded: < 60 s): SST-2 then Financial PhraseBank, with the trainer's
lazily updated (sparse-gradient) word embeddings, the Fisher kept as the rows the old data used, and EWC holding the
important weights where plain sequential fine-tuning moves them.

Data: ../shared/datasets (or $YULIAN_DATASETS) glue_sst2 and financial_phrasebank.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DATA = Path(os.environ.get("YULIAN_DATASETS") or Path(__file__).resolve().parents[3].parent / "shared" / "datasets")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data() -> tuple[list[Any], list[Any], list[Any]]:
    from yulian.tuning.continual import replay_sample
    from yulian.tuning.data import TextExample, read_records

    sst, fpb = DATA / "glue_sst2" / "train.tsv", DATA / "financial_phrasebank" / "Sentences_AllAgree.txt"
    if not sst.exists() or not fpb.exists():
        pytest.skip("glue_sst2 / financial_phrasebank are not here (set YULIAN_DATASETS)")
    a = replay_sample(list(read_records(sst, text_field="sentence", label_field="label")), 240, seed=0)
    finance = [
        TextExample(e.text, label="1" if e.label == "positive" else "0")
        for e in read_records(fpb, delimiter="@")
        if e.label != "neutral"
    ]
    b = replay_sample(finance, 200, seed=0)
    return a[:200], a[200:], b


def test_sst2_then_finance_with_ewc_on_minilm(tmp_path: Path) -> None:
    import time

    from yulian.models.registry import resolve
    from yulian.tuning.continual import ContinualConfig, ContinualLearner, EWCState
    from yulian.tuning.tasks import TaskConfig, get_task
    from yulian.tuning.trainer import TrainConfig

    started = time.perf_counter()
    a_train, a_dev, b_train = _data()

    def task() -> Any:
        return get_task("classification", TaskConfig(max_length=48))

    def config(**extra: Any) -> TrainConfig:
        return TrainConfig(epochs=1, batch_size=16, lr=1e-4, progress=False, eval_every=10**6, **extra)

    ContinualLearner(task(), config(), tmp_path / "a", ContinualConfig(save_fisher=True, ewc_samples=48)).fit(
        a_train, a_dev, resolve("minilm-l6").path
    )
    state = EWCState.load(tmp_path / "a")
    rows = state.rows["bert.embeddings.word_embeddings.weight"]
    assert 50 < rows.numel() < 0.05 * 30522  # only the tokens of the 48 old examples matter
    shifts = {}
    for name, lam in (("plain", None), ("ewc", 1e7)):
        learner = ContinualLearner(task(), config(artifacts=False, save_model=False), tmp_path / name)
        learner.continual = ContinualConfig(ewc=lam, replay_buffer=0)
        learner.fit(b_train, None, tmp_path / "a")
        assert learner.trainer is not None and learner.trainer._lazy_embedding is not None  # sparse rows
        params = dict(learner.trainer.model.named_parameters())
        moved = {n: _rows(state, n, params[n]) - state.anchor[n] for n in state.names}
        shifts[name] = sum(float((state.fisher[n] * moved[n].square()).sum()) for n in state.names)
    assert shifts["ewc"] < 0.3 * shifts["plain"]
    assert time.perf_counter() - started < 60


def _rows(state: Any, name: str, param: Any) -> Any:
    weights = param.detach()
    return weights[state.rows[name]] if name in state.rows else weights[: state.anchor[name].shape[0]]
