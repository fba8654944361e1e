"""`LabelMap`: the label names of a classification or tagging task <-> ids, saved with the model as `labels.json`.

The order is stable whatever order the labels were met in: `O` first (so id 0 is "outside" for tagging), then
numerically if every label is an integer (`"2" < "10"`), else by string. Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from yulian.tuning.data_types import DataError, TextExample, TokenExample, name_list, with_suggestion

__all__ = ["LABELS_FILE", "LabelMap"]

LABELS_FILE = "labels.json"


def _order(label: str) -> tuple[int, int, str]:
    if label == "O":
        return (0, 0, "")
    if label.lstrip("-").isdigit():
        return (1, int(label), label)
    return (2, 0, label)


class LabelMap:
    """Label names <-> ids in a stable order.

    `LabelMap(["neg", "pos"])`, `LabelMap.from_examples(records)`, `label_map.id("pos") -> 1`,
    `label_map.label(1) -> "pos"`, `label_map.save(out_dir)` writes `out_dir/labels.json`, `LabelMap.load(out_dir)`.
    `multi_label` records whether the task gives each text a set of labels (sigmoid, not softmax).
    """

    __slots__ = ("_ids", "labels", "multi_label")

    def __init__(self, labels: Iterable[str], *, multi_label: bool = False, sort: bool = True) -> None:
        names = [str(label) for label in labels]
        if any(not name for name in names):
            raise ValueError("label names must not be empty")
        unique = sorted(set(names), key=_order) if sort else list(dict.fromkeys(names))
        if not sort and len(unique) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicate labels: {name_list(dupes)}")
        self.labels: tuple[str, ...] = tuple(unique)
        self.multi_label = multi_label
        self._ids = {name: i for i, name in enumerate(self.labels)}

    @classmethod
    def from_examples(cls, examples: Iterable[Any]) -> LabelMap:
        """The labels (or tags) of `TextExample`s / `TokenExample`s, e.g. a whole `RecordSet`."""
        seen: set[str] = set()
        multi = False
        for example in examples:
            if isinstance(example, TextExample):
                seen.update(example.targets)
                multi = multi or example.labels is not None
            elif isinstance(example, TokenExample):
                seen.update(example.tags)
            else:
                raise TypeError(f"LabelMap.from_examples needs TextExample or TokenExample, not {type(example)}")
        return cls(seen, multi_label=multi)

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[str]:
        return iter(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self._ids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelMap):
            return NotImplemented
        return self.labels == other.labels and self.multi_label == other.multi_label

    def __hash__(self) -> int:
        return hash((self.labels, self.multi_label))

    def __repr__(self) -> str:
        extra = ", multi_label=True" if self.multi_label else ""
        return f"LabelMap([{name_list(self.labels, limit=8)}]{extra})"

    def unknown(self, label: str, what: str = "label") -> str | None:
        """`None` if `label` is known, else the reason: `"unknown label 'x' (labels: a, b). Did you mean 'a'?"`."""
        if label in self._ids:
            return None
        return with_suggestion(f"unknown {what} {label!r} ({what}s: {name_list(self.labels)})", label, self.labels)

    def id(self, label: str) -> int:
        """The id of `label`; a `DataError` naming the known labels if there is no such label."""
        try:
            return self._ids[label]
        except KeyError:
            raise DataError(self.unknown(label) or label, field="label") from None

    def label(self, index: int) -> str:
        """The label with id `index`."""
        if not 0 <= index < len(self.labels):
            raise IndexError(f"label id {index} is out of range (0..{len(self.labels) - 1})")
        return self.labels[index]

    def encode(self, labels: Sequence[str]) -> list[int]:
        """Ids of several labels (tags of a sentence, or the labels of a multi-label text)."""
        return [self.id(label) for label in labels]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Labels of several ids."""
        return [self.label(i) for i in ids]

    def multi_hot(self, labels: Sequence[str]) -> list[float]:
        """A 0/1 vector over all labels, for multi-label training."""
        vector = [0.0] * len(self.labels)
        for label in labels:
            vector[self.id(label)] = 1.0
        return vector

    @property
    def id2label(self) -> dict[int, str]:
        """`{0: "neg", 1: "pos"}`, the form transformers' model configs take."""
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> dict[str, int]:
        """`{"neg": 0, "pos": 1}`."""
        return dict(self._ids)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """The JSON form: `{"labels": [...], "multi_label": false}`."""
        return {"labels": list(self.labels), "multi_label": self.multi_label}

    def save(self, path: str | Path) -> Path:
        """Write `labels.json` into the folder `path` (or to `path` itself if it ends in `.json`); returns the file."""
        target = Path(path)
        if target.suffix != ".json":
            target.mkdir(parents=True, exist_ok=True)
            target = target / LABELS_FILE
        target.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | Path) -> LabelMap:
        """Read a `labels.json` (or the one in the folder `path`): `{"labels": [...]}` or a plain list.

        The saved order is kept as it is (ids must not move under a trained model).
        """
        target = Path(path)
        if target.is_dir():
            target = target / LABELS_FILE
        shown = str(target)
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{shown}: no such file", path=shown) from None
        except json.JSONDecodeError as e:
            raise DataError(
                f"{shown} line {e.lineno:,}: not valid JSON ({e.msg}: column {e.colno})", path=shown, line=e.lineno
            ) from None
        labels = data.get("labels") if isinstance(data, dict) else data
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise DataError(f'{shown}: expected {{"labels": [names...]}}, a list of non-empty strings', path=shown)
        multi = bool(data.get("multi_label", False)) if isinstance(data, dict) else False
        try:
            return cls(labels, multi_label=multi, sort=False)
        except ValueError as e:
            raise DataError(f"{shown}: {e}", path=shown) from None
