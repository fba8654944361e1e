"""`freeze`: train only part of the model (the rest keeps its pre-trained weights).

Options: `embeddings=True` freezes the embedding layer; `layers=k` freezes the bottom k transformer layers (and
the embeddings below them); `all_but_head=True` freezes the whole base model so only the task head trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yulian.tuning.methods.base import Method

__all__ = ["FreezeMethod", "base_of", "layers_of"]

_OPTIONS = ("embeddings", "layers", "all_but_head")


def base_of(model: Any) -> Any:
    """The pre-trained body of a transformers model with a head (`model.bert`, `model.model`, ...)."""
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    if base is None:
        raise ValueError(f"cannot find the base model of {type(model).__name__} (base_model_prefix={prefix!r})")
    return base


def layers_of(base: Any) -> Any:
    """The stack of transformer layers of a base model (the longest ModuleList named layer/layers/h/block)."""
    import torch

    best = None
    for name, module in base.named_modules():
        named = name.split(".")[-1] in ("layer", "layers", "h", "block")
        if isinstance(module, torch.nn.ModuleList) and named and (best is None or len(module) > len(best)):
            best = module
    if best is None:
        raise ValueError(f"cannot find the transformer layers of {type(base).__name__}")
    return best


class FreezeMethod(Method):
    """Freeze the embeddings, the bottom k layers, or everything but the head."""

    name = "freeze"
    options_help = "embeddings (bool), layers (bottom k), all_but_head (bool)"

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Only embeddings / layers / all_but_head, with sensible values; at least one must freeze something."""
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"unknown freeze option(s) {', '.join(unknown)} (options: {', '.join(_OPTIONS)})")
        layers = options.get("layers", 0)
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
            raise ValueError(f"freeze option layers must be a whole number >= 0, got {layers!r}")
        if not (options.get("embeddings") or layers or options.get("all_but_head")):
            raise ValueError("method 'freeze' needs something to freeze: embeddings, layers=K or all_but_head")

    def apply(self, model: Any, task: Any, options: Mapping[str, Any]) -> Any:
        """Freeze what `options` asks for; everything else trains."""
        self.check_options(options)
        for param in model.parameters():
            param.requires_grad_(True)
        base = base_of(model)
        if options.get("all_but_head"):
            for param in base.parameters():
                param.requires_grad_(False)
            return model
        layers = int(options.get("layers", 0))
        if options.get("embeddings") or layers:
            embeddings = getattr(base, "embeddings", None) or base.get_input_embeddings()
            for param in embeddings.parameters():
                param.requires_grad_(False)
        if layers:
            stack = layers_of(base)
            if layers > len(stack):
                raise ValueError(f"freeze layers={layers} but the model has only {len(stack)} layers")
            for layer in list(stack)[:layers]:
                for param in layer.parameters():
                    param.requires_grad_(False)
        return model
