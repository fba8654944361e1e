"""SetFit-style few-shot classification: contrastive tuning of a sentence encoder, then a logistic-regression head.

```python
from yulian.tuning.fewshot import SetFitClassifier, train_setfit
result = train_setfit(train_examples, "runs/setfit", base="minilm-l6", eval_examples=dev)   # 8-32 per class
result.metrics                               # {"accuracy": ..., "macro_f1": ...}
clf = SetFitClassifier("runs/setfit")        # a Runnable: text -> Prediction(label, score, scores)
clf.batch(["a gripping, funny film"]); clf.predict_proba(texts)
```

The procedure is SetFit's (Tunstall et al. 2022; `setfit` 1.x defaults): every pair of the labelled examples
(with replacement, shuffled) is a positive pair (same label, target cosine 1) or a negative one (target 0); by
default the smaller kind is oversampled to as many as the larger ("oversampling"; or "undersampling", "unique",
or `iterations`: 2 x iterations x n pairs). The encoder (mean pooling) is trained for one epoch on those pairs
with CosineSimilarityLoss (the squared error between the cosine of the two embeddings and the target), AdamW at
2e-5, 10% warm-up then linear decay; then a scikit-learn `LogisticRegression` is fitted on the trained encoder's
(normalised) embeddings of the examples.

Why our own and not the `setfit` package: `setfit` 1.2.0 installs and trains offline from a local folder, but it
pulls in sentence-transformers, datasets, pyarrow, pandas, evaluate and aiohttp (~270 MB, 6 s to import) and
saves its head as a pickle. The procedure is short; here it runs on plain transformers + torch, the head is
saved as JSON (no pickle to load), and prediction needs neither scikit-learn nor sentence-transformers.

The output folder is an ordinary encoder folder (config.json, weights, tokenizer: `yulian embed` and
`HFEmbedder` read it) plus `fewshot-setfit.json` (labels, head weights, options, metrics).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yulian._optional import require
from yulian.models.predictions import Prediction
from yulian.tuning.fewshot_data import TextClassifierRunnable, as_shots, classification_scores, label_order

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "SAMPLINGS",
    "SETFIT_FILE",
    "SetFitClassifier",
    "SetFitConfig",
    "SetFitResult",
    "contrastive_pairs",
    "train_setfit",
]

SETFIT_FILE = "fewshot-setfit.json"
"""The file that makes a folder a SetFit classifier: labels, head weights, training options and metrics."""

SAMPLINGS = ("oversampling", "undersampling", "unique")
_PRECISIONS = ("auto", "fp32", "bf16")
_ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
_ST_FOLDERS = ("1_Pooling", "2_Normalize")


@dataclass(frozen=True)
class SetFitConfig:
    """How `train_setfit` trains (SetFit's defaults), checked here.

    Attributes:
        epochs: passes over the pairs.
        batch_size: pairs per step.
        lr: the encoder's peak learning rate (AdamW).
        warmup: fraction of the steps spent warming the learning rate up (then linear decay to 0).
        weight_decay: AdamW decay (not on biases and norms).
        max_grad_norm: gradient clipping (0: none).
        sampling: "oversampling" (as many negative as positive pairs, the smaller kind repeated),
            "undersampling" (the larger kind cut) or "unique" (every pair once).
        iterations: instead of `sampling`, 2 x iterations x n pairs (SetFit's `num_iterations`).
        max_length: tokens per text.
        seed: pair order, batches, dropout and the head.
        precision: "auto" (bf16 autocast on a CPU with native bf16), "fp32" or "bf16".
        head_c: the logistic regression's inverse regularisation strength (scikit-learn's C).
        head_max_iter: the logistic regression's iteration limit.
        dtype: the dtype the saved classifier's encoder runs in ("auto", "float32", "bfloat16").
        threads: torch CPU threads (None: leave as is).
        progress: print progress on stderr.
    """

    epochs: int = 1
    batch_size: int = 16
    lr: float = 2e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    sampling: str = "oversampling"
    iterations: int | None = None
    max_length: int = 128
    seed: int = 42
    precision: str = "auto"
    head_c: float = 1.0
    head_max_iter: int = 1000
    dtype: str = "auto"
    threads: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("max_length", 8), ("head_max_iter", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"SetFitConfig.{name} must be a whole number >= {minimum}, got {value!r}")
        for name in ("iterations", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"SetFitConfig.{name} must be a whole number >= 1 or None, got {value!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"SetFitConfig.lr must be > 0, got {self.lr!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"SetFitConfig.warmup is a fraction of the steps in [0, 1), got {self.warmup!r}")
        if self.weight_decay < 0 or self.max_grad_norm < 0 or self.head_c <= 0:
            raise ValueError("SetFitConfig.weight_decay and max_grad_norm must be >= 0, head_c > 0")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"SetFitConfig.sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"SetFitConfig.precision must be one of {', '.join(_PRECISIONS)}, got {self.precision!r}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"SetFitConfig.dtype must be auto, float32 or bfloat16, got {self.dtype!r}")


def contrastive_pairs(
    labels: Sequence[str], *, sampling: str = "oversampling", iterations: int | None = None, seed: int = 42
) -> list[tuple[int, int, float]]:
    """SetFit's training pairs over examples with these `labels`: `(i, j, target)`, target 1.0 when examples i and
    j share their label (a positive pair) and 0.0 otherwise.

    Candidates are all pairs i <= j (each example with itself too, as `setfit` does), shuffled with `seed`. Then
    "unique" keeps them all; "oversampling" repeats the smaller kind (cycling through it) until there are as many
    positive as negative pairs; "undersampling" cuts the larger kind to the smaller's size; `iterations` takes
    iterations x n of each kind. Positive and negative pairs alternate in the result.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    n = len(labels)
    candidates = [(i, j) for i in range(n) for j in range(i, n)]
    random.Random(seed).shuffle(candidates)
    pos = [(i, j, 1.0) for i, j in candidates if labels[i] == labels[j]]
    neg = [(i, j, 0.0) for i, j in candidates if labels[i] != labels[j]]
    if not neg:
        raise ValueError(f"contrastive pairs need examples of at least 2 labels, got {sorted(set(labels))}")
    if iterations is not None:
        n_pos = n_neg = iterations * n
    elif sampling == "unique":
        n_pos, n_neg = len(pos), len(neg)
    elif sampling == "oversampling":
        n_pos = n_neg = max(len(pos), len(neg))
    else:
        n_pos = n_neg = min(len(pos), len(neg))
    chosen_pos = [pos[k % len(pos)] for k in range(n_pos)]
    chosen_neg = [neg[k % len(neg)] for k in range(n_neg)]
    return [p for pair in zip_longest(chosen_pos, chosen_neg) for p in pair if p is not None]


@dataclass
class SetFitResult:
    """What `train_setfit` produced.

    Attributes:
        out_dir: the classifier's folder.
        classifier: the trained `SetFitClassifier` (loaded from `out_dir`).
        metrics: `{"accuracy", "macro_f1"}` on `eval_examples` ({} without them).
        pairs: training pairs per epoch. steps: optimiser steps. train_seconds: encoder + head training time.
        losses: the loss of every step.
    """

    out_dir: Path
    classifier: SetFitClassifier
    metrics: dict[str, float]
    pairs: int
    steps: int
    train_seconds: float
    losses: list[float] = field(default_factory=list)


def train_setfit(
    examples: Sequence[Any],
    out_dir: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str] = "minilm-l6",
    config: SetFitConfig | None = None,
    eval_examples: Sequence[Any] | None = None,
    **options: Any,
) -> SetFitResult:
    """Train a SetFit classifier on `examples` (a few per label) into `out_dir`.

    Args:
        examples: labelled examples: `TextExample`s, `(text, label)` pairs or `{"text", "label"}` mappings.
        out_dir: where the classifier is written (an encoder folder plus `fewshot-setfit.json`).
        base: the sentence encoder: a registered name (`"minilm-l6"`, `"multilingual-e5-small"`) or a folder.
            A model whose folder declares a passage prompt (E5: "passage: ") gets it before every text.
        config: a `SetFitConfig`; `**options` change some of its fields (`epochs=2, seed=1`).
        eval_examples: labelled examples to score the result on.
    """
    cfg = _with_options(config or SetFitConfig(), options)
    torch = require("torch", extra="hf", purpose="SetFit training")
    transformers = require("transformers", extra="hf", purpose="SetFit training")
    from yulian.models.hf_embed import declared_prompts
    from yulian.tuning.tasks._hf import model_folder

    shots = as_shots(examples)
    labels = label_order({label for _, label in shots})
    if len(labels) < 2:
        raise ValueError(f"SetFit needs examples of at least 2 labels, got {labels}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    folder = model_folder(str(base))
    _, passage = declared_prompts(folder)
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder, dtype=torch.float32)
    encoded = tokenizer([passage + t for t, _ in shots], truncation=True, max_length=cfg.max_length)["input_ids"]
    pairs = contrastive_pairs(
        [label for _, label in shots], sampling=cfg.sampling, iterations=cfg.iterations, seed=cfg.seed
    )
    losses = _train_encoder(torch, model, tokenizer, encoded, pairs, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    _copy_sentence_transformers_files(Path(folder), out)
    encoder_seconds = time.perf_counter() - started

    from yulian.models.hf_embed import HFEmbedder

    embedder = HFEmbedder(str(out), max_length=cfg.max_length, dtype=cfg.dtype)
    head = _fit_head(embedder.embed_numpy([t for t, _ in shots]), [labels.index(y) for _, y in shots], cfg)
    seconds = time.perf_counter() - started
    manifest: dict[str, Any] = {
        "kind": "setfit",
        "labels": labels,
        "head": head,
        "base": str(base),
        "config": asdict(cfg),
        "examples": len(shots),
        "pairs": len(pairs),
        "steps": len(losses),
        "train_seconds": round(seconds, 3),
        "encoder_seconds": round(encoder_seconds, 3),
    }
    (out / SETFIT_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    classifier = SetFitClassifier(out, max_length=cfg.max_length, dtype=cfg.dtype, encoder=embedder)
    metrics: dict[str, float] = {}
    if eval_examples is not None:
        metrics = classifier.evaluate(eval_examples)
        manifest["metrics"] = metrics
        (out / SETFIT_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return SetFitResult(out, classifier, metrics, len(pairs), len(losses), seconds, losses)


def _train_encoder(
    torch: Any,
    model: Any,
    tokenizer: Any,
    encoded: list[list[int]],
    pairs: list[tuple[int, int, float]],
    cfg: SetFitConfig,
) -> list[float]:
    """The contrastive phase: CosineSimilarityLoss on the pairs, mean pooling, AdamW with linear warm-up/decay."""
    from yulian.tuning.optim import param_groups
    from yulian.tuning.trainer import native_bf16

    per_epoch = math.ceil(len(pairs) / cfg.batch_size)
    total: int = per_epoch * cfg.epochs
    warmup: int = round(cfg.warmup * total)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.lr), lr=cfg.lr)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, 1.0 - (step - warmup) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and native_bf16() and 2 * cfg.batch_size >= 8)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rng = random.Random(cfg.seed)
    losses: list[float] = []
    model.train()
    for epoch in range(cfg.epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for start in range(0, len(order), cfg.batch_size):
            batch = [pairs[k] for k in order[start : start + cfg.batch_size]]
            texts = [encoded[i] for i, _, _ in batch] + [encoded[j] for _, j, _ in batch]
            ids, mask = _pad(torch, texts, pad)
            target = torch.tensor([t for _, _, t in batch], dtype=torch.float32)
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bf16):
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            vectors = _mean_pool(torch, hidden.float(), mask)
            u, v = vectors[: len(batch)], vectors[len(batch) :]
            loss = torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(u, v), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if cfg.progress and (len(losses) % 20 == 0 or len(losses) == total):
                print(f"setfit step {len(losses)}/{total} (epoch {epoch + 1}) loss {losses[-1]:.4f}", file=sys.stderr)
    model.eval()
    return losses


