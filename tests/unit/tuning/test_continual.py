"""Continual learning on tiny random BERTs: replay sampling and buffers, the Fisher information, the EWC penalty and
its gradient, online accumulation, label sets kept when re-tuning, and adapters continued rather than stacked."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tiny_setup import save_base, sentiment, single_thread

from yulian.tuning.continual import (
    ContinualConfig,
    ContinualLearner,
    EWCPenalty,
    EWCState,
    ReplayBuffer,
    RetuneClassificationTask,
    estimate_fisher,
    read_examples,
    replay_mix,
    replay_sample,
)
from yulian.tuning.continual_labels import OldModel
from yulian.tuning.data import TextExample, TokenExample, read_records
from yulian.tuning.tasks import Task, TaskConfig, get_task
from yulian.tuning.trainer import TrainConfig

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread

A_TRAIN = sentiment(64)
A_DEV = sentiment(32, seed=1)
MEH = [TextExample(f"the movie was {w}", label="meh", line=i) for i, w in enumerate(["now", "quick", "of"] * 8)]
B_TRAIN = MEH + [e for e in sentiment(48, seed=3) if e.label == "pos"]


def task() -> Any:
    return get_task("classification", TaskConfig(max_length=16, stride=8))


def config(**overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {"epochs": 4, "batch_size": 8, "lr": 1e-2, "precision": "fp32", "progress": False}
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def run_a(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Task A (neg/pos), full fine-tuning, with the replay buffer and the Fisher saved."""
    out = tmp_path_factory.mktemp("a")
    cc = ContinualConfig(save_fisher=True, ewc_samples=32, replay_buffer=40)
    # 8 epochs at 3e-3: 1.0 on the dev set for every seed tried (0-5); 4 epochs at 1e-2 learned for 1-2 seeds in 6
    result = ContinualLearner(task(), config(epochs=8, lr=3e-3), out, cc).fit(A_TRAIN, A_DEV, base)
    assert result.best_metric is not None and result.best_metric >= 0.9
    return out


