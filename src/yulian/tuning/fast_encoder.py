"""Exact shortcuts for training transformers: fused projections, a last layer that computes only what a
first-token classification head reads, and frozen weights cast once.

They change how the model's numbers are computed, not which numbers: same parameters, same outputs (to float
rounding), same gradients.

- **Fused projections**: the three 384 x 384 query/key/value products of a MiniLM layer become one 384 x 1,152
  product (`torch.cat` of the three weights; the concatenation of frozen weights is kept between steps), and the
  layer input is cast to bf16 once instead of three times under autocast. LoRA-wrapped projections join with their
  low-rank updates added per slice. Llama attention fuses Q/K/V the same way, gated MLPs their gate and up products.
  On short texts (a few hundred rows per batch) separate small products leave both cores idle between them.
- **First token only**: a sequence-classification head of the BERT family (BERT, RoBERTa, XLM-R, ELECTRA) reads
  the last layer's output at position 0 only (the [CLS] token). In the last layer, every position is still a key
  and value of the attention, but the query, the attention output, the residual, the two LayerNorms and the
  feed-forward block are needed for position 0 alone: about 10/12 of the last layer's matrix products and its
  backward pass are skipped (MiniLM-L6: 1/7 of the model's products).
- **FrozenCast**: frozen linear weights (LoRA's base model, `freeze`) cast to bf16 once, not by autocast every step.

`fast_encoder_training(model, first_token_only=...)` patches the matching modules for the duration of a `with`
block, in training mode only (evaluation inside the block runs the original code), and restores them afterwards.
Only modules whose forward is the exact code of transformers' BERT or Llama classes are patched; anything else (a
decoder BERT, cross-attention, a prefix-tuning cache, IA3 or AdaLoRA layers, look-alike MLPs) keeps its own forward.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import types
from collections.abc import Iterator
from typing import Any

from yulian._optional import require

__all__ = ["FIRST_TOKEN_HEADS", "FrozenCast", "fast_encoder_training", "first_token_head"]

FIRST_TOKEN_HEADS = frozenset(
    {
        "BertForSequenceClassification",
        "RobertaForSequenceClassification",
        "XLMRobertaForSequenceClassification",
        "ElectraForSequenceClassification",
        "CamembertForSequenceClassification",
    }
)
"""transformers classes whose classification head reads only position 0 of the last hidden states."""


def _unwrap(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (or `model`)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def first_token_head(model: Any) -> bool:
    """Whether `model` (or the model inside its PEFT wrapper) classifies from position 0 only."""
    return type(_unwrap(model)).__name__ in FIRST_TOKEN_HEADS


def _same_code(module: Any, reference: Any) -> bool:
    """Whether `module`'s class runs the same forward code as the transformers class `reference` (bytecode, names
    and constants), so that classes copied from it (RoBERTa, ELECTRA, XLM-R from BERT; Mistral's MLP from Llama's)
    qualify and look-alikes that compute something else (extra dropouts, multipliers, relative positions) do not."""
    try:
        mine = inspect.unwrap(type(module).forward).__code__
        theirs = inspect.unwrap(reference.forward).__code__
    except AttributeError:
        return False
    return (mine.co_code, mine.co_names, mine.co_consts) == (theirs.co_code, theirs.co_names, theirs.co_consts)


def _bert() -> Any:
    from transformers.models.bert import modeling_bert

    return modeling_bert


def _is_self_attention(module: Any) -> bool:
    return (
        type(module).__name__.endswith("SelfAttention")
        and not getattr(module, "is_decoder", False)
        and _same_code(module, _bert().BertSelfAttention)
    )


def _is_encoder_layer(module: Any) -> bool:
    bert = _bert()
    attention = getattr(module, "attention", None)
    return (
        attention is not None
        and not getattr(module, "is_decoder", False)
        and not getattr(module, "add_cross_attention", False)
        and _same_code(module, bert.BertLayer)
        and _same_code(attention, bert.BertAttention)
        and _is_self_attention(getattr(attention, "self", None))
        and _same_code(getattr(attention, "output", None), bert.BertSelfOutput)
        and _same_code(getattr(module, "intermediate", None), bert.BertIntermediate)
        and _same_code(getattr(module, "output", None), bert.BertOutput)
    )


def _last_encoder_layer(torch: Any, model: Any) -> Any:
    """The last layer of the model's one BERT-style layer list, if that layer is a plain BERT layer (else None:
    cutting an earlier layer would feed one position to the layers after it)."""
    lists = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.ModuleList) and len(m) and any(_is_encoder_layer(c) for c in m)
    ]
    if len(lists) != 1:
        return None
    return lists[0][-1] if _is_encoder_layer(lists[0][-1]) else None


_QUERY_LENGTH_FREE = ("sdpa", "yulian_cpu_dropout")
"""Attention implementations whose masks slice to one query row (flex attention's block masks do not)."""

_CACHE_KEYS = ("cache", "past_key_values", "encoder_hidden_states", "encoder_attention_mask")


def _attention_function(module: Any, first_token: bool = False) -> Any:
    """The registered attention function of the module's config; None (the original code runs) for "eager", and
    for implementations other than sdpa and yulian's CPU dropout attention when the query is one position."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    implementation = module.config._attn_implementation
    if implementation in (None, "eager") or (first_token and implementation not in _QUERY_LENGTH_FREE):
        return None
    functions: Any = ALL_ATTENTION_FUNCTIONS
    return functions.get(implementation)


def _passed_on(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments the original forward hands to the attention function."""
    return {k: v for k, v in kwargs.items() if k not in _CACHE_KEYS}


def _heads(tensor: Any, rows: int, length: int, size: int) -> Any:
    """(batch, length, heads x size) -> (batch, heads, length, size)."""
    return tensor.view(rows, length, -1, size).transpose(1, 2)


def _lora_parts(torch: Any, module: Any) -> tuple[Any, list[tuple[Any, Any, Any, float]]] | None:
    """(the plain `nn.Linear` that computes `module`'s base product, [(lora_A, lora_B, dropout, scaling) of each
    active adapter]) for an `nn.Linear` or a peft LoRA `Linear` in its plain state (not merged,
    adapters on, no DoRA-style variant); None for anything else (IA3, AdaLoRA, adapters...: not fused)."""
    if type(module) is torch.nn.Linear:
        return module, []
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # pragma: no cover - peft is in the tune extra
        return None
    base: Any = getattr(module, "base_layer", None)
    if type(module) is not LoraLinear or type(base) is not torch.nn.Linear:
        return None
    if module.merged or module.disable_adapters:
        return None
    parts = []
    for name in module.active_adapters:
        if name not in module.lora_A:
            continue
        if name in getattr(module, "lora_variant", {}):
            return None
        parts.append((module.lora_A[name], module.lora_B[name], module.lora_dropout[name], module.scaling[name]))
    return base, parts


def _fusable(torch: Any, *modules: Any) -> bool:
    parts = [_lora_parts(torch, m) for m in modules]
    if any(p is None for p in parts):
        return False
    bases = [p[0] for p in parts if p]
    return len({(b.in_features, b.weight.dtype, b.bias is None) for b in bases}) == 1


class _Fused:
    """One product for several projections of the same input (plain or LoRA linear layers): the base weights
    concatenated (the concatenation of frozen weights is kept while they do not change), each LoRA update added
    to its slice, the input cast once under autocast."""

    def __init__(self, modules: tuple[Any, ...]) -> None:
        self.modules = modules
        self._cached: tuple[tuple[Any, ...], Any, Any] | None = None

    def _weights(self, torch: Any, bases: list[Any], dtype: Any) -> tuple[Any, Any]:
        def cat(tensors: list[Any]) -> Any:
            return None if tensors[0] is None else torch.cat(tensors)

        tensors = [t for base in bases for t in (base.weight, base.bias) if t is not None]
        if any(t.requires_grad for t in tensors):  # cast, then concatenate: half the bytes to copy under autocast
            weights = [b.weight if dtype is None else b.weight.to(dtype) for b in bases]
            biases = [b.bias if dtype is None or b.bias is None else b.bias.to(dtype) for b in bases]
            return cat(weights), cat(biases)
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
        if self._cached is None or self._cached[0] != key:
            with torch.no_grad():
                weight, bias = cat([b.weight for b in bases]), cat([b.bias for b in bases])
            self._cached = (key, weight, bias)
        return self._cached[1], self._cached[2]

    def __call__(self, x: Any) -> list[Any]:
        torch = require("torch", extra="hf")
        parts = [_lora_parts(torch, m) for m in self.modules]
        if any(part is None for part in parts):  # a LoRA layer merged or switched off since: the modules' own way
            return [m(x) for m in self.modules]
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        cast = x.to(dtype) if dtype is not None else x  # once, instead of once per product
        weight, bias = self._weights(torch, [p[0] for p in parts if p], dtype)
        sizes = [p[0].out_features for p in parts if p]
        product = torch.nn.functional.linear(cast, weight, bias)
        lora = [(i, a, b, d, s) for i, part in enumerate(parts) if part for a, b, d, s in part[1]]
        if self._plain_updates(torch, lora, dtype, product.dtype):
            return self._with_updates(torch, product, cast, sizes, lora)
        outputs = list(product.split(sizes, -1))
        for i, part in enumerate(parts):
            for lora_a, lora_b, dropout, scaling in part[1] if part else []:
                # as peft: the input in the adapter's dtype, dropped out before any autocast rounding (with no
                # dropout, autocast's cast of that input is `cast`, to the bit)
                plain = dtype is not None and isinstance(dropout, torch.nn.Identity)
                update = lora_b(lora_a(dropout(cast if plain else x.to(lora_a.weight.dtype))))
                outputs[i] = torch.add(outputs[i], update.to(outputs[i].dtype), alpha=scaling)
        return outputs

    @staticmethod
    def _plain_updates(torch: Any, lora: list[Any], autocast: Any, dtype: Any) -> bool:
        """Whether `_with_updates` computes these LoRA updates as peft would: no LoRA dropout, no bias in B
        (lora_bias), and the update in the product's dtype (under autocast, or adapters in the base's dtype; peft
        computes an fp32 adapter's update in fp32 on a bf16 base)."""
        if not lora:
            return False
        for _, a, b, dropout, _ in lora:
            if not isinstance(dropout, torch.nn.Identity) or getattr(b, "bias", None) is not None:
                return False
            if autocast is None and a.weight.dtype != dtype:
                return False
        return True

    @staticmethod
    def _with_updates(torch: Any, product: Any, cast: Any, sizes: list[int], lora: list[Any]) -> list[Any]:
        """The LoRA updates of every slice in two small products added into `product` in place: the inputs of all
        A matrices at once (x A^T), then one block matrix of the B's (each scaled, in its slice's rows)."""
        dtype = product.dtype
        a_all = torch.cat([a.weight for _, a, _, _, _ in lora]).to(dtype)  # (sum of ranks, in)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        b_all = product.new_zeros(product.shape[-1], a_all.shape[0])
        column = 0
        for i, _, b, _, scaling in lora:
            rank = b.weight.shape[1]
            b_all[starts[i] : starts[i] + sizes[i], column : column + rank] = b.weight.to(dtype) * scaling
            column += rank
        low = torch.nn.functional.linear(cast if cast.dtype == dtype else cast.to(dtype), a_all)
        flat = product.view(-1, product.shape[-1])
        flat.addmm_(low.view(-1, low.shape[-1]), b_all.t())
        return list(product.split(sizes, -1))


def _fused_self_attention(original: Any, fused: _Fused) -> Any:
    def forward(self: Any, hidden_states: Any, attention_mask: Any = None, *args: Any, **kwargs: Any) -> Any:
        function = _attention_function(self)
        if (
            function is None
            or not self.training
            or args
            or kwargs.get("cache") is not None
            or kwargs.get("past_key_values") is not None
        ):
            return original(hidden_states, attention_mask, *args, **kwargs)
        rows, length = hidden_states.shape[:2]
        size = self.attention_head_size
        query, key, value = (_heads(t, rows, length, size) for t in fused(hidden_states))
        output, weights = function(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout.p,
            scaling=self.scaling,
            **_passed_on(kwargs),
        )
        return output.reshape(rows, length, -1).contiguous(), weights

    return forward


def _first_token_layer(original: Any, fused_kv: _Fused | None) -> Any:
    def forward(self: Any, hidden_states: Any, attention_mask: Any = None, *args: Any, **kwargs: Any) -> Any:
        cross = args[0] if args else kwargs.get("encoder_hidden_states")
        function = _attention_function(self.attention.self, first_token=True)
        if function is None or not self.training or cross is not None or kwargs.get("cache") is not None:
            return original(hidden_states, attention_mask, *args, **kwargs)
        attention = self.attention.self
        rows, length = hidden_states.shape[:2]
        size = attention.attention_head_size
        first = hidden_states[:, :1]
        query = _heads(attention.query(first), rows, 1, size)
        if fused_kv is not None:
            key, value = (_heads(t, rows, length, size) for t in fused_kv(hidden_states))
        else:
            key = _heads(attention.key(hidden_states), rows, length, size)
            value = _heads(attention.value(hidden_states), rows, length, size)
        mask = attention_mask
        if mask is not None and mask.dim() == 4 and mask.shape[-2] > 1:
            mask = mask[:, :, :1]
        output, _ = function(
            attention,
            query,
            key,
            value,
            mask,
            dropout=attention.dropout.p,
            scaling=attention.scaling,
            **_passed_on(kwargs),
        )
        output = self.attention.output(output.reshape(rows, 1, -1), first)
        return self.output(self.intermediate(output), output)

    return forward


def _is_llama_attention(module: Any) -> bool:
    """transformers' Llama attention (q/k/v/o projections, rotary embeddings), or a class with its exact code;
    decoders that pass more to the attention (sliding windows: Mistral, Qwen2) keep their own forward."""
    from transformers.models.llama import modeling_llama

    return type(module).__name__.endswith("Attention") and _same_code(module, modeling_llama.LlamaAttention)


def _is_gated_mlp(module: Any) -> bool:
    """A gated feed-forward block with the exact code of Llama's: down(act(gate(x)) * up(x)) (Llama, Mistral,
    Qwen2, SmolLM2...); variants with dropouts, multipliers or sparsity keep their own forward."""
    from transformers.models.llama import modeling_llama

    return type(module).__name__.endswith("MLP") and _same_code(module, modeling_llama.LlamaMLP)


def _fused_llama_attention(original: Any, fused: _Fused, rotary: Any) -> Any:
    def forward(
        self: Any,
        hidden_states: Any,
        position_embeddings: Any = None,
        attention_mask: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        function = _attention_function(self)
        if function is None or not self.training or args or position_embeddings is None:
            return original(hidden_states, position_embeddings, attention_mask, *args, **kwargs)
        cache = kwargs.pop("cache", None)
        legacy = kwargs.pop("past_key_values", None)
        cache = cache if cache is not None else legacy
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query, key, value = (t.view(shape).transpose(1, 2) for t in fused(hidden_states))
        cos, sin = position_embeddings
        query, key = rotary(query, key, cos, sin)
        if cache is not None:  # as the original: a training forward of a model with use_cache fills one
            key, value = cache.update(key, value, self.layer_idx, kwargs=kwargs)
        output, weights = function(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        output = output.reshape(*hidden_states.shape[:-1], -1).contiguous()
        return self.o_proj(output), weights

    return forward


def _fused_mlp(original: Any, fused: _Fused) -> Any:
    def forward(self: Any, x: Any) -> Any:
        if not self.training:
            return original(x)
        gate, up = fused(x)
        return self.down_proj(self.act_fn(gate) * up)

    return forward


@contextlib.contextmanager
def fast_encoder_training(model: Any, first_token_only: bool = False) -> Iterator[dict[str, int]]:
    """Within the block, `model`'s BERT-style self-attention layers compute Q/K/V in one product and, with
    `first_token_only` and a first-token classification head, its last encoder layer computes position 0 only.
    Llama attention layers fuse Q/K/V and gated feed-forward blocks fuse their gate and up projections the same
    way. Yields {"fused": attention layers fused, "first_token": 1 if the last layer was cut to position 0 else
    0, "fused_mlp": gated feed-forward blocks fused}."""
    torch = require("torch", extra="hf")
    patched: list[tuple[Any, Any]] = []
    last = _last_encoder_layer(torch, model) if first_token_only and first_token_head(model) else None
    counts = {"fused": 0, "first_token": 0, "fused_mlp": 0}

    def patch(module: Any, forward: Any) -> None:
        patched.append((module, module.__dict__.get("forward")))
        module.forward = types.MethodType(forward, module)

    try:
        if last is not None:
            kv = (last.attention.self.key, last.attention.self.value)
            patch(last, _first_token_layer(last.forward, _Fused(kv) if _fusable(torch, *kv) else None))
            counts["first_token"] = 1
        for attention in [m for m in model.modules() if _is_self_attention(m)]:
            if last is not None and attention is last.attention.self:
                continue
            projections = (attention.query, attention.key, attention.value)
            if _fusable(torch, *projections):
                patch(attention, _fused_self_attention(attention.forward, _Fused(projections)))
                counts["fused"] += 1
        for module in list(model.modules()):
            if _is_llama_attention(module) and _fusable(torch, module.q_proj, module.k_proj, module.v_proj):
                projections = (module.q_proj, module.k_proj, module.v_proj)
                rotary = sys.modules[type(module).__module__].apply_rotary_pos_emb
                patch(module, _fused_llama_attention(module.forward, _Fused(projections), rotary))
                counts["fused"] += 1
            elif _is_gated_mlp(module) and _fusable(torch, module.gate_proj, module.up_proj):
                patch(module, _fused_mlp(module.forward, _Fused((module.gate_proj, module.up_proj))))
                counts["fused_mlp"] += 1
        yield counts
    finally:
        for module, previous in reversed(patched):
            if previous is None:
                del module.forward
            else:
                module.forward = previous


class FrozenCast:
    """Low-precision copies of a model's frozen `nn.Linear` weights and biases, swapped in for each training step
    under autocast.

    Autocast casts every weight of a linear layer to bf16 (fp16) in every forward pass. A frozen weight (the base
    model under LoRA, IA3, adapters, prefix tuning; the frozen layers of `freeze`) never changes, so casting it
    once is enough: inside `applied()` the layers hold their cast copies (autocast's cast is then a no-op, and the
    products are the same to the bit), outside it the original fp32 tensors, so evaluation and saving see the
    model as it was.
    """

    def __init__(self, model: Any, dtype: Any) -> None:
        torch = require("torch", extra="hf")
        self.pairs: list[tuple[Any, Any]] = []
        seen = {  # parameters of other modules (an output layer tied to the input embedding) stay as they are
            id(p) for m in model.modules() if type(m) is not torch.nn.Linear for p in m.parameters(recurse=False)
        }
        for module in model.modules():
            if type(module) is not torch.nn.Linear:
                continue
            for param in (module.weight, module.bias):
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                if not param.requires_grad and param.dtype == torch.float32:
                    self.pairs.append((param, param.detach().to(dtype)))

    def __len__(self) -> int:
        return len(self.pairs)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block, the frozen layers hold their cast copies."""
        originals = [param.data for param, _ in self.pairs]
        for param, cast in self.pairs:
            param.data = cast
        try:
            yield
        finally:
            for (param, _), original in zip(self.pairs, originals, strict=True):
                param.data = original
