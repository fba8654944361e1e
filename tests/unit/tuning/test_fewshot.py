"""Few-shot classification on tiny random models: constrained scoring checked against a plain forward pass, the
prefix cache against full prompts, calibration against its definition, SetFit pairs, training and save/load, and
the `yulian fewshot` commands."""

from __future__ import annotations

import asyncio
import io
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tiny_setup import save_base, sentiment, single_thread, write_jsonl

from yulian.cli import main
from yulian.core.runnable import runnable
from yulian.models.hf_chat import HFChatModel
from yulian.testing import FakeEmbedder
from yulian.tuning.fewshot import (
    FEWSHOT_COMMANDS,
    ICLConfig,
    InContextClassifier,
    SetFitClassifier,
    contrastive_pairs,
    load_fewshot,
    parse_verbalizer,
    sample_per_class,
    train_setfit,
)

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread
COMMANDS = {"fewshot": FEWSHOT_COMMANDS}

EXAMPLES = [
    ("the quick brown fox", "pos"),
    ("hello world 123", "pos"),
    ("language chains link prompts", "pos"),
    ("the lazy dog", "neg"),
    ("paris is the capital of france", "neg"),
    ("system user assistant", "neg"),
]
TEXTS = ["the fox", "what is the capital of france? paris", "hello", "语链把提示词、模型和解析器串在一起"]


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tiny_chat_lm  # tests/unit/models, put on sys.path by tiny_setup

    return tiny_chat_lm.build(tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="module")
def chat(lm_folder: Path) -> HFChatModel:
    return HFChatModel(str(lm_folder), dtype="float32").warm_up()


def _icl(chat: HFChatModel, **options: Any) -> InContextClassifier:
    options.setdefault("verbalizer", {"pos": "good thing", "neg": "bad"})
    options.setdefault("per_class", 2)
    return InContextClassifier(chat, EXAMPLES, **options)


