"""Re-tuning a fine-tuned model: what the old model folder holds, keeping its label set, and continuing its adapter.

`yulian train --model runs/old ...` with a classification model as the base:
- the old labels keep their ids; labels that only the new data has are added after them, and the head grows by as
  many rows (fresh rows, the old rows untouched); new data with fewer labels keeps the old ones (the old head is
  loaded as it is). `RetuneClassificationTask` does this (what `ClassificationTask.setup`/`build_model` would do
  with a fine-tuned base folder; before it, a different label count crashed in `from_pretrained`).
- an adapter folder (LoRA...) re-tuned with the same method continues *that* adapter: the trainer starts from the
  adapter's own base model and loads the old adapter and head tensors by name (`start_weights`), so the new adapter
  folder again names the original base. (Training a fresh adapter on the old one merged in would save an adapter
  whose recorded base lacks the old one.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.tuning.data_labels import LabelMap
from yulian.tuning.data_types import DataError, name_list
from yulian.tuning.tasks.base import TASK_FILE
from yulian.tuning.tasks.classification import ClassificationTask
from yulian.tuning.tasks.token_classification import TokenClassificationTask

__all__ = [
    "OldModel",
    "RetuneClassificationTask",
    "RetuneTokenClassificationTask",
    "adapter_start",
    "extend_head",
    "merged_labels",
]

_HEAD_NAMES = ("classifier", "score", "out_proj")


@dataclass
class OldModel:
    """A fine-tuned model folder used as the base of a new run.

    Attributes:
        folder: the folder. task: the task it was trained for. labels: its label names in id order (None when the
        task has none). multi_label: whether it is multi-label. adapter: its adapter metadata when it is an adapter
        folder (`yulian.tuning.adapters.AdapterInfo`), else None.
    """

    folder: Path
    task: str
    labels: list[str] | None
    multi_label: bool
    adapter: Any = None

    @classmethod
    def probe(cls, base_model: str | Path) -> OldModel | None:
        """The fine-tuned model at `base_model`, or None when it is not a yulian fine-tuned folder."""
        folder = Path(base_model).expanduser()
        path = folder / TASK_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        state = data.get("state", {}) or {}
        labels = state.get("labels")
        adapter = None
        from yulian.tuning.adapters import adapter_info, is_adapter_folder

        if is_adapter_folder(folder):
            adapter = adapter_info(folder)
        return cls(
            folder=folder,
            task=str(data.get("task", "?")),
            labels=[str(label) for label in labels] if labels else None,
            multi_label=bool(state.get("multi_label", False)),
            adapter=adapter,
        )

    def task_object(self) -> Any:
        """The task as it was saved (old labels)."""
        from yulian.tuning.tasks import Task

        return Task.from_dir(self.folder)


def merged_labels(old: Sequence[str], examples: Sequence[Any]) -> tuple[list[str], list[str]]:
    """(all labels, the added ones): the old labels in their id order, then the labels only `examples` have, in
    `LabelMap`'s stable order."""
    seen: set[str] = set()
    for example in examples:
        seen.update(getattr(example, "targets", []) or [])
    added = [label for label in LabelMap(seen).labels if label not in set(old)] if seen else []
    return list(old) + added, added


def _head(torch: Any, model: Any, rows: int) -> tuple[Any, str, Any]:
    """(parent module, attribute, the Linear) of the classification head with `rows` outputs."""
    found: tuple[Any, str, Any] | None = None
    for name, module in model.named_modules():
        leaf = name.rpartition(".")[2]
        if isinstance(module, torch.nn.Linear) and module.out_features == rows and leaf in _HEAD_NAMES:
            parent_name = name.rpartition(".")[0]
            found = (model.get_submodule(parent_name) if parent_name else model, leaf, module)
    if found is None:
        raise ValueError(
            f"cannot find the {rows}-label classification head of {type(model).__name__} (a Linear named "
            f"{', '.join(_HEAD_NAMES)}) to add labels to; train from the base model instead"
        )
    return found


