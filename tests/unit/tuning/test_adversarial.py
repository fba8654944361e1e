"""FGM and PGD against a loss whose gradient is known, layer-wise learning rates, and both in a training run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny_setup import save_base, sentiment, single_thread

from yulian.tuning.adversarial import Adversary
from yulian.tuning.optim import param_groups
from yulian.tuning.tasks import TaskConfig, get_task
from yulian.tuning.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread


class _Linear:
    """Embeddings then loss = sum(output * c): the gradient at the embedding output is c, everywhere."""

    def __init__(self) -> None:
        import torch

        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(10, 4)
        self.c = torch.tensor([[[1.0, 2.0, 0.0, 2.0]] * 3, [[0.0, 3.0, 4.0, 0.0]] * 3])  # 2 examples x 3 tokens
        self.ids = torch.tensor([[1, 2, 3], [4, 5, 6]])

    def get_input_embeddings(self) -> Any:
        return self.embed

    def loss(self) -> Any:
        return (self.embed(self.ids) * self.c).sum()


@pytest.mark.parametrize(("kind", "moved"), [("fgm", 0.5), ("pgd", 0.5), ("pgd-short", 0.2)])
def test_the_attack_moves_each_example_epsilon_along_its_gradient(kind: str, moved: float) -> None:
    model = _Linear()
    steps = 2 if kind == "pgd-short" else 5
    adversary = Adversary(kind.split("-")[0], epsilon=0.5, alpha=0.1, steps=steps)
    with adversary.hooked(model):
        with adversary.clean_pass():
            clean = model.loss()
        clean.backward()
        clean_grad = model.embed.weight.grad.clone()
        adversarial = adversary.attack(model.loss, lambda loss: loss.backward())
    # the loss is linear: moving r along c raises it by |r| * |c| per example (|c| over its 3 tokens)
    norms = model.c.flatten(1).norm(dim=1)
    assert adversarial == pytest.approx(clean.item() + moved * float(norms.sum()), rel=1e-5)
    # clean and adversarial gradients add up (linear loss: the same gradient twice)
    assert model.embed.weight.grad.allclose(2 * clean_grad)
    assert model.loss().item() == pytest.approx(clean.item())  # the weights were never touched


def test_layer_decay_gives_lower_layers_smaller_learning_rates(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    base = save_base(tmp_path / "base")
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=2)
    lr_of = {id(p): g["lr"] for g in param_groups(model, 0.01, 1.0, 0.5) for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == 1.0
    assert lr_of[id(named["bert.encoder.layer.1.output.dense.weight"])] == 0.5  # top of 2 layers
    assert lr_of[id(named["bert.encoder.layer.0.output.dense.weight"])] == 0.25
    assert lr_of[id(named["bert.embeddings.word_embeddings.weight"])] == 0.125
    flat = {id(p): g["lr"] for g in param_groups(model, 0.01, 1.0) for p in g["params"]}
    assert set(flat.values()) == {1.0} and len(flat) == len(named)
    # a head learning rate: the classifier only (also under a PEFT wrapper's names), with or without layer decay
    head = {id(p): g["lr"] for g in param_groups(model, 0.01, 1.0, 0.5, head_lr=7.0) for p in g["params"]}
    assert head[id(named["classifier.weight"])] == head[id(named["classifier.bias"])] == 7.0
    assert head[id(named["bert.pooler.dense.weight"])] == 1.0
    assert head[id(named["bert.encoder.layer.1.output.dense.weight"])] == 0.5
    from peft import LoraConfig, get_peft_model

    wrapped = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"]))
    groups = param_groups(wrapped, 0.01, 1.0, head_lr=7.0)
    rates = {n: g["lr"] for g in groups for n, p in wrapped.named_parameters() if any(p is q for q in g["params"])}
    assert {r for n, r in rates.items() if "classifier" in n} == {7.0}
    assert {r for n, r in rates.items() if "lora_" in n} == {1.0}
    with pytest.raises(ValueError, match="head_lr must be > 0"):
        TrainConfig(head_lr=0.0)


@pytest.mark.parametrize("adversarial", ["fgm", "pgd"])
def test_adversarial_training_runs_and_learns(tmp_path: Path, adversarial: str) -> None:
    base = save_base(tmp_path / "base")
    task = get_task("classification", TaskConfig(max_length=32))
    config = TrainConfig(
        epochs=8,
        batch_size=8,
        lr=3e-3,  # 0.01 leaves a tiny BERT at chance on some seeds, with or without an adversary
        precision="fp32",
        progress=False,
        adversarial=adversarial,
        adv_epsilon=0.001,  # tiny random embeddings: 0.05 already turns "good" into "bad" (measured)
        adv_alpha=0.0005,
        adv_steps=2,
        layer_decay=0.9,
        save_model=False,
    )
    result = Trainer(task, config, tmp_path / "run").fit(sentiment(48), sentiment(16, seed=3), base)
    assert result.best_metric >= 0.75
    with pytest.raises(ValueError, match=r"TrainConfig\.adversarial must be one of fgm, pgd"):
        TrainConfig(adversarial="fsgm")
