"""LazyAdamW: AdamW on the rows a batch used, torch's AdamW for the rest; clipping with sparse gradients; the
trainer's lazy-embedding path trains, resumes exactly and leaves the model's embedding dense afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny_setup import save_base, sentiment, single_thread

from yulian.tuning import trainer as trainer_module
from yulian.tuning.optim import clip_grad_norm, lazy_adamw
from yulian.tuning.tasks import TaskConfig, get_task
from yulian.tuning.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread


def _pair(seed: int = 0) -> tuple[Any, Any, Any, Any]:
    import torch

    torch.manual_seed(seed)
    dense = torch.nn.Embedding(10, 4)
    lazy = torch.nn.Embedding(10, 4, sparse=True)
    lazy.weight.data.copy_(dense.weight.data)
    head_d, head_l = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
    head_l.load_state_dict(head_d.state_dict())
    return dense, lazy, head_d, head_l


def _groups(emb: Any, head: Any) -> list[dict[str, Any]]:
    return [{"params": [emb.weight, head.weight], "weight_decay": 0.1}, {"params": [head.bias], "weight_decay": 0.0}]


def test_when_every_row_is_used_lazy_equals_dense_adamw() -> None:
    import torch

    dense, lazy, head_d, head_l = _pair()
    opt_d = torch.optim.AdamW(_groups(dense, head_d), lr=0.05)
    opt_l = lazy_adamw(_groups(lazy, head_l), 0.05)
    ids = torch.arange(10).repeat(3, 1)  # every row, some twice per batch
    for step in range(5):
        target = torch.randn(3, 10, 1, generator=torch.Generator().manual_seed(step))
        for emb, head, opt in ((dense, head_d, opt_d), (lazy, head_l, opt_l)):
            opt.zero_grad()
            ((head(emb(ids)) - target) ** 2).mean().backward()
            opt.step()
        assert lazy.weight.grad is not None and lazy.weight.grad.is_sparse  # the gradient is given back
    assert torch.allclose(dense.weight, lazy.weight, atol=1e-6)
    assert torch.allclose(head_d.weight, head_l.weight, atol=1e-6)
    loaded = lazy_adamw(_groups(lazy, head_l), 0.05)
    loaded.load_state_dict(opt_l.state_dict())
    assert torch.equal(loaded.state[lazy.weight]["exp_avg"], opt_l.state[lazy.weight]["exp_avg"])


def test_rows_not_used_stay_put_and_used_rows_move() -> None:
    import torch

    _, lazy, _, head = _pair(1)
    before = lazy.weight.detach().clone()
    opt = lazy_adamw(_groups(lazy, head), 0.05)
    head(lazy(torch.tensor([[1, 3, 3]]))).sum().backward()
    opt.step()
    moved = (lazy.weight != before).any(dim=1)
    assert moved.tolist() == [False, True, False, True] + [False] * 6


def test_clip_grad_norm_with_a_sparse_gradient_matches_the_dense_one() -> None:
    import torch

    dense, lazy, head_d, head_l = _pair(2)
    ids = torch.tensor([[0, 2, 2, 5]])
    for emb, head in ((dense, head_d), (lazy, head_l)):
        (head(emb(ids)) * 50).sum().backward()
    norm_d = float(torch.nn.utils.clip_grad_norm_([dense.weight, *head_d.parameters()], 1.0))
    norm_l = clip_grad_norm([lazy.weight, *head_l.parameters()], 1.0)
    assert norm_l == pytest.approx(norm_d, rel=1e-5) and norm_d > 1.0
    assert torch.allclose(lazy.weight.grad.to_dense(), dense.weight.grad, atol=1e-6)
    assert torch.allclose(head_l.weight.grad, head_d.weight.grad, atol=1e-6)


def _config(**overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {"epochs": 8, "batch_size": 8, "lr": 1e-2, "precision": "fp32", "progress": False}
    return TrainConfig(**{**settings, "eval_every": 5, "warmup": 0.2, **overrides})


def test_the_trainer_updates_embeddings_lazily_learns_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trainer_module, "LAZY_MIN_PARAMS", 0)
    base = save_base(tmp_path / "base")
    train, dev = sentiment(64), sentiment(32, seed=1)

    def task() -> Any:
        return get_task("classification", TaskConfig(max_length=32))

    trainer = Trainer(task(), _config(), tmp_path / "whole")
    whole = trainer.fit(train, dev, base)
    assert trainer._lazy_embedding is not None and not trainer._lazy_embedding.sparse  # restored
    assert whole.best_metric is not None and whole.best_metric >= 0.9
    dense = Trainer(task(), _config(lazy_embeddings=False), tmp_path / "dense").fit(train, dev, base)
    assert dense.losses[0] == pytest.approx(whole.losses[0], abs=1e-6)  # same first step
    assert dense.losses != pytest.approx(whole.losses, abs=1e-6)  # then the untouched rows differ

    dying, calls = task(), {"n": 0}
    real_loss = dying.loss

    def loss(model: Any, batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 13:  # dies in step 14, after the step-10 checkpoint
            raise KeyboardInterrupt
        return real_loss(model, batch)

    monkeypatch.setattr(dying, "loss", loss)
    with pytest.raises(KeyboardInterrupt):
        Trainer(dying, _config(), tmp_path / "resumed").fit(train, dev, base)
    resumed = Trainer(task(), _config(), tmp_path / "resumed").fit(train, dev, base, resume=True)
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-6)


@pytest.mark.parametrize("optimizer", ["fused", "sgd"])
def test_clipped_step_equals_clipping_then_stepping(optimizer: str) -> None:
    import copy

    import torch

    from yulian.tuning.optim import clipped_step

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(100, 16, sparse=True), torch.nn.Linear(16, 4))
    other = copy.deepcopy(model)

    def make(m: torch.nn.Module) -> torch.optim.Optimizer:
        if optimizer == "sgd":
            return torch.optim.SGD(m.parameters(), lr=0.1)
        return lazy_adamw(m.parameters(), 1e-2)

    reference, deferred = make(model), make(other)
    for scale in (50.0, 50.0, 1e-4):  # large gradients are clipped; tiny ones are left alone
        ids = torch.randint(0, 100, (8, 5))
        for m in (model, other):
            (m(ids).sum() * scale).backward()
        norm = clip_grad_norm(list(model.parameters()), 1.0)
        reference.step()
        reference.zero_grad()
        assert clipped_step(deferred, list(other.parameters()), 1.0) == pytest.approx(norm)
        assert not hasattr(deferred, "grad_scale")  # the deferred scale is for one step only
        deferred.zero_grad()
        for a, b in zip(model.parameters(), other.parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-6)
    assert clipped_step(deferred, [], None) is None


def test_clipped_step_with_an_infinite_norm_zeroes_the_gradients_like_torch() -> None:
    import torch

    from yulian.tuning.optim import clipped_step

    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.weight.detach().clone()
    layer.weight.grad = torch.full_like(layer.weight, float("inf"))
    layer.bias.grad = torch.ones_like(layer.bias)
    assert clipped_step(optimizer, list(layer.parameters()), 1.0) == float("inf")
    assert torch.equal(layer.bias.grad, torch.zeros_like(layer.bias))
    assert not hasattr(optimizer, "grad_scale")
    assert before.shape == layer.weight.shape