def extend_head(model: Any, old_rows: int, new_rows: int, *, std: float | None = None) -> Any:
    """Grow the classification head from `old_rows` to `new_rows` outputs in place: the old rows are copied, the
    new ones drawn from N(0, std) (std: the config's initializer_range, else 0.02) with zero bias. Returns model."""
    torch = require("torch", extra="hf")
    if new_rows < old_rows:
        raise ValueError(f"a head cannot shrink ({old_rows} -> {new_rows} labels)")
    if new_rows == old_rows:
        return model
    parent, attr, old = _head(torch, model, old_rows)
    scale = std if std is not None else float(getattr(model.config, "initializer_range", 0.02) or 0.02)
    grown = torch.nn.Linear(old.in_features, new_rows, bias=old.bias is not None)
    grown = grown.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        grown.weight.normal_(0.0, scale)
        grown.weight[:old_rows] = old.weight
        if grown.bias is not None:
            grown.bias.zero_()
            grown.bias[:old_rows] = old.bias
    grown.weight.requires_grad_(old.weight.requires_grad)
    if grown.bias is not None:
        grown.bias.requires_grad_(old.bias.requires_grad)
    setattr(parent, attr, grown)
    if hasattr(model, "num_labels"):
        model.num_labels = new_rows
    return model


class _Retune:
    """What the re-tuning tasks share: the old folder, its label count, the added labels, and the old model loaded
    with its head grown for them."""

    name: str

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)  # type: ignore[call-arg]
        self.old_folder: Path | None = None
        self.old_count = 0
        self.added: list[str] = []

    def _on_old(self, path: str | Path) -> bool:
        return self.old_folder is not None and Path(path).resolve() == self.old_folder

    def _grown(self, auto_class: str, path: str, labels: LabelMap) -> Any:
        """The old model with its trained head, grown from `old_count` to `len(labels)` rows, labels set."""
        from yulian.tuning.tasks._hf import load_pretrained

        model = load_pretrained(auto_class, path)
        count = int(getattr(model.config, "num_labels", 0))
        if count != self.old_count:
            raise ValueError(f"{path}: the model has {count} labels but its {TASK_FILE} lists {self.old_count}")
        extend_head(model, self.old_count, len(labels))
        model.config.id2label, model.config.label2id = labels.id2label, labels.label2id
        return model


class RetuneClassificationTask(_Retune, ClassificationTask):
    """Classification that re-tunes a fine-tuned model: its labels are the old ones then the added ones, and
    `build_model` on the old folder loads the trained head and grows it for the added labels.

    Saved as a plain "classification" task (the extended label set), so predictors and `yulian eval` need nothing
    new. Build it with `RetuneClassificationTask.from_old(config, old, examples)`.
    """

    @classmethod
    def from_old(cls, config: Any, old: OldModel, examples: Sequence[Any]) -> RetuneClassificationTask:
        """The task for training on `examples` (new + replayed) from `old`, a classification model folder."""
        if old.task != "classification" or not old.labels:
            raise ValueError(f"{old.folder} is a {old.task} model, not a classification one")
        if not examples:
            raise DataError("no training examples")
        unlabelled = next((e for e in examples if not getattr(e, "targets", None)), None)
        if unlabelled is not None:
            raise DataError(f"training example at line {unlabelled.line} has no label", line=unlabelled.line)
        multi = any(getattr(e, "labels", None) is not None for e in examples)
        if config is not None and config.multi_label is not None:
            multi = bool(config.multi_label)
        if multi != old.multi_label:
            kinds = ("single-label", "multi-label")
            raise DataError(
                f"{old.folder} is a {kinds[old.multi_label]} classifier but the new data is {kinds[multi]}; "
                "train from the base model instead"
            )
        task = cls(config)
        labels, added = merged_labels(old.labels, examples)
        task.label_map = LabelMap(labels, multi_label=multi, sort=False)
        task.multi_label = multi
        task.old_folder = old.folder.resolve()
        task.old_count = len(old.labels)
        task.added = added
        task._set_class_weights(examples)
        return task

    def setup(self, train_examples: Sequence[Any], base_model: str | Path) -> None:
        """Nothing to derive: the labels were fixed by `from_old` (new labels found here are an error)."""
        labels = self._labels()
        unknown = sorted({t for e in train_examples for t in e.targets if t not in labels})
        if unknown:
            raise DataError(f"labels {name_list(unknown)} are not among the re-tuned model's ({name_list(labels)})")

    def build_model(self, base_model: str | Path) -> tuple[Any, Any]:
        """On the old folder: its trained head, grown for the added labels. On any other base: a fresh head."""
        from yulian.tuning.tasks._hf import model_folder

        path = model_folder(base_model)
        if not self._on_old(path):
            return super().build_model(base_model)
        transformers = require("transformers", extra="hf", purpose="fine-tuning")
        labels = self._labels()
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model = self._grown("AutoModelForSequenceClassification", path, labels)
        kind = "multi_label_classification" if self.multi_label else "single_label_classification"
        model.config.problem_type = kind
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return model, tokenizer


