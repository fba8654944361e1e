"""What a client does each round, independent of Flower: fine-tune from the global trainable weights on local data
with yulian's Trainer, and return only the trainable weights (LoRA + head) with the number of examples and metrics.

Also the server's side of the same model (`GlobalModel`): build it once, load aggregated weights, evaluate on a
central dev set, save the final adapter in PEFT format.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.federated.config import FederatedConfig

__all__ = ["GlobalModel", "build_task", "local_train", "logit_adjusted", "proximal_term", "read_examples"]


def build_task(config: FederatedConfig) -> Any:
    """The task with the run's label set (the same head layout on every client, whatever its local labels)."""
    from yulian.tuning.data import TextExample
    from yulian.tuning.tasks import TaskConfig, get_task

    if len(config.labels) < 2:
        raise ValueError("FederatedConfig.labels must name at least 2 labels")
    task_config = TaskConfig(max_length=config.max_length, text_field=config.text_field, label_field=config.label_field)
    task = get_task(config.task, task_config)
    task.setup([TextExample(label, label=label) for label in config.labels], config.base_model)
    return task


def read_examples(config: FederatedConfig, path: str | Path) -> list[Any]:
    """A client's labelled examples from its data file (fields named by the config)."""
    task = build_task(config)
    return list(task.read(str(path)))


def proximal_term(mu: float, global_weights: Mapping[str, Any]) -> Callable[[Any, Any], Any]:
    """FedProx's loss hook: `loss + mu/2 * sum ||w - w_global||^2` over the model's LIVE trainable parameters.

    (A term built from copied state-dict tensors would be detached and change nothing: the gradient must flow
    into the parameters being trained.)"""
    cache: dict[str, Any] = {}

    def hook(model: Any, loss: Any) -> Any:
        torch = require("torch", extra="hf")
        total = loss.new_zeros(())
        for name, param in model.named_parameters():
            if not param.requires_grad or name not in global_weights:
                continue
            ref = cache.get(name)
            if ref is None or ref.device != param.device:
                ref = cache[name] = torch.as_tensor(global_weights[name]).to(param.device, torch.float32)
            total = total + (param.float() - ref).pow(2).sum()
        return loss + (mu / 2.0) * total

    return hook


def logit_adjusted(task: Any, examples: Sequence[Any], labels: Sequence[str]) -> Any:
    """`task` whose training loss adds log(local label frequency) to the logits (classification, single-label).

    A client whose data is mostly one label then gains nothing from predicting that label everywhere: the prior
    is already in the logits, and the gradient goes into telling labels apart. Prediction is unchanged."""
    torch = require("torch", extra="hf")
    counts = [sum(1 for e in examples if e.label == label) for label in labels]
    total = sum(counts)
    prior = torch.tensor([math.log(max(c, 0.5) / total) for c in counts])

    def loss(model: Any, batch: Mapping[str, Any]) -> Any:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        return torch.nn.functional.cross_entropy(logits + prior.to(logits.device), batch["labels"])

    task.loss = loss
    return task


def _train_config(config: FederatedConfig, server_round: int, client_seed: int) -> Any:
    from yulian.tuning.trainer import TrainConfig

    return TrainConfig(
        epochs=config.local_epochs,
        max_steps=config.local_steps,
        batch_size=config.batch_size,
        lr=config.lr,
        method=config.method,
        method_options=dict(config.method_options),
        seed=config.seed + 1009 * server_round + client_seed,
        threads=config.threads,
        progress=False,
        save_model=False,
        artifacts=False,
        precision="fp32" if config.dp else "auto",
        warmup=0.0,
        device="cpu",
    )


