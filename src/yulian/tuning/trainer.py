"""One readable training loop for every task and method (DESIGN.md principle 11).

```python
task = get_task("classification", TaskConfig(max_length=64))
trainer = Trainer(task, TrainConfig(epochs=3, batch_size=32, lr=1e-4), out_dir="runs/sst2")
result = trainer.fit(train_examples, dev_examples, base_model="minilm-l6")
print(result.best_metric, result.best_step)       # runs/sst2 now holds the model, report.md, metrics.json
```

The task encodes, collates, computes the loss and evaluates; the method decides which parameters train; the loop
here does the rest: batches (length-grouped, seeded per epoch), mixed precision, gradient accumulation and
clipping, the optimiser and its schedule, evaluation, early stopping, and checkpoints. A checkpoint holds the
model, optimiser, scheduler, RNG states and the position in the data, and is written to a temporary folder then
renamed, so `fit(..., resume=True)` after a kill continues with exactly the losses of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.tuning.adversarial import ADVERSARIAL, Adversary
from yulian.tuning.augment import EpochAugmentation, check_augment
from yulian.tuning.checkpoints import CheckpointStore
from yulian.tuning.distributed import Distributed
from yulian.tuning.fast_dropout import fast_dropout_training
from yulian.tuning.fast_encoder import FrozenCast, fast_encoder_training
from yulian.tuning.methods import get_method, trainable_summary
from yulian.tuning.optim import clip_grad_norm, clipped_step, lazy_adamw, param_groups
from yulian.tuning.tasks.base import Task
from yulian.tuning.trainer_board import TensorBoard
from yulian.tuning.trainer_report import Progress, fmt_metrics, plot_curves, report_markdown
from yulian.tuning.weights import load_named

__all__ = ["TrainConfig", "TrainResult", "Trainer", "native_bf16"]

_OPTIMIZERS = ("adamw", "sgd")
_SCHEDULERS = ("linear", "cosine", "constant")
_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CHECKPOINTS = "checkpoints"
LAZY_MIN_PARAMS = 1_000_000  # input embeddings from this size on are updated lazily (see TrainConfig)


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): then bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class TrainConfig:
    """How to train. Every option is checked here, once.

    Attributes:
        epochs: passes over the training data.
        batch_size: examples per micro-batch; an optimiser step sees `batch_size * grad_accum` examples.
        lr: peak learning rate (None: the method's default, 5e-5 for full and freeze, 3e-3..3e-2 for adapters).
            weight_decay: AdamW decay (not applied to biases and norms).
        optimizer: "adamw" (fused where torch has it) or "sgd" (momentum 0.9).
        scheduler: "linear" decay, "cosine" decay or "constant", after `warmup`.
        warmup: warm-up steps (>= 1) or a fraction of all steps (< 1).
        grad_accum: micro-batches per optimiser step. max_grad_norm: clip gradients (None or 0: no clipping).
        precision: "auto" (bf16 autocast on a CPU with native bf16 when batch_size >= 8, bf16/fp16 on a GPU),
            "fp32", "bf16" or "fp16" (GPU only).
        dropout: set every dropout probability to this (0 switches dropout off); None keeps the model's.
        fast_dropout: on the CPU, draw dropout masks from SFC64 instead of torch's Mersenne Twister (same
            probabilities to 1/65,536, several times cheaper; `yulian.tuning.fast_dropout`).
        lazy_embeddings: on the CPU with AdamW, update a large trainable input-embedding matrix only in the rows
            each batch used (`yulian.tuning.optim.lazy_adamw`) instead of all of it every step.
        fast_encoder: BERT-style encoders compute Q/K/V in one product and, under a first-token classification
            head, only position 0 of their last layer; under autocast, frozen linear weights are cast once instead
            of every step (`yulian.tuning.fast_encoder`: same outputs and gradients).
        eval_every: "epoch" or a number of steps; a checkpoint is written at each evaluation.
        patience: stop after this many evaluations without improvement (None: never stop early).
        metric: the metric that picks the best checkpoint (default: the task's first metric).
        greater_is_better: direction of `metric` (default: the task's).
        seed: seeds initialisation, data order and dropout: the same seed gives the same losses.
        group_by_length: batches of similar lengths (much less padding on short texts).
        max_steps: stop after this many optimiser steps (None: run all epochs).
        eval_batch_size: batch size of evaluation.
        method / method_options: the fine-tuning method (`yulian.tuning.methods`) and its options.
        device: "auto" (cuda when available), "cpu" or "cuda". threads: torch CPU threads (None: leave).
        progress: show a progress bar and messages on stderr. save_model: write the final model into out_dir.
        adversarial: "fgm" or "pgd" adversarial training on the input embeddings (`yulian.tuning.adversarial`),
            with `adv_epsilon` (L2 radius per example), `adv_alpha` and `adv_steps` (PGD); None: off.
        layer_decay: layer-wise learning-rate decay: layer i of L gets lr x layer_decay^(L - i), the embeddings
            lr x layer_decay^(L + 1), the head the full lr (e.g. 0.9); None: one learning rate.
        head_lr: the task head's own learning rate (e.g. 1e-2 with LoRA on an encoder whose output features are
            small, such as multilingual-e5-small: its head needs large weights); None: the same as `lr`.
        artifacts: write checkpoints, metrics.json, report.md and curves (False: train in memory only, as a
            federated client does every round; implies no checkpoints to resume from).
        augment: data augmentation spec ("eda", "synonym", "swap", "delete", "paraphrase", "eda+paraphrase",
            ...; `yulian.tuning.augment`): each epoch, `augment_ratio` of the examples are replaced by a fresh
            variant (seeded by seed and epoch). augment_lang: "auto" (from the data's CJK share), "en" or "zh".
    """

    epochs: int = 3
    batch_size: int = 16
    lr: float | None = None
    weight_decay: float = 0.01
    optimizer: str = "adamw"
    scheduler: str = "linear"
    warmup: float = 0.0
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    precision: str = "auto"
    dropout: float | None = None
    fast_dropout: bool = True
    lazy_embeddings: bool = True
    fast_encoder: bool = True
    eval_every: str | int = "epoch"
    patience: int | None = None
    metric: str | None = None
    greater_is_better: bool | None = None
    seed: int = 42
    group_by_length: bool = True
    max_steps: int | None = None
    eval_batch_size: int = 64
    method: str = "full"
    method_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    save_model: bool = True
    adversarial: str | None = None
    adv_epsilon: float = 1.0
    adv_alpha: float = 0.3
    adv_steps: int = 3
    layer_decay: float | None = None
    head_lr: float | None = None
    artifacts: bool = True
    augment: str | None = None
    augment_ratio: float = 0.5
    augment_lang: str = "auto"

    def __post_init__(self) -> None:
        def whole(name: str, minimum: int, *, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"TrainConfig.{name} must be a whole number >= {minimum}, got {value!r}")

        def choice(name: str, options: Sequence[str]) -> None:
            if getattr(self, name) not in options:
                raise ValueError(f"TrainConfig.{name} must be one of {', '.join(options)}, got {getattr(self, name)!r}")

        whole("epochs", 1)
        whole("batch_size", 1)
        whole("grad_accum", 1)
        whole("eval_batch_size", 1)
        whole("max_steps", 1, optional=True)
        whole("patience", 1, optional=True)
        whole("threads", 1, optional=True)
        whole("adv_steps", 1)
        if self.adversarial is not None:
            choice("adversarial", ADVERSARIAL)
        if not (self.adv_epsilon > 0 and self.adv_alpha > 0):
            raise ValueError(
                f"TrainConfig.adv_epsilon and adv_alpha must be > 0, got {self.adv_epsilon}, {self.adv_alpha}"
            )
        check_augment(self.augment, self.augment_ratio, self.augment_lang)
        if self.head_lr is not None and not self.head_lr > 0:
            raise ValueError(f"TrainConfig.head_lr must be > 0 or None, got {self.head_lr!r}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"TrainConfig.layer_decay must be in (0, 1] or None, got {self.layer_decay!r}")
        choice("optimizer", _OPTIMIZERS)
        choice("scheduler", _SCHEDULERS)
        choice("precision", _PRECISIONS)
        choice("device", ("auto", "cpu", "cuda"))
        if self.lr is not None and not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be > 0 or None (the method's default), got {self.lr!r}")
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.warmup, int | float) and self.warmup >= 0):
            raise ValueError(f"TrainConfig.warmup must be steps (>= 1) or a fraction (< 1), got {self.warmup!r}")
        if self.warmup >= 1 and self.warmup != int(self.warmup):
            raise ValueError(f"TrainConfig.warmup of 1 or more is a number of steps, got {self.warmup!r}")
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            raise ValueError(f"TrainConfig.max_grad_norm must be >= 0 or None, got {self.max_grad_norm!r}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"TrainConfig.dropout must be in [0, 1) or None, got {self.dropout!r}")
        if isinstance(self.eval_every, str) and self.eval_every.isdigit():
            self.eval_every = int(self.eval_every)
        if self.eval_every != "epoch" and (
            isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 1
        ):
            raise ValueError(f"TrainConfig.eval_every must be 'epoch' or a number of steps, got {self.eval_every!r}")
        from yulian.tuning.methods import METHODS

        if self.method not in METHODS:
            get_method(self.method)  # raises the error with the available names
        method = get_method(self.method)
        method.check_options(self.method_options)
        if self.lr is None:
            self.lr = float(method.default_lr)

    def warmup_steps(self, total_steps: int) -> int:
        """Warm-up in steps for a run of `total_steps`."""
        return int(self.warmup) if self.warmup >= 1 else round(self.warmup * total_steps)


@dataclass
class TrainResult:
    """What `Trainer.fit` did.

    Attributes:
        history: one record per optimiser step: step, epoch, loss, lr.
        evals: one record per evaluation: step, epoch and the metrics.
        best_metric: the best value of the selection metric (None without dev data).
        best_step: the step of the best checkpoint, whose weights the final model has.
        out_dir: where the model, report.md, metrics.json and curves.png are.
        metrics: metrics.json's content (before/after metrics, times, samples/s).
    """

    history: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    best_metric: float | None
    best_step: int | None
    out_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def losses(self) -> list[float]:
        """The training loss of every step."""
        return [h["loss"] for h in self.history]


@dataclass
class _State:
    """Everything about the run's progress that a checkpoint must hold besides tensors."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # micro-batches of `epoch` already done
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    before: dict[str, float] = field(default_factory=dict)
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    samples: int = 0


class Trainer:
    """Fine-tune `task` with `config`, writing checkpoints, the model and a report into `out_dir`.

    Optional seams (federated learning, privacy): `start_weights` (tensors by parameter name, loaded after the
    method is applied: a round's global LoRA + head), `loss_hook(model, loss) -> loss` (FedProx's proximal term on
    the live parameters), `privacy` (a `yulian.tuning.dp.DPConfig`: DP-SGD, epsilon in `metrics["privacy"]`),
    `task_ready` (labels fixed by the caller: `fit` skips `task.setup`)."""

    def __init__(
        self,
        task: Task,
        config: TrainConfig | None = None,
        out_dir: str | Path = "runs/model",
        *,
        start_weights: Mapping[str, Any] | None = None,
        loss_hook: Callable[[Any, Any], Any] | None = None,
        privacy: Any = None,
        task_ready: bool = False,
    ) -> None:
        self.task = task
        self.config = config or TrainConfig()
        self.out_dir = Path(out_dir)
        self.start_weights = start_weights
        self.loss_hook = loss_hook
        self.privacy = privacy
        self.task_ready = task_ready
        self._dp: Any = None
        self.model: Any = None
        self.tokenizer: Any = None
        self._board = TensorBoard()
        self._steps_per_epoch = 1
        self._dist = Distributed()
        self._lazy_embedding: Any = None

    # ------------------------------------------------------------------------------------------- helpers
    def log(self, message: str) -> None:
        """A message on stderr (when `progress` is on; in a distributed run, from rank 0 only)."""
        if self.config.progress and self._dist.is_main:
            print(message, file=sys.stderr, flush=True)

    @property
    def metric(self) -> str:
        """The metric that selects the best checkpoint."""
        names = getattr(self.task, "metric_names", self.task.metrics)
        return self.config.metric or names[0]

    def _greater(self) -> bool:
        cfg = self.config
        return self.task.greater_is_better if cfg.greater_is_better is None else cfg.greater_is_better

    def _device(self, torch: Any) -> str:
        if self.config.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.config.device

    def _attention_kernels(self, torch: Any, device: str) -> Callable[[], Any]:
        """The attention kernels to train with (a context manager factory).

        With dropout off on CPU, PyTorch picks its flash-attention kernel, whose backward pass is slow on short
        sequences (measured: 31% of a MiniLM step at 64 tokens); the plain math kernel trains 1.22x faster there.
        With dropout on, PyTorch already takes the math path, so nothing changes.
        """
        if device != "cpu" or self.config.dropout != 0:
            return contextlib.nullcontext
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return lambda: sdpa_kernel([SDPBackend.MATH])

    def _autocast(self, torch: Any, device: str) -> tuple[Any, str]:
        """(the autocast dtype or None, the precision's name)."""
        precision = self.config.precision
        if precision == "auto":
            if device == "cuda":
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                precision = "bf16" if native_bf16() and self.config.batch_size >= 8 else "fp32"
        if precision == "fp16" and device != "cuda":
            raise ValueError("precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        return dtype, precision

    def _set_dropout(self, torch: Any, model: Any) -> None:
        p = self.config.dropout
        if p is None:
            return
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = p
        config = getattr(model, "config", None)
        for name in list(vars(config)) if config is not None else []:
            if "dropout" in name and isinstance(getattr(config, name), float):
                setattr(config, name, p)

    def _batches(self, lengths: Sequence[int], epoch: int) -> list[list[int]]:
        cfg = self.config
        if cfg.group_by_length:
            from yulian.tuning.data import length_grouped_batches

            return length_grouped_batches(lengths, cfg.batch_size, seed=cfg.seed + epoch)
        order = list(range(len(lengths)))
        random.Random(cfg.seed + epoch).shuffle(order)
        return [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]

    def _optimizer(self, torch: Any, model: Any) -> Any:
        cfg = self.config
        lr = float(cfg.lr) if cfg.lr is not None else get_method(cfg.method).default_lr
        groups = param_groups(model, cfg.weight_decay, lr, cfg.layer_decay, cfg.head_lr)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=0.9)
        if self._lazy_embedding is not None:
            return lazy_adamw(groups, lr)
        try:
            return torch.optim.AdamW(groups, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.AdamW(groups, lr=lr)

    def _lazy_rows(self, torch: Any, model: Any, device: str) -> Any:
        """The input embedding to update row by row (lazy AdamW), or None: only on the CPU in one process, with
        AdamW, when the embedding trains, is large, and is not tied to an output layer."""
        cfg = self.config
        if not cfg.lazy_embeddings or device != "cpu" or self._dist.enabled or cfg.optimizer != "adamw":
            return None
        embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        if not isinstance(embedding, torch.nn.Embedding) or embedding.max_norm is not None:
            return None
        weight = embedding.weight
        if not weight.requires_grad or weight.numel() < LAZY_MIN_PARAMS:
            return None
        output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if output is not None and getattr(output, "weight", None) is weight:
            return None
        return embedding

    def _scheduler(self, torch: Any, optimizer: Any, total: int) -> Any:
        cfg = self.config
        warmup = cfg.warmup_steps(total)
        kind = cfg.scheduler

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if kind == "constant":
                return 1.0
            progress = (step - warmup) / max(1, total - warmup)
            if kind == "cosine":
                return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
            return max(0.0, 1.0 - progress)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    # --------------------------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        """Where checkpoints live: out_dir/checkpoints/step-N, with `latest` and `best` naming the folders."""
        return self.out_dir / CHECKPOINTS

    @property
    def checkpoints(self) -> CheckpointStore:
        """The run's checkpoint folders (`yulian.tuning.checkpoints`)."""
        return CheckpointStore(self.checkpoint_dir)

    def _pointer(self, name: str) -> Path | None:
        return self.checkpoints.pointer(name)

    def _save_checkpoint(self, torch: Any, model: Any, optimizer: Any, scheduler: Any, state: _State) -> None:
        """Model, optimiser, scheduler, RNG states and the position in the data, written atomically."""
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        payload = {
            "model": dict(model.state_dict().items()),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "state": asdict(state),
        }
        meta = {"step": state.step, "epoch": state.epoch, "batch": state.batch}
        self.checkpoints.save(state.step, payload, meta, best=state.best_step == state.step)

    def _load(self, torch: Any, folder: Path) -> dict[str, Any]:
        return self.checkpoints.load(folder)

    # -------------------------------------------------------------------------------------------- the loop
    def fit(
        self,
        train_examples: Sequence[Any],
        dev_examples: Sequence[Any] | None,
        base_model: str | Path,
        *,
        resume: bool = False,
    ) -> TrainResult:
        """Train on `train_examples`, evaluate on `dev_examples`, keep the best checkpoint; write out_dir.

        `resume=True` continues from out_dir's latest checkpoint (or starts afresh when there is none).
        """
        torch = require("torch", extra="hf", purpose="fine-tuning")
        cfg, task = self.config, self.task
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dev = list(dev_examples or [])
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        device = self._device(torch)
        dist = self._dist = Distributed.setup(torch, device)
        device = dist.device(device)
        if not self.task_ready:
            task.setup(train_examples, base_model)
        model, tokenizer = task.build_model(base_model)
        report = getattr(model, "yulian_load_report", None) or {}
        if report.get("missing") or report.get("mismatched"):
            fresh = ", ".join(sorted(report.get("missing", []) + report.get("mismatched", [])))
            self.log(f"randomly initialised (not in the checkpoint): {fresh}")
        method = get_method(cfg.method)
        model = method.apply(model, task, cfg.method_options)
        self._set_dropout(torch, model)
        if self.start_weights is not None:
            load_named(torch, model, self.start_weights)
        model.to(device)
        train_model = dist.wrap(model, device)
        if dist.enabled:
            torch.manual_seed(cfg.seed + 1_000_003 * dist.rank)  # each process draws its own dropout masks
            self.log(f"distributed: {dist.world_size} processes ({dist.backend}), rank 0 evaluates and writes")
        self.model, self.tokenizer = model, tokenizer
        autocast_device = device.split(":")[0]  # "cuda:1" in a distributed run on GPUs
        dtype, precision = self._autocast(torch, autocast_device)
        attention = self._attention_kernels(torch, autocast_device)
        self.log(f"{cfg.method}: {trainable_summary(model)}; precision {precision}, device {device}")

        features = task.encode(train_examples, tokenizer)
        augment = EpochAugmentation.for_training(cfg, train_examples, features, self.log, dist)
        lengths = [task.feature_length(f) for f in features]
        n_batches = math.ceil(math.ceil(len(features) / cfg.batch_size) / dist.world_size)
        steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
        total = steps_per_epoch * cfg.epochs
        self._steps_per_epoch = steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        self._lazy_embedding = self._lazy_rows(torch, model, autocast_device)
        optimizer = self._optimizer(torch, model)
        if self.privacy is not None:  # DP-SGD: per-example gradients, clipped and noised (yulian.tuning.dp)
            from yulian.tuning.dp import attach

            self._dp = attach(self, model, optimizer, len(features), total)
            train_model, optimizer = self._dp.model, self._dp.optimizer
        scheduler = self._scheduler(torch, optimizer, total)
        scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        method.before_training(model, total)

        state = _State()
        latest = self._pointer("latest") if resume else None
        if latest is not None:
            payload = self._load(torch, latest)
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            state = _State(**payload["state"])
            torch.set_rng_state(payload["rng"]["torch"])
            random.setstate(payload["rng"]["python"])
            if "cuda" in payload["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
            self.log(f"resumed from {latest} (step {state.step}, epoch {state.epoch + 1})")
        else:
            if resume:
                self.log(f"no checkpoint in {self.checkpoint_dir}: starting afresh")
            if dist.is_main and cfg.artifacts:
                self.checkpoints.clear()
            if dev and dist.is_main:
                state.before = task.evaluate(model, tokenizer, dev, batch_size=cfg.eval_batch_size)
                self.log(f"before fine-tuning: {fmt_metrics(state.before)}")
        if dist.is_main and cfg.artifacts:
            self._board.open(self.out_dir / "tensorboard", self.log)

        greater = self._greater()
        params = [p for p in model.parameters() if p.requires_grad]
        bar = Progress(total, state.step, cfg.progress and dist.is_main)
        cleanup = contextlib.ExitStack()
        adversary = None
        frozen = None
        try:  # the model modes below are undone by cleanup, also when one of them fails to start
            if cfg.adversarial:
                if self._dp is not None:
                    raise ValueError("adversarial training and DP-SGD cannot be combined (per-example gradients)")
                adversary = Adversary(cfg.adversarial, cfg.adv_epsilon, alpha=cfg.adv_alpha, steps=cfg.adv_steps)
                cleanup.enter_context(adversary.hooked(model))
            if self._lazy_embedding is not None:
                self._lazy_embedding.sparse = True  # sparse gradients: only the rows a batch used
                cleanup.callback(setattr, self._lazy_embedding, "sparse", False)
            if cfg.fast_dropout and autocast_device == "cpu":
                cleanup.enter_context(fast_dropout_training(model))
            if cfg.fast_encoder and self._dp is None:  # DP-SGD's per-example hooks need the modules' own forwards
                cleanup.enter_context(fast_encoder_training(model, first_token_only=task.first_token_head))
                if dtype is not None:
                    frozen = FrozenCast(model, dtype) or None  # frozen linear weights cast once, not every step
        except BaseException:
            cleanup.close()
            raise
        last_metric = state.evals[-1].get(self.metric) if state.evals else None
        try:
            while state.step < total and not state.stopped_early:
                if augment is not None and augment.epoch != state.epoch:  # on the fly: a fresh draw each epoch
                    features = augment.features(state.epoch, task, tokenizer)
                    lengths = [task.feature_length(f) for f in features]
                batches = dist.shard(self._batches(lengths, state.epoch))
                while state.batch < len(batches) and state.step < total:
                    group = batches[state.batch : state.batch + cfg.grad_accum]
                    started = time.perf_counter()
                    model.train()
                    optimizer.zero_grad(set_to_none=True)
                    n = sum(len(idx) for idx in group)
                    step_loss = 0.0
                    step_block = frozen.applied() if frozen is not None else contextlib.nullcontext()
                    with step_block:  # forward and backward see the same (cast) frozen weights
                        for j, idx in enumerate(group):
                            batch = task.collate([features[i] for i in idx], tokenizer)
                            batch = {k: v.to(device) for k, v in batch.items()}

                            def loss_of(batch: dict[str, Any] = batch, share: float = len(idx) / n) -> Any:
                                with (
                                    attention(),
                                    torch.autocast(device_type=autocast_device, dtype=dtype, enabled=dtype is not None),
                                ):
                                    loss = task.loss(train_model, batch)
                                    if self.loss_hook is not None:
                                        loss = self.loss_hook(model, loss)
                                return loss.float() * share

                            def backward(scaled: Any) -> None:
                                (scaler.scale(scaled) if scaler is not None else scaled).backward()

                            with dist.no_sync(train_model, sync=j == len(group) - 1):
                                with adversary.clean_pass() if adversary is not None else contextlib.nullcontext():
                                    scaled = loss_of()
                                backward(scaled)
                                if adversary is not None:
                                    adversary.attack(loss_of, backward)
                            step_loss += float(scaled.detach())
                    clip = cfg.max_grad_norm if self._dp is None else None  # DP-SGD clips each example instead
                    lr = float(scheduler.get_last_lr()[0])
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                        if clip:
                            clip_grad_norm(params, clip)
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        clipped_step(optimizer, params, clip)
                    scheduler.step()
                    method.after_step(model, state.step + 1)
                    if self._dp is not None:
                        self._dp.steps += 1
                    state.train_seconds += time.perf_counter() - started
                    step_loss = dist.mean(step_loss)
                    state.samples += n * dist.world_size
                    state.batch += len(group)
                    state.step += 1
                    record = {"step": state.step, "epoch": state.epoch + 1, "loss": step_loss, "lr": lr}
                    state.history.append(record)
                    self._board.scalar("train/loss", step_loss, state.step)
                    self._board.scalar("train/lr", lr, state.step)
                    epoch_end = state.batch >= len(batches)
                    if epoch_end:
                        state.epoch, state.batch = state.epoch + 1, 0
                    due = (cfg.eval_every == "epoch" and epoch_end) or (
                        isinstance(cfg.eval_every, int) and state.step % cfg.eval_every == 0
                    )
                    if due or state.step == total:
                        if dist.is_main:
                            last_metric = self._evaluate(torch, model, tokenizer, dev, state, greater)
                            if cfg.artifacts:
                                self._save_checkpoint(torch, model, optimizer, scheduler, state)
                        if dist.enabled:
                            shared = (state.evals, state.best, state.best_step, state.bad_evals, state.stopped_early)
                            shared = dist.broadcast(shared)
                            state.evals, state.best, state.best_step, state.bad_evals, state.stopped_early = shared
                    bar.update({"loss": step_loss, "lr": lr, f"dev_{self.metric}": last_metric})
                    if epoch_end or state.stopped_early:
                        break
        finally:
            cleanup.close()
            bar.close()
            self._board.close()
        if not dist.is_main:
            dist.barrier()  # rank 0 writes the model and report
            dist.close()
            return TrainResult(state.history, state.evals, state.best, state.best_step, self.out_dir)
        result = self._finish(torch, method, model, tokenizer, dev, state, precision)
        dist.barrier()
        dist.close()
        return result

    def _evaluate(self, torch: Any, model: Any, tokenizer: Any, dev: list[Any], state: _State, greater: bool) -> Any:
        """Evaluate on dev (when there is one), track the best step and early stopping; returns the metric."""
        cfg = self.config
        if not dev:
            state.best_step = state.step
            return None
        metrics = self.task.evaluate(model, tokenizer, dev, batch_size=cfg.eval_batch_size)
        if self.metric not in metrics:
            raise ValueError(f"metric {self.metric!r} is not one of the task's metrics ({', '.join(metrics)})")
        value = float(metrics[self.metric])
        state.evals.append({"step": state.step, "epoch": round(state.step / self._steps_per_epoch, 3), **metrics})
        for name, number in metrics.items():
            self._board.scalar(f"dev/{name}", float(number), state.step)
        improved = state.best is None or (value > state.best if greater else value < state.best)
        if improved:
            state.best, state.best_step, state.bad_evals = value, state.step, 0
        else:
            state.bad_evals += 1
            if cfg.patience is not None and state.bad_evals >= cfg.patience:
                state.stopped_early = True
                self.log(f"\nearly stop at step {state.step}: no better {self.metric} for {cfg.patience} evaluations")
        return value

    def _finish(
        self, torch: Any, method: Any, model: Any, tokenizer: Any, dev: list[Any], state: _State, precision: str
    ) -> TrainResult:
        """Restore the best weights, save the model, write metrics.json, report.md and curves.png."""
        cfg, task, out = self.config, self.task, self.out_dir
        best = self._pointer("best") if cfg.artifacts else None
        if best is not None and state.best_step is not None and state.best_step != state.step:
            model.load_state_dict(self._load(torch, best)["model"])
            self.log(f"restored the best checkpoint (step {state.best_step}, {self.metric} {state.best:.4f})")
        after = next((e for e in state.evals if e["step"] == state.best_step), {})
        after = {k: v for k, v in after.items() if k not in ("step", "epoch")}
        if cfg.save_model:
            method.save(model, out)
            tokenizer.save_pretrained(str(out))
            task.save(out)
        speed = state.samples / state.train_seconds if state.train_seconds else 0.0
        metrics: dict[str, Any] = {
            "task": task.name,
            "method": cfg.method,
            "metric": self.metric,
            "before": state.before,
            "after": after,
            "best_metric": state.best,
            "best_step": state.best_step,
            "steps": state.step,
            "stopped_early": state.stopped_early,
            "train_seconds": round(state.train_seconds, 3),
            "samples_per_second": round(speed, 2),
            "precision": precision,
            "trainable": trainable_summary(model),
            "config": asdict(cfg),
            "evals": state.evals,
            "losses": [h["loss"] for h in state.history],
        }
        if self._dp is not None:
            metrics["privacy"] = self._dp.report()
        if not cfg.artifacts:
            return TrainResult(state.history, state.evals, state.best, state.best_step, out, metrics)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str), encoding="utf-8")
        plot = plot_curves(self.out_dir, state.history, state.evals, self.metric, self.log)
        report = task.report(model, tokenizer, dev) if dev else ""
        (out / "report.md").write_text(report_markdown(metrics, report, plot), encoding="utf-8")
        self.log(f"done: {fmt_metrics(after) or 'no dev data'}; {speed:.1f} samples/s; {out}")
        return TrainResult(state.history, state.evals, state.best, state.best_step, out, metrics)
