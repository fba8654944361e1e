"""`FederatedConfig`: every setting of a federated fine-tuning run, checked in one place.

The server sends the whole config to the clients each round (as JSON in the round's ConfigRecord), so a client
needs nothing but its own data: the model, method, labels and local training recipe come from the server.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["STRATEGIES", "FederatedConfig"]

STRATEGIES = ("fedavg", "fedprox", "fedavgm")


@dataclass
class FederatedConfig:
    """How to fine-tune across clients.

    Attributes:
        base_model: the base model (a registered name such as minilm-l6, or a folder).
        labels: the label set, in order (every client builds the same head).
        task: the task (classification).
        text_field / label_field: field names of the records in the clients' data files.
        max_length: tokens per example.
        method / method_options: the fine-tuning method (lora by default: only LoRA + head weights travel).
        rounds: federated rounds.
        local_epochs: passes over its data a client makes each round. local_steps: or a number of optimiser
            steps per round (None: whole epochs).
        batch_size / lr: local training (lr None: the method's default).
        strategy: fedavg, fedprox or fedavgm. proximal_mu: FedProx's mu (the client adds mu/2 * ||w - w_global||^2).
        server_momentum: FedAvgM's server momentum (the averaged update is applied with heavy-ball momentum,
            which steadies training when the clients' label mixes pull in different directions).
        logit_adjust: clients train with logit adjustment for label skew: the log of their own label frequencies
            is added to the logits in the loss (not at prediction), so local training learns to tell the labels
            apart instead of learning the client's label prior (Menon et al. 2021; FedLC, Zhang et al. 2022).
        fraction_fit: fraction of the connected clients sampled each round.
        min_fit_clients: the fewest clients a round needs (fewer replies: the round keeps the old weights).
        min_available_clients: the server waits for this many connected clients before a round starts.
        dp: record-level DP-SGD on each client (Opacus). dp_epsilon / dp_delta: the budget per client over the
            whole run. dp_max_grad_norm: the per-example clipping bound.
        secagg: secure aggregation (Flower SecAgg+): the server sees only the sum of the clients' updates.
        seed: seeds the head initialisation, the partition and the clients' data order.
        threads: torch threads per client process.
        timeout: seconds the server waits for the replies of a round.
    """

    base_model: str = "minilm-l6"
    labels: list[str] = field(default_factory=list)
    task: str = "classification"
    text_field: str = "text"
    label_field: str = "label"
    max_length: int = 64
    method: str = "lora"
    method_options: dict[str, Any] = field(default_factory=dict)
    rounds: int = 3
    local_epochs: int = 1
    local_steps: int | None = None
    batch_size: int = 16
    lr: float | None = None
    strategy: str = "fedavg"
    proximal_mu: float = 0.0
    server_momentum: float = 0.9
    logit_adjust: bool = False
    fraction_fit: float = 1.0
    min_fit_clients: int = 2
    min_available_clients: int = 2
    dp: bool = False
    dp_epsilon: float = 8.0
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0
    secagg: bool = False
    seed: int = 42
    threads: int = 1
    timeout: float = 3600.0

    def __post_init__(self) -> None:
        def whole(name: str, minimum: int, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"FederatedConfig.{name} must be a whole number >= {minimum}, got {value!r}")

        for name in ("rounds", "local_epochs", "batch_size", "min_fit_clients", "min_available_clients", "threads"):
            whole(name, 1)
        whole("local_steps", 1, optional=True)
        whole("max_length", 8)
        if self.task != "classification":
            raise ValueError(f"federated fine-tuning supports the classification task, got {self.task!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r} (available: {', '.join(STRATEGIES)})")
        if self.proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {self.proximal_mu!r}")
        if self.strategy == "fedprox" and self.proximal_mu == 0:
            raise ValueError("strategy fedprox needs proximal_mu > 0 (e.g. 0.01); with 0 it is fedavg")
        if not 0 <= self.server_momentum < 1:
            raise ValueError(f"server_momentum must be in [0, 1), got {self.server_momentum!r}")
        if not 0 < self.fraction_fit <= 1:
            raise ValueError(f"fraction_fit must be in (0, 1], got {self.fraction_fit!r}")
        if self.min_available_clients < self.min_fit_clients:
            raise ValueError(
                f"min_available_clients ({self.min_available_clients}) must be >= min_fit_clients "
                f"({self.min_fit_clients})"
            )
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.dp:
            if not self.dp_epsilon > 0:
                raise ValueError(f"dp_epsilon must be > 0, got {self.dp_epsilon!r}")
            if not 0 < self.dp_delta < 1:
                raise ValueError(f"dp_delta must be in (0, 1), got {self.dp_delta!r}")
            if not self.dp_max_grad_norm > 0:
                raise ValueError(f"dp_max_grad_norm must be > 0, got {self.dp_max_grad_norm!r}")
            if self.method in ("full", "freeze"):
                raise ValueError("--dp needs an adapter method such as lora (Opacus and full BERT fine-tuning clash)")
        if self.secagg and self.dp:
            pass  # both: DP noise is added on the client before masking, which SecAgg+ does not change

    def to_json(self) -> str:
        """The config as one JSON string (what the server sends the clients)."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> FederatedConfig:
        """The config from `to_json`'s string; unknown keys are errors."""
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown FederatedConfig fields: {', '.join(unknown)}")
        return cls(**data)
