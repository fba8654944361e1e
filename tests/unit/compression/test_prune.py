"""Magnitude and structured pruning (heads, FFN neurons), importance scores and recovery fine-tuning."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import save_random, sentiment, single_thread, write_jsonl

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prune")


def _encoder(root: Path) -> Any:
    from transformers import BertModel

    return BertModel.from_pretrained(str(save_random(root / "enc", "BertModel", seed=0, num_attention_heads=4)))


def _batch(torch: Any) -> dict[str, Any]:
    ids = torch.tensor([[2, 10, 11, 12, 13, 3, 0], [2, 14, 15, 16, 17, 18, 3]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def test_magnitude_prune_zeroes_the_smallest_weights(root: Path) -> None:
    import torch

    from yulian.compression.prune import magnitude_prune, sparsity

    model = _encoder(root)
    query = model.encoder.layer[0].attention.self.query.weight
    smallest = query.abs().flatten().argsort()[:100]
    largest = query.abs().flatten().argsort()[-100:]
    stats = magnitude_prune(model, 0.4)
    assert stats["sparsity"] == pytest.approx(0.4, abs=0.01) and sparsity(model) == pytest.approx(0.4, abs=0.01)
    assert bool((query.flatten()[smallest] == 0).all()) and bool((query.flatten()[largest] != 0).all())
    with torch.no_grad():
        assert model(**_batch(torch)).last_hidden_state.shape == (2, 7, 32)
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\)"):
        magnitude_prune(model, 1.0)


def test_plan_ranks_globally_and_keeps_one_unit_per_layer() -> None:
    from yulian.compression.prune import plan

    importance = [[0.1, 0.2, 0.9, 0.8], [0.05, 0.01, 0.03, 0.5]]
    assert plan(importance, 0.25) == {1: [1, 2]}
    assert plan(importance, 0.5) == {0: [0], 1: [0, 1, 2]}
    assert plan(importance, 0.875) == {0: [0, 1, 3], 1: [0, 1, 2]}  # the best head of each layer stays
    assert plan(importance, 0.0) == {}


def test_prune_heads_and_ffn_shrink_matrices_and_the_model_still_runs(root: Path) -> None:
    import torch

    from yulian.compression.prune import ffn_importance, head_importance, plan, prune_ffn, prune_heads

    model = _encoder(root).eval()
    batches = [_batch(torch)]
    heads = head_importance(model, batches)  # no loss: activation-based
    assert len(heads) == 2 and all(len(row) == 4 for row in heads) and all(s >= 0 for row in heads for s in row)
    chosen = plan(heads, 0.5)
    assert sum(map(len, chosen.values())) == 4
    assert prune_heads(model, chosen) == 4
    for i, layer in enumerate(model.encoder.layer):
        kept = 4 - len(chosen.get(i, []))
        attention = layer.attention.self
        assert attention.num_attention_heads == kept and attention.query.weight.shape == (kept * 8, 32)
        assert layer.attention.output.dense.weight.shape == (32, kept * 8)
    assert prune_ffn(model, plan(ffn_importance(model, batches), 0.25)) == 32
    assert [layer.intermediate.dense.out_features for layer in model.encoder.layer] != [64, 64]
    assert sum(layer.intermediate.dense.out_features for layer in model.encoder.layer) == 96
    with torch.no_grad():
        out = model(**_batch(torch)).last_hidden_state
    assert out.shape == (2, 7, 32) and bool(torch.isfinite(out).all())
    with pytest.raises(ValueError, match="cannot remove all"):
        prune_heads(model, {0: list(range(4))})


def test_removing_a_head_equals_masking_it(root: Path) -> None:
    """Physically pruning a head gives the same outputs as zeroing its share of the attention output."""
    import torch

    from yulian.compression.prune import prune_heads

    model = _encoder(root).eval()
    dense = model.encoder.layer[1].attention.output.dense
    with torch.no_grad():
        dense.weight[:, 8:16] = 0  # head 1 of layer 1 contributes nothing
        expected = model(**_batch(torch)).last_hidden_state
        prune_heads(model, {1: [1]})
        got = model(**_batch(torch)).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-5)


def test_gradient_head_importance_with_a_task_loss(classifier: Path) -> None:
    from yulian.compression.export import load_torch_model
    from yulian.compression.prune import head_importance
    from yulian.tuning.tasks import Task

    task = Task.from_dir(classifier)
    model, tokenizer, _ = load_torch_model(classifier)
    features = task.encode(sentiment(32, seed=5), tokenizer)
    batches = [task.collate(features[:16], tokenizer), task.collate(features[16:], tokenizer)]
    scores = head_importance(model, batches, task.loss)
    assert len(scores) == 2 and all(len(row) == 2 for row in scores)
    assert all(s >= 0 for row in scores for s in row) and any(s > 0 for row in scores for s in row)
    assert all(p.grad is None for p in model.parameters()) and not model.training


def test_prune_heads_method_with_recovery_makes_a_smaller_onnx_artifact(classifier: Path, root: Path) -> None:
    import onnx

    from yulian.compression import compress, load_artifact

    dev = write_jsonl(root / "dev.jsonl", sentiment(40, seed=4))
    train = write_jsonl(root / "train.jsonl", sentiment(64, seed=6))
    result = compress(
        classifier,
        "prune-heads",
        dev,
        root / "heads",
        heads=0.5,
        ffn=0.25,
        recover_train=train,
        recover_steps=4,
        progress=False,
    )
    info = result.info
    assert info.method == "prune-heads" and info.backend == "onnx" and info.options["recover_steps"] == 4
    assert sum(len(v) for v in info.pruned["heads"].values()) == 2 and sum(info.pruned["ffn"].values()) == 32
    graph = onnx.load(str(root / "heads" / "model.onnx")).graph
    widths = sorted({tuple(t.dims) for t in graph.initializer if len(t.dims) == 2 and 16 in t.dims})
    assert widths  # pruned layers hold 16-wide (one head of 16) projection matrices
    predictor = load_artifact(root / "heads")
    assert predictor.invoke("a good film").label in ("pos", "neg")
    assert result.report.examples == 40


def test_prune_magnitude_method_and_unsupported_models(classifier: Path, root: Path) -> None:
    from yulian.compression import compress
    from yulian.compression.prune import encoder_layers

    dev = write_jsonl(root / "dev2.jsonl", sentiment(40, seed=4))
    result = compress(classifier, "prune-magnitude", dev, root / "mag", amount=0.3, progress=False)
    assert result.info.options["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert (root / "mag" / "model.safetensors").is_file() and result.report.passed
    with pytest.raises(ValueError, match="BERT-style encoders"):
        encoder_layers(object())


def test_bad_pruning_options_fail_cleanly(classifier: Path, root: Path) -> None:
    from yulian.compression import compress

    dev = write_jsonl(root / "dev3.jsonl", sentiment(20, seed=4))
    with pytest.raises(ValueError, match=r"fraction to prune must be in \[0, 1\), got 1.5"):
        compress(classifier, "prune-heads", dev, root / "bad", heads=1.5, progress=False)
    assert not (root / "bad").exists() and not (root / "bad.partial").exists()  # nothing half-built left
