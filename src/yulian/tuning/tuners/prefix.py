"""P-tuning v2 (deep prefix tuning) as a peft tuner: trainable key/value prefixes in every self-attention layer.

peft's own `prefix-tuning` hands the prefixes to the model as `past_key_values`; under transformers 5 BERT-family
models refuse that ("Model does not support past key values"), Llama classification heads refuse it too, and
Llama's `generate` silently ignores the prefix (measured: the generated tokens equal the base model's). So this
tuner injects the prefixes inside each attention module instead, through the one hook transformers 5 attention
modules share: `forward(..., cache=...)`, whose `cache.update(key, value, layer_idx)` returns the keys and values
the attention uses. The tuner layer wraps the self-attention module and passes a small cache object whose `update`
prepends the prefix (after the real cache's own update, when the model has one, so cached generation works); the
attention mask is extended by the same number of always-visible columns (bool or additive masks, SDPA or eager; a
causal mask is built explicitly when the model passed none). Rotary position embeddings are applied to the real
keys only, as in peft's prefix tuning.

Supported: BERT-family encoders (`layer.N.attention.self`: BERT, RoBERTa, XLM-R, ELECTRA, MiniLM) and Llama-family
decoders (`layers.N.self_attn`), eager and SDPA attention.

Options: `num_virtual_tokens` prefix length; `prefix_projection` > 0 reparameterises each layer's prefix during
training as `MLP(embedding)` (embedding P x hidden, MLP hidden -> prefix_projection -> 2 x kv size, tanh), which
P-tuning v2 found steadier on some tasks; `fold_prefixes(model)` replaces the MLP by the key/value tensors it
computes (exactly: same numbers), so the saved adapter holds only the prefixes. Merging is not defined (a prefix
is not a weight change): `merge_and_unload()` raises.
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
    "DECODER_INIT_STD",
    "KVPrefixConfig",
    "KVPrefixLayer",
    "KVPrefixModel",
    "fold_prefixes",
    "prefix_targets",
]

ARCHITECTURES: tuple[tuple[str, str], ...] = (
    ("bert-family", "attention.self"),
    ("llama-family", "self_attn"),
)
"""(family, self-attention module-name suffix inside one numbered layer)."""

DECODER_INIT_STD = 0.1
"""Default std of a causal decoder's initial prefixes (encoders: 1, as peft)."""

NOT_MERGEABLE = (
    "prefix tuning cannot be merged into the base weights: the prefixes are extra attention keys and values, not "
    "a change of any weight. Keep the PeftModel for inference (switch adapters with set_adapter), or call unload()."
)


