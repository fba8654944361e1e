"""Fine-tune (or reuse a cached) sentiment classifier for the monitor with yulian's Trainer.

    result = train_sentiment("en", "runs/apps/monitor/en")      # FPB, MiniLM, ~2 min on 2 CPU cores
    result["dev_accuracy"], result["model"]

The folder is a normal `yulian train` output (HF model + task state), loadable with `yulian.models.HFClassifier`.
A finished run writes `monitor_train.json`; the next call with the same settings reuses it instead of training.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from yulian.apps.monitor.data import load_split

__all__ = ["SentimentTrainConfig", "train_sentiment"]

MARKER = "monitor_train.json"


@dataclass(frozen=True)
class SentimentTrainConfig:
    """How the monitor's sentiment model is trained (defaults keep a run to a few minutes on 2 CPU cores).

    Attributes:
        lang: en (Financial PhraseBank, MiniLM) or zh (FinFE, multilingual-e5-small).
        base_model: a registered model name or folder ("auto": minilm-l6 for en, multilingual-e5-small for zh).
        epochs: passes over the training subset.
        max_train: at most this many training texts (a stratification-free random subset; 0: all).
        max_length: tokens per text.
        batch_size: texts per step. lr: peak learning rate. seed: the random seed.
    """

    lang: str = "en"
    base_model: str = "auto"
    epochs: int = 2
    max_train: int = 0
    max_length: int = 64
    batch_size: int = 32
    lr: float = 1e-4
    seed: int = 42

    def __post_init__(self) -> None:
        if self.lang not in ("en", "zh"):
            raise ValueError(f"lang must be en or zh, got {self.lang!r}")
        for name in ("epochs", "max_length", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SentimentTrainConfig.{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.max_train, int) or self.max_train < 0:
            raise ValueError(f"SentimentTrainConfig.max_train must be >= 0, got {self.max_train!r}")
        if not self.lr > 0:
            raise ValueError(f"SentimentTrainConfig.lr must be > 0, got {self.lr!r}")

    @property
    def model_name(self) -> str:
        """The base model actually used."""
        if self.base_model != "auto":
            return self.base_model
        return "minilm-l6" if self.lang == "en" else "multilingual-e5-small"


def train_sentiment(
    lang: str, out: str | Path, *, force: bool = False, progress: bool = True, **options: Any
) -> dict[str, Any]:
    """Train the sentiment model into `out` (or reuse it when `out` holds a finished run with the same settings).

    Returns `{"model": out, "dev_accuracy", "dev_macro_f1", "train_texts", "dev_texts", "seconds", "cached",
    "config"}`.
    """
    config = SentimentTrainConfig(lang=lang, **options)
    folder = Path(out)
    marker = folder / MARKER
    if marker.exists() and not force:
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved.get("config") == asdict(config):
            return {**saved, "model": str(folder), "cached": True}
        if progress:
            print(f"{folder} was trained with other settings: training again", file=sys.stderr)
    from yulian.tuning.data_types import TextExample
    from yulian.tuning.tasks import TaskConfig, get_task
    from yulian.tuning.trainer import TrainConfig, Trainer

    train_rows, dev_rows = load_split(lang)
    if config.max_train and len(train_rows) > config.max_train:
        import random

        train_rows = random.Random(config.seed).sample(train_rows, config.max_train)
    train = [TextExample(text=r.text, label=r.label, line=i + 1) for i, r in enumerate(train_rows)]
    dev = [TextExample(text=r.text, label=r.label, line=i + 1) for i, r in enumerate(dev_rows)]
    task = get_task("classification", TaskConfig(max_length=config.max_length))
    train_config = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup=0.06,
        seed=config.seed,
        progress=progress,
        eval_batch_size=128,
    )
    start = time.perf_counter()
    result = Trainer(task, train_config, folder).fit(train, dev, config.model_name)
    after = result.metrics.get("after", {})
    summary = {
        "model": str(folder),
        "lang": lang,
        "base_model": config.model_name,
        "dev_accuracy": float(after.get("accuracy", float("nan"))),
        "dev_macro_f1": float(after.get("macro_f1", float("nan"))),
        "train_texts": len(train),
        "dev_texts": len(dev),
        "seconds": round(time.perf_counter() - start, 1),
        "config": asdict(config),
    }
    marker.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    import shutil

    shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # resume state (optimiser...): not needed once done
    return {**summary, "cached": False}
