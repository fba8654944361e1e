"""Pruning: unstructured magnitude pruning, and structured pruning of attention heads and FFN neurons.

- `magnitude_prune(model, amount)`: zero the `amount` fraction of smallest-magnitude weights of every encoder
  `nn.Linear` (per layer). Shapes do not change, so there is no speed-up on a CPU (KNOWN.md: 30% gave none); the
  zeros compress well and are the input of sparse kernels.
- `head_importance(model, batches, loss)` / `ffn_importance(model, batches)`: how much each attention head and each
  FFN neuron matters. Heads: with a loss (a fine-tuned task with labelled data), the absolute gradient of the
  loss with respect to a gate on the head's output, summed over batches (Michel et al., 2019, "Are Sixteen Heads
  Really Better than One?"); without one, the mean norm of the head's contribution to the attention output.
  Neurons: mean absolute activation times the norm of the neuron's output weights.
- `plan(importance, fraction)`: the least important units across all layers, at least one kept per layer.
- `prune_heads(model, heads)` / `prune_ffn(model, neurons)`: remove them for real (smaller matrices, fewer FLOPs).
  Layers then differ in width, which a transformers `config.json` cannot describe: structurally pruned models are
  exported to ONNX (`yulian compress --method prune-heads`).
- `recover(...)`: short recovery fine-tuning of the pruned model in memory through `yulian.tuning.trainer.Trainer`.

Supported: BERT-style encoders (`model.base_model.encoder.layer[i].attention.self.query/key/value`,
`attention.output.dense`, `intermediate.dense`, `output.dense`: BERT, RoBERTa, MiniLM, ELECTRA...).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from yulian._optional import require

__all__ = [
    "encoder_layers",
    "ffn_importance",
    "head_importance",
    "magnitude_prune",
    "plan",
    "prune_ffn",
    "prune_heads",
    "recover",
    "sparsity",
]

Batches = Iterable[dict[str, Any]]


def encoder_layers(model: Any) -> list[Any]:
    """The transformer layers of a BERT-style model; a clear error for other architectures."""
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None or not len(layers) or not hasattr(layers[0], "attention"):
        raise ValueError(
            f"structured pruning supports BERT-style encoders (bert, roberta, minilm, electra), not "
            f"{type(model).__name__}"
        )
    return list(layers)


# ============================================================================================ unstructured
def magnitude_prune(model: Any, amount: float) -> dict[str, float]:
    """Zero the `amount` fraction of smallest |weights| in each encoder `nn.Linear` (in place).

    Returns {"amount": ..., "sparsity": fraction of zeros over those weights}.
    """
    torch = require("torch", extra="hf")
    if not 0 <= amount < 1:
        raise ValueError(f"pruning amount must be in [0, 1), got {amount!r}")
    zeros = total = 0
    with torch.no_grad():
        for layer in encoder_layers(model):
            for module in layer.modules():
                if isinstance(module, torch.nn.Linear):
                    w = module.weight
                    k = int(amount * w.numel())
                    if k > 0:
                        cut = w.abs().flatten().kthvalue(k).values
                        w.masked_fill_(w.abs() <= cut, 0.0)
                    zeros += int((w == 0).sum())
                    total += w.numel()
    return {"amount": amount, "sparsity": zeros / max(total, 1)}


def sparsity(model: Any) -> float:
    """Fraction of zero weights over the encoder layers' `nn.Linear` modules."""
    torch = require("torch", extra="hf")
    zeros = total = 0
    for layer in encoder_layers(model):
        for module in layer.modules():
            if isinstance(module, torch.nn.Linear):
                zeros += int((module.weight == 0).sum())
                total += module.weight.numel()
    return zeros / max(total, 1)


# ============================================================================================ importance
def _head_shape(layer: Any) -> tuple[int, int]:
    attention = layer.attention.self
    heads = int(attention.num_attention_heads)
    return heads, int(attention.attention_head_size)


