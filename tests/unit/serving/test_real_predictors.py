"""Tiny random transformers models saved to disk, served by folder path through `yulian.models.registry.load`:
the same path fine-tuned (`yulian train`) and compressed artefacts take."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import AUTH, KEY

np = pytest.importorskip("numpy")
pytest.importorskip("torch")
pytest.importorskip("transformers")

WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "a",
    "good",
    "bad",
    "film",
    "movie",
    "great",
    "awful",
    "was",
    "very",
]


def _save(folder: Path, model_class: str, **config: Any) -> Path:
    import torch
    import transformers
    from transformers import BertConfig, BertTokenizerFast

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        **config,
    )
    getattr(transformers, model_class)(cfg).eval().save_pretrained(str(folder))
    BertTokenizerFast(vocab={w: i for i, w in enumerate(WORDS)}, do_lower_case=True).save_pretrained(str(folder))
    return folder


def test_folders_served_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from fastapi.testclient import TestClient

    from yulian.serving import KeyConfig, ModelConfig, ServeConfig, hash_key
    from yulian.serving import app as serving_app
    from yulian.serving.app import create_app
    from yulian.serving.config import BatchConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cls_dir = _save(
            tmp_path / "cls",
            "BertForSequenceClassification",
            id2label={0: "neg", 1: "pos"},
            label2id={"neg": 0, "pos": 1},
        )
        enc_dir = _save(tmp_path / "enc", "BertModel")
        cfg = ServeConfig(
            models=[
                ModelConfig(name="sentiment", source=str(cls_dir), options={"dtype": "float32"}),
                ModelConfig(name="enc", source=str(enc_dir), options={"dtype": "float32"}),
                ModelConfig(name="enc1", source=str(enc_dir), batch=BatchConfig(parallel=1, threads=1)),
            ],
            keys=[KeyConfig(id="t", sha256=hash_key(KEY), models=["*"])],
        )
        app = create_app(cfg)
        state = app.state.yulian
        assert state.models["sentiment"].task == "classify" and state.models["enc"].task == "embed"
        # encoders where torch uses 2+ threads: two batches in flight by default (this test holds torch at 1)
        assert state.models["enc"].batcher.parallel == (2 if serving_app._default_threads() >= 2 else 1)
        assert state.models["enc1"].batcher.parallel == 1
        with monkeypatch.context() as patched:
            patched.setattr(serving_app, "_DEFAULT_THREADS", 4)
            assert serving_app._auto_parallel(state.models["enc"].obj, "embed") == 2
            assert serving_app._auto_parallel(state.models["enc"].obj, "qa") == 1  # tokenizer settings change per call
        with TestClient(app, raise_server_exceptions=False) as c:
            for _ in range(300):
                if c.get("/readyz").status_code == 200:
                    break
                time.sleep(0.02)
            texts = ["a good film", "the movie was very awful", "great"]
            r = c.post("/v1/classify", headers=AUTH, json={"model": "sentiment", "input": texts})
            assert r.status_code == 200, r.text
            direct = state.models["sentiment"].obj.batch(texts)
            assert [d["label"] for d in r.json()["data"]] == [p.label for p in direct]
            assert [d["score"] for d in r.json()["data"]] == pytest.approx([p.score for p in direct], abs=1e-5)
            r = c.post("/v1/embeddings", headers=AUTH, json={"model": "enc", "input": texts})
            vectors = [d["embedding"] for d in r.json()["data"]]
            assert len(vectors) == 3 and len(vectors[0]) == 16
            for got, want in zip(vectors, state.models["enc"].obj.embed(texts), strict=True):
                assert got == pytest.approx(want, abs=1e-5)
            r = c.post(
                "/v1/embeddings", headers=AUTH, json={"model": "enc", "input": texts, "encoding_format": "base64"}
            )
            decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in r.json()["data"]])
            assert (np.array(vectors, dtype=np.float32) == decoded).all()  # the JSON text reads back to the float32
            assert decoded == pytest.approx(state.models["enc"].obj.embed_numpy(texts), abs=1e-5)
    finally:
        torch.set_num_threads(threads)
