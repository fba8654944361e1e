"""Text classification: single-label (softmax, cross-entropy), multi-label (sigmoid, BCE) and text pairs.

Reads with `yulian.tuning.data.read_records`, trains `AutoModelForSequenceClassification` with the label map in
its config (`id2label`, `label2id`, `problem_type`), evaluates accuracy and macro-F1 (multi-label: micro-F1,
macro-F1 and subset accuracy) and deploys as `yulian.models.HFClassifier`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.tuning.data import DataError, LabelMap, PadCollator, TextExample, read_records, tokenize_cached
from yulian.tuning.tasks._hf import load_pretrained, model_folder
from yulian.tuning.tasks.base import Feature, Task

__all__ = ["ClassificationTask", "classification_metrics", "model_path"]

_CACHE_FROM = 2000  # tokenise through the disk cache from this many texts on (small sets are faster without)


def model_path(name_or_path: str | Path) -> str:
    """A local folder for a registered model name ("minilm-l6") or a path."""
    path = Path(name_or_path)
    if path.exists():
        return str(path)
    from yulian.models.registry import resolve

    return resolve(str(name_or_path)).path


def _f1(tp: int, fp: int, fn: int) -> float:
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0


def classification_metrics(gold: Sequence[set[int]], pred: Sequence[set[int]], multi_label: bool) -> dict[str, float]:
    """Metrics from gold and predicted label-id sets (one set per example; single-label sets hold one id).

    Single-label: accuracy, macro_f1. Multi-label: micro_f1, macro_f1, subset_accuracy. Macro-F1 averages over
    the labels that occur in the gold or the predictions (as scikit-learn does).
    """
    labels = sorted(set().union(*gold, *pred)) if gold else []
    tp = dict.fromkeys(labels, 0)
    fp = dict.fromkeys(labels, 0)
    fn = dict.fromkeys(labels, 0)
    exact = 0
    for g, p in zip(gold, pred, strict=True):
        exact += g == p
        for label in g & p:
            tp[label] += 1
        for label in p - g:
            fp[label] += 1
        for label in g - p:
            fn[label] += 1
    macro = sum(_f1(tp[k], fp[k], fn[k]) for k in labels) / len(labels) if labels else 0.0
    share = exact / len(gold) if gold else 0.0
    if not multi_label:
        return {"accuracy": share, "macro_f1": macro}
    micro = _f1(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return {"micro_f1": micro, "macro_f1": macro, "subset_accuracy": share}


class ClassificationTask(Task):
    """Sequence classification of texts or text pairs, single- or multi-label."""

    name = "classification"
    first_token_head = True
    metrics = ("accuracy", "macro_f1")

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.label_map: LabelMap | None = None
        self.multi_label = bool(self.config.multi_label)
        self.class_weights: list[float] | None = None
        self._weights_tensor: Any = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics `evaluate` returns for this data (multi-label ones once `setup` saw multi-label data)."""
        return ("micro_f1", "macro_f1", "subset_accuracy") if self.multi_label else ("accuracy", "macro_f1")

    # data --------------------------------------------------------------------------------------------------
    def read(self, path: str | Path, *, skip_bad: bool = False, encoding: str = "utf-8") -> Sequence[Any]:
        """Read a classification file with the field mapping of the task config (DataError on bad records)."""
        cfg = self.config
        records = read_records(
            path,
            task="classification",
            encoding=encoding,
            text_field=cfg.text_field,
            label_field=cfg.label_field,
            text_pair_field=cfg.text_pair_field,
            label_sep=cfg.label_sep,
            skip_bad=skip_bad,
            fmt=cfg.extra.get("format"),
        )
        return records.of(TextExample)

    def setup(self, train_examples: Sequence[Any], base_model: str | Path) -> None:
        """Label map, single/multi-label and class weights from the training examples."""
        if not train_examples:
            raise DataError("no training examples")
        unlabelled = next((e for e in train_examples if not e.targets), None)
        if unlabelled is not None:
            raise DataError(f"training example at line {unlabelled.line} has no label", line=unlabelled.line)
        found = LabelMap.from_examples(train_examples)
        multi = found.multi_label if self.config.multi_label is None else self.config.multi_label
        self.label_map = LabelMap(found.labels, multi_label=multi)
        self.multi_label = multi
        if len(found) < 2 and not multi:
            raise DataError(f"classification needs at least 2 labels, the training data has only {list(found)}")
        self._set_class_weights(train_examples)

    def _set_class_weights(self, train_examples: Sequence[Any]) -> None:
        """With `class_weights="balanced"`, weight each label by total / (labels x its count) (0 when absent)."""
        self.class_weights = None
        if self.config.class_weights == "balanced":
            counts = [0] * len(self._labels())
            for example in train_examples:
                for i in self._labels().encode(example.targets):
                    counts[i] += 1
            total = sum(counts)
            self.class_weights = [total / (len(counts) * c) if c else 0.0 for c in counts]
        self._weights_tensor = None

    def _labels(self) -> LabelMap:
        if self.label_map is None:
            raise RuntimeError("ClassificationTask.setup (or load_state) must run before the model is built")
        return self.label_map

    # model -------------------------------------------------------------------------------------------------
    def build_model(self, base_model: str | Path) -> tuple[Any, Any]:
        """The base model with a fresh classification head for the label map (or a trained one, reloaded)."""
        transformers = require("transformers", extra="hf", purpose="fine-tuning")
        labels = self._labels()
        path = model_folder(base_model)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        problem = "multi_label_classification" if self.multi_label else "single_label_classification"
        model = load_pretrained(
            "AutoModelForSequenceClassification",
            path,
            num_labels=len(labels),
            id2label=labels.id2label,
            label2id=labels.label2id,
            problem_type=problem,
        )
        if model.config.pad_token_id is None:  # decoder-only models (Llama...) need it to find the last token
            model.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return model, tokenizer

    def encode(self, examples: Sequence[Any], tokenizer: Any) -> list[Feature]:
        """Token ids (truncated to max_length, unpadded) and the label id or multi-hot vector."""
        texts = [e.text for e in examples]
        has_pairs = any(e.text_pair is not None for e in examples)
        pairs = [e.text_pair or "" for e in examples] if has_pairs else None
        fields = tokenize_cached(
            tokenizer,
            texts,
            pairs,
            max_length=self.config.max_length,
            cache=None if len(texts) >= _CACHE_FROM else False,
        )
        labels = self.label_map
        features: list[Feature] = []
        for i, example in enumerate(examples):
            feature: Feature = {name: rows[i] for name, rows in fields.items()}
            if example.targets and labels is not None:
                unknown = [t for t in example.targets if t not in labels]
                if unknown:
                    raise DataError(
                        f"line {example.line}: label {unknown[0]!r} is not one of the trained labels "
                        f"({', '.join(labels.labels)})",
                        line=example.line,
                    )
                if self.multi_label:
                    feature["labels"] = labels.multi_hot(example.targets)
                else:
                    feature["labels"] = labels.id(example.targets[0])
            features.append(feature)
        return features

    def collate(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, Any]:
        """Pad to the longest feature of the batch; labels stack (int ids, or float multi-hot vectors)."""
        pad_id = getattr(tokenizer, "pad_token_id", None) or 0
        return PadCollator(pad_id=pad_id)(features)

    def loss(self, model: Any, batch: Mapping[str, Any]) -> Any:
        """Cross-entropy (weighted with class_weights="balanced", smoothed with label_smoothing) or BCE for
        multi-label; with rdrop, the mean over two dropout passes plus rdrop x their symmetric KL divergence."""
        cfg = self.config
        if self.class_weights is None and not cfg.label_smoothing and not cfg.rdrop:
            return model(**batch).loss
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        loss = self._loss_of(logits, batch["labels"])
        if cfg.rdrop:
            second = model(**inputs).logits.float()
            loss = (loss + self._loss_of(second, batch["labels"])) / 2 + cfg.rdrop * self._symmetric_kl(logits, second)
        return loss

    def _loss_of(self, logits: Any, labels: Any) -> Any:
        torch = require("torch", extra="hf")
        functional = torch.nn.functional
        weights = None
        if self.class_weights is not None:
            if self._weights_tensor is None or self._weights_tensor.device != logits.device:
                self._weights_tensor = torch.tensor(self.class_weights, device=logits.device)
            weights = self._weights_tensor
        smoothing = self.config.label_smoothing
        if self.multi_label:
            targets = labels.float() * (1 - smoothing) + smoothing / 2
            bce = functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            return (bce * weights).mean() if weights is not None else bce.mean()
        return functional.cross_entropy(logits, labels, weight=weights, label_smoothing=smoothing)

    def _symmetric_kl(self, a: Any, b: Any) -> Any:
        torch = require("torch", extra="hf")
        functional = torch.nn.functional
        if self.multi_label:  # per-label Bernoulli distributions
            pa, pb = torch.sigmoid(a).clamp(1e-6, 1 - 1e-6), torch.sigmoid(b).clamp(1e-6, 1 - 1e-6)
            kl_ab = pa * (pa / pb).log() + (1 - pa) * ((1 - pa) / (1 - pb)).log()
            kl_ba = pb * (pb / pa).log() + (1 - pb) * ((1 - pb) / (1 - pa)).log()
            return (kl_ab + kl_ba).sum(-1).mean() / 2
        la, lb = functional.log_softmax(a, -1), functional.log_softmax(b, -1)
        kl_ab = functional.kl_div(lb, la, log_target=True, reduction="batchmean")  # KL(a || b)
        kl_ba = functional.kl_div(la, lb, log_target=True, reduction="batchmean")
        return (kl_ab + kl_ba) / 2

    # evaluation --------------------------------------------------------------------------------------------
    def predict_ids(
        self, model: Any, tokenizer: Any, examples: Sequence[Any], *, batch_size: int = 64
    ) -> list[set[int]]:
        """Predicted label-id sets (argmax, or sigmoid >= 0.5 for multi-label), in the order of `examples`."""
        torch = require("torch", extra="hf")
        from yulian.tuning.data import length_grouped_batches

        features = self.encode([TextExample(e.text, text_pair=e.text_pair, line=e.line) for e in examples], tokenizer)
        order = length_grouped_batches([len(f["input_ids"]) for f in features], batch_size, shuffle=False)
        device = next(model.parameters()).device
        out: list[set[int]] = [set() for _ in features]
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for idx in order:
                    batch = self.collate([features[i] for i in idx], tokenizer)
                    logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float()
                    if self.multi_label:
                        hits = (torch.sigmoid(logits) >= 0.5).tolist()
                        rows = [{j for j, hit in enumerate(row) if hit} for row in hits]
                    else:
                        rows = [{j} for j in logits.argmax(-1).tolist()]
                    for i, row in zip(idx, rows, strict=True):
                        out[i] = row
        finally:
            model.train(was_training)
        return out

    def _gold(self, examples: Sequence[Any]) -> list[set[int]]:
        labels = self._labels()
        return [set(labels.encode(e.targets)) for e in examples]

    def evaluate(
        self, model: Any, tokenizer: Any, examples: Sequence[Any], *, batch_size: int = 64
    ) -> dict[str, float]:
        """accuracy and macro_f1 (multi-label: micro_f1, macro_f1, subset_accuracy) on labelled `examples`."""
        gold = self._gold(examples)
        pred = self.predict_ids(model, tokenizer, examples, batch_size=batch_size)
        return classification_metrics(gold, pred, self.multi_label)

    def report(self, model: Any, tokenizer: Any, examples: Sequence[Any]) -> str:
        """scikit-learn's classification_report on `examples` ("" when scikit-learn is not installed)."""
        try:
            from sklearn.metrics import classification_report  # type: ignore[import-untyped]
        except ImportError:
            return "(install scikit-learn for a per-label report: pip install 'yulian[tune]')"
        labels = self._labels()
        gold = self._gold(examples)
        pred = self.predict_ids(model, tokenizer, examples)
        ids = list(range(len(labels)))
        if self.multi_label:
            import numpy as np

            def hot(rows: Sequence[set[int]]) -> Any:
                return np.array([[int(j in row) for j in ids] for row in rows])

            text: str = classification_report(
                hot(gold), hot(pred), labels=ids, target_names=list(labels.labels), zero_division=0
            )
            return text
        text = classification_report(
            [min(g) for g in gold],
            [min(p) for p in pred],
            labels=ids,
            target_names=list(labels.labels),
            zero_division=0,
            digits=3,
        )
        return text

    def predictor(self, model_dir: str | Path) -> Any:
        """`yulian.models.HFClassifier` over the trained model folder."""
        from yulian.models import HFClassifier

        return HFClassifier(str(model_dir), max_length=self.config.max_length, multi_label=self.multi_label)

    # persistence -------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Labels, multi_label and class weights."""
        labels = self._labels()
        return {"labels": list(labels.labels), "multi_label": self.multi_label, "class_weights": self.class_weights}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore `state()`."""
        if "labels" in state:
            self.multi_label = bool(state.get("multi_label", False))
            self.label_map = LabelMap(state["labels"], multi_label=self.multi_label, sort=False)
            self.class_weights = state.get("class_weights")
