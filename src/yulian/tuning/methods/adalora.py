"""`adalora`: LoRA whose rank budget is reallocated during training by importance (peft's AdaLoRA).

The schedule needs the number of optimiser steps: `before_training` sets it (`total_step`), and `after_step`
calls `update_and_allocate` every step, as AdaLoRA requires. `tinit` and `tfinal` are steps (>= 1) or fractions of
all steps (< 1): no pruning for the first `tinit` steps, the final ranks fixed for the last `tfinal` steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from yulian._optional import require
from yulian.tuning.methods._peft import Option, PeftMethod

__all__ = ["AdaLoraMethod"]

_PLACEHOLDER_STEPS = 1_000_000  # replaced in before_training, once the real number of steps is known


class AdaLoraMethod(PeftMethod):
    """AdaLoRA (Zhang et al., 2023) through peft: SVD-shaped adapters pruned from init_r to an average target_r."""

    name = "adalora"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "init_r": Option("int", 12, "initial rank of every adapted layer", minimum=1),
        "target_r": Option("int", 8, "average rank after budget allocation", minimum=1),
        "alpha": Option("float", 16, "scaling numerator", minimum=0),
        "dropout": Option("float", 0.0, "dropout on the adapter input (0: off)", minimum=0, maximum=0.99),
        "target_modules": Option("modules", None, "layers to adapt: auto, a comma list, or all-linear"),
        "tinit": Option("float", 0.1, "warm-up without pruning: steps (>= 1) or a fraction of all steps", minimum=0),
        "tfinal": Option("float", 0.2, "final phase with fixed ranks: steps (>= 1) or a fraction", minimum=0),
        "deltaT": Option("int", 10, "steps between two budget allocations", minimum=1),
        "beta1": Option("float", 0.85, "EMA factor of the sensitivity", minimum=0, maximum=1),
        "beta2": Option("float", 0.85, "EMA factor of the uncertainty", minimum=0, maximum=1),
        "orth_reg_weight": Option("float", 0.5, "weight of the orthogonality regulariser", minimum=0),
    }
    default_lr = 3e-2
    """AdaLoRA starts from E = 0 with small random A and B, so it moves slowly: on MiniLM/SST-2 (63 steps) 3e-3 and
    1e-2 stayed near chance (0.51, 0.55 dev accuracy) while 3e-2 reached 0.75."""
    options_help = (
        "init_r, target_r, alpha, dropout, target_modules, tinit, tfinal, deltaT, beta1, beta2, orth_reg_weight"
    )

    def _check_together(self, options: Mapping[str, Any]) -> None:
        if options["target_r"] > options["init_r"]:
            raise ValueError(
                f"adalora option target_r ({options['target_r']}) must not exceed init_r ({options['init_r']})"
            )
        for name in ("tinit", "tfinal"):
            if options[name] >= 1 and options[name] != int(options[name]):
                raise ValueError(f"adalora option {name} of 1 or more is a number of steps, got {options[name]!r}")
        if options["tinit"] < 1 and options["tfinal"] < 1 and options["tinit"] + options["tfinal"] >= 1:
            raise ValueError("adalora options tinit + tfinal (as fractions) must leave room for pruning: sum < 1")

    def peft_config(self, options: Mapping[str, Any], task_type: str, model: Any) -> Any:
        """A `peft.AdaLoraConfig` with a placeholder step count (set for real in `before_training`)."""
        peft = require("peft", extra="tune")
        alpha = options["alpha"]
        return peft.AdaLoraConfig(
            task_type=task_type,
            init_r=options["init_r"],
            target_r=options["target_r"],
            lora_alpha=int(alpha) if float(alpha).is_integer() else alpha,
            lora_dropout=options["dropout"],
            target_modules=options["target_modules"],
            tinit=0,
            tfinal=0,
            deltaT=options["deltaT"],
            beta1=options["beta1"],
            beta2=options["beta2"],
            orth_reg_weight=options["orth_reg_weight"],
            total_step=_PLACEHOLDER_STEPS,
        )

    def schedule(self, total_steps: int) -> tuple[int, int]:
        """(tinit, tfinal) in steps for a run of `total_steps`, leaving at least one budgeting step."""

        def steps(value: float) -> int:
            return int(value) if value >= 1 else round(value * total_steps)

        tinit, tfinal = steps(self.options["tinit"]), steps(self.options["tfinal"])
        if tinit + tfinal >= total_steps:
            raise ValueError(
                f"adalora: tinit ({tinit}) + tfinal ({tfinal}) steps leave no budgeting phase in {total_steps} steps; "
                "lower them or train longer"
            )
        return tinit, tfinal

    def before_training(self, model: Any, total_steps: int) -> None:
        """Set the real schedule (total_step, tinit, tfinal) on the adapter's config."""
        tinit, tfinal = self.schedule(total_steps)
        for config in model.peft_config.values():
            config.total_step, config.tinit, config.tfinal = total_steps, tinit, tfinal

    def save(self, model: Any, out_dir: str | Path) -> None:
        """Mask the pruned ranks in the live model first (the trainer may have restored an earlier checkpoint whose
        weights predate the last allocation), so that the saved, resized adapter gives the same outputs."""
        tuner = model.base_model
        for config in model.peft_config.values():
            if config.rank_pattern:
                tuner.rankallocator.mask_using_rank_pattern(tuner.model, config.rank_pattern)
        super().save(model, out_dir)

    def apply(self, model: Any, task: Any, options: Mapping[str, Any]) -> Any:
        """Wrap the model with AdaLoRA, plus a parameter-free child module that puts the rank allocation (patterns
        and importance averages) into `state_dict()`: the trainer's checkpoints then hold it, so a resumed run and a
        restored best checkpoint continue with exactly the allocation they had."""
        wrapped = super().apply(model, task, options)
        wrapped.add_module(STATE_MODULE, _allocation_module(wrapped))
        return wrapped

    def after_step(self, model: Any, step: int) -> None:
        """Update importance scores and reallocate the rank budget (peft's `update_and_allocate`)."""
        model.base_model.update_and_allocate(step)