def local_train(
    config: FederatedConfig,
    examples: Sequence[Any],
    global_weights: Mapping[str, Any],
    server_round: int = 1,
    *,
    proximal_mu: float | None = None,
    client_seed: int = 0,
) -> tuple[dict[str, Any], dict[str, float]]:
    """One round on one client: (the new trainable weights by name, metrics incl. `num-examples`).

    Trains `local_epochs` epochs (or `local_steps` steps) from `global_weights`; adds the FedProx term when
    `proximal_mu` (default: the config's for fedprox) is > 0; runs DP-SGD when `config.dp`, reporting the
    epsilon spent by this client so far (all rounds up to `server_round`) against `dp_epsilon` for the run.
    """
    from yulian.tuning.trainer import Trainer
    from yulian.tuning.weights import trainable_named

    if not examples:
        raise ValueError("this client has no training examples")
    mu = config.proximal_mu if proximal_mu is None else proximal_mu
    train_config = _train_config(config, server_round, client_seed)
    privacy = None
    if config.dp:
        from yulian.tuning.dp import DPConfig

        per_round = math.ceil(len(examples) / config.batch_size) * config.local_epochs
        if config.local_steps is not None:
            per_round = min(per_round, config.local_steps)
        privacy = DPConfig(
            epsilon=config.dp_epsilon,
            delta=config.dp_delta,
            max_grad_norm=config.dp_max_grad_norm,
            total_steps=per_round * config.rounds,
            steps_before=per_round * (server_round - 1),
        )
    with tempfile.TemporaryDirectory(prefix="yulian-fed-") as tmp:
        task = build_task(config)
        if config.logit_adjust:
            task = logit_adjusted(task, examples, config.labels)
        trainer = Trainer(
            task,
            train_config,
            tmp,
            start_weights=global_weights,
            loss_hook=proximal_term(mu, global_weights) if mu > 0 else None,
            privacy=privacy,
            task_ready=True,
        )
        result = trainer.fit(list(examples), None, config.base_model)
    losses = result.losses
    tail = losses[-max(1, len(losses) // 4) :]
    metrics: dict[str, float] = {
        "num-examples": float(len(examples)),
        "train-loss": float(sum(tail) / len(tail)) if tail else 0.0,
        "steps": float(len(losses)),
        "train-seconds": float(result.metrics.get("train_seconds", 0.0)),
    }
    if "privacy" in result.metrics:
        metrics["epsilon"] = float(result.metrics["privacy"]["epsilon"])
        metrics["noise-multiplier"] = float(result.metrics["privacy"]["noise_multiplier"])
    return trainable_named(trainer.model), metrics


class GlobalModel:
    """The server's copy of the model: initial trainable weights, central evaluation, the final PEFT adapter."""

    def __init__(self, config: FederatedConfig) -> None:
        self.config = config
        self.task: Any = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.method: Any = None

    def warm_up(self) -> GlobalModel:
        """Build the model with the method applied (seeded: the same initial head and LoRA weights every run)."""
        if self.model is not None:
            return self
        torch = require("torch", extra="hf", purpose="federated fine-tuning")
        from yulian.tuning.methods import get_method

        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.task = build_task(cfg)
        model, self.tokenizer = self.task.build_model(cfg.base_model)
        self.method = get_method(cfg.method)
        self.model = self.method.apply(model, self.task, dict(cfg.method_options))
        self.model.eval()
        return self

    def weights(self) -> dict[str, Any]:
        """The trainable tensors by name (what travels each round)."""
        from yulian.tuning.weights import trainable_named

        return trainable_named(self.warm_up().model)

    def all_weights_bytes(self) -> int:
        """Bytes of every parameter of the model: what full-model FedAvg would send per client per direction."""
        return int(sum(p.numel() * p.element_size() for p in self.warm_up().model.parameters()))

    def load(self, weights: Mapping[str, Any]) -> None:
        """Load aggregated trainable weights."""
        torch = require("torch", extra="hf")
        from yulian.tuning.weights import load_named

        load_named(torch, self.warm_up().model, weights)

    def evaluate(self, examples: Sequence[Any], batch_size: int = 64) -> dict[str, float]:
        """The task's metrics (accuracy, macro_f1) of the current weights on `examples`."""
        self.warm_up()
        metrics = self.task.evaluate(self.model, self.tokenizer, list(examples), batch_size=batch_size)
        return {k: float(v) for k, v in metrics.items()}

    def save(self, out_dir: str | Path) -> Path:
        """Write the model as `yulian train` does: a PEFT adapter folder (+ tokenizer and task) for adapter
        methods, loadable by `yulian.tuning.adapters.load_adapter` and `yulian eval`."""
        self.warm_up()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.method.save(self.model, out)
        self.tokenizer.save_pretrained(str(out))
        self.task.save(out)
        return out
