"""Dropout with cheap random numbers, for training on the CPU.

PyTorch's CPU dropout draws its masks from a Mersenne Twister, one float per element; on this project's CPUs that
costs more than the matrix products it regularises (KNOWN.md: `bernoulli_` is 14-49% of a training step). Here a
mask costs 16 random bits per element, a quarter of one raw 64-bit SFC64 word from NumPy (about 9x faster than
`bernoulli_`), and the keep probability is exact to 1/65,536 (p = 0.1 becomes 6,554 / 65,536 = 0.100006).

Each call seeds its generator with one number drawn from torch's generator, so runs stay reproducible under
`torch.manual_seed` and a checkpoint of torch's RNG state resumes the same masks.

`fast_dropout_training(model)` swaps the model's `nn.Dropout` modules for `FastDropout` and routes attention
through `attention` (the attention-probability dropout included) for the duration of a `with` block; the model is
exactly as it was afterwards. `attention` also computes dropout-free training attention on short sequences by
products and a softmax: PyTorch's CPU flash-attention backward pass is 4-7x slower there (`_MATH_UP_TO`), which made
it a quarter of a SmolLM2 training step. On a GPU, PyTorch's own (Philox) dropout and SDPA are fast: use them there.
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
    words = np.random.SFC64(seed).random_raw(-(-n // 4))  # 64-bit words, four 16-bit draws each: 1.7x integers()
    draws = words.view(np.int16)[:n]
    threshold = -32768 + round(p * _LEVELS)
    return torch.from_numpy(draws >= threshold).view(shape)  # NumPy's comparison: ~4x torch's on int16


def _function() -> Any:
    torch = require("torch", extra="hf")

    class _Dropout(torch.autograd.Function):  # type: ignore[misc, name-defined]
        # (x * keep) * scale with the mask as 0/1 in x's dtype, made from the bool mask's bytes (uint8 -> float
        # is vectorised; bool -> float, torch.where and masked_fill on a bool mask are not): the same numbers as
        # torch.where(keep, x * scale, 0), 3.5-4.5x faster on a MiniLM layer's bf16 activations.
        @staticmethod
        def forward(ctx: Any, x: Any, keep: Any, scale: float) -> Any:
            ctx.save_for_backward(keep)  # kept as bool: one byte per element
            ctx.scale = scale
            return torch.mul(x, keep.view(torch.uint8).to(x.dtype)).mul_(scale)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            (keep,) = ctx.saved_tensors
            return torch.mul(grad, keep.view(torch.uint8).to(grad.dtype)).mul_(ctx.scale), None, None

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


_MATH_UP_TO = {"bfloat16": 192, "float16": 192, "float32": 128}
"""Key lengths up to which `attention` computes training attention by matrix products and a softmax rather than
PyTorch's CPU flash-attention kernel, whose backward pass is slow on short sequences: forward + backward of one
SmolLM2 layer's attention (batch 16, 9 query / 3 key-value heads), bf16, 22 / 96 / 160 positions: 5.4 / 21.2 /
41.8 ms with SDPA, 0.7 / 5.8 / 13.2 ms here; fp32 at 128: 21.5 vs 16.4 ms; about even at 192 (fp32) and 256 (bf16)."""


_SDPA_ONLY = ("position_bias", "softcap", "s_aux", "sinks")
"""Attention-function arguments `attention` does not implement itself: a call that passes one (T5's relative
position bias, Gemma 2's logit soft-capping, GPT-OSS's sinks) goes to transformers' SDPA function as before."""


def _by_products(query: Any, key: Any, value: Any, dropout: float, kwargs: dict[str, Any]) -> bool:
    """Whether `attention` computes this call itself: with dropout (the masks are yulian's), or for a CPU training
    step on a short sequence, where it is faster than SDPA's backward pass."""
    torch = require("torch", extra="hf")
    if any(kwargs.get(name) is not None for name in _SDPA_ONLY):
        return False
    if dropout:
        return True
    if query.device.type != "cpu" or not torch.is_grad_enabled():
        return False
    if not (query.requires_grad or key.requires_grad or value.requires_grad):
        return False
    return bool(key.shape[-2] <= _MATH_UP_TO.get(str(query.dtype).removeprefix("torch."), 0))


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
    """Scaled dot-product attention for CPU training (transformers' attention interface; masks are built as for
    "sdpa"): `fast_dropout` on the attention probabilities, and products + softmax instead of SDPA's slow CPU
    backward on short sequences (`_MATH_UP_TO`). Otherwise, and outside training, transformers' SDPA function
    (which gets the dropout then, if any: torch's own masks)."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    torch = require("torch", extra="hf")
    if not module.training or not _by_products(query, key, value, dropout, kwargs):
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout if module.training else 0.0,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    batch, heads, q_len, size = query.shape
    mask = attention_mask[:, :, :, : key.shape[-2]] if attention_mask is not None else None
    causal = mask is None and q_len > 1 and (is_causal if is_causal is not None else getattr(module, "is_causal", True))
    if causal and key.shape[-2] > q_len:  # as SDPA: top-left alignment, the keys beyond the queries unseen
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    k_len = key.shape[-2]
    if mask is not None and mask.dtype != torch.bool:  # -inf in a float mask would make fully masked rows NaN
        mask = mask.clamp(min=torch.finfo(mask.dtype).min)
    groups = heads // key.shape[1] if key.shape[1] and heads % key.shape[1] == 0 else 1
    # grouped-query attention: each key-value head's queries as one (groups x q_len) block of rows, with no copies
    # of the keys and values (repeat_kv), when the mask is the same for every head
    grouped = groups > 1 and (mask is None or mask.shape[1] == 1)
    if groups > 1 and not grouped:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    rows = query.reshape(batch, heads // groups, groups * q_len, size) if grouped else query
    scale = scaling if scaling is not None else size**-0.5
    scores = torch.matmul(rows, key.transpose(-1, -2)) * scale
    if grouped:
        scores = scores.view(batch, heads // groups, groups, q_len, k_len)
        mask = mask.unsqueeze(2) if mask is not None else None
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool else scores + mask
    elif causal:
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    probs = fast_dropout(probs, dropout)
    if grouped:
        probs = probs.view(batch, heads // groups, groups * q_len, k_len)
    out = torch.matmul(probs, value)
    if grouped:
        out = out.view(batch, heads, q_len, -1)
    return out.transpose(1, 2).contiguous(), None


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
    # an "eager" model that cannot take SDPA (Gemma 2's soft-capping, GPT-OSS's sinks) keeps its own attention
    eager_only = {
        id(getattr(m, "config", None)) for m in model.modules() if getattr(m, "_supports_sdpa", True) is False
    }
    configs: list[tuple[Any, str]] = []
    for sub in model.modules():
        config: Any = getattr(sub, "config", None)
        current = getattr(config, "_attn_implementation", None)
        if current == "eager" and id(config) in eager_only:
            continue
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
