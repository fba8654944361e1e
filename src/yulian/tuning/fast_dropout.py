"""Dropout with cheap random numbers, for training on the CPU.

PyTorch's CPU dropout draws its masks from a Mersenne Twister, one float per element; on this project's CPUs that
costs more than the matrix products it regularises (KNOWN.md: `bernoulli_` is 14-49% of a training step). Here a
mask costs one 16-bit integer per element from NumPy's SFC64 generator, which is several times faster, and the
keep probability is exact to 1/65,536 (p = 0.1 becomes 6,554 / 65,536 = 0.100006).

Each call seeds its generator with one number drawn from torch's generator, so runs stay reproducible under
`torch.manual_seed` and a checkpoint of torch's RNG state resumes the same masks.

`fast_dropout_training(model)` swaps the model's `nn.Dropout` modules for `FastDropout` and routes attention
through `attention` (the attention-probability dropout included) for the duration of a `with` block; the model is
exactly as it was afterwards. On a GPU, PyTorch's own (Philox) dropout is fast: use it there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from yulian._optional import require

__all__ = ["ATTENTION", "FastDropout", "attention", "dropout_mask", "fast_dropout", "fast_dropout_training"]

ATTENTION = "yulian_cpu_dropout"
"""The name `attention` is registered under in transformers' attention interfaces."""

_LEVELS = 65536
_registered = False


def dropout_mask(shape: tuple[int, ...], p: float) -> Any:
    """A bool tensor of `shape`, True (keep) with probability 1 - p (p rounded to a multiple of 1/65,536)."""
    torch = require("torch", extra="hf")
    np = require("numpy", extra="hf")
    seed = int(torch.randint(0, 2**62, (1,)).item())
    n = 1
    for size in shape:
        n *= size
    draws = np.random.Generator(np.random.SFC64(seed)).integers(-32768, 32767, n, dtype=np.int16, endpoint=True)
    threshold = -32768 + round(p * _LEVELS)
    return torch.from_numpy(draws).view(shape) >= threshold


def _function() -> Any:
    torch = require("torch", extra="hf")

    class _Dropout(torch.autograd.Function):  # type: ignore[misc, name-defined]
        # torch.where(keep, x * scale, 0) is x * keep * scale to the bit, in two passes instead of three (no
        # cast of the bool mask to x's dtype): ~1.4x faster on a MiniLM layer's activations.
        @staticmethod
        def forward(ctx: Any, x: Any, keep: Any, scale: float) -> Any:
            ctx.save_for_backward(keep)
            ctx.scale = scale
            return torch.where(keep, x * scale, x.new_zeros(()))

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            (keep,) = ctx.saved_tensors
            return torch.where(keep, grad * ctx.scale, grad.new_zeros(())), None, None

    return _Dropout


_FN: Any = None


def fast_dropout(x: Any, p: float, training: bool = True) -> Any:
    """`torch.nn.functional.dropout(x, p, training)` with SFC64 masks (CPU tensors; other devices use torch's)."""
    if not training or p == 0.0:
        return x
    torch = require("torch", extra="hf")
    if x.device.type != "cpu":
        return torch.nn.functional.dropout(x, p, training)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    global _FN
    if _FN is None:
        _FN = _function()
    keep = dropout_mask(tuple(x.shape), p)
    return _FN.apply(x, keep, 1.0 / (1.0 - p))


def _module_class() -> Any:
    torch = require("torch", extra="hf")

    class FastDropoutModule(torch.nn.Dropout):  # type: ignore[misc, name-defined]
        """`nn.Dropout` with SFC64 masks on the CPU."""

        def forward(self, x: Any) -> Any:
            return fast_dropout(x, self.p, self.training)

    return FastDropoutModule


_MODULE: Any = None


def FastDropout(p: float = 0.5) -> Any:
    """An `nn.Dropout` subclass whose CPU masks come from SFC64 (a module, so it shows in `print(model)`)."""
    global _MODULE
    if _MODULE is None:
        _MODULE = _module_class()
    return _MODULE(p)


def attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Scaled dot-product attention with `fast_dropout` on the attention probabilities (transformers' attention
    interface; masks are built as for "sdpa"). Without dropout it hands over to transformers' SDPA function."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if not module.training or not dropout:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=0.0, scaling=scaling, is_causal=is_causal, **kwargs
        )
    torch = require("torch", extra="hf")
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scale = scaling if scaling is not None else query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    q_len, k_len = scores.shape[-2], scores.shape[-1]
    if attention_mask is not None:
        mask = attention_mask[:, :, :, :k_len]
        bool_mask = mask.dtype == torch.bool
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if bool_mask else scores + mask
    elif (is_causal if is_causal is not None else getattr(module, "is_causal", False)) and q_len > 1:
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(k_len - q_len)
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    probs = fast_dropout(probs, dropout)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, None


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    _registered = True


@contextlib.contextmanager
def fast_dropout_training(model: Any) -> Iterator[int]:
    """Within the block, `model` drops out with SFC64 masks: its `nn.Dropout` modules are swapped for
    `FastDropout` and its sdpa/eager attention goes through `attention`. Yields how many modules were swapped."""
    torch = require("torch", extra="hf")
    _register()
    swapped: list[tuple[Any, str, Any]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                fast = FastDropout(child.p)
                fast.train(child.training)
                setattr(parent, name, fast)
                swapped.append((parent, name, child))
    configs: list[tuple[Any, str]] = []
    for sub in model.modules():
        config: Any = getattr(sub, "config", None)
        current = getattr(config, "_attn_implementation", None)
        if current in ("sdpa", "eager") and all(c is not config for c, _ in configs):
            configs.append((config, current))
            config._attn_implementation = ATTENTION
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
        for config, implementation in configs:
            config._attn_implementation = implementation