def _weights(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ------------------------------------------------------------------------------------------------------- replay
def test_replay_sample_is_stratified_seeded_and_keeps_every_label() -> None:
    old = [TextExample(f"t{i}", label="a") for i in range(80)]
    old += [TextExample(f"u{i}", label="b") for i in range(18)] + [
        TextExample("rare", label="c"),
        TextExample("x", label="d"),
    ]
    sample = replay_sample(old, 10, seed=3)
    counts = Counter(e.label for e in sample)
    assert len(sample) == 10 and len({e.text for e in sample}) == 10
    assert counts["c"] == 1 and counts["d"] == 1 and counts["a"] > counts["b"] >= 1  # proportional, none dropped
    assert [e.text for e in replay_sample(old, 10, seed=3)] == [e.text for e in sample]
    assert [e.text for e in replay_sample(old, 10, seed=4)] != [e.text for e in sample]
    assert Counter(e.label for e in replay_sample(old, 50, seed=0)) == {"a": 39, "b": 9, "c": 1, "d": 1}
    assert len(replay_sample(old, 500, seed=0)) == 100  # all of them
    unstratified = Counter(e.label for e in replay_sample(old, 10, seed=3, stratify=False))
    assert sum(unstratified.values()) == 10


def test_replay_mix_ratio_count_and_cap() -> None:
    new = [TextExample(f"n{i}", label="x") for i in range(50)]
    old = [TextExample(f"o{i}", label="a" if i % 2 else "b") for i in range(30)]
    mixed = replay_mix(new, old, 0.2, seed=1)
    assert len(mixed) == 60 and sum(e.text.startswith("o") for e in mixed) == 10
    assert Counter(e.label for e in mixed if e.text.startswith("o")) == {"a": 5, "b": 5}
    assert mixed == replay_mix(new, old, 0.2, seed=1) and mixed != replay_mix(new, old, 0.2, seed=2)
    assert len(replay_mix(new, old, count=7)) == 57
    assert len(replay_mix(new, old, 2.0)) == 80  # asked for 100 old ones, there are 30
    with pytest.raises(ValueError, match="either a replay ratio or a replay count"):
        replay_mix(new, old, 0.1, count=5)
    with pytest.raises(ValueError, match="replay_ratio must be a number > 0"):
        ContinualConfig(replay_ratio=-1)
    with pytest.raises(ValueError, match="replay_ratio or replay_count, not both"):
        ContinualConfig(replay_ratio=0.1, replay_count=5)
    assert ContinualConfig(replay="old.tsv").replay_ratio == 0.1


def test_replay_buffer_is_a_uniform_capped_sample_and_round_trips(tmp_path: Path) -> None:
    share_second = []
    for seed in range(200):
        buffer = ReplayBuffer(cap=20, seed=seed).add(TextExample(f"a{i}", label="a") for i in range(100))
        buffer.add(TextExample(f"b{i}", label="b") for i in range(100))  # a second task, streamed on
        assert len(buffer) == 20 and buffer.seen == 200
        share_second.append(sum(e.label == "b" for e in buffer.examples) / 20)
    assert 0.45 < sum(share_second) / len(share_second) < 0.55  # each of the 200 kept with chance 20/200

    examples: list[Any] = [
        TextExample("one", label="a"),
        TextExample("two", labels=["a", "b"]),
        TextExample("q", label="b", text_pair="p"),
        TokenExample(["john", "lives"], ["B-PER", "O"]),
    ]
    buffer = ReplayBuffer(cap=10, seed=1).add(examples)
    buffer.save(tmp_path)
    again = ReplayBuffer.load(tmp_path)
    assert again.seen == 4 and again.cap == 10 and again.seed == 1
    assert [(type(e).__name__, getattr(e, "text", None)) for e in again.examples] == [
        (type(e).__name__, e.text) for e in examples
    ]
    assert again.examples[1].labels == ["a", "b"] and again.examples[2].text_pair == "p"
    assert again.examples[3].tags == ["B-PER", "O"]
    ReplayBuffer(cap=10).add(examples[:1]).save(tmp_path / "plain")
    records = read_records(tmp_path / "plain" / "replay.jsonl")  # ordinary training data too
    assert [(e.text, e.label) for e in records] == [("one", "a")]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "replay.jsonl").write_text('{"text": "x", "label": "a"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"replay.jsonl line 2: not valid JSON"):
        read_examples(tmp_path / "bad")


# ------------------------------------------------------------------------------------------------------- Fisher
def _model_and_task(folder: Path) -> tuple[Any, Any, Any]:
    old_task = Task.from_dir(folder)
    model, tokenizer = old_task.build_model(folder)
    return model, tokenizer, old_task


def test_fisher_is_the_mean_squared_per_example_gradient_and_skips_frozen(run_a: Path) -> None:
    import torch

    model, tokenizer, old_task = _model_and_task(run_a)
    frozen = "bert.embeddings.position_embeddings.weight"
    dict(model.named_parameters())[frozen].requires_grad_(False)
    examples = A_TRAIN[:6]
    fisher = estimate_fisher(model, old_task, examples, tokenizer, samples=None)
    assert frozen not in fisher and dict(model.named_parameters())[frozen].grad is None
    assert all(bool((f >= 0).all()) for f in fisher.values())
    assert (
        float(fisher["classifier.weight"].sum()) > 0
        and float(fisher["bert.embeddings.word_embeddings.weight"].sum()) > 0
    )
    # by hand: one example at a time, squared gradients of the gold label's negative log-likelihood, averaged
    names = ["classifier.weight", "bert.encoder.layer.1.output.dense.weight", "bert.embeddings.word_embeddings.weight"]
    params = dict(model.named_parameters())
    manual = {n: torch.zeros_like(params[n]) for n in names}
    model.eval()
    for feature in old_task.encode(examples, tokenizer):
        batch = old_task.collate([feature], tokenizer)
        labels = batch.pop("labels")
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels, reduction="sum")
        for name, grad in zip(names, torch.autograd.grad(loss, [params[n] for n in names]), strict=True):
            manual[name] += grad.square() / len(examples)
    for name in names:
        assert torch.allclose(fisher[name], manual[name], rtol=1e-4, atol=1e-10), name
    sampled = estimate_fisher(model, old_task, examples, tokenizer, samples=None, kind="sampled", seed=0)
    assert all(bool((f >= 0).all()) for f in sampled.values()) and set(sampled) == set(fisher)
    with pytest.raises(ValueError, match="Fisher kind must be one of empirical, sampled"):
        estimate_fisher(model, old_task, examples, tokenizer, kind="true")