class RetuneTokenClassificationTask(_Retune, TokenClassificationTask):
    """NER that re-tunes a fine-tuned tagger: the old tags keep their ids (and the old tag scheme: new data in
    another scheme is converted), tags of entity types only the new data has are added after them, and
    `build_model` on the old folder loads the trained head and grows it. (The plain task would put a fresh head
    on the old encoder whenever the tag count differs, and mix up tag ids whenever the sets differ.)"""

    @classmethod
    def from_old(cls, config: Any, old: OldModel, examples: Sequence[Any]) -> RetuneTokenClassificationTask:
        """The task for training on `examples` (new + replayed) from `old`, an NER model folder."""
        if old.task != "ner" or not old.labels:
            raise ValueError(f"{old.folder} is a {old.task} model, not an NER one")
        task = cls(config)
        task.scheme = old.task_object().scheme or task.scheme
        TokenClassificationTask.setup(task, examples, old.folder)  # the new data's tags, in the old scheme
        new = list(task._labels().labels)
        task.added = [tag for tag in new if tag not in set(old.labels)]
        task.labels = LabelMap([*old.labels, *task.added], sort=False)
        task.old_folder = old.folder.resolve()
        task.old_count = len(old.labels)
        return task

    def setup(self, train_examples: Sequence[Any], base_model: str | Path) -> None:
        """Nothing to derive: the tags were fixed by `from_old`."""
        self._labels()

    def build_model(self, base_model: str | Path) -> tuple[Any, Any]:
        """On the old folder: its trained head, grown for the added tags. On any other base: a fresh head."""
        from yulian.tuning.tasks._hf import model_folder, require_fast

        path = model_folder(base_model)
        if not self._on_old(path):
            return super().build_model(base_model)
        transformers = require("transformers", extra="hf", purpose="fine-tuning")
        tokenizer = require_fast(transformers.AutoTokenizer.from_pretrained(path), self.name)
        return self._grown("AutoModelForTokenClassification", path, self._labels()), tokenizer


def _extend_rows(torch: Any, tensor: Any, rows: int, std: float, generator: Any) -> Any:
    extra = rows - tensor.shape[0]
    if tensor.ndim == 1:
        fresh = torch.zeros((extra,), dtype=tensor.dtype)
    else:
        fresh = torch.empty((extra, *tensor.shape[1:]), dtype=tensor.dtype).normal_(0.0, std, generator=generator)
    return torch.cat([tensor, fresh])


def adapter_start(
    old: OldModel, new_rows: int | None = None, *, options: Mapping[str, Any] | None = None, seed: int = 0
) -> tuple[str, dict[str, Any], dict[str, Any], Any]:
    """How to continue the adapter in `old`: (the base model folder to train from, the method options (the old
    adapter's, checked against `options`), the start weights by parameter name (adapter + head tensors, the head
    grown to `new_rows` labels, new rows drawn with `seed`), the old adapter loaded trainable (a `PeftModel`, at
    the old optimum))."""
    torch = require("torch", extra="hf")
    from yulian.tuning.adapters import base_of, load_adapter
    from yulian.tuning.weights import trainable_named

    info = old.adapter
    if info is None:
        raise ValueError(f"{old.folder} is not an adapter folder")
    saved = dict(info.options)
    for name, value in (options or {}).items():
        if name in saved and saved[name] != value and value is not None:
            raise ValueError(
                f"{old.folder} is a {info.method} adapter with {name}={saved[name]!r}; continuing it with "
                f"{name}={value!r} is not possible. Leave the option out, or merge the adapter first "
                f"(yulian adapters merge {old.folder} OUT) and re-tune the merged folder"
            )
    merged = {**saved, **{k: v for k, v in (options or {}).items() if v is not None}}
    from yulian.tuning.tasks._hf import load_report

    with load_report():  # the base has no trained head (the adapter carries it): keep transformers' table quiet
        model = load_adapter(old.folder, trainable=True)
    weights = trainable_named(model)
    old_rows = len(old.labels or [])
    if new_rows is not None and old_rows and new_rows > old_rows:
        std = float(getattr(model.config, "initializer_range", 0.02) or 0.02)
        generator = torch.Generator().manual_seed(seed)
        for name, tensor in list(weights.items()):
            if ".modules_to_save." in name and tensor.shape[0] == old_rows:
                weights[name] = _extend_rows(torch, tensor, new_rows, std, generator)
    return base_of(old.folder), merged, weights, model
