"""ClassificationTask: metrics, single/multi-label heads and losses, text pairs, class weights, persistence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_setup import save_base, sentiment, single_thread

from yulian.tuning.data import DataError, TextExample
from yulian.tuning.tasks import Task, TaskConfig, get_task
from yulian.tuning.tasks.classification import ClassificationTask, classification_metrics
from yulian.tuning.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base(tmp_path_factory.mktemp("base"))


def make(**options: Any) -> ClassificationTask:
    task = get_task("classification", TaskConfig(max_length=32, stride=8, **options))
    assert isinstance(task, ClassificationTask)
    return task


def test_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, f1_score  # type: ignore[import-untyped]

    gold, pred = [0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 1, 2, 0, 2]
    ours = classification_metrics([{g} for g in gold], [{p} for p in pred], multi_label=False)
    assert ours["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert ours["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"))
    g_multi, p_multi = [{0, 1}, {1}, {2}, set()], [{0}, {1}, {1, 2}, set()]
    ours = classification_metrics(g_multi, p_multi, multi_label=True)

    def hot(rows: list[set[int]]) -> list[list[int]]:
        return [[int(j in r) for j in range(3)] for r in rows]

    assert ours["micro_f1"] == pytest.approx(f1_score(hot(g_multi), hot(p_multi), average="micro"))
    assert ours["macro_f1"] == pytest.approx(f1_score(hot(g_multi), hot(p_multi), average="macro"))
    assert ours["subset_accuracy"] == pytest.approx(0.5)


def test_single_label_features_and_batches(base: Path) -> None:
    task = make()
    train = sentiment(8)
    task.setup(train, base)
    assert task.label_map is not None and task.label_map.labels == ("neg", "pos") and not task.multi_label
    model, tokenizer = task.build_model(base)
    assert model.config.problem_type == "single_label_classification" and model.config.num_labels == 2
    features = task.encode(train, tokenizer)
    assert features[0]["labels"] == 1 and features[1]["labels"] == 0  # even lines are "pos"
    assert features[0]["input_ids"][0] == tokenizer.cls_token_id
    batch = task.collate(features[:3], tokenizer)
    longest = max(len(f["input_ids"]) for f in features[:3])
    assert batch["input_ids"].shape == (3, longest) and batch["labels"].tolist() == [1, 0, 1]
    assert batch["attention_mask"].sum().item() == sum(len(f["input_ids"]) for f in features[:3])
    loss = task.loss(model, batch)
    assert loss.ndim == 0 and loss.item() > 0


def test_text_pairs_get_segment_ids(base: Path) -> None:
    task = make()
    examples = [TextExample("good film", "pos", text_pair="great movie"), TextExample("bad", "neg", text_pair="awful")]
    task.setup(examples, base)
    _, tokenizer = task.build_model(base)
    feature = task.encode(examples, tokenizer)[0]
    assert feature["token_type_ids"].count(1) == 3  # "great movie [SEP]"
    assert feature["input_ids"].count(tokenizer.sep_token_id) == 2


def test_multi_label_trains_with_bce_and_reports_multi_label_metrics(base: Path, tmp_path: Path) -> None:
    task = make()
    train, dev = sentiment(64, multi=True), sentiment(32, seed=1, multi=True)
    cfg = TrainConfig(epochs=8, batch_size=8, lr=1e-2, precision="fp32", progress=False)
    result = Trainer(task, cfg, tmp_path).fit(train, dev, base)
    assert task.multi_label and result.metrics["metric"] == "micro_f1"
    assert set(result.evals[-1]) >= {"micro_f1", "macro_f1", "subset_accuracy"}
    assert result.best_metric is not None and result.best_metric > 0.7
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["problem_type"] == "multi_label_classification"
    assert sorted(saved["label2id"]) == ["long", "neg", "pos"]
    features = task.encode(train[:1], task.build_model(tmp_path)[1])
    assert features[0]["labels"] in ([0.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    predictor = Task.from_dir(tmp_path).predictor(tmp_path)
    prediction = predictor.invoke("good film")
    assert "pos" in prediction.labels and "neg" not in prediction.labels


def test_balanced_class_weights(base: Path) -> None:
    examples = [TextExample("good", "pos")] * 6 + [TextExample("bad", "neg")] * 2
    task = make(class_weights="balanced")
    task.setup(examples, base)
    assert task.class_weights == pytest.approx([8 / (2 * 2), 8 / (2 * 6)])  # neg, pos
    plain = make()
    plain.setup(examples, base)
    model, tokenizer = task.build_model(base)
    batch = task.collate(task.encode(examples, tokenizer), tokenizer)
    assert task.loss(model, batch).item() != pytest.approx(plain.loss(model, batch).item())


def test_state_round_trip_and_predictor(base: Path, tmp_path: Path) -> None:
    task = make()
    cfg = TrainConfig(epochs=6, batch_size=8, lr=1e-2, precision="fp32", progress=False)
    Trainer(task, cfg, tmp_path).fit(sentiment(64), sentiment(16, seed=1), base)
    loaded = Task.from_dir(tmp_path)
    assert isinstance(loaded, ClassificationTask)
    assert loaded.label_map == task.label_map and loaded.multi_label is False
    assert loaded.config.max_length == 32
    predictions = loaded.predictor(tmp_path).batch(["this was a great film", "very bad movie"])
    assert [p.label for p in predictions] == ["pos", "neg"]


def test_read_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("text,label\nhello,a\n,b\n")
    with pytest.raises(DataError, match=r"no column 'labl'.*Did you mean 'label'"):
        make(label_field="labl").read(path)
    with pytest.raises(DataError, match=r"data.csv line 3"):
        make().read(path)
    assert [e.text for e in make().read(path, skip_bad=True)] == ["hello"]


def test_setup_needs_labels(base: Path) -> None:
    with pytest.raises(DataError, match="at least 2 labels"):
        make().setup([TextExample("good", "pos")], base)
    with pytest.raises(DataError, match="line 4 has no label"):
        make().setup([TextExample("good", "pos", line=3), TextExample("bad", line=4)], base)


def test_a_fresh_head_is_reported_in_one_line_not_a_table(
    base: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    task = get_task("classification", TaskConfig(max_length=16))
    task.setup(sentiment(8), base)
    model, _ = task.build_model(base)
    assert sorted(model.yulian_load_report["missing"]) == ["classifier.bias", "classifier.weight"]
    assert "LOAD REPORT" not in capfd.readouterr().err
    config = TrainConfig(epochs=1, batch_size=8, precision="fp32", max_steps=1, progress=True, eval_every=1)
    Trainer(get_task("classification", TaskConfig(max_length=16)), config, tmp_path).fit(sentiment(8), None, base)
    err = capfd.readouterr().err
    assert "randomly initialised (not in the checkpoint): classifier.bias, classifier.weight" in err
    assert "LOAD REPORT" not in err


class _Replay:
    """A stand-in model returning preset logits, one tensor per call (two calls: R-Drop's two passes)."""

    def __init__(self, *logits: Any) -> None:
        self.outputs = list(logits)

    def __call__(self, **inputs: Any) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.outputs.pop(0), loss=None)


