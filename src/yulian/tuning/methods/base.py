"""The contract of a fine-tuning method, and parameter counting."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["Method", "count_parameters", "trainable_summary"]


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts of a torch module (peft's own count for a PeftModel, so 4-bit
    quantised weights count at their real size)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
        return int(trainable), int(total)
    trainable = total = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total


def _human(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}K"
    return str(n)


def trainable_summary(model: Any) -> str:
    """`"trainable 22.7M / 22.7M (100.0%)"`."""
    trainable, total = count_parameters(model)
    share = 100.0 * trainable / total if total else 0.0
    return f"trainable {_human(trainable)} / {_human(total)} ({share:.1f}%)"


class Method(ABC):
    """A way of fine-tuning: decides which parameters train (or adds new ones) and how the result is saved."""

    name: ClassVar[str]
    options_help: ClassVar[str] = ""
    default_lr: ClassVar[float] = 5e-5
    """The learning rate when none is given (adapters with few parameters need larger steps)."""

    @abstractmethod
    def apply(self, model: Any, task: Any, options: Mapping[str, Any]) -> Any:
        """Prepare `model` for training (freeze, wrap, add modules); returns the model to train."""

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise ValueError naming an unknown or bad option (default: no options allowed)."""
        if options:
            raise ValueError(f"method {self.name!r} takes no options, got {', '.join(sorted(options))}")

    def before_training(self, model: Any, total_steps: int) -> None:  # noqa: B027 - optional hook
        """Called once the number of optimiser steps is known, before the first step (schedules that need it)."""

    def after_step(self, model: Any, step: int) -> None:  # noqa: B027 - optional hook
        """Called after each optimiser step (`step` counts from 1), before gradients are cleared."""

    def save(self, model: Any, out_dir: str | Path) -> None:
        """Write the trained model into `out_dir` so that `from_pretrained(out_dir)` loads it."""
        model.save_pretrained(str(out_dir))