@dataclass
class KVPrefixConfig(PeftConfig):
    """Configuration of P-tuning v2 key/value prefixes.

    Attributes:
        num_virtual_tokens: prefix length (key/value vectors per layer).
        prefix_projection: hidden size of the reparameterisation MLP used in training (0: train the prefixes
            directly). `fold_prefixes` removes the MLP before saving.
        init_std: standard deviation of the initial prefixes, or of the embeddings fed to the MLP. None (the
            default): 1 for encoders (like the nn.Embedding of peft's prefix encoder; measured on tiny models: 0.02
            barely trains), 0.1 for causal decoders (N(0, 1) prefixes derail SmolLM2: its SST-2 loss rose above
            chance at every rate from 3e-4 to 3e-2; with 0.1 it learns, dev 0.50 -> 0.72).
        target_modules: the self-attention modules to wrap (regex or name suffixes); None: from the architecture.
        modules_to_save: extra modules trained and saved whole (a classification head is added automatically).
    """

    num_virtual_tokens: int = field(default=16, metadata={"help": "prefix length"})
    prefix_projection: int = field(default=0, metadata={"help": "reparameterisation MLP size (0: none)"})
    init_std: float | None = field(
        default=None, metadata={"help": "std of the initial prefixes (None: 1 for encoders, 0.1 for decoders)"}
    )
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "self-attention modules"})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "modules trained and saved whole"})

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[no-untyped-call]
        from peft.utils.peft_types import PeftType

        self.peft_type = PeftType["KV_PREFIX"]
        for name, minimum in (("num_virtual_tokens", 1), ("prefix_projection", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"prefix {name} must be a whole number >= {minimum}, got {value!r}")
        if self.init_std is not None and not (
            isinstance(self.init_std, int | float) and not isinstance(self.init_std, bool) and self.init_std > 0
        ):
            raise ValueError(f"prefix init_std must be > 0, got {self.init_std!r}")
        targets: Any = self.target_modules
        if isinstance(targets, (set, tuple)):
            self.target_modules = sorted(targets)


def prefix_targets(model: Any) -> str:
    """The regex of the self-attention modules of `model`, found from its architecture (ValueError if none)."""
    names = [name for name, _ in model.named_modules()]
    for _family, suffix in ARCHITECTURES:
        pattern = rf"(?:.*\.)?\d+\.{re.escape(suffix)}"
        if any(re.fullmatch(pattern, n) for n in names):
            return pattern
    supported = "; ".join(f"{fam}: {s}" for fam, s in ARCHITECTURES)
    raise ValueError(
        f"cannot find the self-attention modules of {type(model).__name__} for prefix tuning "
        f"(supported: {supported}); pass target_modules explicitly"
    )


class _PrefixCache:
    """Stands in for a transformers `Cache` inside one attention call: prepends the prefix to the keys/values."""

    def __init__(self, key: Any, value: Any, inner: Any) -> None:
        self.key, self.value, self.inner = key, value, inner

    def update(self, key: Any, value: Any, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if self.inner is not None:
            key, value = self.inner.update(key, value, layer_idx, *args, **kwargs)
        batch = key.shape[0]
        prefix_key = self.key.to(key.dtype).expand(batch, -1, -1, -1)
        prefix_value = self.value.to(value.dtype).expand(batch, -1, -1, -1)
        return torch.cat([prefix_key, key], dim=2), torch.cat([prefix_value, value], dim=2)


def _extend_mask(mask: Any, prefix: int, queries: int, past: int, causal: bool, eager: bool, dtype: Any) -> Any:
    """The attention mask with `prefix` always-visible key columns in front."""
    if mask is None:
        if not causal:
            return None  # no mask: every key (prefix included) is visible
        keys = past + queries
        allowed = torch.arange(keys)[None, :] <= (past + torch.arange(queries))[:, None]
        allowed = torch.cat([torch.ones(queries, prefix, dtype=torch.bool), allowed], dim=1)[None, None]
        if eager:
            return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        return allowed
    if not isinstance(mask, torch.Tensor) or mask.dim() != 4:
        raise ValueError(
            f"prefix tuning supports eager and SDPA attention (4-d masks), got a {type(mask).__name__} mask; "
            "load the model with attn_implementation='sdpa' or 'eager'"
        )
    visible = torch.ones if mask.dtype == torch.bool else torch.zeros
    pad = visible((*mask.shape[:-1], prefix), dtype=mask.dtype, device=mask.device)
    return torch.cat([pad, mask], dim=-1)


class KVPrefixLayer(torch.nn.Module, BaseTunerLayer):
    """A self-attention module whose keys and values get the active adapters' prefixes in front."""

    adapter_layer_names = ("kv_prefix_kv", "kv_prefix_embedding", "kv_prefix_mlp")
    other_param_names = ()

    def __init__(self, base_layer: Any, adapter_name: str, config: KVPrefixConfig) -> None:
        super().__init__()
        self.base_layer = base_layer
        model_config = getattr(base_layer, "config", None)
        head_dim = getattr(base_layer, "head_dim", None) or getattr(base_layer, "attention_head_size", None)
        if model_config is None or head_dim is None:
            raise TypeError(f"{type(base_layer).__name__} is not a supported self-attention module for prefixes")
        self.head_dim = int(head_dim)
        self.kv_heads = int(getattr(model_config, "num_key_value_heads", None) or model_config.num_attention_heads)
        self.hidden_size = int(model_config.hidden_size)
        self.causal = bool(getattr(base_layer, "is_causal", False))
        self.kv_prefix_kv = torch.nn.ParameterDict({})
        self.kv_prefix_embedding = torch.nn.ParameterDict({})
        self.kv_prefix_mlp = torch.nn.ModuleDict({})
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    @property
    def kv_size(self) -> int:
        """Width of one key (or value) vector over all key/value heads."""
        return self.kv_heads * self.head_dim

    def update_layer(self, adapter_name: str, config: KVPrefixConfig) -> None:
        """Add the prefixes of `adapter_name` (directly, or an embedding + MLP when prefix_projection > 0)."""
        n = config.num_virtual_tokens
        device = next(self.base_layer.parameters()).device
        std = config.init_std if config.init_std is not None else (DECODER_INIT_STD if self.causal else 1.0)
        if config.prefix_projection:
            embedding = torch.randn(n, self.hidden_size, device=device) * std
            self.kv_prefix_embedding[adapter_name] = torch.nn.Parameter(embedding)
            self.kv_prefix_mlp[adapter_name] = torch.nn.Sequential(
                torch.nn.Linear(self.hidden_size, config.prefix_projection),
                torch.nn.Tanh(),
                torch.nn.Linear(config.prefix_projection, 2 * self.kv_size),
            ).to(device)
        else:
            kv = torch.randn(2, n, self.kv_size, device=device) * std
            self.kv_prefix_kv[adapter_name] = torch.nn.Parameter(kv)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def prefix(self, adapter_name: str) -> Any:
        """The (2, num_virtual_tokens, kv_size) keys and values of `adapter_name`."""
        if adapter_name in self.kv_prefix_kv:
            return self.kv_prefix_kv[adapter_name]
        embedding = self.kv_prefix_embedding[adapter_name]
        out = self.kv_prefix_mlp[adapter_name](embedding)  # (n, 2 * kv_size)
        return out.view(embedding.shape[0], 2, self.kv_size).transpose(0, 1)

    def fold(self, adapter_name: str) -> None:
        """Replace the reparameterisation MLP of `adapter_name` by the prefixes it computes."""
        if adapter_name not in self.kv_prefix_mlp:
            return
        with torch.no_grad():
            kv = self.prefix(adapter_name).detach().clone()
        trainable = self.kv_prefix_embedding[adapter_name].requires_grad
        del self.kv_prefix_mlp[adapter_name]
        del self.kv_prefix_embedding[adapter_name]
        self.kv_prefix_kv[adapter_name] = torch.nn.Parameter(kv, requires_grad=trainable)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Not defined for prefixes: raises ValueError explaining why."""
        raise ValueError(NOT_MERGEABLE)

    def unmerge(self) -> None:
        """Nothing is ever merged."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The attention with the active adapters' prefixes prepended to its keys and values."""
        names = [n for n in self.active_adapters if n in self.kv_prefix_kv or n in self.kv_prefix_mlp]
        if self.disable_adapters or not names:
            return self.base_layer(*args, **kwargs)
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        kv = torch.cat([self.prefix(n) for n in names], dim=1)  # (2, P, kv_size)
        prefix = kv.shape[1]
        kv = kv.view(2, 1, prefix, self.kv_heads, self.head_dim).transpose(2, 3)  # (2, 1, heads, P, head_dim)
        inner = kwargs.pop("cache", None)
        legacy = kwargs.pop("past_key_values", None)
        inner = inner if inner is not None else legacy
        layer_idx = getattr(self.base_layer, "layer_idx", None)
        past = int(inner.get_seq_length(layer_idx or 0)) if inner is not None else 0
        implementation = getattr(self.base_layer.config, "_attn_implementation", "sdpa")
        kwargs["attention_mask"] = _extend_mask(
            kwargs.get("attention_mask"),
            prefix,
            queries=hidden.shape[1],
            past=past,
            causal=self.causal,
            eager=implementation == "eager",
            dtype=hidden.dtype,
        )
        if isinstance(kwargs["attention_mask"], torch.Tensor):
            kwargs["attention_mask"] = kwargs["attention_mask"].to(hidden.device)
        kwargs["cache"] = _PrefixCache(kv[0], kv[1], inner)
        return self.base_layer(*args, **kwargs)

    def __repr__(self) -> str:
        return "kv_prefix." + super().__repr__()


class KVPrefixModel(WrappingTuner):
    """The peft tuner that wraps every self-attention module with a `KVPrefixLayer`."""

    prefix: str = "kv_prefix_"
    tuner_layer_cls = KVPrefixLayer
    not_mergeable = NOT_MERGEABLE

    def default_targets(self, model: Any, config: Any) -> str:
        """The modules this architecture's adapters wrap."""
        return prefix_targets(model)

    def _replace_module(self, parent: Any, child_name: str, new_module: Any, child: Any) -> None:
        if not isinstance(new_module, KVPrefixLayer):  # unloading: put the attention module itself back
            setattr(parent, child_name, new_module)  # (peft's version assumes a layer with .weight)
            return
        super()._replace_module(parent, child_name, new_module, child)


def fold_prefixes(model: Any) -> int:
    """Fold every reparameterisation MLP of a peft model into plain prefixes; returns how many layers changed.

    The folded adapter computes exactly the same keys and values, and its config gets `prefix_projection=0`, so
    `save_pretrained` writes only the prefixes and `PeftModel.from_pretrained` rebuilds them without the MLP.
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, KVPrefixLayer):
            for name in list(module.kv_prefix_mlp.keys()):
                module.fold(name)
                changed += 1
    for config in getattr(model, "peft_config", {}).values():
        if isinstance(config, KVPrefixConfig):
            config.prefix_projection = 0
    return changed


register("kv_prefix", KVPrefixConfig, KVPrefixModel, prefix="kv_prefix_")
