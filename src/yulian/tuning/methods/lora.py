"""`lora`: low-rank adapters on the attention projections (peft's LoRA; DoRA and rsLoRA as options).

Options: r (8), alpha (16), dropout (0: a dropout mask per adapted layer is the costliest part of a LoRA step on
CPU, measured 1.21x -> 1.26x of full fine-tuning's samples/s for query,value and 0.83x -> 1.27x for all-linear, paired,
MiniLM, SST-2), target_modules (auto: peft's choice per architecture, e.g. BERT
query,value and Llama q_proj,v_proj; a comma-separated list, or all-linear), bias (none|all|lora_only),
use_rslora, use_dora, and quantize (4bit|8bit: QLoRA-style, CUDA only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from yulian._optional import require
from yulian.tuning.methods._peft import Option, PeftMethod

__all__ = ["LoraMethod"]


class LoraMethod(PeftMethod):
    """LoRA (Hu et al., 2021) through peft: the base stays frozen; low-rank updates and the task head train."""

    name = "lora"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "r": Option("int", 8, "rank of the update", minimum=1),
        "alpha": Option("float", 16, "scaling numerator (scale = alpha / r)", minimum=0),
        "dropout": Option(
            "float", 0.0, "dropout on the LoRA input (0: off, the fast default)", minimum=0, maximum=0.99
        ),
        "target_modules": Option("modules", None, "layers to adapt: auto, a comma list, or all-linear"),
        "bias": Option("choice", "none", "which biases train", choices=("none", "all", "lora_only")),
        "use_rslora": Option("bool", False, "rank-stabilised scaling alpha / sqrt(r)"),
        "use_dora": Option("bool", False, "weight-decomposed LoRA (DoRA)"),
    }
    options_help = "r, alpha, dropout, target_modules, bias, use_rslora, use_dora, quantize"

    def peft_config(self, options: Mapping[str, Any], task_type: str, model: Any) -> Any:
        """A `peft.LoraConfig`."""
        peft = require("peft", extra="tune")
        alpha = options["alpha"]
        return peft.LoraConfig(
            task_type=task_type,
            r=options["r"],
            lora_alpha=int(alpha) if float(alpha).is_integer() else alpha,
            lora_dropout=options["dropout"],
            target_modules=options["target_modules"],
            bias=options["bias"],
            use_rslora=options["use_rslora"],
            use_dora=options["use_dora"],
        )
