"""`ia3`: (IA)^3, learned per-channel rescaling of keys, values and feed-forward activations (peft's IA3).

Options: target_modules and feedforward_modules (auto: peft's choice per architecture, e.g. BERT key,value,
output.dense with output.dense as feed-forward); both comma-separated lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from yulian._optional import require
from yulian.tuning.methods._peft import Option, PeftMethod

__all__ = ["IA3Method"]


class IA3Method(PeftMethod):
    """IA3 (Liu et al., 2022) through peft: a few thousand scaling vectors and the task head train."""

    name = "ia3"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "target_modules": Option("modules", None, "layers to rescale: auto or a comma list"),
        "feedforward_modules": Option("modules", None, "those of target_modules that are feed-forward layers"),
    }
    options_help = "target_modules, feedforward_modules"
    default_lr = 3e-2  # scaling vectors start at 1 and need large steps (MiniLM/SST-2: 3e-2 > 1e-2 in 63 steps)

    def _check_together(self, options: Mapping[str, Any]) -> None:
        ff, targets = options["feedforward_modules"], options["target_modules"]
        if ff is not None and targets is None:
            raise ValueError("ia3 option feedforward_modules needs target_modules as well (it must be a subset)")
        if isinstance(ff, list) and isinstance(targets, list) and set(ff) - set(targets):
            extra = ", ".join(sorted(set(ff) - set(targets)))
            raise ValueError(f"ia3 option feedforward_modules must be a subset of target_modules; not there: {extra}")

    def peft_config(self, options: Mapping[str, Any], task_type: str, model: Any) -> Any:
        """A `peft.IA3Config`."""
        peft = require("peft", extra="tune")
        return peft.IA3Config(
            task_type=task_type,
            target_modules=options["target_modules"],
            feedforward_modules=options["feedforward_modules"],
        )
