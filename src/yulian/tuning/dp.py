"""Record-level differential privacy for the trainer: DP-SGD with Opacus (per-example clipping + Gaussian noise).

```python
from yulian.tuning.dp import DPConfig
trainer = Trainer(task, TrainConfig(method="lora"), out, privacy=DPConfig(epsilon=8.0, delta=1e-5))
result = trainer.fit(train, dev, "minilm-l6")
result.metrics["privacy"]        # {"epsilon": 7.98, "delta": 1e-05, "noise_multiplier": 0.93, ...}
```

How it works: the model is wrapped in Opacus' `GradSampleModule` (per-example gradients), the optimiser in a
`DPOptimizer` (clips each example's gradient to `max_grad_norm`, adds N(0, (noise_multiplier * max_grad_norm)^2)
noise to the sum) and an RDP accountant tracks the privacy spent. The noise multiplier is chosen so that
`total_steps` steps at sample rate `batch_size / n` spend `epsilon` at `delta`; `total_steps` can be larger than
one `fit` (federated rounds: the client trains several times on the same data, see `steps_before`).

Honest caveats: batches are the trainer's shuffled fixed-size batches, not Poisson sampling, so the reported
epsilon is the usual approximation (as in most DP-SGD fine-tuning code); the tokenizer and vocabulary are public.
Works with adapter methods (LoRA...) whose trainable layers are Linear; full fine-tuning of BERT-family models
under Opacus needs `position_ids` expanded to the batch (KNOWN.md) and is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yulian._optional import require

__all__ = ["DPConfig", "DPState", "attach", "epsilon_spent", "make_private"]


@dataclass(frozen=True)
class DPConfig:
    """DP-SGD settings, checked here.

    Attributes:
        epsilon: the privacy budget to spend over `total_steps` (None: use `noise_multiplier` as given).
        delta: the DP delta (well below 1 / the number of records; 1e-5 by default).
        max_grad_norm: per-example gradient clipping bound.
        noise_multiplier: noise std / max_grad_norm (None: computed from epsilon).
        total_steps: steps the budget covers (None: the steps of this fit).
        steps_before: steps already taken on the same data by earlier fits (federated rounds), counted in the
            reported epsilon.
    """

    epsilon: float | None = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    total_steps: int | None = None
    steps_before: int = 0

    def __post_init__(self) -> None:
        if self.epsilon is None and self.noise_multiplier is None:
            raise ValueError("DPConfig needs epsilon (a budget) or noise_multiplier")
        if self.epsilon is not None and not self.epsilon > 0:
            raise ValueError(f"DPConfig.epsilon must be > 0, got {self.epsilon!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"DPConfig.delta must be in (0, 1), got {self.delta!r}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"DPConfig.max_grad_norm must be > 0, got {self.max_grad_norm!r}")
        if self.noise_multiplier is not None and not self.noise_multiplier >= 0:
            raise ValueError(f"DPConfig.noise_multiplier must be >= 0, got {self.noise_multiplier!r}")
        if self.total_steps is not None and self.total_steps < 1:
            raise ValueError(f"DPConfig.total_steps must be >= 1, got {self.total_steps!r}")
        if self.steps_before < 0:
            raise ValueError(f"DPConfig.steps_before must be >= 0, got {self.steps_before!r}")


@dataclass
class DPState:
    """A private training run in progress: the wrapped model and optimiser, and what the accountant needs."""

    model: Any
    optimizer: Any
    noise_multiplier: float
    sample_rate: float
    config: DPConfig
    steps: int = 0

    def report(self) -> dict[str, Any]:
        """{epsilon, delta, noise_multiplier, sample_rate, steps, max_grad_norm} spent so far (steps_before
        included)."""
        steps = self.config.steps_before + self.steps
        eps = epsilon_spent(self.noise_multiplier, self.sample_rate, steps, self.config.delta)
        return {
            "epsilon": round(eps, 4),
            "delta": self.config.delta,
            "noise_multiplier": round(self.noise_multiplier, 4),
            "sample_rate": round(self.sample_rate, 6),
            "steps": steps,
            "max_grad_norm": self.config.max_grad_norm,
        }


def epsilon_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon (RDP accountant) after `steps` noisy steps at `sample_rate` with `noise_multiplier`."""
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return float("inf")
    accountants = require("opacus.accountants", extra="dp", purpose="differential privacy")
    accountant = accountants.RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    return float(accountant.get_epsilon(delta=delta))


def make_private(
    model: Any, optimizer: Any, *, n_examples: int, batch_size: int, steps: int, config: DPConfig
) -> DPState:
    """Wrap `model` (per-example gradients) and `optimizer` (clip + noise) for DP-SGD over `steps` steps."""
    require("opacus", extra="dp", purpose="differential privacy")
    from opacus import GradSampleModule  # type: ignore[import-untyped]
    from opacus.accountants.utils import get_noise_multiplier  # type: ignore[import-untyped]
    from opacus.optimizers import DPOptimizer  # type: ignore[import-untyped]

    if n_examples < 1:
        raise ValueError("DP-SGD needs training examples")
    sample_rate = min(1.0, batch_size / n_examples)
    sigma = config.noise_multiplier
    if sigma is None:
        assert config.epsilon is not None
        budget_steps = max(config.total_steps or 0, config.steps_before + steps)
        sigma = float(
            get_noise_multiplier(
                target_epsilon=config.epsilon,
                target_delta=config.delta,
                sample_rate=sample_rate,
                steps=budget_steps,
                accountant="rdp",
            )
        )
    wrapped = GradSampleModule(model, loss_reduction="mean", strict=False)
    dp_optimizer = DPOptimizer(
        optimizer,
        noise_multiplier=sigma,
        max_grad_norm=config.max_grad_norm,
        expected_batch_size=batch_size,
        loss_reduction="mean",
    )
    return DPState(wrapped, dp_optimizer, sigma, sample_rate, config)


def attach(trainer: Any, model: Any, optimizer: Any, n_examples: int, steps: int) -> DPState:
    """`make_private` for a `Trainer` about to run `steps` steps on `n_examples` (its config and `privacy`)."""
    cfg = trainer.config
    if trainer._dist.enabled or cfg.grad_accum != 1 or trainer._lazy_embedding is not None:
        raise ValueError("DP-SGD runs in one process, with grad_accum 1 and a frozen input embedding")
    state = make_private(
        model, optimizer, n_examples=n_examples, batch_size=cfg.batch_size, steps=steps, config=trainer.privacy
    )
    trainer.log(f"DP-SGD: noise multiplier {state.noise_multiplier:.3f}, clip {state.config.max_grad_norm}")
    return state
