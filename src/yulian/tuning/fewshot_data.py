"""Labelled examples for few-shot classification: reading them in, drawing k per class, verbalisers, metrics.

Shared by `yulian.tuning.fewshot_icl` (in-context classification with a causal LM) and
`yulian.tuning.fewshot_setfit` (SetFit-style contrastive tuning of a sentence encoder). Standard library only.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from yulian.core.config import use_config
from yulian.core.runnable import ConfigLike, Runnable
from yulian.models.predictions import Prediction
from yulian.tuning.data_labels import LabelMap
from yulian.tuning.data_types import name_list

__all__ = [
    "Shot",
    "TextClassifierRunnable",
    "as_shots",
    "check_verbalizer",
    "classification_scores",
    "label_order",
    "parse_verbalizer",
    "sample_per_class",
]

Shot = tuple[str, str]
"""One labelled example: (text, label)."""


def as_shots(examples: Iterable[Any], *, what: str = "examples") -> list[Shot]:
    """`(text, label)` pairs from `TextExample`s, `(text, label)` tuples or `{"text", "label"}` mappings.

    Labels become strings. Multi-label examples, text pairs, empty texts and missing labels are errors that name
    the example's position (and line, when it has one).
    """
    shots: list[Shot] = []
    for i, ex in enumerate(examples):
        where = f"{what}[{i}]" + (f" (line {ex.line})" if getattr(ex, "line", 0) else "")
        if isinstance(ex, Mapping):
            text, label = ex.get("text"), ex.get("label")
        elif isinstance(ex, tuple | list):
            if len(ex) != 2:
                raise ValueError(f"{where}: expected (text, label), got {len(ex)} items")
            text, label = ex
        else:
            if getattr(ex, "labels", None) is not None:
                raise ValueError(f"{where}: few-shot classification is single-label; this example has several labels")
            if getattr(ex, "text_pair", None) is not None:
                raise ValueError(f"{where}: few-shot classification takes single texts, not text pairs")
            text, label = getattr(ex, "text", None), getattr(ex, "label", None)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: the text is empty or not a string ({text!r:.60})")
        if label is None or str(label) == "":
            raise ValueError(f"{where}: the example has no label")
        shots.append((text, str(label)))
    return shots


def label_order(labels: Iterable[str]) -> list[str]:
    """Labels in yulian's stable order (`LabelMap`'s: numeric labels by value, others by name)."""
    return list(LabelMap(labels).labels)


def sample_per_class(examples: Sequence[Shot], per_class: int, seed: int) -> list[Shot]:
    """`per_class` examples of every label, drawn with `random.Random(seed)`, then shuffled together.

    A label with fewer examples than `per_class` is an error naming it and its count.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a whole number >= 1, got {per_class!r}")
    by_label: dict[str, list[Shot]] = {}
    for shot in examples:
        by_label.setdefault(shot[1], []).append(shot)
    short = {label: len(items) for label, items in by_label.items() if len(items) < per_class}
    if short:
        counts = ", ".join(f"{label!r}: {n}" for label, n in sorted(short.items()))
        raise ValueError(f"per_class={per_class} but some labels have fewer examples ({counts})")
    rng = random.Random(seed)
    drawn: list[Shot] = []
    for label in label_order(by_label):
        drawn += rng.sample(by_label[label], per_class)
    rng.shuffle(drawn)
    return drawn


def parse_verbalizer(spec: str | Mapping[str, str] | None) -> dict[str, str] | None:
    """`"0=negative,1=positive"` (or a mapping) -> `{"0": "negative", "1": "positive"}`; None stays None.

    Words may contain spaces; a comma inside a word is written `\\,`.
    """
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        items = [(str(k), str(v)) for k, v in spec.items()]
    else:
        items = []
        for part in _split_commas(spec):
            label, sep, word = part.partition("=")
            if not sep or not label.strip():
                raise ValueError(f"verbalizer entries are LABEL=WORD, got {part!r} in {spec!r}")
            items.append((label.strip(), word.strip()))
    out: dict[str, str] = {}
    for label, word in items:
        if not word:
            raise ValueError(f"verbalizer: label {label!r} has an empty word")
        if label in out:
            raise ValueError(f"verbalizer: label {label!r} is given twice")
        out[label] = word
    if not out:
        raise ValueError("the verbalizer is empty")
    return out


def _split_commas(text: str) -> list[str]:
    parts, current, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] == ",":
            current += ","
            i += 2
            continue
        if text[i] == ",":
            parts.append(current)
            current = ""
        else:
            current += text[i]
        i += 1
    parts.append(current)
    return [p for p in parts if p.strip()]


def check_verbalizer(verbalizer: Mapping[str, str] | None, labels: Sequence[str]) -> dict[str, str]:
    """The word of every label: `verbalizer` checked against `labels` (default: each label's own name)."""
    if verbalizer is None:
        return {label: label for label in labels}
    unknown = [k for k in verbalizer if k not in labels]
    if unknown:
        raise ValueError(
            f"the verbalizer names labels the examples do not have: {name_list(map(repr, unknown))} "
            f"(labels: {name_list(labels)})"
        )
    missing = [label for label in labels if label not in verbalizer]
    if missing:
        raise ValueError(
            f"the verbalizer has no word for {name_list(map(repr, missing))} (labels: {name_list(labels)})"
        )
    words = [verbalizer[label] for label in labels]
    dupes = sorted({w for w in words if words.count(w) > 1})
    if dupes:
        raise ValueError(f"the verbalizer gives several labels the same word: {name_list(dupes)}")
    return {label: verbalizer[label] for label in labels}


def classification_scores(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """`{"accuracy", "macro_f1"}` of single-label predictions (macro F1 over `labels`)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        raise ValueError("no examples to score")
    correct = sum(g == p for g, p in zip(gold, predicted, strict=True))
    f1s = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": correct / len(gold), "macro_f1": sum(f1s) / len(f1s)}


class TextClassifierRunnable(Runnable[str, Prediction]):
    """The Runnable surface of the few-shot classifiers: `invoke`, `batch` (with `return_exceptions`) and
    `abatch` over one method, `_predict(texts) -> list[Prediction]`, that scores texts together."""

    def _predict(self, texts: list[str]) -> list[Prediction]:
        raise NotImplementedError

    def invoke(self, input: str, config: ConfigLike = None) -> Prediction:
        """The predicted label of one text, with every label's probability."""
        with use_config(config):
            return self._predict([input])[0]

    def batch(
        self,
        inputs: Sequence[str],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Prediction]:
        """Predictions for many texts in one batched pass (`max_concurrency` is accepted for the contract;
        batching replaces it). With `return_exceptions=True` a bad input (not a string) gets its exception in place."""
        inputs = list(inputs)
        if not inputs:
            return []
        with use_config(config):
            if not return_exceptions:
                return self._predict(inputs)
            good = [i for i, x in enumerate(inputs) if isinstance(x, str)]
            out: list[Any] = [
                None if isinstance(x, str) else TypeError(f"{self.name} takes text, got {type(x).__name__}")
                for x in inputs
            ]
            try:
                for i, p in zip(good, self._predict([inputs[i] for i in good]), strict=True):
                    out[i] = p
            except Exception as e:
                for i in good:
                    out[i] = e
            return out

    async def abatch(
        self,
        inputs: Sequence[str],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Prediction]:
        """Async `batch`: runs in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.batch, list(inputs), config, return_exceptions=return_exceptions)
