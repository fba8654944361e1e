"""`adapter`: Houlsby or Pfeiffer bottleneck adapters (our own peft tuner, `yulian.tuning.tuners.bottleneck`).

Options: kind (houlsby: after the attention output and the FFN output of every layer; pfeiffer: after the FFN
only), reduction_factor (bottleneck = hidden // factor), bottleneck_size (overrides the factor), non_linearity
(relu, gelu, swish), residual (the adapter's own skip connection; on by default), target_modules (auto: found from
the architecture, BERT- and Llama-family). The adapter starts as the identity (zero up projection). Saved as a
standard PEFT folder; loading needs `import yulian.tuning.tuners` (done by this method's `load`). Adapters cannot
be merged into the base weights (the non-linearity), so deployment keeps the PeftModel.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from yulian._optional import require
from yulian.tuning.methods._peft import Option, PeftMethod

__all__ = ["AdapterMethod"]


class AdapterMethod(PeftMethod):
    """Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021): small residual MLPs in every layer."""

    name = "adapter"
    can_merge = False
    OPTIONS: ClassVar[dict[str, Option]] = {
        "kind": Option(
            "choice", "houlsby", "houlsby (attention + FFN) or pfeiffer (FFN only)", ("houlsby", "pfeiffer")
        ),
        "reduction_factor": Option("int", 16, "bottleneck size = hidden size // reduction_factor", minimum=1),
        "bottleneck_size": Option("int", None, "bottleneck size (overrides reduction_factor)", minimum=1),
        "non_linearity": Option("choice", "relu", "activation in the bottleneck", ("relu", "gelu", "swish")),
        "residual": Option("bool", True, "add the adapter output to its input (identity at initialisation)"),
        "target_modules": Option("modules", None, "modules to wrap: auto (from the architecture) or a comma list"),
    }
    options_help = "kind (houlsby|pfeiffer), reduction_factor, bottleneck_size, non_linearity, residual"

    def peft_config(self, options: Mapping[str, Any], task_type: str, model: Any) -> Any:
        """A `yulian.tuning.tuners.BottleneckConfig`."""
        require("peft", extra="tune", purpose="bottleneck adapters")
        from yulian.tuning.tuners import BottleneckConfig

        return BottleneckConfig(
            task_type=task_type,
            kind=options["kind"],
            reduction_factor=options["reduction_factor"],
            bottleneck_size=options["bottleneck_size"],
            non_linearity=options["non_linearity"],
            residual=options["residual"],
            target_modules=options["target_modules"],
        )

    def load(
        self, base_model: Any, folder: str | Path, *, adapter_name: str = "default", trainable: bool = False
    ) -> Any:
        """Register the tuner with peft, then load the adapter in `folder` onto `base_model`."""
        import yulian.tuning.tuners  # noqa: F401 - registers the peft type

        return super().load(base_model, folder, adapter_name=adapter_name, trainable=trainable)
