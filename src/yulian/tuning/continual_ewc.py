"""Elastic weight consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks").

While a model learns a new task, each trainable weight is pulled back to its value at the old task's optimum w* in
proportion to how much the old task's likelihood depends on it, the diagonal of the Fisher information F:

    loss = loss_new + lambda / 2 * sum_i F_i (w_i - w*_i)^2

Near the old optimum, 1/2 sum F (w - w*)^2 approximates how much the old task's loss rises (F stands in for its
Hessian), so lambda = 1 weighs the predicted old-loss increase like the new loss; larger values protect more.

```python
from yulian.tuning.continual_ewc import EWCPenalty, EWCState, estimate_fisher

fisher = estimate_fisher(model, task, old_examples, tokenizer, samples=300)  # at the old optimum
state = EWCState.from_model(model, fisher)                                  # + the anchor weights w*
state.save("runs/a")                                                        # runs/a/ewc.safetensors
trainer = Trainer(task, config, "runs/b", loss_hook=EWCPenalty(EWCState.load("runs/a"), lam=100.0))
```

The Fisher is the **empirical Fisher** by default: the mean over old examples of the squared gradient of each
example's negative log-likelihood of its own (gold) label, one example per backward pass, the model in evaluation
mode (no dropout), in fp32. `kind="sampled"` draws the label from the model's own prediction instead (the "true"
Fisher, as Kirkpatrick et al.; classification only). Only trainable parameters get values (frozen ones have none:
zero importance) and they are matched by name, so full fine-tuning and LoRA (the adapter and head tensors) both
work. A big matrix of which few rows matter (the word embeddings: only the old data's tokens have gradients) is
kept as those rows only. Online EWC (Schwarz et al. 2018): after each task, F <- gamma * F_old + F_new with the
newest weights as the anchor (`EWCState.merged`).

The penalty is computed in fp32 outside autocast, in one pass per tensor (its gradient, lambda F (w - w*), is
formed in the forward pass and handed back, not recomputed); with the trainer's lazily updated (sparse-gradient)
word embeddings, it hands back a sparse gradient too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yulian._optional import require

__all__ = ["EWC_FILE", "FISHER_KINDS", "EWCPenalty", "EWCState", "estimate_fisher"]

EWC_FILE = "ewc.safetensors"
FISHER_KINDS = ("empirical", "sampled")
_ROWS_FROM = 1024  # a matrix with at least this many rows keeps only its rows with any importance ...
_ROWS_SHARE = 0.5  # ... when they are at most this share of its rows


def _input_embedding(torch: Any, model: Any) -> Any:
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if get is not None else None
    if isinstance(embedding, torch.nn.Embedding) and embedding.weight.requires_grad and embedding.max_norm is None:
        return embedding
    return None


def _nll(torch: Any, task: Any, model: Any, batch: Mapping[str, Any], kind: str, generator: Any) -> Any:
    """The summed negative log-likelihood of a batch (of one): of the gold labels, or of labels drawn from the
    model's prediction (`sampled`, classification only). Other tasks: the task's own loss."""
    functional = torch.nn.functional
    if getattr(task, "name", None) == "classification":
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        multi = bool(getattr(task, "multi_label", False))
        if kind == "empirical":
            target = batch["labels"]
        elif multi:
            target = torch.bernoulli(torch.sigmoid(logits.detach()).cpu(), generator=generator).to(logits.device)
        else:
            probs = torch.softmax(logits.detach(), -1).cpu()
            target = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)
        if multi:
            return functional.binary_cross_entropy_with_logits(logits, target.float(), reduction="sum")
        return functional.cross_entropy(logits, target, reduction="sum")
    if kind != "empirical":
        raise ValueError(f"the sampled Fisher is for classification; use kind='empirical' for a {task.name} task")
    return task.loss(model, batch)


def estimate_fisher(
    model: Any,
    task: Any,
    examples: Sequence[Any],
    tokenizer: Any,
    *,
    samples: int | None = 300,
    kind: str = "empirical",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The diagonal Fisher information of `model`'s trainable parameters on `examples` (see the module docstring):
    parameter name -> a float32 tensor of the parameter's shape, >= 0. `samples` caps the examples used (a
    stratified, seeded sample; None: all). The model is left as it was (mode, gradients)."""
    torch = require("torch", extra="hf", purpose="EWC")
    from yulian.tuning.continual_replay import replay_sample

    if kind not in FISHER_KINDS:
        raise ValueError(f"Fisher kind must be one of {', '.join(FISHER_KINDS)}, got {kind!r}")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no trainable parameters: there is nothing for EWC to protect")
    chosen = list(examples) if samples is None else replay_sample(examples, samples, seed=seed)
    if not chosen:
        raise ValueError("the Fisher information needs old examples, got none")
    features = task.encode(chosen, tokenizer)
    names, tensors = list(params), list(params.values())
    fisher = {n: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for n, p in params.items()}
    device = tensors[0].device
    generator = torch.Generator().manual_seed(seed)
    embedding = _input_embedding(torch, model)
    was_training, was_sparse = model.training, embedding.sparse if embedding is not None else False
    started = time.perf_counter()
    model.eval()
    if embedding is not None:
        embedding.sparse = True  # a per-example gradient touches only that example's rows
    try:
        with torch.enable_grad():
            for feature in features:
                batch = {k: v.to(device) for k, v in task.collate([feature], tokenizer).items()}
                loss = _nll(torch, task, model, batch, kind, generator)
                grads = torch.autograd.grad(loss, tensors, allow_unused=True)
                for name, grad in zip(names, grads, strict=True):
                    if grad is None:
                        continue
                    if grad.is_sparse:
                        grad = grad.coalesce()
                        fisher[name].index_add_(0, grad.indices()[0], grad.values().float().square())
                    else:
                        grad = grad.float()
                        fisher[name].addcmul_(grad, grad)
    finally:
        if embedding is not None:
            embedding.sparse = was_sparse
        model.train(was_training)
    for tensor in fisher.values():
        tensor.div_(len(features))
    if log is not None:
        log(f"EWC: {kind} Fisher on {len(features):,} examples in {time.perf_counter() - started:.1f} s")
    return fisher


