"""Trainable weights by parameter name: what a federated client receives and sends (only the tensors that train,
e.g. LoRA + the task head), and how they are loaded back into a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["load_named", "trainable_named", "weights_bytes"]


def trainable_named(model: Any) -> dict[str, Any]:
    """The trainable tensors by parameter name, detached copies on the CPU (what a federated client sends)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_named(torch: Any, model: Any, weights: Mapping[str, Any]) -> None:
    """Copy `weights` (tensors or arrays by parameter name) into `model`'s parameters; unknown names are errors."""
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise ValueError(f"weights for parameters the model does not have: {', '.join(unknown[:5])}")
    with torch.no_grad():
        for name, value in weights.items():
            target = params[name]
            tensor = torch.as_tensor(value)
            if tuple(tensor.shape) != tuple(target.shape):
                raise ValueError(
                    f"{name}: shape {tuple(tensor.shape)} does not match the model's {tuple(target.shape)}"
                )
            target.copy_(tensor.to(target.dtype))


def weights_bytes(weights: Mapping[str, Any]) -> int:
    """The payload size of `weights` (tensors or arrays) in bytes."""
    total = 0
    for value in weights.values():
        nbytes = getattr(value, "nbytes", None)
        total += int(nbytes) if nbytes is not None else int(value.numel() * value.element_size())
    return total
