"""HFEmbedder on a tiny random BERT built inline: pooling, normalisation, batching, padding, dtype choice."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import numpy as np
import torch
from tiny_hf import save_random, single_thread  # noqa: F401 - fixture

from yulian import runnable
from yulian.models import hf_encoder
from yulian.models.hf_embed import HFEmbedder

TEXTS = [
    "the quick brown fox",
    "我的卡丢了",
    "john smith lives in paris and works at apple , a very good film",
    "dog",
    "",
    "new york 北京 上海 is a great city",
]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random(tmp_path_factory.mktemp("embed"), "BertModel")


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> HFEmbedder:
    return HFEmbedder(str(model_dir), dtype="float32", batch_size=4).warm_up()


def reference(model_dir: Path, text: str, pooling: str = "mean") -> np.ndarray:
    """The vector computed the plain way: one unpadded forward pass, pooled by hand."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
    vector = hidden[0] if pooling == "cls" else hidden.mean(dim=0)
    return (vector / vector.norm()).numpy()


def test_constructor_is_cheap_and_dim_needs_no_weights(model_dir: Path) -> None:
    emb = HFEmbedder(str(model_dir))
    assert not emb.loaded
    assert emb.dim == 32  # read from config.json
    assert not emb.loaded
    emb.invoke("dog")
    assert emb.loaded


def test_vectors_are_normalised_and_match_a_plain_forward_pass(embedder: HFEmbedder, model_dir: Path) -> None:
    vectors = embedder.embed_numpy(TEXTS)
    assert vectors.shape == (len(TEXTS), 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for text, vector in zip(TEXTS[:3], vectors[:3], strict=True):
        np.testing.assert_allclose(vector, reference(model_dir, text), atol=1e-5)


def test_cls_pooling_and_no_normalisation(model_dir: Path) -> None:
    cls = HFEmbedder(str(model_dir), pooling="cls", dtype="float32")
    np.testing.assert_allclose(cls.embed_numpy(["the dog"])[0], reference(model_dir, "the dog", "cls"), atol=1e-5)
    raw = HFEmbedder(str(model_dir), normalize=False, dtype="float32").embed_numpy(TEXTS)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)


