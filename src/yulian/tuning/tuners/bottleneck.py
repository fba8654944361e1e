"""Houlsby and Pfeiffer bottleneck adapters as a peft tuner (peft has no bottleneck adapters).

A bottleneck adapter is a small residual MLP, `h + W_up σ(W_down h)`, inserted after a sublayer's output projection,
before the residual connection and LayerNorm of the transformer layer:

- **Houlsby** (Houlsby et al., 2019): after the attention output projection *and* after the FFN output projection of
  every layer (BERT: `attention.output.dense`, `output.dense`; Llama: `self_attn.o_proj`, `mlp.down_proj`).
- **Pfeiffer** (Pfeiffer et al., 2021): after the FFN output projection only (half the parameters, about the same
  accuracy in their study).

The up projection starts at zero, so at initialisation the wrapped model computes exactly what the base model does.

```python
import yulian.tuning.tuners  # registers the tuners with peft
from peft import get_peft_model
from yulian.tuning.tuners import BottleneckConfig

model = get_peft_model(base, BottleneckConfig(kind="pfeiffer", reduction_factor=16, task_type="SEQ_CLS"))
model.save_pretrained("out")          # adapter_config.json + adapter_model.safetensors
PeftModel.from_pretrained(base2, "out")
```

Merging: not defined. The adapter applies a non-linearity to the sublayer's output, `h + W_up σ(W_down h)`, and no
change of the wrapped layer's weights reproduces that for all inputs; `merge_and_unload()` raises a ValueError that
says so. `unload()` (drop the adapter, keep the base) works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTunerLayer

from yulian.tuning.tuners._base import WrappingTuner
from yulian.tuning.tuners._registry import register

__all__ = [
    "ARCHITECTURES",
    "KINDS",
    "NON_LINEARITIES",
    "BottleneckConfig",
    "BottleneckLayer",
    "BottleneckModel",
    "bottleneck_targets",
]

KINDS = ("houlsby", "pfeiffer")
NON_LINEARITIES = ("relu", "gelu", "swish")
ARCHITECTURES: tuple[tuple[str, str, str], ...] = (
    ("bert-family", "attention.output.dense", "output.dense"),  # BERT, RoBERTa, XLM-R, ELECTRA, MiniLM
    ("llama-family", "self_attn.o_proj", "mlp.down_proj"),  # Llama, Mistral, Qwen2, Gemma, SmolLM
    ("distilbert", "attention.out_lin", "ffn.lin2"),
)
"""(family, attention-output module, FFN-output module), as module-name suffixes inside one numbered layer."""

NOT_MERGEABLE = (
    "bottleneck adapters cannot be merged into the base weights: the adapter computes h + W_up σ(W_down h) on the "
    "sublayer output h, and because of the non-linearity σ no change of the wrapped layer's weights reproduces it. "
    "Keep the PeftModel for inference (switch adapters with set_adapter), or call unload() to drop the adapters."
)


@dataclass
class BottleneckConfig(PeftConfig):
    """Configuration of Houlsby/Pfeiffer bottleneck adapters.

    Attributes:
        kind: "houlsby" (after the attention output and the FFN output of each layer) or "pfeiffer" (FFN only).
        reduction_factor: bottleneck size = hidden size // reduction_factor (ignored when bottleneck_size is set).
        bottleneck_size: the bottleneck width itself (None: use reduction_factor).
        non_linearity: "relu", "gelu" or "swish".
        residual: add the adapter's output to its input (`h + f(h)`, the standard adapter, identity at
            initialisation); False replaces h with f(h) (no identity at initialisation).
        target_modules: the modules to wrap (a regex matched against full module names, or a list of name
            suffixes); None: found from the architecture (see `ARCHITECTURES`).
        modules_to_save: extra modules trained and saved whole (a classification head is added automatically by
            peft's sequence/token-classification models).
    """

    kind: str = field(default="houlsby", metadata={"help": "houlsby or pfeiffer"})
    reduction_factor: int = field(default=16, metadata={"help": "hidden size // reduction_factor = bottleneck size"})
    bottleneck_size: int | None = field(default=None, metadata={"help": "bottleneck size (overrides the factor)"})
    non_linearity: str = field(default="relu", metadata={"help": "relu, gelu or swish"})
    residual: bool = field(default=True, metadata={"help": "h + f(h) (True) or f(h) (False)"})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "modules to wrap"})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "modules trained and saved whole"})

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[no-untyped-call]
        from peft.utils.peft_types import PeftType

        self.peft_type = PeftType["BOTTLENECK"]
        if self.kind not in KINDS:
            raise ValueError(f"bottleneck kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.non_linearity not in NON_LINEARITIES:
            raise ValueError(
                f"bottleneck non_linearity must be one of {', '.join(NON_LINEARITIES)}, got {self.non_linearity!r}"
            )
        for name in ("reduction_factor", "bottleneck_size"):
            value = getattr(self, name)
            if value is None and name == "bottleneck_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"bottleneck {name} must be a whole number >= 1, got {value!r}")
        targets: Any = self.target_modules
        if isinstance(targets, (set, tuple)):
            self.target_modules = sorted(targets)


def bottleneck_targets(model: Any, kind: str) -> str:
    """The regex of the modules a `kind` adapter wraps in `model`, found from its architecture.

    Raises ValueError naming the supported architectures when none matches.
    """
    names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    for _family, attention, ffn in ARCHITECTURES:
        suffixes = [attention, ffn] if kind == "houlsby" else [ffn]
        patterns = [rf"(?:.*\.)?\d+\.{re.escape(s)}" for s in suffixes]
        if all(any(re.fullmatch(p, n) for n in names) for p in patterns):
            return rf"(?:.*\.)?\d+\.(?:{'|'.join(re.escape(s) for s in suffixes)})"
    supported = "; ".join(f"{fam}: {a} + {f}" for fam, a, f in ARCHITECTURES)
    raise ValueError(
        f"cannot find the attention-output and FFN-output projections of {type(model).__name__} "
        f"(supported: {supported}); pass target_modules explicitly"
    )


def _activation(name: str, x: Any) -> Any:
    functional = torch.nn.functional
    if name == "relu":
        return functional.relu(x)
    if name == "gelu":
        return functional.gelu(x)
    return functional.silu(x)


class BottleneckLayer(torch.nn.Module, BaseTunerLayer):
    """A linear layer followed by one bottleneck adapter per adapter name (the active ones run in order)."""

    adapter_layer_names = ("bottleneck_down", "bottleneck_up")
    other_param_names = ("bottleneck_non_linearity", "bottleneck_residual")

    def __init__(self, base_layer: Any, adapter_name: str, config: BottleneckConfig) -> None:
        super().__init__()
        if not isinstance(base_layer, torch.nn.Linear):
            raise TypeError(f"bottleneck adapters wrap torch.nn.Linear layers, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.bottleneck_down = torch.nn.ModuleDict({})
        self.bottleneck_up = torch.nn.ModuleDict({})
        self.bottleneck_non_linearity: dict[str, str] = {}
        self.bottleneck_residual: dict[str, bool] = {}
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: BottleneckConfig) -> None:
        """Add the adapter `adapter_name`: down projection (default init), up projection at zero."""
        width = config.bottleneck_size or max(1, self.out_features // config.reduction_factor)
        weight = self.base_layer.weight
        down = torch.nn.Linear(self.out_features, width).to(weight.device)
        up = torch.nn.Linear(width, self.out_features).to(weight.device)
        torch.nn.init.zeros_(up.weight)
        torch.nn.init.zeros_(up.bias)
        self.bottleneck_down[adapter_name] = down
        self.bottleneck_up[adapter_name] = up
        self.bottleneck_non_linearity[adapter_name] = config.non_linearity
        self.bottleneck_residual[adapter_name] = bool(config.residual)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Not defined for bottleneck adapters: raises ValueError explaining why."""
        raise ValueError(NOT_MERGEABLE)

    def unmerge(self) -> None:
        """Nothing is ever merged."""

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """The base layer's output passed through each active adapter."""
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        for name in self.active_adapters:
            if name not in self.bottleneck_down:
                continue
            down, up = self.bottleneck_down[name], self.bottleneck_up[name]
            h = result.to(down.weight.dtype) if not torch.is_autocast_enabled() else result
            z = up(_activation(self.bottleneck_non_linearity[name], down(h)))
            result = (result + z.to(result.dtype)) if self.bottleneck_residual[name] else z.to(result.dtype)
        return result

    def __repr__(self) -> str:
        return "bottleneck." + super().__repr__()


class BottleneckModel(WrappingTuner):
    """The peft tuner that wraps the attention-output and/or FFN-output projections with bottleneck adapters."""

    prefix: str = "bottleneck_"
    tuner_layer_cls = BottleneckLayer
    not_mergeable = NOT_MERGEABLE

    def default_targets(self, model: Any, config: Any) -> str:
        """The modules this architecture's adapters wrap."""
        return bottleneck_targets(model, config.kind)


register("bottleneck", BottleneckConfig, BottleneckModel, prefix="bottleneck_")