def _plain_logprob(chat: HFChatModel, ids: list[int], word: list[int]) -> list[float]:
    """The log-probability of each token of `word` after `ids`: one unpadded forward pass, no cache."""
    import torch

    rt = chat._runtime()
    with torch.no_grad():
        logits = rt.model(input_ids=torch.tensor([ids + word])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [float(logprobs[len(ids) - 1 + j, token]) for j, token in enumerate(word)]


# ============================================================================================ in context
@pytest.mark.parametrize("length_norm", [True, False])
def test_scores_are_the_log_probabilities_of_the_label_words(chat: HFChatModel, length_norm: bool) -> None:
    clf = _icl(chat, length_norm=length_norm, batch_size=3)
    scores = clf.label_logprobs(TEXTS)
    words = {label: clf.scorer.ids(" " + word) for label, word in clf.verbalizer.items()}
    assert len(words["pos"]) > 1  # a multi-token word: length normalisation matters
    prefix = clf._runtime().prefix
    assert prefix is not None
    for text, got in zip(TEXTS, scores, strict=True):
        query = clf.scorer.ids(f"Text: {text}\nLabel:")
        for label, word in words.items():
            token_lps = _plain_logprob(chat, prefix.ids + query, word)
            want = sum(token_lps) / (len(word) if length_norm else 1)
            assert got[label] == pytest.approx(want, abs=1e-4)
        best = max(got, key=lambda k: got[k])
        assert clf.invoke(text).label == best


def test_the_label_the_model_prefers_wins(chat: HFChatModel) -> None:
    clf = _icl(chat, verbalizer={"pos": "fox", "neg": "dog"})
    pos, neg = clf.scorer.ids(" fox"), clf.scorer.ids(" dog")
    assert not set(pos) & set(neg)
    head = chat._runtime().model.get_output_embeddings()
    for favoured, tokens in (("pos", pos), ("neg", neg)):
        handle = head.register_forward_hook(lambda m, i, out, t=tokens: out.index_add(-1, _ids(t), _boost(out, t)))
        try:
            predictions = clf.batch(TEXTS)
        finally:
            handle.remove()
        assert [p.label for p in predictions] == [favoured] * len(TEXTS)
        assert all(p.score > 0.99 for p in predictions)


def _ids(tokens: list[int]) -> Any:
    import torch

    return torch.tensor(tokens)


def _boost(out: Any, tokens: list[int]) -> Any:
    import torch

    return torch.full((*out.shape[:-1], len(tokens)), 40.0, dtype=out.dtype)


def test_the_prefix_cache_gives_the_scores_of_full_prompts(chat: HFChatModel) -> None:
    # three labels, one word a prefix of another: the stems share a row; inputs of different lengths pad
    verbalizer = {"pos": "good thing", "neg": "bad", "mid": "good"}
    examples = [*EXAMPLES, ("brown fox jumps", "mid"), ("over the lazy dog", "mid")]
    options: dict[str, Any] = {"verbalizer": verbalizer, "per_class": 2}
    packed = InContextClassifier(chat, examples, batch_size=4, **options)
    padded = InContextClassifier(chat, examples, batch_size=4, **options)
    padded.scorer.packing = False  # a copy of the prefix cache per padded row
    full = InContextClassifier(chat, examples, batch_size=1, cache_prefix=False, **options)
    assert packed.prompt("x") == full.prompt("x")
    a, b, c = (clf.label_logprobs(TEXTS) for clf in (packed, padded, full))
    for x, y, z in zip(a, b, c, strict=True):
        for label in verbalizer:
            assert x[label] == pytest.approx(z[label], abs=1e-4)
            assert y[label] == pytest.approx(z[label], abs=1e-4)
    assert len(packed._runtime().words) == 3


def test_calibration_divides_out_the_content_free_distribution(chat: HFChatModel) -> None:
    clf = _icl(chat, calibrate=True, content_free=("N/A", ""))
    cf = clf.calibration()
    dists = [_softmax(s) for s in clf.label_logprobs(["N/A", ""])]
    for label in clf.labels:
        assert cf[label] == pytest.approx((dists[0][label] + dists[1][label]) / 2, abs=1e-6)
    raw = clf.probabilities(TEXTS, calibrate=False)
    calibrated = clf.probabilities(TEXTS)
    for p, q in zip(raw, calibrated, strict=True):
        ratio = {label: p[label] / cf[label] for label in clf.labels}
        total = sum(ratio.values())
        for label in clf.labels:
            assert q[label] == pytest.approx(ratio[label] / total, abs=1e-6)
    assert any(abs(p["pos"] - q["pos"]) > 1e-3 for p, q in zip(raw, calibrated, strict=True))
    for d, p, q in zip(clf.scores(TEXTS), raw, calibrated, strict=True):  # the same numbers in one pass
        assert d.probabilities == pytest.approx(p) and d.calibrated == pytest.approx(q)
        assert d.calibration == pytest.approx(cf)
    single = _icl(chat, calibrate=True, content_free=("N/A",))
    uniform = single.invoke("N/A").scores  # the content-free input itself comes out uniform
    assert all(v == pytest.approx(0.5, abs=1e-6) for v in uniform.values())


def _softmax(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values())
    exps = {k: math.exp(v - top) for k, v in scores.items()}
    total = sum(exps.values())
    return {k: v / total for k, v in exps.items()}


def test_demonstrations_are_drawn_by_seed_or_chosen_by_similarity(chat: HFChatModel) -> None:
    a, b = _icl(chat, seed=1), _icl(chat, seed=1)
    assert a.demonstrations == b.demonstrations
    assert sorted(label for _, label in a.demonstrations) == ["neg", "neg", "pos", "pos"]
    assert {d for seed in range(6) for d in _icl(chat, seed=seed).demonstrations} == set(EXAMPLES)
    embedder = FakeEmbedder(dim=256)
    clf = InContextClassifier(chat, EXAMPLES, per_class=1, embedder=embedder, verbalizer="pos=good,neg=bad")
    text = "the quick brown fox and the lazy dog"
    prompt = clf.prompt(text)
    assert "the quick brown fox\n" in prompt and "the lazy dog\n" in prompt and prompt.endswith(f"Text: {text}\nLabel:")
    assert "hello world" not in prompt and "paris" not in prompt
    fixed = InContextClassifier(chat, EXAMPLES, per_class=1, verbalizer="pos=good,neg=bad")
    fixed.demonstrations = clf._demos_for([text])[0]  # the same prompt through the cached-prefix path
    for label, score in clf.label_logprobs([text, "hello world"])[0].items():
        assert score == pytest.approx(fixed.label_logprobs([text])[0][label], abs=1e-4)
    assert sum(clf.invoke(text).scores.values()) == pytest.approx(1.0)
    details = clf.scores([text, "hello world"])  # calibrated under each input's own demonstrations
    assert details[0].calibration == pytest.approx(clf.calibration(text))
    assert details[1].calibration == pytest.approx(clf.calibration("hello world"))
    assert details[0].calibration != pytest.approx(details[1].calibration)


def test_a_runnable_in_chains_batches_and_async(chat: HFChatModel) -> None:
    clf = _icl(chat)
    chain = runnable(lambda s: s.lower()) | clf | (lambda p: p.label)
    assert chain.invoke("THE FOX") == clf.invoke("the fox").label
    batched = clf.batch(TEXTS)
    assert [p.label for p in batched] == [clf.invoke(t).label for t in TEXTS]
    assert [p.label for p in asyncio.run(clf.abatch(TEXTS))] == [p.label for p in batched]
    assert asyncio.run(clf.ainvoke("hello")).label == batched[2].label
    mixed = clf.batch(["hello", 3], return_exceptions=True)  # type: ignore[list-item]
    assert mixed[0].label == batched[2].label and isinstance(mixed[1], TypeError)
    assert clf.task == "classify"


def test_save_and_load_give_the_same_classifier(chat: HFChatModel, lm_folder: Path, tmp_path: Path) -> None:
    clf = InContextClassifier(str(lm_folder), EXAMPLES, per_class=2, dtype="float32", seed=3, verbalizer="pos=x,neg=y")
    clf.save(tmp_path / "icl")
    again = load_fewshot(tmp_path / "icl")
    assert isinstance(again, InContextClassifier)
    assert again.demonstrations == clf.demonstrations and again.verbalizer == clf.verbalizer
    assert again.label_logprobs(TEXTS) == clf.label_logprobs(TEXTS)


def test_bad_options_get_clear_errors(chat: HFChatModel) -> None:
    with pytest.raises(ValueError, match="must end with"):
        ICLConfig(template="{label}: {text}")
    with pytest.raises(ValueError, match=r"no word for 'neg' \(labels: neg, pos\)"):
        _icl(chat, verbalizer="pos=good")
    with pytest.raises(ValueError, match="labels the examples do not have: 'maybe'"):
        _icl(chat, verbalizer="pos=good,neg=bad,maybe=so-so")
    with pytest.raises(TypeError, match="Did you mean 'per_class'"):
        _icl(chat, per_clas=2)
    with pytest.raises(ValueError, match="per_class=5 but some labels have fewer examples"):
        _icl(chat, per_class=5)
    assert parse_verbalizer("0=very bad,1=good\\, really") == {"0": "very bad", "1": "good, really"}
    with pytest.raises(ValueError, match="LABEL=WORD"):
        parse_verbalizer("0:bad")


# ============================================================================================ SetFit
def test_contrastive_pairs_counts_balance_and_seed() -> None:
    labels = ["a", "a", "a", "b", "b"]  # candidates i <= j: 15; positives 6 + 3 = 9, negatives 6
    unique = contrastive_pairs(labels, sampling="unique", seed=0)
    assert len(unique) == 15 and sum(t for *_, t in unique) == 9
    assert len(set(unique)) == 15 and all(i <= j for i, j, _ in unique)
    assert all((labels[i] == labels[j]) == (t == 1.0) for i, j, t in unique)
    over = contrastive_pairs(labels, sampling="oversampling", seed=0)
    assert len(over) == 18 and sum(t for *_, t in over) == 9  # negatives repeated up to 9
    assert [t for *_, t in over[:12]] == [1.0, 0.0] * 6  # positive and negative pairs alternate
    under = contrastive_pairs(labels, sampling="undersampling", seed=0)
    assert len(under) == 12 and sum(t for *_, t in under) == 6
    iters = contrastive_pairs(labels, iterations=2, seed=0)
    assert len(iters) == 20 and sum(t for *_, t in iters) == 10
    assert contrastive_pairs(labels, seed=0) == over
    other = contrastive_pairs(labels, sampling="unique", seed=1)
    assert other != unique and sorted(other) == sorted(unique)
    with pytest.raises(ValueError, match="at least 2 labels"):
        contrastive_pairs(["a", "a"])


def test_sample_per_class_is_stratified_and_seeded() -> None:
    shots = [(f"text {i}", "ab"[i % 2]) for i in range(20)]
    drawn = sample_per_class(shots, 4, seed=7)
    assert sorted(label for _, label in drawn) == ["a"] * 4 + ["b"] * 4
    assert drawn == sample_per_class(shots, 4, seed=7) != sample_per_class(shots, 4, seed=8)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base(tmp_path_factory.mktemp("encoder"))


@pytest.fixture(scope="module")
def trained(encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    examples = sentiment(16, seed=1)
    out = tmp_path_factory.mktemp("setfit") / "model"
    options = {"epochs": 4, "lr": 1e-3, "batch_size": 8, "max_length": 32, "dtype": "float32", "precision": "fp32"}
    return train_setfit(examples, out, base=encoder, eval_examples=sentiment(20, seed=5), **options)


def test_setfit_training_pulls_same_label_texts_together(trained: Any, encoder: Path) -> None:
    from yulian.models.hf_embed import HFEmbedder

    texts = sentiment(20, seed=5)

    def margin(path: Path) -> float:
        vectors = HFEmbedder(str(path), dtype="float32").embed_numpy([e.text for e in texts])
        sims = vectors @ vectors.T
        same = [sims[i, j] for i in range(20) for j in range(i) if texts[i].label == texts[j].label]
        diff = [sims[i, j] for i in range(20) for j in range(i) if texts[i].label != texts[j].label]
        return float(sum(same) / len(same) - sum(diff) / len(diff))

    assert margin(trained.out_dir) > margin(encoder) + 0.1
    assert trained.losses[-1] < trained.losses[0]
    assert trained.pairs == 144 and trained.steps == 4 * 144 // 8  # 72 positive pairs, 64 negative ones oversampled
    assert trained.metrics["accuracy"] >= 0.8


def test_setfit_save_and_load_give_identical_predictions(trained: Any, tmp_path: Path) -> None:
    texts = [e.text for e in sentiment(12, seed=9)]
    before = trained.classifier.batch(texts)
    moved = tmp_path / "moved"
    shutil.copytree(trained.out_dir, moved)
    for folder in (trained.out_dir, moved):
        loaded = load_fewshot(folder)
        assert isinstance(loaded, SetFitClassifier) and loaded.labels == ["neg", "pos"]
        assert loaded.batch(texts) == before
    assert (trained.out_dir / "config.json").is_file()  # also an ordinary encoder folder
    assert trained.classifier.task == "classify"
    assert [p.label for p in before] == [trained.classifier.invoke(t).label for t in texts]
    assert asyncio.run(trained.classifier.abatch(texts)) == before


def test_setfit_head_matches_scikit_learn(trained: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    clf = trained.classifier
    texts = [e.text for e in sentiment(10, seed=3)]
    head = clf.info["head"]
    reference = LogisticRegression()
    reference.coef_, reference.intercept_ = _array(head["coef"]), _array(head["intercept"])
    reference.classes_ = _array(head["classes"])
    want = reference.predict_proba(clf.encoder.embed_numpy(texts))
    got = clf.predict_proba(texts)
    assert abs(got - want).max() < 1e-9


def _array(values: Any) -> Any:
    import numpy as np

    return np.asarray(values)


def test_setfit_rejects_one_label_and_bad_options(encoder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2 labels"):
        train_setfit([("a", "x"), ("b", "x")], tmp_path / "m", base=encoder)
    with pytest.raises(TypeError, match="Did you mean 'epochs'"):
        train_setfit(EXAMPLES, tmp_path / "m", base=encoder, epoch=2)
    with pytest.raises(FileNotFoundError, match=r"no fewshot-setfit\.json"):
        SetFitClassifier(encoder)


# ============================================================================================ the CLI
def test_fewshot_commands(
    encoder: Path, lm_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(Path("train.jsonl"), sentiment(24, seed=2))
    write_jsonl(Path("dev.jsonl"), sentiment(10, seed=6))
    common = ["--train", "train.jsonl", "--eval", "dev.jsonl", "--per-class", "4"]
    setfit = ["fewshot", "setfit", *common, "--model", str(encoder), "--out", "sf", "--epochs", "2", "--lr", "1e-3"]
    assert main([*setfit, "--precision", "fp32", "--max-length", "32", "--no-progress"], COMMANDS) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["examples"] == 8 and summary["pairs"] == 40 and 0 <= summary["accuracy"] <= 1

    assert main(["fewshot", "eval", "sf", "dev.jsonl"], COMMANDS) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == summary["accuracy"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("this was a great film\n\nvery bad movie\n"))
    assert main(["fewshot", "predict", "sf"], COMMANDS) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["this was a great film", "very bad movie"]
    assert sum(rows[0]["scores"].values()) == pytest.approx(1.0)

    icl = ["fewshot", "icl", "--train", "train.jsonl", "--eval", "dev.jsonl", "--per-class", "2"]
    icl += ["--model", str(lm_folder), "--verbalizer", "pos=good,neg=bad", "--max-text-tokens", "24"]
    assert (
        main(
            [*icl, "--dtype", "float32", "--calibrate", "--save", "icl", "--template", "T: {text}\\nL: {label}"],
            COMMANDS,
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "icl" and summary["examples"] == 10 and summary["calibrate"] is True
    saved = load_fewshot("icl")
    assert isinstance(saved, InContextClassifier) and saved.config.template == "T: {text}\nL: {label}"
    monkeypatch.setattr(sys, "stdin", io.StringIO("a great film\n"))
    assert main(["fewshot", "predict", "icl"], COMMANDS) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("pos", "neg")

    assert main(["fewshot", "icl", "--train", "train.jsonl", "--verbalizer", "pos=good"], COMMANDS) == 1
    assert "no word for 'neg'" in capsys.readouterr().err


def test_a_setfit_folder_is_served_through_a_factory(trained: Any) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from yulian.serving import KeyConfig, ModelConfig, ServeConfig, hash_key
    from yulian.serving.app import create_app

    model = ModelConfig(
        name="fewshot", factory="yulian.tuning.fewshot:load_fewshot", options={"folder": str(trained.out_dir)}
    )
    cfg = ServeConfig(models=[model], keys=[KeyConfig(id="t", sha256=hash_key("yl-test-key"), models=["*"])])
    texts = ["this was a great film", "very bad movie"]
    with TestClient(create_app(cfg)) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)  # the model warms up in the background
        reply = client.post(
            "/v1/classify", json={"model": "fewshot", "input": texts}, headers={"Authorization": "Bearer yl-test-key"}
        )
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert [d["label"] for d in data] == [p.label for p in trained.classifier.batch(texts)]
    assert data[0]["scores"] == pytest.approx(trained.classifier.invoke(texts[0]).scores)