def test_batch_equals_one_by_one(embedder: HFEmbedder) -> None:
    together = np.array(embedder.embed(TEXTS))
    alone = np.array([embedder.invoke(t) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert embedder.batch(TEXTS) == embedder.embed(TEXTS)


def test_padding_does_not_change_a_vector(embedder: HFEmbedder) -> None:
    short = "dog"
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 6)
    alone = embedder.embed_numpy([short])[0]
    padded = embedder.with_options(batch_size=2).embed_numpy([long, short])[1]  # padded to the long one
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_order_is_kept_whatever_the_batching(model_dir: Path) -> None:
    one = HFEmbedder(str(model_dir), dtype="float32", batch_size=1).embed_numpy(TEXTS)
    big = HFEmbedder(str(model_dir), dtype="float32", batch_size=64).embed_numpy(TEXTS)
    np.testing.assert_allclose(one, big, atol=1e-5)
    assert np.linalg.matrix_rank(one) == len(TEXTS)  # distinct texts, distinct vectors


def test_query_and_passage_prefixes(model_dir: Path) -> None:
    plain = HFEmbedder(str(model_dir), dtype="float32")
    e5 = HFEmbedder(str(model_dir), dtype="float32", query_prefix="query: ", passage_prefix="passage: ")
    np.testing.assert_allclose(e5.embed_query("dog"), plain.invoke("query: dog"), atol=1e-6)
    np.testing.assert_allclose(e5.embed(["dog"])[0], plain.invoke("passage: dog"), atol=1e-6)
    assert not np.allclose(e5.embed_query("dog"), e5.invoke("dog"), atol=1e-3)


def test_truncation_at_max_length(model_dir: Path) -> None:
    emb = HFEmbedder(str(model_dir), dtype="float32", max_length=8)
    head = "the quick brown fox jumps over"  # 6 tokens + [CLS] + [SEP] = 8
    np.testing.assert_allclose(emb.invoke(head), emb.invoke(head + " the lazy dog"), atol=1e-6)


def test_runnable_contract(embedder: HFEmbedder) -> None:
    chain = runnable(lambda s: s.lower()) | embedder
    np.testing.assert_allclose(chain.invoke("DOG"), embedder.invoke("dog"), atol=1e-6)
    assert list(embedder.stream("dog")) == [embedder.invoke("dog")]
    assert asyncio.run(embedder.ainvoke("dog")) == embedder.invoke("dog")
    assert asyncio.run(embedder.abatch(["dog", "fox"])) == embedder.batch(["dog", "fox"])
    assert embedder.embed([]) == [] and embedder.embed_numpy([]).shape == (0, 32)
    with pytest.raises(TypeError, match="position 1"):
        embedder.embed_numpy(["ok", 3])  # type: ignore[list-item]


def test_bad_options_are_named(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Did you mean 'mean'"):
        HFEmbedder(str(model_dir), pooling="meen")
    with pytest.raises(ValueError, match="dtype"):
        HFEmbedder(str(model_dir), dtype="fp8")
    with pytest.raises(ValueError, match="batch_size"):
        HFEmbedder(str(model_dir), batch_size=0)
    with pytest.raises(FileNotFoundError, match="not found"):
        HFEmbedder(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        HFEmbedder(str(empty)).warm_up()


def test_auto_dtype_keeps_bf16_only_within_tolerance(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fp32 = HFEmbedder(str(model_dir), dtype="float32").embed_numpy(TEXTS)
    monkeypatch.setattr(hf_encoder, "native_bf16", lambda torch, device: True)
    chosen = HFEmbedder(str(model_dir))
    assert chosen.runtime_info()["dtype"] == "bfloat16"
    assert "cosine" in chosen.runtime_info()["dtype_reason"]
    assert np.min((chosen.embed_numpy(TEXTS) * fp32).sum(axis=1)) >= 0.99
    monkeypatch.setattr("yulian.models.hf_embed.BF16_MIN_COSINE", 1.5)  # impossible: bf16 must be refused
    refused = HFEmbedder(str(model_dir))
    assert refused.runtime_info()["dtype"] == "float32"
    assert "out of tolerance" in refused.runtime_info()["dtype_reason"]
    np.testing.assert_allclose(refused.embed_numpy(TEXTS), fp32, atol=1e-6)
    monkeypatch.setattr(hf_encoder, "native_bf16", lambda torch, device: False)
    assert HFEmbedder(str(model_dir)).runtime_info()["dtype"] == "float32"


def test_with_options_shares_weights_unless_they_change(embedder: HFEmbedder) -> None:
    same = embedder.with_options(normalize=False)
    assert same.loaded and same._runtime() is embedder._runtime()
    assert embedder.options.normalize  # the original is untouched
    other = embedder.with_options(dtype="bfloat16")
    assert not other.loaded


def test_prefixes_come_from_the_folders_declared_prompts(tmp_path: Path) -> None:
    import json
    import shutil

    folder = tmp_path / "e5like"
    shutil.copytree(save_random(tmp_path / "src", "BertModel"), folder)
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "passage": "passage: "}})
    )
    declared = HFEmbedder(str(folder), dtype="float32")
    assert (declared.options.query_prefix, declared.options.passage_prefix) == ("query: ", "passage: ")
    explicit = HFEmbedder(str(folder), dtype="float32", query_prefix="", passage_prefix="p: ")
    assert (explicit.options.query_prefix, explicit.options.passage_prefix) == ("", "p: ")
    plain = HFEmbedder(str(tmp_path / "src"), dtype="float32")
    assert (plain.options.query_prefix, plain.options.passage_prefix) == ("", "")
    assert np.allclose(declared.embed_query("dog"), plain.embed(["query: dog"])[0], atol=1e-5)


def _plan_cost(lengths: list[int], plan: list[tuple[int, int]], hidden: int = 384) -> float:
    return sum(
        hf_encoder.FORWARD_OVERHEAD_TOKENS + (end - start) * lengths[start] * (1 + lengths[start] / (6 * hidden))
        for start, end in plan
    )


def test_padding_plan_covers_every_input_once_within_the_batch_size() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 7, 33, 700):  # 700: two windows
        lengths = sorted(rng.integers(3, 120, n).tolist(), reverse=True)
        plan = hf_encoder.padding_plan(lengths, 16)
        assert plan[0][0] == 0 and plan[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))
        assert all(0 < end - start <= 16 for start, end in plan)


def test_padding_plan_splits_mixed_lengths_and_keeps_equal_ones_together() -> None:
    assert hf_encoder.padding_plan([20] * 64, 32) == [(0, 32), (32, 64)]  # no padding to save: full batches
    mixed = [200, *[12] * 31]  # one long text would pad 31 short ones to 200
    plan = hf_encoder.padding_plan(mixed, 32)
    assert plan == [(0, 1), (1, 32)]
    assert _plan_cost(mixed, plan) < _plan_cost(mixed, [(0, 32)])
    spread = sorted(np.random.default_rng(1).integers(5, 60, 32).tolist(), reverse=True)  # brute force: optimal
    best = hf_encoder.padding_plan(spread, 32)
    for cut in range(1, 32):
        assert _plan_cost(spread, best) <= _plan_cost(spread, [(0, cut), (cut, 32)]) + 1e-9