def test_penalty_is_zero_at_the_anchor_and_its_gradient_is_lambda_f_times_the_shift(run_a: Path) -> None:
    import torch

    model, tokenizer, old_task = _model_and_task(run_a)
    fisher = estimate_fisher(model, old_task, A_TRAIN[:8], tokenizer, samples=None)
    state = EWCState.from_model(model, fisher)
    penalty = EWCPenalty(state, lam=50.0)
    assert float(penalty(model, torch.tensor(0.0)).detach()) == 0.0
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.01)
    shifts = {n: p.detach() - state.anchor[n] for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the trainer calls the hook inside autocast
        value = penalty(model, torch.tensor(0.0))
    value.backward()
    expected = sum(float((fisher[n] * shifts[n].square()).sum()) for n in fisher) * 50.0 / 2
    assert value.dtype == torch.float32 and float(value.detach()) == pytest.approx(expected, rel=1e-4)
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, 50.0 * fisher[name] * shifts[name], rtol=1e-4, atol=1e-12), name


def test_penalty_rows_of_a_big_sparse_embedding_and_a_grown_head() -> None:
    import torch

    class Net(torch.nn.Module):
        def __init__(self, rows: int, labels: int) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(rows, 4, sparse=True)
            self.classifier = torch.nn.Linear(4, labels)

    torch.manual_seed(0)
    old, new = Net(2048, 2), Net(2048, 3)
    fisher = {
        "embed.weight": torch.zeros(2048, 4),
        "classifier.weight": torch.rand(2, 4),
        "classifier.bias": torch.rand(2),
    }
    fisher["embed.weight"][[3, 700, 1500]] = torch.rand(3, 4)
    state = EWCState.from_model(old, fisher, {"method": "full"})
    assert state.rows["embed.weight"].tolist() == [3, 700, 1500] and state.fisher["embed.weight"].shape == (3, 4)
    with torch.no_grad():
        new.embed.weight.copy_(old.embed.weight + 0.1)
        new.classifier.weight[:2] = old.classifier.weight - 0.2
        new.classifier.bias[:2] = old.classifier.bias
    value = EWCPenalty(state, lam=2.0)(new, torch.tensor(0.0))
    value.backward()
    grad = new.embed.weight.grad
    assert grad is not None and grad.is_sparse  # the trainer's lazily updated embedding keeps a sparse gradient
    dense = grad.to_dense()
    assert torch.allclose(dense[[3, 700, 1500]], 2.0 * fisher["embed.weight"][[3, 700, 1500]] * 0.1, atol=1e-6)
    assert float(dense.abs().sum() - dense[[3, 700, 1500]].abs().sum()) == 0.0
    head = new.classifier.weight.grad
    assert head is not None
    assert (
        torch.allclose(head[:2], 2.0 * fisher["classifier.weight"] * -0.2, atol=1e-6)
        and float(head[2].abs().sum()) == 0
    )
    with pytest.raises(ValueError, match="does not have"):
        EWCPenalty(state, 1.0)(torch.nn.Linear(2, 2), torch.tensor(0.0))