@dataclass
class EWCState:
    """What EWC needs of the old task(s): per trainable parameter name its Fisher values and anchor weights.

    Attributes:
        fisher / anchor: name -> float32 tensor (the whole parameter, or only the rows in `rows`).
        rows: name -> the row indices kept, for big matrices with few important rows (word embeddings).
        shapes: name -> the parameter's full shape.
        meta: what it was computed with: kind, samples, tasks (how many tasks it accumulates), gamma, method...
    """

    fisher: dict[str, Any]
    anchor: dict[str, Any]
    rows: dict[str, Any] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.fisher)

    @property
    def names(self) -> list[str]:
        """The parameter names it protects."""
        return list(self.fisher)

    @classmethod
    def from_model(cls, model: Any, fisher: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> EWCState:
        """The Fisher values with `model`'s current weights as the anchor (call it at the optimum)."""
        params = dict(model.named_parameters())
        missing = sorted(set(fisher) - set(params))
        if missing:
            raise ValueError(f"Fisher values for parameters the model does not have: {', '.join(missing[:5])}")
        dense = {n: f.detach().float() for n, f in fisher.items()}
        anchors = {n: params[n].detach().float().clone() for n in fisher}
        info = {"tasks": 1, **(meta or {})}
        return cls._compact(dense, anchors, info)

    @classmethod
    def _compact(cls, fisher: dict[str, Any], anchor: dict[str, Any], meta: dict[str, Any]) -> EWCState:
        """Keep only the important rows of big, mostly unimportant matrices."""
        state = cls({}, {}, meta=meta)
        for name, values in fisher.items():
            state.shapes[name] = tuple(values.shape)
            if values.ndim == 2 and values.shape[0] >= _ROWS_FROM:
                used = (values != 0).any(dim=1).nonzero().flatten()
                if used.numel() <= _ROWS_SHARE * values.shape[0]:
                    state.rows[name] = used
                    state.fisher[name] = values[used].contiguous()
                    state.anchor[name] = anchor[name][used].contiguous()
                    continue
            state.fisher[name] = values.contiguous()
            state.anchor[name] = anchor[name].contiguous()
        return state

    def dense(self, name: str, which: str = "fisher") -> Any:
        """The full-shape Fisher (or anchor: `which="anchor"`) of `name` (zeros where rows were dropped)."""
        values = (self.fisher if which == "fisher" else self.anchor)[name]
        if name not in self.rows:
            return values
        torch = require("torch", extra="hf")
        full = torch.zeros(self.shapes[name], dtype=values.dtype, device=values.device)
        full[self.rows[name]] = values
        return full

    def merged(self, newer: EWCState, gamma: float = 1.0) -> EWCState:
        """Online EWC: gamma x this Fisher + the newer one, anchored at the newer weights. A head that grew rows
        (new labels) keeps its old rows' importance; parameters only this state has keep theirs (scaled)."""
        if not 0 <= gamma <= 1:
            raise ValueError(f"EWC gamma must be in [0, 1], got {gamma!r}")
        fisher: dict[str, Any] = {}
        anchor: dict[str, Any] = {}
        for name in newer.fisher:
            new_f, new_a = newer.dense(name), newer.dense(name, "anchor")
            if name in self.fisher:
                old_f = self.dense(name)
                if old_f.shape != new_f.shape:
                    if old_f.shape[1:] != new_f.shape[1:] or old_f.shape[0] > new_f.shape[0]:
                        raise ValueError(f"{name}: shape {tuple(old_f.shape)} cannot grow to {tuple(new_f.shape)}")
                    old_f = _pad_rows(old_f, new_f.shape[0])
                new_f = new_f + gamma * old_f
            fisher[name], anchor[name] = new_f, new_a
        for name in self.fisher:
            if name not in fisher:
                fisher[name], anchor[name] = gamma * self.dense(name), self.dense(name, "anchor")
        meta = {**self.meta, **newer.meta, "gamma": gamma}
        meta["tasks"] = int(self.meta.get("tasks", 1)) + int(newer.meta.get("tasks", 1))
        return EWCState._compact(fisher, anchor, meta)

    def save(self, folder: str | Path) -> Path:
        """Write `folder/ewc.safetensors` (Fisher, anchors, kept rows; what it was computed with in the metadata)."""
        storch = require("safetensors.torch", extra="hf", purpose="saving EWC state")
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, Any] = {}
        for name in self.fisher:
            tensors[f"fisher:{name}"] = self.fisher[name].detach().cpu().contiguous()
            tensors[f"anchor:{name}"] = self.anchor[name].detach().cpu().contiguous()
            if name in self.rows:
                tensors[f"rows:{name}"] = self.rows[name].detach().cpu().contiguous()
        info = {"format": 1, "meta": self.meta, "shapes": {n: list(s) for n, s in self.shapes.items()}}
        path = out / EWC_FILE
        tmp = out / (EWC_FILE + ".tmp")
        storch.save_file(tensors, str(tmp), metadata={"yulian_ewc": json.dumps(info, default=str)})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> EWCState:
        """The state saved in a model folder (or at an ewc.safetensors path)."""
        storch = require("safetensors.torch", extra="hf", purpose="loading EWC state")
        safetensors = require("safetensors", extra="hf")
        file = Path(path)
        if file.is_dir():
            file = file / EWC_FILE
        if not file.is_file():
            raise FileNotFoundError(f"no EWC state at {file} (train the old model with --save-fisher to write it)")
        with safetensors.safe_open(str(file), framework="pt") as handle:
            header = (handle.metadata() or {}).get("yulian_ewc")
        if header is None:
            raise ValueError(f"{file} is not a yulian EWC file (no 'yulian_ewc' metadata)")
        info = json.loads(header)
        tensors = storch.load_file(str(file))
        state = cls({}, {}, meta=dict(info.get("meta", {})))
        for key, tensor in tensors.items():
            part, _, name = key.partition(":")
            {"fisher": state.fisher, "anchor": state.anchor, "rows": state.rows}[part][name] = tensor
        state.shapes = {n: tuple(s) for n, s in info.get("shapes", {}).items()}
        for name, values in state.fisher.items():
            state.shapes.setdefault(name, tuple(values.shape))
        return state


