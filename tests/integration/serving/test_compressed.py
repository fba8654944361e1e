"""A compressed artefact (`yulian compress` output) served by folder path, like any model: registry.load hands it
to `yulian.compression`, and the server batches it as the classifier it is."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")
sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "serving"))
sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "compression"))
from serving_helpers import AUTH, KEY
from tiny_models import sentiment, train_classifier, write_jsonl  # a tiny `yulian train`-style classifier

pytestmark = pytest.mark.integration


def test_compressed_classifier_is_served(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from yulian.compression import compress
    from yulian.serving import KeyConfig, ModelConfig, ServeConfig, hash_key
    from yulian.serving.app import create_app

    original = train_classifier(tmp_path / "cls")
    examples = sentiment(40, seed=4)
    dev = write_jsonl(tmp_path / "dev.jsonl", examples)
    texts = [e.text for e in examples[:8]]
    out = tmp_path / "cls-onnx"
    compress(original, "onnx-int8", dev, out, progress=False)
    cfg = ServeConfig(
        models=[ModelConfig(name="sentiment", source=str(out))],
        keys=[KeyConfig(id="t", sha256=hash_key(KEY), models=["*"])],
    )
    app = create_app(cfg)
    served = app.state.yulian.models["sentiment"]
    assert served.task == "classify" and type(served.obj).__name__ == "CompressedClassifier"
    with TestClient(app, raise_server_exceptions=False) as c:
        for _ in range(300):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.02)
        r = c.post("/v1/classify", headers=AUTH, json={"model": "sentiment", "input": texts})
        assert r.status_code == 200, r.text
        direct = served.obj.batch(texts)
        assert [d["label"] for d in r.json()["data"]] == [p.label for p in direct]