def test_ewc_state_saves_and_accumulates_online(tmp_path: Path) -> None:
    import torch

    old = torch.nn.Linear(3, 2)
    new = torch.nn.Linear(3, 4)
    f_old = {"weight": torch.full((2, 3), 2.0), "bias": torch.ones(2)}
    f_new = {"weight": torch.ones(4, 3), "bias": torch.ones(4)}
    first = EWCState.from_model(old, f_old, {"method": "full", "kind": "empirical"})
    first.save(tmp_path)
    loaded = EWCState.load(tmp_path)
    assert loaded.meta["method"] == "full" and torch.equal(loaded.anchor["weight"], old.weight.detach())
    both = loaded.merged(EWCState.from_model(new, f_new, {"method": "full"}), gamma=0.5)
    assert both.meta["tasks"] == 2 and torch.equal(both.anchor["weight"], new.weight.detach())
    assert (
        both.fisher["weight"][:2].tolist() == [[2.0] * 3] * 2 and both.fisher["weight"][2:].tolist() == [[1.0] * 3] * 2
    )
    with pytest.raises(FileNotFoundError, match="--save-fisher"):
        EWCState.load(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------- re-tuning A -> B
def test_sequential_b_with_ewc_stays_closer_to_a_than_plain(run_a: Path, tmp_path: Path) -> None:
    a_model, _, _ = _model_and_task(run_a)
    anchor = _weights(a_model)
    state = EWCState.load(run_a)
    assert state.meta["method"] == "full" and state.meta["samples"] == 32
    distances = {}
    for name, cc in {
        "plain": ContinualConfig(replay_buffer=0),
        "ewc": ContinualConfig(ewc=1e3, replay_buffer=0),
    }.items():
        learner = ContinualLearner(task(), config(precision="bf16"), tmp_path / name, cc)
        learner.fit(B_TRAIN, B_TRAIN[:16], run_a, old_dev=A_DEV)
        assert learner.trainer is not None
        weights = _weights(learner.trainer.model)
        distances[name] = sum(
            float((state.dense(n) * (weights[n][: anchor[n].shape[0]] - anchor[n]).square()).sum()) for n in state.names
        )
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert metrics["continual"]["old_task"]["before"]["accuracy"] >= 0.9
        assert metrics["continual"]["labels"] == {"kept": 2, "added": ["meh"]}
    assert distances["ewc"] < 0.2 * distances["plain"]  # the predicted rise of A's loss, 1/2 sum F (w - w_A)^2
    assert learner.penalty is not None and learner.penalty.last > 0


def test_retune_keeps_the_old_labels_and_grows_the_head(run_a: Path, tmp_path: Path) -> None:
    old = OldModel.probe(run_a)
    assert old is not None and old.labels == ["neg", "pos"] and old.adapter is None
    retune = RetuneClassificationTask.from_old(TaskConfig(max_length=16), old, B_TRAIN)
    assert retune.label_map is not None and retune.label_map.labels == ("neg", "pos", "meh") and retune.added == ["meh"]
    model, _ = retune.build_model(run_a)
    a_model, _, _ = _model_and_task(run_a)
    grown, before = model.classifier.weight.detach(), a_model.classifier.weight.detach()
    assert tuple(grown.shape) == (3, 32) and (grown[:2] == before).all() and model.num_labels == 3
    assert (model.classifier.bias.detach()[:2] == a_model.classifier.bias.detach()).all()
    assert model.config.id2label == {0: "neg", 1: "pos", 2: "meh"}
    # fewer labels than the old model: the old label set is kept (this crashed in from_pretrained before)
    only_pos = [e for e in A_TRAIN if e.label == "pos"]
    result = ContinualLearner(
        task(), config(epochs=1), tmp_path / "pos", ContinualConfig(replay_count=8, replay_buffer=40)
    ).fit(only_pos, A_DEV, run_a)
    assert result.metrics["continual"]["replay"]["replayed"] == 8
    assert Task.from_dir(tmp_path / "pos").state()["labels"] == ["neg", "pos"]
    saved = json.loads((tmp_path / "pos" / "config.json").read_text())
    assert saved["id2label"] == {"0": "neg", "1": "pos"}
    buffer = ReplayBuffer.load(tmp_path / "pos")  # A's buffer (40 of 64) streamed on with the new examples
    assert buffer.seen == 64 + len(only_pos) and len(buffer) == 40
    with pytest.raises(ValueError, match="single-label classifier but the new data is multi-label"):
        RetuneClassificationTask.from_old(TaskConfig(max_length=16), old, [TextExample("x", labels=["a", "b"])])


def test_replay_from_the_saved_buffer_and_clear_errors(base: Path, run_a: Path, tmp_path: Path) -> None:
    cc = ContinualConfig(replay_ratio=0.5, replay_buffer=0)
    result = ContinualLearner(task(), config(epochs=1), tmp_path / "r", cc).fit(B_TRAIN, None, run_a)
    replay = result.metrics["continual"]["replay"]
    assert replay["source"].endswith("replay.jsonl") and replay["old_examples"] == 40
    assert replay["replayed"] == round(0.5 * len(B_TRAIN))
    with pytest.raises(ValueError, match="EWC protects the model being re-tuned"):
        ContinualLearner(task(), config(epochs=1), tmp_path / "e", ContinualConfig(ewc=1.0)).fit(B_TRAIN, None, base)
    with pytest.raises(ValueError, match="nothing to replay"):
        ContinualLearner(task(), config(epochs=1), tmp_path / "n", ContinualConfig(replay_count=5)).fit(
            B_TRAIN, None, base
        )


def test_lora_adapter_is_continued_with_ewc_not_stacked(tmp_path: Path) -> None:
    import torch
    from tiny_hf import save_random

    base = save_random(tmp_path / "base", "BertModel", initializer_range=0.2)  # varied features: LoRA learns fast
    lora = {"method": "lora", "lr": 3e-2, "method_options": {"r": 4}}
    ContinualLearner(task(), config(**lora), tmp_path / "a", ContinualConfig(save_fisher=True, ewc_samples=16)).fit(
        A_TRAIN, A_DEV, base
    )
    state = EWCState.load(tmp_path / "a")
    assert state.names and all("lora_" in n or "modules_to_save" in n for n in state.names)
    learner = ContinualLearner(task(), config(method="lora", lr=1e-9), tmp_path / "b", ContinualConfig(ewc=10.0))
    result = learner.fit(B_TRAIN, A_DEV, tmp_path / "a", old_dev=A_DEV)
    info = result.metrics["continual"]
    assert info["adapter"]["continued"] == str(tmp_path / "a") and info["ewc"]["fisher"] == "file"
    assert info["old_task"]["before"]["accuracy"] >= 0.75  # A's adapter learned what a stacked re-tune would lose
    meta = json.loads((tmp_path / "b" / "yulian_adapter.json").read_text())
    assert meta["base_model"] == str(base.resolve()) and meta["options"]["r"] == 4 and meta["labels"][-1] == "meh"
    logits = {}
    for name in ("a", "b"):  # reloaded from disk: A's logits, and B's (lr ~0) on A's two labels, are the same
        reloaded = Task.from_dir(tmp_path / name)
        model, tokenizer = reloaded.build_model(tmp_path / name)
        batch = reloaded.collate(reloaded.encode(A_DEV, tokenizer), tokenizer)
        batch.pop("labels")
        with torch.no_grad():
            logits[name] = model.eval()(**batch).logits
    assert logits["b"].shape[1] == 3 and torch.allclose(logits["b"][:, :2], logits["a"], atol=1e-4)
    with pytest.raises(ValueError, match="continuing it with r=8 is not possible"):
        ContinualLearner(task(), config(method="lora", method_options={"r": 8}), tmp_path / "c").fit(
            B_TRAIN, None, tmp_path / "a"
        )


def test_ewc_recomputes_the_fisher_for_another_method_from_the_buffer(run_a: Path, tmp_path: Path) -> None:
    learner = ContinualLearner(task(), config(method="lora", epochs=1), tmp_path / "b", ContinualConfig(ewc=10.0))
    result = learner.fit(B_TRAIN, None, run_a)  # A was full fine-tuning: its ewc.safetensors is for other weights
    ewc = result.metrics["continual"]["ewc"]
    assert ewc["fisher"] == "computed" and ewc["method"] == "lora" and ewc["samples"] == 40  # A's buffer holds 40
    assert learner.penalty is not None and all(
        "lora_" in n or "modules_to_save" in n for n in learner.penalty.state.names
    )


def test_retune_a_tagger_keeps_its_tags_scheme_and_head(base: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForTokenClassification

    from yulian.tuning.continual_labels import RetuneTokenClassificationTask

    def ner() -> Any:
        return get_task("ner", TaskConfig(max_length=16))

    a = [TokenExample(["john", "lives", "here"], ["B-PER", "O", "O"], line=i) for i in range(16)]
    ContinualLearner(ner(), config(epochs=1), tmp_path / "a", ContinualConfig()).fit(a, a[:4], base)
    old = OldModel.probe(tmp_path / "a")
    assert old is not None and old.task == "ner" and old.labels is not None and "B-PER" in old.labels
    # the new data tags another entity type, in another scheme (BIOES single-token S-LOC)
    b = [TokenExample(["paris", "is", "big"], ["S-LOC", "O", "O"], line=i) for i in range(16)]
    retune = RetuneTokenClassificationTask.from_old(TaskConfig(max_length=16), old, b)
    assert retune.scheme == "bio" and retune.added == ["B-LOC", "I-LOC"]
    assert list(retune.labels.labels) == [*old.labels, "B-LOC", "I-LOC"]  # type: ignore[union-attr]
    assert retune.tags(b[0]) == ["B-LOC", "O", "O"]
    grown, _ = retune.build_model(tmp_path / "a")
    trained = AutoModelForTokenClassification.from_pretrained(str(tmp_path / "a"))
    rows = len(old.labels)
    assert grown.classifier.weight.shape[0] == rows + 2
    assert (grown.classifier.weight.detach()[:rows] == trained.classifier.weight.detach()).all()
    result = ContinualLearner(ner(), config(epochs=1), tmp_path / "b", ContinualConfig()).fit(b, b[:4], tmp_path / "a")
    assert result.metrics["continual"]["labels"] == {"kept": rows, "added": ["B-LOC", "I-LOC"]}
    assert Task.from_dir(tmp_path / "b").state()["labels"] == [*old.labels, "B-LOC", "I-LOC"]