def _pad(torch: Any, seqs: list[list[int]], pad: int) -> tuple[Any, Any]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def _mean_pool(torch: Any, hidden: Any, mask: Any) -> Any:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _fit_head(x: Any, y: list[int], cfg: SetFitConfig) -> dict[str, Any]:
    """A scikit-learn logistic regression on the embeddings, as plain lists (JSON, no pickle)."""
    linear_model = require("sklearn.linear_model", extra="tune", purpose="the SetFit head")
    clf = linear_model.LogisticRegression(C=cfg.head_c, max_iter=cfg.head_max_iter, random_state=cfg.seed)
    clf.fit(x, y)
    return {
        "coef": clf.coef_.tolist(),
        "intercept": clf.intercept_.tolist(),
        "classes": [int(c) for c in clf.classes_],
    }


def _copy_sentence_transformers_files(source: Path, out: Path) -> None:
    """The sentence-transformers description of the model (pooling, normalisation, prompts), when it has one."""
    for name in _ST_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    for name in _ST_FOLDERS:
        if (source / name).is_dir():
            shutil.copytree(source / name, out / name, dirs_exist_ok=True)


def _with_options(config: SetFitConfig, options: dict[str, Any]) -> SetFitConfig:
    if not options:
        return config
    known = [f.name for f in fields(SetFitConfig)]
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"unknown SetFit option {name!r} (options: {', '.join(known)}).{hint}")
    return replace(config, **options)


