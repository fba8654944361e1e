"""The training loop on a tiny random BERT: it learns, it is seeded, it resumes exactly, it stops early and
restores the best checkpoint, it freezes what it is told, and a crash mid-checkpoint loses nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_setup import save_base, sentiment, single_thread

from yulian.tuning.methods import METHODS, count_parameters, get_method, trainable_summary
from yulian.tuning.tasks import TaskConfig, get_task
from yulian.tuning.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread

TRAIN = sentiment(64)
DEV = sentiment(32, seed=1)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base(tmp_path_factory.mktemp("base"))


def task() -> Any:
    return get_task("classification", TaskConfig(max_length=32, stride=8))


def config(**overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {
        "epochs": 3,
        "batch_size": 8,
        "lr": 1e-2,
        "precision": "fp32",
        "progress": False,
        "eval_every": 8,
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def test_loss_goes_down_and_accuracy_beats_chance(base: Path, tmp_path: Path) -> None:
    result = Trainer(task(), config(epochs=8), tmp_path).fit(TRAIN, DEV, base)
    losses = result.losses
    assert len(losses) == 64  # 8 batches x 8 epochs
    assert sum(losses[-8:]) / 8 < 0.5 * sum(losses[:8]) / 8
    assert result.best_metric is not None and result.best_metric >= 0.9
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["before"]["accuracy"] <= 0.75 and metrics["after"]["accuracy"] == result.best_metric
    assert metrics["best_step"] == result.best_step and metrics["samples_per_second"] > 0
    report = (tmp_path / "report.md").read_text()
    assert "| accuracy |" in report and "precision    recall" in report and "samples/s" in report
    for name in ("model.safetensors", "config.json", "tokenizer.json", "yulian_task.json"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["id2label"] == {"0": "neg", "1": "pos"}


def test_same_seed_same_losses_other_seed_other_losses(base: Path, tmp_path: Path) -> None:
    runs = [
        Trainer(task(), config(epochs=1, seed=seed, eval_every="epoch"), tmp_path / str(i)).fit(TRAIN, DEV, base)
        for i, seed in enumerate((7, 7, 8))
    ]
    assert runs[0].losses == runs[1].losses  # dropout is on (0.1): its masks are seeded too
    assert runs[0].losses != runs[2].losses


class Kill(Exception):
    pass


def test_resume_after_kill_continues_with_identical_losses(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(epochs=3, eval_every=5, warmup=0.2, group_by_length=True)
    whole = Trainer(task(), cfg, tmp_path / "whole").fit(TRAIN, DEV, base)

    killed_task = task()
    calls = {"n": 0}
    real_loss = killed_task.loss

    def dying_loss(model: Any, batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 13:  # dies during step 14; the last checkpoint is step 10 (mid-epoch 2)
            raise Kill
        return real_loss(model, batch)

    monkeypatch.setattr(killed_task, "loss", dying_loss)
    with pytest.raises(Kill):
        Trainer(killed_task, cfg, tmp_path / "killed").fit(TRAIN, DEV, base)
    assert (tmp_path / "killed" / "checkpoints" / "latest").read_text() == "step-10"
    resumed = Trainer(task(), cfg, tmp_path / "killed").fit(TRAIN, DEV, base, resume=True)
    assert len(resumed.losses) == len(whole.losses) == 24
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-6)
    assert [h["lr"] for h in resumed.history] == pytest.approx([h["lr"] for h in whole.history], abs=1e-12)
    assert resumed.best_step == whole.best_step and resumed.best_metric == whole.best_metric


def test_early_stopping_restores_the_best_checkpoint(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    t = task()
    scripted = iter([0.5, 0.6, 0.9, 0.7, 0.8, 0.95, 0.99])  # before, then one per evaluation
    real_evaluate = t.evaluate

    def evaluate(*args: Any, **kwargs: Any) -> dict[str, float]:
        return {**real_evaluate(*args, **kwargs), "accuracy": next(scripted)}

    monkeypatch.setattr(t, "evaluate", evaluate)
    result = Trainer(t, config(epochs=10, eval_every=4, patience=2), tmp_path).fit(TRAIN, DEV, base)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["stopped_early"] and metrics["steps"] == 16  # evals at 4 (0.6), 8 (0.9), 12, 16: stop
    assert result.best_step == metrics["best_step"] == 8 and result.best_metric == 0.9
    assert metrics["after"]["accuracy"] == 0.9
    best = Trainer(t, config(), tmp_path)._pointer("best")
    assert best is not None and best.name == "step-8"
    import torch

    saved = load_file(str(tmp_path / "model.safetensors"))
    state = torch.load(best / "state.pt", weights_only=False)["model"]
    assert all(torch.equal(saved[k], state[k]) for k in saved)
    latest = Trainer(t, config(), tmp_path)._pointer("latest")
    assert latest is not None and latest.name == "step-16"
    other = torch.load(latest / "state.pt", weights_only=False)["model"]
    assert not all(torch.equal(saved[k], other[k]) for k in saved)


@pytest.mark.parametrize(
    ("options", "frozen_prefixes"),
    [
        ({"embeddings": True}, ("bert.embeddings.",)),
        ({"layers": 1}, ("bert.embeddings.", "bert.encoder.layer.0.")),
        ({"all_but_head": True}, ("bert.",)),
    ],
)
def test_freeze_leaves_frozen_parameters_unchanged(
    base: Path, tmp_path: Path, options: dict[str, Any], frozen_prefixes: tuple[str, ...]
) -> None:
    import torch

    trainer = Trainer(task(), config(epochs=1, method="freeze", method_options=options), tmp_path)
    trainer.fit(TRAIN, DEV, base)
    initial = task()
    initial.setup(TRAIN, base)
    torch.manual_seed(42)
    before = dict(initial.build_model(base)[0].named_parameters())
    after = dict(trainer.model.named_parameters())
    frozen = trainable = 0
    for name, param in after.items():
        is_frozen = name.startswith(frozen_prefixes)
        assert param.requires_grad != is_frozen, name
        changed = not torch.equal(param.detach(), before[name].detach())
        if is_frozen:
            assert not changed, f"{name} is frozen but changed"
            frozen += param.numel()
        else:
            trainable += param.numel()
    assert any(not torch.equal(after[n].detach(), before[n].detach()) for n in after if n.startswith("classifier"))
    assert count_parameters(trainer.model) == (trainable, trainable + frozen)
    share = 100 * trainable / (trainable + frozen)
    assert f"({share:.1f}%)" in trainable_summary(trainer.model)


def test_trainable_summary_format(base: Path) -> None:
    t = task()
    t.setup(TRAIN, base)
    model, _ = t.build_model(base)
    get_method("full").apply(model, t, {})
    total = sum(p.numel() for p in model.parameters())
    assert trainable_summary(model) == f"trainable {total / 1e3:.1f}K / {total / 1e3:.1f}K (100.0%)"
    assert set(METHODS) >= {"full", "freeze"}
    with pytest.raises(ValueError, match=r"unknown method 'fulll'.*Did you mean 'full'"):
        get_method("fulll")
    with pytest.raises(ValueError, match="unknown freeze option"):
        get_method("freeze").apply(model, t, {"embedings": True})
    with pytest.raises(ValueError, match="only 2 layers"):
        get_method("freeze").apply(model, t, {"layers": 3})


def test_a_crash_mid_checkpoint_leaves_the_previous_one_loadable(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    real_save = torch.save
    saves = {"n": 0}

    def crashing_save(obj: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        saves["n"] += 1
        if saves["n"] == 2:
            Path(path).write_bytes(b"half a checkpoint")
            raise OSError("disk full")
        real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crashing_save)
    cfg = config(epochs=2, eval_every=4)
    with pytest.raises(OSError, match="disk full"):
        Trainer(task(), cfg, tmp_path).fit(TRAIN, DEV, base)
    monkeypatch.setattr(torch, "save", real_save)
    root = tmp_path / "checkpoints"
    assert (root / "latest").read_text() == "step-4"
    state = torch.load(root / "step-4" / "state.pt", weights_only=False)
    assert state["state"]["step"] == 4 and "model" in state and "optimizer" in state
    resumed = Trainer(task(), cfg, tmp_path).fit(TRAIN, DEV, base, resume=True)
    assert len(resumed.losses) == 16 and not (root / ".tmp-step-8").exists()


def test_schedule_warmup_and_accumulation(base: Path, tmp_path: Path) -> None:
    result = Trainer(task(), config(epochs=2, warmup=4, grad_accum=2, eval_every="epoch"), tmp_path).fit(
        TRAIN, DEV, base
    )
    lrs = [h["lr"] for h in result.history]
    assert len(lrs) == 8  # 8 batches / 2 per step x 2 epochs
    assert lrs[:4] == sorted(lrs[:4]) and lrs[3] < 1e-2 and lrs[4] == max(lrs) and lrs[-1] < lrs[4]
    constant = Trainer(task(), config(epochs=1, scheduler="constant", save_model=False), tmp_path / "c").fit(
        TRAIN, DEV, base
    )
    assert {h["lr"] for h in constant.history} == {1e-2}


def test_max_steps_and_no_dev_data(base: Path, tmp_path: Path) -> None:
    result = Trainer(task(), config(max_steps=5, eval_every="epoch", dropout=0.0), tmp_path).fit(TRAIN, [], base)
    assert len(result.losses) == 5 and result.best_metric is None and result.best_step == 5
    assert (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "epochs must be a whole number >= 1"),
        ({"optimizer": "adam"}, "optimizer must be one of adamw, sgd"),
        ({"scheduler": "step"}, "scheduler must be one of linear, cosine, constant"),
        ({"precision": "int8"}, "precision must be one of"),
        ({"warmup": 2.5}, "is a number of steps"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"eval_every": "often"}, "eval_every must be 'epoch' or a number of steps"),
        ({"lr": 0}, "lr must be > 0"),
        ({"method": "ful"}, "unknown method 'ful'.*Did you mean 'full'"),
        ({"method": "freeze"}, "needs something to freeze"),
    ],
)
def test_config_validation(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)
    assert TrainConfig(eval_every="50").eval_every == 50
    assert TrainConfig(warmup=0.1).warmup_steps(100) == 10 and TrainConfig(warmup=7).warmup_steps(100) == 7


def test_a_dev_metric_named_loss_lower_is_better(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = task()
    scripted = iter([0.9, 0.5, 0.7, 0.6])  # before, then at steps 4, 8, 12: the lowest (step 4) is best

    def evaluate(*args: Any, **kwargs: Any) -> dict[str, float]:
        return {"loss": next(scripted)}

    monkeypatch.setattr(t, "evaluate", evaluate)
    cfg = config(max_steps=12, eval_every=4, metric="loss", greater_is_better=False, progress=True)
    result = Trainer(t, cfg, tmp_path).fit(TRAIN, DEV, base)
    assert result.best_step == 4 and result.best_metric == 0.5


def test_dropout_off_on_cpu_trains_with_the_math_attention_kernel(tmp_path: Path) -> None:
    import torch

    task = get_task("classification", TaskConfig(max_length=16))
    off = Trainer(task, TrainConfig(dropout=0.0, progress=False), tmp_path / "a")._attention_kernels(torch, "cpu")
    with off():
        assert not torch.backends.cuda.flash_sdp_enabled()  # the flash kernel (slow backward on CPU) is off
        assert torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()  # restored after the step
    on = Trainer(task, TrainConfig(dropout=None, progress=False), tmp_path / "b")._attention_kernels(torch, "cpu")
    with on():
        assert torch.backends.cuda.flash_sdp_enabled()