def _pad_rows(values: Any, rows: int) -> Any:
    torch = require("torch", extra="hf")
    pad = torch.zeros((rows - values.shape[0], *values.shape[1:]), dtype=values.dtype, device=values.device)
    return torch.cat([values, pad])


def _quadratic_function(torch: Any) -> Any:
    class _Quadratic(torch.autograd.Function):  # type: ignore[misc]
        """sum_i lamF_i (w_i - a_i)^2 / 2 over dense parameters (lamF = lambda x F, precomputed); backward hands
        back lamF (w - a), formed in the forward pass (no graph, no work in the backward pass)."""

        @staticmethod
        def forward(ctx: Any, terms: list[tuple[Any, Any, int | None]], *params: Any) -> Any:
            total = torch.zeros((), dtype=torch.float32, device=params[0].device)
            weighted = []
            for (lam_fisher, anchor, rows), param in zip(terms, params, strict=True):
                live = param.detach() if rows is None else param.detach()[:rows]
                diff = live.float() - anchor
                fd = lam_fisher * diff
                total += torch.dot(fd.flatten(), diff.flatten())
                weighted.append(fd)
            ctx.weighted = weighted
            ctx.shapes = [(p.shape, p.dtype, rows) for p, (_, _, rows) in zip(params, terms, strict=True)]
            return total / 2

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> Any:
            scale = float(grad_output)
            grads = []
            for fd, (shape, dtype, rows) in zip(ctx.weighted, ctx.shapes, strict=True):
                grad = fd if scale == 1.0 else fd * scale
                if rows is not None and rows != shape[0]:
                    full = torch.zeros(shape, dtype=grad.dtype, device=grad.device)
                    full[:rows] = grad
                    grad = full
                grads.append(grad.to(dtype))
            ctx.weighted = None
            return (None, *grads)

    return _Quadratic


