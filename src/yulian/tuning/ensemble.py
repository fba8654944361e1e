"""Ensembles: train k models (different seeds, or k folds of the data) and use them as one predictor.

```
yulian train --task classification --train data.csv --out runs/ens --ensemble 5              # 5 seeds
yulian train --task classification --train data.csv --out runs/ens --ensemble 5 --ensemble-by fold
yulian eval --model runs/ens --data dev.csv          # the ensemble's metrics (mean of probabilities)
yulian predict --model runs/ens < texts.txt          # predictions of the ensemble
```

Members are ordinary `yulian train` folders (`OUT/member-1` ... `OUT/member-k`); `OUT/ensemble.json` lists them
with each member's and the ensemble's dev metrics. The ensemble averages probabilities: softmax (or sigmoid for
multi-label) per member, then the mean; for token classification and QA the same per token / per position, so
`task.evaluate` scores an ensemble exactly as it scores one model (`EnsembleModule`). With `by="fold"`, member i
trains on every fold but fold i and picks its best checkpoint on fold i; the ensemble is scored on the dev set.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.core.runnable import ConfigLike, Runnable
from yulian.models.predictions import Prediction

__all__ = [
    "ENSEMBLE_FILE",
    "EnsembleClassifier",
    "EnsembleResult",
    "build_ensemble_model",
    "ensemble_members",
    "is_ensemble",
    "train_ensemble",
]

ENSEMBLE_FILE = "ensemble.json"


def is_ensemble(folder: str | Path) -> bool:
    """Whether `folder` holds an ensemble (an `ensemble.json`)."""
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def ensemble_members(folder: str | Path) -> list[Path]:
    """The member model folders of the ensemble in `folder` (checked to exist)."""
    root = Path(folder)
    data = json.loads((root / ENSEMBLE_FILE).read_text(encoding="utf-8"))
    members = [root / name for name in data.get("members", [])]
    if not members:
        raise ValueError(f"{root / ENSEMBLE_FILE} lists no members")
    for member in members:
        if not member.is_dir():
            raise FileNotFoundError(f"{root / ENSEMBLE_FILE}: member folder {member} is missing")
    return members


@dataclass
class EnsembleResult:
    """What `train_ensemble` produced: the folder, each member's dev metrics and the ensemble's."""

    out_dir: Path
    members: list[Path]
    member_metrics: list[dict[str, float]]
    metrics: dict[str, float]


def _folds(examples: Sequence[Any], k: int, seed: int) -> list[list[int]]:
    """k folds of example indices; examples with a `label` are dealt round-robin per label (stratified)."""
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(str(getattr(ex, "label", "")), []).append(i)
    folds: list[list[int]] = [[] for _ in range(k)]
    turn = 0
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        for i in members:
            folds[turn % k].append(i)
            turn += 1
    return folds


def train_ensemble(
    make_task: Callable[[], Any],
    config: Any,
    out_dir: str | Path,
    train_examples: Sequence[Any],
    dev_examples: Sequence[Any] | None,
    base_model: str | Path,
    *,
    k: int = 3,
    by: str = "seed",
) -> EnsembleResult:
    """Train `k` members into `out_dir/member-i` and write `out_dir/ensemble.json`.

    Args:
        make_task: builds a fresh task (each member sets up its own).
        config: the `TrainConfig` of every member; member i uses seed `config.seed + i`.
        by: "seed" (same data, different seeds) or "fold" (member i leaves fold i out and selects on it).
    """
    from yulian.tuning.tasks.base import TASK_FILE
    from yulian.tuning.trainer import Trainer

    if k < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got k={k}")
    if by not in ("seed", "fold"):
        raise ValueError(f"ensemble members differ by 'seed' or 'fold', not {by!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = list(train_examples)
    dev = list(dev_examples or [])
    if by == "fold" and len(train) < 2 * k:
        raise ValueError(f"{len(train)} training examples cannot make {k} folds")
    folds = _folds(train, k, config.seed) if by == "fold" else []
    members: list[Path] = []
    member_metrics: list[dict[str, float]] = []
    labels: list[str] | None = None
    for i in range(k):
        folder = out / f"member-{i + 1}"
        task = make_task()
        if by == "fold":
            held = set(folds[i])
            member_train = [ex for j, ex in enumerate(train) if j not in held]
            member_dev = [train[j] for j in sorted(held)]
        else:
            member_train, member_dev = train, dev
        if config.progress:
            print(f"ensemble member {i + 1}/{k} ({by} {config.seed + i if by == 'seed' else i + 1})", flush=True)
        result = Trainer(task, replace(config, seed=config.seed + i), folder).fit(member_train, member_dev, base_model)
        member_labels = _label_names(task)
        if labels is not None and member_labels is not None and member_labels != labels:
            raise ValueError(f"member {i + 1} learned other labels than member 1: {member_labels} vs {labels}")
        labels = labels or member_labels
        members.append(folder)
        member_metrics.append(dict(result.metrics.get("after", {})))
    shutil.copyfile(members[0] / TASK_FILE, out / TASK_FILE)
    manifest: dict[str, Any] = {
        "members": [m.name for m in members],
        "by": by,
        "k": k,
        "member_metrics": member_metrics,
    }
    (out / ENSEMBLE_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    metrics: dict[str, float] = {}
    if dev:
        from yulian.tuning.tasks import Task

        task = Task.from_dir(out)
        model, tokenizer = build_ensemble_model(task, out)
        metrics = task.evaluate(model, tokenizer, dev, batch_size=config.eval_batch_size)
        manifest["metrics"] = metrics
        (out / ENSEMBLE_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return EnsembleResult(out, members, member_metrics, metrics)


def _label_names(task: Any) -> list[str] | None:
    """The label set a trained task holds (None for tasks without one, e.g. QA)."""
    labels = getattr(task, "labels", None)
    return list(labels.labels) if labels is not None and hasattr(labels, "labels") else None


def build_ensemble_model(task: Any, folder: str | Path) -> tuple[Any, Any]:
    """(an `EnsembleModule` over the members, the first member's tokenizer), for `task.evaluate` and friends."""
    torch = require("torch", extra="hf", purpose="ensembles")
    loaded = [task.build_model(str(member)) for member in ensemble_members(folder)]
    multi = bool(getattr(task, "multi_label", False))
    module = _ensemble_class(torch)([model for model, _ in loaded], multi_label=multi)
    return module.eval(), loaded[0][1]


def _ensemble_class(torch: Any) -> Any:
    nn = torch.nn

    class EnsembleModule(nn.Module):  # type: ignore[misc,name-defined]
        """Mean of the members' probabilities, returned as log-probabilities in the outputs' logit fields."""

        def __init__(self, members: list[Any], *, multi_label: bool = False) -> None:
            super().__init__()
            self.members = nn.ModuleList(members)
            self.multi_label = multi_label
            self.config = members[0].config

        def forward(self, **inputs: Any) -> Any:
            outputs = [member(**inputs) for member in self.members]
            first = outputs[0]
            fields = {}
            for name in ("logits", "start_logits", "end_logits"):
                if getattr(first, name, None) is None:
                    continue
                stacked = torch.stack([getattr(o, name).float() for o in outputs])
                if self.multi_label and name == "logits":
                    p = torch.sigmoid(stacked).mean(0).clamp(1e-7, 1 - 1e-7)
                    fields[name] = torch.log(p) - torch.log1p(-p)  # logit of the mean probability
                else:
                    fields[name] = torch.log_softmax(stacked, dim=-1).exp().mean(0).clamp_min(1e-12).log()
            return type(first)(**fields)

    return EnsembleModule


class EnsembleClassifier(Runnable[Any, Prediction]):
    """One classifier over several: each member's label probabilities averaged (the deployed predictor of a
    classification ensemble). `members` are predictors returning `Prediction`s with every label's score."""

    def __init__(self, members: Sequence[Any]) -> None:
        if len(members) < 2:
            raise ValueError("an ensemble needs at least 2 member predictors")
        self.members = list(members)

    @classmethod
    def from_dir(cls, folder: str | Path, **options: Any) -> EnsembleClassifier:
        """The ensemble `yulian train --ensemble K` wrote (options go to every `HFClassifier`)."""
        from yulian.tuning.tasks import Task

        task = Task.from_dir(folder)
        return cls([task.predictor(member) for member in ensemble_members(folder)])

    def invoke(self, input: Any, config: ConfigLike = None) -> Prediction:
        return self.batch([input], config)[0]

    def batch(
        self,
        inputs: Sequence[Any],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Prediction]:
        inputs = list(inputs)
        per_member = [member.batch(inputs, config) for member in self.members]
        out: list[Prediction] = []
        for predictions in zip(*per_member, strict=True):
            total: dict[str, float] = {}
            for p in predictions:
                if not p.scores:
                    raise ValueError("ensemble members must return every label's score (top_k=None)")
                for label, score in p.scores.items():
                    total[label] = total.get(label, 0.0) + score / len(predictions)
            ranked = dict(sorted(total.items(), key=lambda kv: -kv[1]))
            label, score = next(iter(ranked.items()))
            multi = any(len(p.labels) != 1 for p in predictions)
            chosen = tuple(k for k, v in ranked.items() if v >= 0.5) if multi else (label,)
            out.append(Prediction(label, score, ranked, chosen))
        return out