# ============================================================================================ the predictor
class SetFitClassifier(TextClassifierRunnable):
    """A trained SetFit classifier (the folder `train_setfit` wrote) as a Runnable: text -> `Prediction`.

    The encoder runs through `HFEmbedder` (length-sorted batches, bf16 where it is native and faithful); the
    head is a logistic regression evaluated with numpy. Cheap to build: weights load on first use or `warm_up()`.

    Args:
        path: the classifier folder (with `fewshot-setfit.json`).
        batch_size: texts per forward pass.
        max_length: tokens per text (default: as in training).
        dtype: "auto", "float32" or "bfloat16" (default: as in training).
        device: a torch device.
        encoder: an `HFEmbedder` over `path` to use instead of building one (`train_setfit` passes the one it
            fitted the head with).
    """

    task = "classify"
    """What the server exposes it as (`yulian.serving.detect_task`)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 32,
        max_length: int | None = None,
        dtype: str | None = None,
        device: str = "cpu",
        encoder: Any = None,
    ) -> None:
        from yulian.models.hf_embed import HFEmbedder

        self.path = Path(path)
        file = self.path / SETFIT_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{path} is not a SetFit classifier folder: it has no {SETFIT_FILE}")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            self.labels: list[str] = [str(x) for x in data["labels"]]
            head = data["head"]
            self._coef: list[list[float]] = head["coef"]
            self._intercept: list[float] = head["intercept"]
            self._classes: list[int] = head["classes"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{file}: not a valid SetFit classifier description ({e!r})") from None
        if sorted(self._classes) != list(range(len(self.labels))):
            raise ValueError(f"{file}: the head was trained on {len(self._classes)} of {len(self.labels)} labels")
        self.info: dict[str, Any] = data
        trained = data.get("config", {})
        self.encoder = encoder or HFEmbedder(
            str(self.path),
            batch_size=batch_size,
            max_length=max_length or int(trained.get("max_length", 128)),
            dtype=dtype or str(trained.get("dtype", "auto")),
            device=device,
        )
        self._name = f"SetFitClassifier({self.path.name})"

    def warm_up(self) -> SetFitClassifier:
        """Load the encoder now; returns self."""
        self.encoder.warm_up()
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)), columns in `labels` order."""
        np = require("numpy", extra="hf")
        texts = _check_texts(self.name, texts)
        x = self.encoder.embed_numpy(texts).astype(np.float64)
        z = x @ np.asarray(self._coef, dtype=np.float64).T + np.asarray(self._intercept, dtype=np.float64)
        if z.shape[1] == 1:  # binary: scikit-learn's one decision function for the second class
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            probs = np.stack([1.0 - p1, p1], axis=1)
        else:
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            probs = e / e.sum(axis=1, keepdims=True)
        out = np.zeros((len(texts), len(self.labels)))
        out[:, self._classes] = probs
        return out  # type: ignore[no-any-return]

    def evaluate(self, examples: Sequence[Any]) -> dict[str, float]:
        """`{"accuracy", "macro_f1"}` on labelled examples."""
        shots = as_shots(examples, what="eval examples")
        predicted = [p.label for p in self._predict([t for t, _ in shots])]
        return classification_scores([y for _, y in shots], predicted, self.labels)

    def _predict(self, texts: list[str]) -> list[Prediction]:
        probs = self.predict_proba(texts)
        out = []
        for row in probs.tolist():
            ranked = dict(sorted(zip(self.labels, row, strict=True), key=lambda kv: -kv[1]))
            label, score = next(iter(ranked.items()))
            out.append(Prediction(label, score, ranked, (label,)))
        return out


def _check_texts(name: str, texts: Sequence[str]) -> list[str]:
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name} takes text, got {type(t).__name__} at position {i}: {t!r:.80}")
    return texts