def test_label_smoothing_and_r_drop_losses_match_their_definitions(base: Path) -> None:
    import torch

    examples = [TextExample("good", "pos"), TextExample("bad", "neg")]
    labels = torch.tensor([1, 0])
    first = torch.tensor([[0.2, 1.5], [2.0, -1.0]])
    second = torch.tensor([[0.9, 0.1], [1.0, 0.5]])
    smooth = make(label_smoothing=0.1)
    smooth.setup(examples, base)
    expected = torch.nn.functional.cross_entropy(first, labels, label_smoothing=0.1)
    # by hand: (1 - 0.1) * NLL + 0.1 * mean over classes of -log p
    logp = first.log_softmax(-1)
    manual = (0.9 * -logp[[0, 1], labels] + 0.1 * -logp.mean(-1)).mean()
    assert smooth.loss(_Replay(first), {"input_ids": None, "labels": labels}).item() == pytest.approx(manual.item())
    assert manual.item() == pytest.approx(expected.item())

    rdrop = make(rdrop=2.0)
    rdrop.setup(examples, base)
    p, q = first.softmax(-1), second.softmax(-1)
    kl = lambda a, b: (a * (a / b).log()).sum(-1).mean()  # noqa: E731
    ce = lambda z: torch.nn.functional.cross_entropy(z, labels)  # noqa: E731
    want = (ce(first) + ce(second)) / 2 + 2.0 * (kl(p, q) + kl(q, p)) / 2
    got = rdrop.loss(_Replay(first, second), {"input_ids": None, "labels": labels})
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        make(label_smoothing=1.0)
    with pytest.raises(ValueError, match="rdrop must be >= 0"):
        make(rdrop=-1)