STATE_MODULE = "yulian_rank_budget"
"""Name of the child module carrying AdaLoRA's allocation state (no "lora_" in it: peft's adapter file skips it)."""


def allocation_state(model: Any) -> dict[str, Any]:
    """AdaLoRA's allocation state: rank patterns per adapter and the rank allocator's importance averages."""
    allocator = model.base_model.rankallocator
    return {
        "rank_pattern": {name: config.rank_pattern for name, config in model.peft_config.items()},
        "ipt": dict(allocator.ipt),
        "exp_avg_ipt": dict(allocator.exp_avg_ipt),
        "exp_avg_unc": dict(allocator.exp_avg_unc),
    }


def restore_allocation(model: Any, state: Mapping[str, Any]) -> None:
    """Put back what `allocation_state` returned."""
    allocator = model.base_model.rankallocator
    for name, pattern in state.get("rank_pattern", {}).items():
        if name in model.peft_config:
            model.peft_config[name].rank_pattern = pattern
    for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
        table = getattr(allocator, key)
        table.clear()
        table.update(state.get(key, {}))


def _allocation_module(model: Any) -> Any:
    """A parameter-free module whose torch "extra state" is the model's AdaLoRA allocation."""
    torch = require("torch", extra="hf")

    class RankBudget(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self, owner: Any) -> None:
            super().__init__()
            object.__setattr__(self, "_owner", owner)  # a plain reference, not a submodule (no cycle)

        def get_extra_state(self) -> dict[str, Any]:
            return allocation_state(self._owner)

        def set_extra_state(self, state: Any) -> None:
            restore_allocation(self._owner, state)

    return RankBudget(model)
