"""Continual learning: re-tune a model on new data without forgetting the old task.

Plain sequential fine-tuning (train on A, then on B from the A model) forgets A. Two remedies, usable together:

- **experience replay**: a stratified, seeded sample of A's examples is mixed into B's training set
  (`replay_ratio` old examples per new one, or `replay_count` of them). The old data comes from a file, or from the
  replay buffer every run keeps in its output folder (`OUT/replay.jsonl`: a capped uniform sample of everything the
  model was trained on), so re-tuning `runs/a` can replay without the user keeping A's file.
- **EWC** (elastic weight consolidation, Kirkpatrick et al. 2017): B's loss gets `lambda / 2 * sum F (w - w*)^2`,
  pulling each trainable weight back to its A value w* by its diagonal Fisher information F on A's data (the
  empirical Fisher by default; `yulian.tuning.continual_ewc`). F comes from `runs/a/ewc.safetensors` (written by a
  run with `save_fisher=True`) or is computed at the start from the old examples. With `save_fisher`, each run
  writes its own, accumulated over tasks (online EWC: gamma x F_old + F_new).

Re-tuning a fine-tuned classifier keeps its label set: old labels keep their ids, labels only B has are added and
the head grows without touching the old rows; an adapter (LoRA...) re-tuned with its own method is continued, not
stacked (`yulian.tuning.continual_labels`).

The sequential A -> B workflow:

```python
from yulian.tuning import TrainConfig
from yulian.tuning.continual import ContinualConfig, ContinualLearner
from yulian.tuning.tasks import TaskConfig, get_task

def task():
    return get_task("classification", TaskConfig(max_length=64))

a_train, a_dev = task().read("sst2_train.tsv"), task().read("sst2_dev.tsv")
b_train, b_dev = task().read("finance_train.tsv"), task().read("finance_dev.tsv")

# task A: an ordinary run that also writes runs/a/replay.jsonl and (save_fisher) runs/a/ewc.safetensors
ContinualLearner(task(), TrainConfig(epochs=3), "runs/a", ContinualConfig(save_fisher=True)).fit(
    a_train, a_dev, "minilm-l6"
)
# task B from runs/a: A's labels kept, 10% replay from runs/a/replay.jsonl, EWC with runs/a's Fisher
learner = ContinualLearner(task(), TrainConfig(epochs=3), "runs/b", ContinualConfig(replay_ratio=0.1, ewc=100.0))
result = learner.fit(b_train, b_dev, "runs/a", old_dev=a_dev)
print(result.metrics["continual"]["old_task"])  # A's dev accuracy before and after learning B
```

From the command line (options proposed for `yulian train`): `yulian train --model runs/a --train finance.tsv
--replay-ratio 0.1 --ewc 100 --old-eval sst2_dev.tsv --out runs/b`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.tuning.continual_ewc import EWC_FILE, FISHER_KINDS, EWCPenalty, EWCState, estimate_fisher
from yulian.tuning.continual_labels import (
    OldModel,
    RetuneClassificationTask,
    RetuneTokenClassificationTask,
    adapter_start,
    extend_head,
)
from yulian.tuning.continual_replay import (
    REPLAY_FILE,
    ReplayBuffer,
    read_examples,
    replay_count,
    replay_mix,
    replay_sample,
)
from yulian.tuning.trainer import TrainConfig, Trainer, TrainResult

__all__ = [
    "EWC_FILE",
    "REPLAY_FILE",
    "ContinualConfig",
    "ContinualLearner",
    "EWCPenalty",
    "EWCState",
    "OldModel",
    "ReplayBuffer",
    "RetuneClassificationTask",
    "RetuneTokenClassificationTask",
    "estimate_fisher",
    "extend_head",
    "read_examples",
    "replay_mix",
    "replay_sample",
]

DEFAULT_RATIO = 0.1


@dataclass
class ContinualConfig:
    """How to keep the old task while learning the new one. Every option is checked here, once.

    Attributes:
        replay: the old task's data: a data file (read with the task's field mapping), a replay.jsonl, or a model
            folder holding one. None: the base model folder's replay.jsonl, when replay_ratio/replay_count ask for
            replay.
        replay_ratio: old examples replayed per new example (0.1: one for ten). replay_count: or this many (not
            both). With `replay` and neither, the ratio is 0.1.
        ewc: EWC's lambda (None: no EWC). ewc_samples: old examples the Fisher is estimated on (a stratified,
            seeded sample; also the new ones for `save_fisher`).
        fisher: "empirical" (gradients of the gold labels' log-likelihood) or "sampled" (labels drawn from the
            model's prediction; classification only).
        ewc_gamma: online EWC: how much of the old Fisher the saved one keeps (1: all of it).
        save_fisher: after training, write OUT/ewc.safetensors (the Fisher at the new optimum, accumulated with the
            base folder's), so the next re-tune can use EWC without old data.
        replay_buffer: keep a uniform sample of at most this many training examples in OUT/replay.jsonl (0: none).
            It holds training texts: switch it off where the model folder may not carry them.
        stratify: replay samples per label in proportion (every old label at least once when the count allows).
    """

    replay: str | Path | None = None
    replay_ratio: float | None = None
    replay_count: int | None = None
    ewc: float | None = None
    ewc_samples: int = 300
    fisher: str = "empirical"
    ewc_gamma: float = 1.0
    save_fisher: bool = False
    replay_buffer: int = 0
    stratify: bool = True

    def __post_init__(self) -> None:
        if self.replay_ratio is not None and self.replay_count is not None:
            raise ValueError("ContinualConfig: give replay_ratio or replay_count, not both")
        if self.replay_ratio is not None and (
            isinstance(self.replay_ratio, bool)
            or not isinstance(self.replay_ratio, int | float)
            or not self.replay_ratio > 0
            or math.isinf(self.replay_ratio)
        ):
            raise ValueError(f"ContinualConfig.replay_ratio must be a number > 0, got {self.replay_ratio!r}")
        for name, minimum in (("replay_count", 1), ("ewc_samples", 1), ("replay_buffer", 0)):
            value = getattr(self, name)
            if name == "replay_count" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"ContinualConfig.{name} must be a whole number >= {minimum}, got {value!r}")
        if self.ewc is not None and (
            isinstance(self.ewc, bool) or not isinstance(self.ewc, int | float) or not self.ewc >= 0
        ):
            raise ValueError(f"ContinualConfig.ewc (lambda) must be a number >= 0, got {self.ewc!r}")
        if self.fisher not in FISHER_KINDS:
            raise ValueError(f"ContinualConfig.fisher must be one of {', '.join(FISHER_KINDS)}, got {self.fisher!r}")
        if not (isinstance(self.ewc_gamma, int | float) and 0 <= self.ewc_gamma <= 1):
            raise ValueError(f"ContinualConfig.ewc_gamma must be in [0, 1], got {self.ewc_gamma!r}")
        if self.replay is not None and self.replay_ratio is None and self.replay_count is None:
            self.replay_ratio = DEFAULT_RATIO

    @property
    def replaying(self) -> bool:
        """Whether old examples are mixed into the training set."""
        return self.replay_ratio is not None or self.replay_count is not None


class ContinualLearner:
    """Train `task` on new data from a base model, keeping what the base learned (`ContinualConfig`).

    On a plain base model (a registered name) it is the `Trainer` plus the replay buffer (and the Fisher with
    `save_fisher`); on a fine-tuned folder it keeps the labels, continues an adapter, replays and applies EWC.
    After `fit`, `task` is the task trained (a `RetuneClassificationTask` when re-tuning a classifier) and
    `trainer` the `Trainer` used.
    """

    def __init__(
        self,
        task: Any,
        config: TrainConfig | None = None,
        out_dir: str | Path = "runs/model",
        continual: ContinualConfig | None = None,
    ) -> None:
        self.task = task
        self.config = config or TrainConfig()
        self.out_dir = Path(out_dir)
        self.continual = continual or ContinualConfig()
        self.trainer: Trainer | None = None
        self.penalty: EWCPenalty | None = None

    def log(self, message: str) -> None:
        """A message on stderr (when the config's `progress` is on)."""
        if self.config.progress:
            print(message, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------------------------- old data
    def _old_examples(self, old: OldModel | None, given: Sequence[Any] | None) -> tuple[list[Any], str | None]:
        """(the old task's examples, where they came from)."""
        if given is not None:
            return list(given), "given"
        source = self.continual.replay
        if source is None:
            if old is not None and ReplayBuffer.exists(old.folder):
                return read_examples(old.folder), str(old.folder / REPLAY_FILE)
            return [], None
        path = Path(source)
        if path.is_dir() or path.name == REPLAY_FILE:
            return read_examples(path), str(path / REPLAY_FILE if path.is_dir() else path)
        if not path.is_file():
            raise FileNotFoundError(f"replay data {source} does not exist (a data file, replay.jsonl or model folder)")
        return list(self.task.read(path)), str(path)

    # ---------------------------------------------------------------------------------------------------- EWC
    def _old_net(self, old: OldModel, config: TrainConfig, continued: Any) -> tuple[Any, Any, Any]:
        """(model at the old optimum shaped as the trainer will train it, its tokenizer, the old task)."""
        old_task = old.task_object()
        if continued is not None:  # the old adapter, loaded trainable (adapter_start)
            transformers = require("transformers", extra="hf")
            return continued, transformers.AutoTokenizer.from_pretrained(str(old.folder)), old_task
        torch = require("torch", extra="hf")
        from yulian.tuning.methods import get_method

        torch.manual_seed(config.seed)
        model, tokenizer = old_task.build_model(old.folder)
        model = get_method(config.method).apply(model, old_task, config.method_options)
        return model, tokenizer, old_task

    def _usable(self, old: OldModel, examples: list[Any]) -> list[Any]:
        """The old examples the old model can score (labels it knows)."""
        if not old.labels:
            return examples
        known = set(old.labels)
        kept = [e for e in examples if set(getattr(e, "targets", []) or []) <= known]
        if len(kept) < len(examples):
            self.log(f"EWC: {len(examples) - len(kept):,} old examples have labels the old model lacks; left out")
        return kept

    def _ewc_state(
        self, old: OldModel | None, olds: list[Any], config: TrainConfig, continued: Any
    ) -> tuple[EWCState, dict[str, Any], tuple[Any, Any, Any] | None]:
        """(the old task's EWC state, what it is, the old model when it was built for it)."""
        cc = self.continual
        if old is None:
            raise ValueError(
                "EWC protects the model being re-tuned: give the old task's fine-tuned folder as the base model "
                "(yulian train --model runs/old ...)"
            )
        file = old.folder / EWC_FILE
        if file.is_file():
            state = EWCState.load(file)
            if state.meta.get("method") == config.method:
                self.log(f"EWC: Fisher of {len(state):,} tensors from {file} (lambda {cc.ewc:g})")
                return state, {"fisher": "file", "file": str(file), **state.meta}, None
            self.log(f"EWC: {file} was computed for method {state.meta.get('method')!r}; recomputing for this one")
        if not olds:
            raise ValueError(
                f"EWC needs the old model's Fisher information: {old.folder} has no {EWC_FILE} (train it with "
                f"--save-fisher) and there are no old examples to compute it from (give --replay FILE, or re-tune "
                f"a folder with a {REPLAY_FILE})"
            )
        net = self._old_net(old, config, continued)
        model, tokenizer, old_task = net
        usable = self._usable(old, olds)
        started = time.perf_counter()
        fisher = estimate_fisher(
            model, old_task, usable, tokenizer, samples=cc.ewc_samples, kind=cc.fisher, seed=config.seed, log=self.log
        )
        meta = {"kind": cc.fisher, "samples": min(cc.ewc_samples, len(usable)), "method": config.method}
        state = EWCState.from_model(model, fisher, meta)
        info = {"fisher": "computed", "seconds": round(time.perf_counter() - started, 2), **meta}
        return state, info, net

    # ------------------------------------------------------------------------------------------------- the run
    def fit(
        self,
        train_examples: Sequence[Any],
        dev_examples: Sequence[Any] | None,
        base_model: str | Path,
        *,
        old_examples: Sequence[Any] | None = None,
        old_dev: Sequence[Any] | None = None,
        resume: bool = False,
    ) -> TrainResult:
        """Train on `train_examples` (+ replayed old ones) from `base_model`, as `Trainer.fit` does.

        `old_examples` are the old task's examples (instead of `ContinualConfig.replay` or the base folder's
        buffer); `old_dev`, the old task's dev examples: its metrics before and after go into
        `metrics["continual"]["old_task"]` (and OUT/metrics.json).
        """
        cfg, cc = self.config, self.continual
        train = list(train_examples)
        old = OldModel.probe(base_model)
        if old is not None and old.task != self.task.name:
            raise ValueError(f"{base_model} was fine-tuned for {old.task}, not {self.task.name}")
        buffer = None
        if cc.replay_buffer and cfg.artifacts:  # read before training: OUT may be the base folder itself
            if old is not None and ReplayBuffer.exists(old.folder):
                buffer = ReplayBuffer.load(old.folder, cap=cc.replay_buffer)
            else:
                buffer = ReplayBuffer(cap=cc.replay_buffer, seed=cfg.seed)
        wants_old = cc.replaying or (cc.ewc is not None and old is not None)  # EWC may need them for the Fisher
        olds, source = self._old_examples(old, old_examples) if wants_old or old_examples is not None else ([], None)
        info: dict[str, Any] = {"base": str(base_model)}
        mixed = train
        if cc.replaying:
            if not olds:
                where = f"{old.folder} has no {REPLAY_FILE}" if old is not None else "the base model is not fine-tuned"
                raise ValueError(f"nothing to replay: {where}; give the old data with --replay FILE")
            n = replay_count(len(train), len(olds), ratio=cc.replay_ratio, count=cc.replay_count)
            mixed = replay_mix(train, olds, count=n, seed=cfg.seed, stratify=cc.stratify)
            info["replay"] = {"source": source, "old_examples": len(olds), "replayed": n, "new_examples": len(train)}
            self.log(f"replay: {n:,} of {len(olds):,} old examples ({source}) mixed into {len(train):,} new ones")

        task = self.task
        if old is not None and task.name == "classification" and old.labels:
            task = RetuneClassificationTask.from_old(task.config, old, mixed)
            info["labels"] = {"kept": len(old.labels), "added": task.added}
            if task.added:
                self.log(f"labels: {len(old.labels)} kept, {len(task.added)} added ({', '.join(task.added[:10])})")
        elif old is not None and task.name == "ner" and old.labels:
            task = RetuneTokenClassificationTask.from_old(task.config, old, mixed)
            info["labels"] = {"kept": len(old.labels), "added": task.added}
            if task.added:
                self.log(f"tags: {len(old.labels)} kept, {len(task.added)} added ({', '.join(task.added[:10])})")
        else:
            task.setup(mixed, base_model)
        self.task = task

        config, base, start, continued = cfg, base_model, None, None
        if old is not None and old.adapter is not None:
            if cfg.method == old.adapter.method:
                labels = getattr(task, "label_map", None) or getattr(task, "labels", None)
                rows = len(labels) if labels is not None else None
                base, options, start, continued = adapter_start(old, rows, options=cfg.method_options, seed=cfg.seed)
                config = replace(cfg, method_options=options)
                info["adapter"] = {"continued": str(old.folder), "base": base}
                self.log(f"continuing the {old.adapter.method} adapter of {old.folder} (base {base})")
            elif cfg.method not in ("full", "freeze"):
                raise ValueError(
                    f"{old.folder} is a {old.adapter.method} adapter: re-tune it with --method {old.adapter.method} "
                    f"(to continue it) or full, or merge it first (yulian adapters merge {old.folder} OUT)"
                )

        net: tuple[Any, Any, Any] | None = None
        previous: EWCState | None = None
        if cc.ewc is not None:
            previous, info["ewc"], net = self._ewc_state(old, olds, config, continued)
            info["ewc"]["lambda"] = cc.ewc
            self.penalty = EWCPenalty(previous, cc.ewc)
        elif cc.save_fisher and old is not None and (old.folder / EWC_FILE).is_file():
            loaded = EWCState.load(old.folder / EWC_FILE)
            previous = loaded if loaded.meta.get("method") == config.method else None
        before = None
        if old_dev and old is not None:
            net = net or self._old_net(old, config, continued)
            model, tokenizer, old_task = net
            before = old_task.evaluate(model, tokenizer, list(old_dev), batch_size=config.eval_batch_size)
        net = continued = None  # free the old model before training

        self.trainer = Trainer(task, config, self.out_dir, start_weights=start, loss_hook=self.penalty, task_ready=True)
        result = self.trainer.fit(mixed, dev_examples, base, resume=resume)
        model, tokenizer = self.trainer.model, self.trainer.tokenizer

        if old_dev:
            after = task.evaluate(model, tokenizer, list(old_dev), batch_size=config.eval_batch_size)
            info["old_task"] = {"before": before, "after": after}
            self.log(f"old task: {_fmt(before)} -> {_fmt(after)}")
        dist = getattr(self.trainer, "_dist", None)
        if dist is not None and not dist.is_main:  # in a distributed run, rank 0 writes
            return result
        if buffer is not None:
            if not buffer.seen and olds:
                buffer.add(olds)  # the old task came from a file (not a buffer): the buffer samples it too
            buffer.add(train).save(self.out_dir)
            info["replay_buffer"] = {"size": len(buffer), "seen": buffer.seen}
        if cc.save_fisher and cfg.artifacts:
            info["saved_fisher"] = self._save_fisher(model, tokenizer, task, train, mixed, previous, config)
        result.metrics["continual"] = info
        metrics_file = self.out_dir / "metrics.json"
        if cfg.artifacts and metrics_file.is_file():
            saved = json.loads(metrics_file.read_text(encoding="utf-8"))
            saved["continual"] = info
            metrics_file.write_text(json.dumps(saved, indent=2, default=str), encoding="utf-8")
        return result

    def _save_fisher(
        self,
        model: Any,
        tokenizer: Any,
        task: Any,
        train: list[Any],
        mixed: list[Any],
        previous: EWCState | None,
        config: TrainConfig,
    ) -> dict[str, Any]:
        """Fisher at the new optimum (on the new examples when an older Fisher carries the old tasks, else on all
        trained examples), accumulated with the older one (online EWC); written to OUT/ewc.safetensors."""
        cc = self.continual
        params = {n for n, _ in model.named_parameters()}
        if previous is not None and not set(previous.names) <= params:
            self.log("EWC: the older Fisher is for other parameters; saving this task's alone")
            previous = None
        examples = train if previous is not None else mixed
        started = time.perf_counter()
        fisher = estimate_fisher(
            model, task, examples, tokenizer, samples=cc.ewc_samples, kind=cc.fisher, seed=config.seed, log=self.log
        )
        meta = {"kind": cc.fisher, "samples": min(cc.ewc_samples, len(examples)), "method": config.method}
        state = EWCState.from_model(model, fisher, meta)
        if previous is not None:
            state = previous.merged(state, cc.ewc_gamma)
        path = state.save(self.out_dir)
        return {
            "file": str(path),
            "tasks": state.meta.get("tasks", 1),
            "seconds": round(time.perf_counter() - started, 2),
        }


def _fmt(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "?"
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