def head_importance(
    model: Any, batches: Batches, loss: Callable[[Any, dict[str, Any]], Any] | None = None
) -> list[list[float]]:
    """Importance of every attention head, [layer][head] (higher matters more; normalised per layer).

    With `loss(model, batch)`: |d loss / d gate| summed over batches; without: the mean norm of each head's
    contribution to the attention output (model inputs only).
    """
    torch = require("torch", extra="hf")
    layers = encoder_layers(model)
    shapes = [_head_shape(layer) for layer in layers]
    gates = [torch.ones(h, requires_grad=loss is not None) for h, _ in shapes]
    scores = [torch.zeros(h) for h, _ in shapes]

    def hook(i: int) -> Callable[..., Any]:
        heads, size = shapes[i]
        dense = layers[i].attention.output.dense

        def pre(_: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            x = args[0]
            split = x.view(*x.shape[:-1], heads, size) * gates[i].to(x.dtype)[:, None]
            if loss is None:
                with torch.no_grad():  # each head's share of the output: its slice of the dense layer
                    w = dense.weight.view(dense.weight.shape[0], heads, size)
                    part = torch.einsum("...hd,ohd->...ho", split.detach(), w)
                    scores[i] += part.norm(dim=-1).flatten(0, -2).mean(0)
            return (split.reshape(x.shape), *args[1:])

        return pre

    handles = [layer.attention.output.dense.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            if loss is None:
                with torch.no_grad():
                    model(**_inputs_only(batch))
            else:
                model.zero_grad(set_to_none=True)
                value = loss(model, batch)
                (grads := torch.autograd.grad(value, gates, allow_unused=True))
                for i, g in enumerate(grads):
                    if g is not None:
                        scores[i] += g.detach().abs()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [_normalised(s).tolist() for s in scores]


def ffn_importance(model: Any, batches: Batches) -> list[list[float]]:
    """Importance of every FFN neuron, [layer][neuron]: mean |activation| x norm of its output weights."""
    torch = require("torch", extra="hf")
    layers = encoder_layers(model)
    scores = [torch.zeros(layer.intermediate.dense.out_features) for layer in layers]
    counts = [0] * len(layers)

    def hook(i: int) -> Callable[..., Any]:
        def post(_: Any, __: Any, out: Any) -> None:
            flat = out.detach().abs().flatten(0, -2)
            scores[i] += flat.sum(0).float()
            counts[i] += flat.shape[0]

        return post

    handles = [layer.intermediate.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            for batch in batches:
                model(**_inputs_only(batch))
    finally:
        for h in handles:
            h.remove()
    out: list[list[float]] = []
    for i, layer in enumerate(layers):
        weight_norm = layer.output.dense.weight.detach().norm(dim=0)
        out.append((scores[i] / max(counts[i], 1) * weight_norm).tolist())
    return out


def _normalised(scores: Any) -> Any:
    norm = scores.norm()
    return scores / norm if float(norm) > 0 else scores


def _inputs_only(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def plan(importance: Sequence[Sequence[float]], fraction: float, *, keep_min: int = 1) -> dict[int, list[int]]:
    """The least important `fraction` of all units (ranked globally), keeping at least `keep_min` per layer.

    Returns {layer: [unit, ...]} for layers that lose something.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"the fraction to prune must be in [0, 1), got {fraction!r}")
    ranked = sorted((score, layer, unit) for layer, row in enumerate(importance) for unit, score in enumerate(row))
    budget = int(fraction * len(ranked))
    left = [len(row) for row in importance]
    chosen: dict[int, list[int]] = {}
    for _, layer, unit in ranked:
        if budget <= 0:
            break
        if left[layer] <= keep_min:
            continue
        chosen.setdefault(layer, []).append(unit)
        left[layer] -= 1
        budget -= 1
    return {layer: sorted(units) for layer, units in sorted(chosen.items())}


# ============================================================================================ structured
def _linear(torch: Any, weight: Any, bias: Any) -> Any:
    out_features, in_features = weight.shape
    layer = torch.nn.Linear(in_features, out_features, bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def prune_heads(model: Any, heads: Mapping[int, Sequence[int]]) -> int:
    """Remove attention heads for real: {layer: [head, ...]}; at least one head stays per layer. Returns the count."""
    torch = require("torch", extra="hf")
    layers = encoder_layers(model)
    removed = 0
    for index, drop in heads.items():
        layer = layers[int(index)]
        count, size = _head_shape(layer)
        keep = [h for h in range(count) if h not in set(drop)]
        if not keep:
            raise ValueError(f"layer {index}: cannot remove all {count} heads")
        if len(keep) == count:
            continue
        rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in keep])
        attention = layer.attention.self
        with torch.no_grad():
            for name in ("query", "key", "value"):
                old = getattr(attention, name)
                bias = old.bias[rows] if old.bias is not None else None
                setattr(attention, name, _linear(torch, old.weight[rows], bias))
            dense = layer.attention.output.dense
            layer.attention.output.dense = _linear(torch, dense.weight[:, rows], dense.bias)
        attention.num_attention_heads = len(keep)
        attention.all_head_size = len(keep) * size
        removed += count - len(keep)
    return removed


def prune_ffn(model: Any, neurons: Mapping[int, Sequence[int]]) -> int:
    """Remove FFN neurons for real: {layer: [neuron, ...]}; at least one stays per layer. Returns the count."""
    torch = require("torch", extra="hf")
    layers = encoder_layers(model)
    removed = 0
    for index, drop in neurons.items():
        layer = layers[int(index)]
        width = layer.intermediate.dense.out_features
        gone = set(drop)
        keep = torch.tensor([n for n in range(width) if n not in gone], dtype=torch.long)
        if len(keep) == 0:
            raise ValueError(f"layer {index}: cannot remove all {width} FFN neurons")
        with torch.no_grad():
            up, down = layer.intermediate.dense, layer.output.dense
            up_bias = up.bias[keep] if up.bias is not None else None
            layer.intermediate.dense = _linear(torch, up.weight[keep], up_bias)
            layer.output.dense = _linear(torch, down.weight[:, keep], down.bias)
        removed += width - len(keep)
    return removed


# ============================================================================================ recovery
def recover(
    task: Any,
    model: Any,
    tokenizer: Any,
    train_examples: Sequence[Any],
    dev_examples: Sequence[Any] | None,
    *,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 3e-5,
    threads: int | None = None,
    progress: bool = True,
    after_step: Callable[[Any], object] | None = None,
) -> Any:
    """Fine-tune the in-memory (pruned) `model` for `steps` steps with `yulian.tuning.trainer.Trainer`.

    The task keeps its saved label map (its `setup` is skipped) and the Trainer trains `model` itself instead of
    building one from a folder. `after_step`, when given, runs after training (e.g. re-applying a pruning mask).
    Returns the model with the best dev checkpoint's weights, in eval mode.
    """
    from yulian.tuning.trainer import TrainConfig, Trainer

    def setup(_: Sequence[Any], __: Any) -> None:
        return None

    def build_model(_: Any) -> tuple[Any, Any]:
        return model, tokenizer

    task.setup = setup
    task.build_model = build_model
    config = TrainConfig(
        epochs=1_000,
        max_steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=0.1,
        eval_every=max(steps // 2, 1),
        threads=threads,
        progress=progress,
        save_model=False,
    )
    with tempfile.TemporaryDirectory(prefix="yulian-recover-") as out:
        trainer = Trainer(task, config, out)
        trainer.fit(list(train_examples), list(dev_examples) if dev_examples else None, "pruned-model")
        trained = trainer.model
    if after_step is not None:
        after_step(trained)
    return trained.float().eval()
