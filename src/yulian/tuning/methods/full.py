"""`full`: every parameter trains."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yulian.tuning.methods.base import Method

__all__ = ["FullMethod"]


class FullMethod(Method):
    """Full fine-tuning: all parameters are trainable."""

    name = "full"

    def apply(self, model: Any, task: Any, options: Mapping[str, Any]) -> Any:
        """Mark every parameter trainable."""
        self.check_options(options)
        for param in model.parameters():
            param.requires_grad_(True)
        return model