class EWCPenalty:
    """The EWC term as the trainer's `loss_hook(model, loss) -> loss`: `loss + lam / 2 * sum F (w - w*)^2`.

    Parameters are matched by name on the first call; a parameter whose first dimension grew (a classification
    head extended with new labels) is penalised on its old rows only. `lam` is lambda (>= 0). `last` holds the
    value of the last penalty (a float), for logging.
    """

    def __init__(self, state: EWCState, lam: float) -> None:
        if isinstance(lam, bool) or not isinstance(lam, int | float) or lam < 0:
            raise ValueError(f"EWC lambda must be a number >= 0, got {lam!r}")
        if not len(state):
            raise ValueError("the EWC state is empty: no parameters to protect")
        self.state = state
        self.lam = float(lam)
        self.last = 0.0
        self._model_id: int | None = None
        self._dense: list[tuple[Any, Any, Any, int | None]] = []  # (param, lambda x F, anchor, rows kept)
        self._sparse: list[tuple[Any, Any, Any, Any, Any]] = []
        self._function: Any = None

    def __repr__(self) -> str:
        return f"EWCPenalty(lam={self.lam:g}, parameters={len(self.state)})"

    def _bind(self, torch: Any, model: Any) -> None:
        params = dict(model.named_parameters())
        missing = [n for n in self.state.names if n not in params]
        if missing:
            shown = ", ".join(missing[:3])
            raise ValueError(
                f"the EWC state protects {len(missing)} parameter(s) this model does not have ({shown}...): it was "
                "computed for another model or method; recompute it from the old data"
            )
        owners = {id(m.weight): m for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        self._dense, self._sparse = [], []
        for name in self.state.names:
            param = params[name]
            fisher, anchor = self.state.fisher[name], self.state.anchor[name]
            full = self.state.shapes.get(name, tuple(fisher.shape))
            if tuple(param.shape[1:]) != tuple(full[1:]) or param.shape[0] < full[0]:
                raise ValueError(f"{name}: the EWC state has shape {tuple(full)}, the model {tuple(param.shape)}")
            fisher, anchor = fisher.to(param.device, torch.float32), anchor.to(param.device, torch.float32)
            fisher = fisher * self.lam  # lambda x F, once
            if name in self.state.rows:
                rows = self.state.rows[name].to(param.device)
                self._sparse.append((param, fisher, anchor, rows, owners.get(id(param))))
            else:
                keep = None if param.shape[0] == full[0] else int(full[0])
                self._dense.append((param, fisher, anchor, keep))
        self._model_id = id(model)
        self._function = _quadratic_function(torch)

    def penalty(self, model: Any) -> Any:
        """The scalar penalty (fp32, with gradients to the model's parameters)."""
        torch = require("torch", extra="hf", purpose="EWC")
        if self._model_id != id(model):
            self._bind(torch, model)
        device = (self._dense or self._sparse)[0][0].device
        with torch.autocast(device_type=device.type, enabled=False):
            total = torch.zeros((), dtype=torch.float32, device=device)
            live = [(p, f, a, r) for p, f, a, r in self._dense if p.requires_grad]
            if live:
                terms = [(f, a, r) for _, f, a, r in live]
                total = total + self._function.apply(terms, *[p for p, _, _, _ in live])
            for param, fisher, anchor, rows, owner in self._sparse:
                if not param.requires_grad:
                    continue
                sparse = bool(owner is not None and owner.sparse)
                picked = torch.nn.functional.embedding(rows, param, sparse=sparse).float()
                diff = picked - anchor
                total = total + (fisher * diff * diff).sum() / 2
        self.last = float(total.detach())
        return total

    def __call__(self, model: Any, loss: Any) -> Any:
        return loss + self.penalty(model)
