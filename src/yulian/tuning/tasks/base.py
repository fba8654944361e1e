"""The contract between a fine-tuning task and the trainer.

A task knows its data and its head; the trainer knows optimisation. The trainer never looks inside examples or
model outputs: it asks the task to encode examples into features, to collate features into a batch of tensors,
to compute the loss of a batch, and to evaluate a model on examples. One file per task implements this class and
registers itself by name in `yulian.tuning.tasks.TASKS` (DESIGN.md principle 5).

Lifecycle, as the trainer drives it:

    task = get_task("classification", TaskConfig(...))
    task.setup(train_examples, base_model_path)      # label map etc. from the training data
    model, tokenizer = task.build_model(base_model_path)
    features = task.encode(train_examples, tokenizer)  # list of dicts of python ints (cacheable)
    for batch in ...: loss = task.loss(model, task.collate(batch_features))
    metrics = task.evaluate(model, tokenizer, dev_examples)   # {"accuracy": ..., "macro_f1": ...}
    task.save(out_dir); model.save_pretrained(out_dir); tokenizer.save_pretrained(out_dir)
    predictor = task.predictor(out_dir)               # a Runnable from yulian.models (HFClassifier, ...)
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["TASK_FILE", "Feature", "Task", "TaskConfig"]

TASK_FILE = "yulian_task.json"

Feature = dict[str, Any]
"""One encoded example: token ids and labels as plain Python lists/ints (e.g. input_ids, attention_mask,
labels), plus any bookkeeping the task's evaluation needs (e.g. offset mappings, example ids)."""


@dataclass
class TaskConfig:
    """Options every task understands; tasks read the ones that apply to them.

    Attributes:
        max_length: tokens per feature (longer inputs are truncated, or windowed for QA/NER with `stride`).
        stride: overlap between windows of long contexts (QA, token classification); a stride that is not
            below max_length (e.g. the default 64 with max_length 64) becomes max_length // 2.
        text_field / text_pair_field / label_field: field mapping used when reading files.
        label_sep: separator of several labels in one field (multi-label classification).
        multi_label: force multi-label classification (None: detect from the data).
        class_weights: "balanced" or None, for classification losses.
        label_smoothing: classification targets mixed with the uniform distribution by this much (0: off).
        rdrop: R-Drop weight for classification (0: off): each batch runs twice through dropout and the loss adds
            this times the symmetric KL divergence between the two predictions (Liang et al. 2021).
        tag_scheme: "bio" | "bioes" | "bmes" | None (as found) for token classification.
        label_all_tokens: label every sub-word (else only the first sub-word of a word; the rest get -100).
        max_answer_len / n_best / handle_unanswerable: QA post-processing.
        answer_only_loss: causal-LM SFT computes the loss on the assistant tokens only.
        extra: task-specific options, passed through.
    """

    max_length: int = 128
    stride: int = 64
    text_field: str = "text"
    text_pair_field: str | None = None
    label_field: str = "label"
    label_sep: str | None = None
    multi_label: bool | None = None
    class_weights: str | None = None
    label_smoothing: float = 0.0
    rdrop: float = 0.0
    tag_scheme: str | None = None
    label_all_tokens: bool = False
    max_answer_len: int = 30
    n_best: int = 20
    handle_unanswerable: bool = False
    answer_only_loss: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8 tokens, got {self.max_length}")
        if self.stride < 0:
            raise ValueError(f"stride must be >= 0, got {self.stride}")
        if self.stride >= self.max_length:
            self.stride = self.max_length // 2
        if self.class_weights not in (None, "balanced"):
            raise ValueError(f"class_weights must be 'balanced' or None, got {self.class_weights!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.rdrop < 0:
            raise ValueError(f"rdrop must be >= 0, got {self.rdrop}")
        if self.tag_scheme not in (None, "bio", "bioes", "bmes"):
            raise ValueError(f"tag_scheme must be bio, bioes or bmes, got {self.tag_scheme!r}")


class Task(ABC):
    """A fine-tuning task: data -> features -> loss, and evaluation with the task's own metrics."""

    name: ClassVar[str]
    """Registered name: "classification", "ner", "qa", "sft"."""

    metrics: ClassVar[tuple[str, ...]]
    """Metric names `evaluate` returns; the first is the default for early stopping and best checkpoints."""

    greater_is_better: ClassVar[bool] = True

    first_token_head: ClassVar[bool] = False
    """The loss reads the model's classification head only, which (for BERT-family heads) reads position 0 of
    the last layer: training may skip the other positions there (`yulian.tuning.fast_encoder`)."""

    def __init__(self, config: TaskConfig | None = None) -> None:
        self.config = config or TaskConfig()

    # data --------------------------------------------------------------------------------------------------
    @abstractmethod
    def read(self, path: str | Path, *, skip_bad: bool = False, encoding: str = "utf-8") -> Sequence[Any]:
        """Read and validate a data file into this task's examples (via `yulian.tuning.data.read_records`)."""

    @abstractmethod
    def setup(self, train_examples: Sequence[Any], base_model: str | Path) -> None:
        """Derive what the head needs from the training data (label map, multi-label, class weights...)."""

    # model -------------------------------------------------------------------------------------------------
    @abstractmethod
    def build_model(self, base_model: str | Path) -> tuple[Any, Any]:
        """(model, tokenizer) for training: the base model with this task's head, freshly initialised."""

    @abstractmethod
    def encode(self, examples: Sequence[Any], tokenizer: Any) -> list[Feature]:
        """Examples -> features (one example may give several features: QA/NER windows)."""

    @abstractmethod
    def collate(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, Any]:
        """Features -> a batch of tensors the model takes (dynamic padding to the longest in the batch)."""

    def loss(self, model: Any, batch: Mapping[str, Any]) -> Any:
        """The scalar training loss of one batch. Default: the model computes it from `labels`."""
        return model(**batch).loss

    def feature_length(self, feature: Feature) -> int:
        """Token count of a feature, for length-grouped batching."""
        return len(feature["input_ids"])

    # evaluation and deployment -----------------------------------------------------------------------------
    @abstractmethod
    def evaluate(
        self, model: Any, tokenizer: Any, examples: Sequence[Any], *, batch_size: int = 64
    ) -> dict[str, float]:
        """Metrics of `model` on `examples` (model in eval mode, no gradients); keys include `metrics`."""

    def report(self, model: Any, tokenizer: Any, examples: Sequence[Any]) -> str:
        """A human-readable report (e.g. sklearn's classification_report); "" when there is nothing more to say."""
        return ""

    @abstractmethod
    def predictor(self, model_dir: str | Path) -> Any:
        """A Runnable predictor for a trained model directory (e.g. `yulian.models.HFClassifier`)."""

    # persistence -------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What `setup` derived, as JSON-ready data (saved next to the model); override to add to it."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook, nothing to restore by default
        """Restore what `state` returned."""

    def save(self, out_dir: str | Path) -> None:
        """Write `yulian_task.json` (task name, config, state) into `out_dir`."""
        data = {"task": self.name, "config": asdict(self.config), "state": self.state()}
        path = Path(out_dir) / TASK_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> Task:
        """The task saved in a trained model directory (any registered task, whatever `cls` is)."""
        from yulian.tuning.tasks import get_task

        path = Path(model_dir) / TASK_FILE
        if not path.exists():
            raise FileNotFoundError(f"{model_dir} is not a yulian fine-tuned model: {TASK_FILE} is missing")
        data = json.loads(path.read_text(encoding="utf-8"))
        task = get_task(data["task"], TaskConfig(**data.get("config", {})))
        task.load_state(data.get("state", {}))
        return task
