"""Shared helpers of the federated tests: a tiny random BERT on disk and a FederatedConfig for it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tuning"))

from tiny_setup import save_base, sentiment, single_thread, write_jsonl

__all__ = ["save_base", "sentiment", "single_thread", "tiny_config", "write_jsonl"]


def tiny_config(base: Path, **overrides: Any) -> Any:
    """A FederatedConfig for the tiny model: LoRA r=4 on query/value, 1 local epoch, batch 8, lr 1e-2."""
    from yulian.federated.config import FederatedConfig

    settings: dict[str, Any] = {
        "base_model": str(base),
        "labels": ["neg", "pos"],
        "max_length": 16,
        "method": "lora",
        "method_options": {"r": 4, "alpha": 8, "target_modules": "query,value"},
        "rounds": 2,
        "batch_size": 8,
        "lr": 1e-2,
        "min_fit_clients": 1,
        "min_available_clients": 1,
    }
    settings.update(overrides)
    return FederatedConfig(**settings)
