"""The fidelity gate: a compressed artefact is measured against its original on a dev set, and refused when it
strays too far.

    report = check_fidelity("runs/sst2", "runs/sst2-int8", "dev.tsv", Thresholds(max_drop=0.5))
    report.passed, report.reasons, print(report.format())

For a fine-tuned model (a folder with `yulian_task.json`), both models are scored with the task's own metrics
(`Task.read` + `Task.evaluate`: accuracy / macro-F1, entity F1, SQuAD F1...), and the outputs of the two
predictors are compared example by example (label agreement; for classifiers also the largest probability
change). For a plain encoder, the embeddings of the dev texts are compared (cosine, mean and minimum).

Thresholds: `max_drop` is in points of the primary metric (0.5 = half a point of accuracy); `min_agreement` is a
fraction of examples with the same prediction (models without a task, hence without a metric, need
`UNLABELLED_MIN_AGREEMENT` unless it is given); `min_cosine` bounds the mean embedding cosine and
`min_worst_cosine` the lowest one.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yulian._optional import require

__all__ = ["UNLABELLED_MIN_AGREEMENT", "FidelityReport", "Thresholds", "check_fidelity", "read_texts"]

UNLABELLED_MIN_AGREEMENT = 0.98
"""Without a task (no yulian_task.json) a classifier, tagger or QA model has no metric: unless `min_agreement` is
given, the gate then requires this fraction of identical predictions."""


@dataclass(frozen=True)
class Thresholds:
    """When the gate refuses an artefact.

    Attributes:
        max_drop: the most the primary task metric may fall, in points (accuracy 0.912 -> 0.905 is 0.7 points).
        min_agreement: the least fraction of dev examples on which both models predict the same (None: no check).
        min_cosine: embedders: the least mean cosine between original and compressed embeddings.
        min_worst_cosine: embedders: the least cosine for any single dev text.
    """

    max_drop: float = 0.5
    min_agreement: float | None = None
    min_cosine: float = 0.99
    min_worst_cosine: float = 0.9

    def __post_init__(self) -> None:
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, int | float) or self.max_drop < 0:
            raise ValueError(f"Thresholds.max_drop must be a number of points >= 0, got {self.max_drop!r}")
        for name in ("min_agreement", "min_cosine", "min_worst_cosine"):
            value = getattr(self, name)
            if value is None and name == "min_agreement":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not -1 <= value <= 1:
                raise ValueError(f"Thresholds.{name} must be a number in [-1, 1], got {value!r}")


@dataclass
class FidelityReport:
    """What the gate measured and decided.

    Attributes:
        kind: the model kind ("classifier", "token-classifier", "qa", "encoder").
        examples: dev examples (or texts) compared.
        metric: the primary metric (None for embedders).
        original / compressed: the task metrics of each model.
        drop: fall of the primary metric in points (negative: the artefact scored higher).
        agreement: fraction of examples with the same prediction.
        max_prob_diff: classifiers: the largest change of a label probability.
        cosine_mean / cosine_min: embedders: cosine between original and compressed vectors.
        thresholds: the thresholds applied.
        passed: whether the artefact is accepted. reasons: why it was refused (empty when passed).
    """

    kind: str
    examples: int
    metric: str | None = None
    original: dict[str, float] = field(default_factory=dict)
    compressed: dict[str, float] = field(default_factory=dict)
    drop: float | None = None
    agreement: float | None = None
    max_prob_diff: float | None = None
    cosine_mean: float | None = None
    cosine_min: float | None = None
    thresholds: dict[str, Any] = field(default_factory=dict)
    passed: bool = True
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (floats rounded to 5 digits)."""
        return {k: _round(v) for k, v in asdict(self).items()}

    def format(self) -> str:
        """A few human-readable lines."""
        lines = [f"fidelity on {self.examples:,} dev examples ({self.kind}): {'PASSED' if self.passed else 'REFUSED'}"]
        if self.metric is not None:
            before, after = self.original.get(self.metric), self.compressed.get(self.metric)
            lines.append(f"  {self.metric}: original {before:.4f}, compressed {after:.4f}, drop {self.drop:+.2f} pt")
        if self.agreement is not None:
            lines.append(f"  prediction agreement: {self.agreement:.4f}")
        if self.max_prob_diff is not None:
            lines.append(f"  largest probability change: {self.max_prob_diff:.4f}")
        if self.cosine_mean is not None:
            lines.append(f"  embedding cosine: mean {self.cosine_mean:.5f}, min {self.cosine_min:.5f}")
        lines.extend(f"  refused: {r}" for r in self.reasons)
        return "\n".join(lines)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def check_fidelity(
    original: str | Path,
    compressed: Any,
    data: str | Path,
    thresholds: Thresholds | None = None,
    *,
    limit: int | None = None,
    text_field: str = "text",
    batch_size: int = 32,
    max_length: int | None = None,
) -> FidelityReport:
    """Measure the artefact `compressed` (a folder or a loaded predictor) against the model folder `original`.

    Args:
        original: the uncompressed model folder (a `yulian train` output, or any transformers encoder folder).
        compressed: the artefact folder, or its predictor (`load_artifact(..., allow_refused=True)`).
        data: the dev file: labelled data in the task's format for fine-tuned models; for plain encoders a text
            file (one text a line) or a .jsonl / .csv / .tsv file with a `text_field` column.
        thresholds: when to refuse (default `Thresholds()`).
        limit: compare only the first `limit` examples.
        text_field: the text column of an encoder's dev file.
        batch_size: examples per forward pass.
        max_length: tokens per input (default: the task's max_length, else the predictor's default).
    """
    from yulian.compression.artifacts import load_artifact
    from yulian.models.registry import load

    thresholds = thresholds or Thresholds()
    if isinstance(compressed, str | Path):
        compressed = load_artifact(compressed, allow_refused=True, batch_size=batch_size)
    task = _task_of(original)
    if task is not None and max_length is None:
        max_length = int(task.config.max_length)
    sizes: dict[str, Any] = {"batch_size": batch_size}
    if max_length is not None:  # else both keep their predictor's default
        sizes["max_length"] = max_length
    compressed = compressed.with_options(**sizes)
    reference = load(str(original), dtype="float32", **sizes)  # lazy: loads only if its results are not cached
    fp = _fingerprint(original, data, (limit, text_field, tuple(sorted(sizes.items()))))
    if task is None and _kind_of(reference) == "encoder":
        texts = read_texts(data, text_field=text_field, limit=limit)
        report = _compare_embeddings(reference, compressed, texts, fp)
    elif task is None:  # a classifier / tagger / QA model without yulian_task.json: outputs only, no metric
        inputs = _read_inputs(data, _kind_of(reference), text_field, limit)
        report = _compare_outputs(reference, compressed, inputs, fp)
    else:
        examples = list(task.read(data))[:limit]
        if not examples:
            raise ValueError(f"{data}: no dev examples")
        report = _compare_task(task, reference, compressed, examples, batch_size, fp)
    _decide(report, thresholds)
    return report


def _task_of(original: str | Path) -> Any:
    if not (Path(original) / "yulian_task.json").is_file():
        return None
    from yulian.tuning.tasks import Task

    return Task.from_dir(original)


_REFERENCE_CACHE: dict[tuple[Any, ...], Any] = {}
"""The original model's results by (model files, data file, options): compressing several variants of one model
in a process (`bench/compress.py`) runs the float32 reference once."""


def _fingerprint(original: str | Path, data: str | Path, extra: tuple[Any, ...]) -> tuple[Any, ...]:
    folder = Path(original).resolve()
    files = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir() if p.is_file()))
    d = Path(data).resolve()
    return (str(folder), files, str(d), d.stat().st_mtime_ns, d.stat().st_size, *extra)


def _memo(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    if key not in _REFERENCE_CACHE:
        if len(_REFERENCE_CACHE) >= 8:
            _REFERENCE_CACHE.pop(next(iter(_REFERENCE_CACHE)))
        _REFERENCE_CACHE[key] = compute()
    return _REFERENCE_CACHE[key]


def _compare_task(
    task: Any, reference: Any, compressed: Any, examples: list[Any], batch_size: int, fp: tuple[Any, ...]
) -> FidelityReport:
    comp_rt = compressed._runtime()
    metric = str(getattr(task, "metric_names", task.metrics)[0])

    def evaluate_reference() -> Any:
        rt = reference._runtime()
        return task.evaluate(rt.model, rt.tokenizer, examples, batch_size=batch_size)

    before = _memo((*fp, "evaluate"), evaluate_reference)
    after = task.evaluate(comp_rt.model, comp_rt.tokenizer, examples, batch_size=batch_size)
    b, a = float(before[metric]), float(after[metric])
    scale = 100.0 if abs(b) <= 1.0 and abs(a) <= 1.0 else 1.0
    report = _compare_outputs(reference, compressed, [_input_of(e) for e in examples], fp)
    report.metric = metric
    report.original = {k: float(v) for k, v in before.items()}
    report.compressed = {k: float(v) for k, v in after.items()}
    report.drop = (b - a) * scale
    return report


def _compare_outputs(reference: Any, compressed: Any, inputs: list[Any], fp: tuple[Any, ...]) -> FidelityReport:
    """Agreement of the two predictors' outputs (and, for classifiers, the largest probability change)."""
    ref_out = _memo((*fp, "outputs"), lambda: reference.batch(inputs))
    comp_out = compressed.batch(inputs)
    same = sum(_key(x) == _key(y) for x, y in zip(ref_out, comp_out, strict=True))
    prob_diff = None
    if ref_out and hasattr(ref_out[0], "scores"):
        prob_diff = max(
            abs(x.scores[label] - y.scores.get(label, 0.0))
            for x, y in zip(ref_out, comp_out, strict=True)
            for label in x.scores
        )
    return FidelityReport(
        kind=_kind_of(reference), examples=len(inputs), agreement=same / len(inputs), max_prob_diff=prob_diff
    )


def _compare_embeddings(reference: Any, compressed: Any, texts: list[str], fp: tuple[Any, ...]) -> FidelityReport:
    np = require("numpy", extra="hf")
    a = _memo((*fp, "embeddings"), lambda: reference.embed_numpy(texts))
    b = compressed.embed_numpy(texts)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    cos = (a * b).sum(axis=1)
    return FidelityReport(
        kind="encoder", examples=len(texts), cosine_mean=float(cos.mean()), cosine_min=float(cos.min())
    )


def _decide(report: FidelityReport, t: Thresholds) -> None:
    report.thresholds = asdict(t)
    reasons = []
    if report.drop is not None and (math.isnan(report.drop) or report.drop > t.max_drop):
        reasons.append(f"{report.metric} fell {report.drop:.2f} points (max_drop {t.max_drop})")
    min_agreement = t.min_agreement
    if min_agreement is None and report.drop is None:  # no labels, no metric: agreement is all there is to gate on
        min_agreement = UNLABELLED_MIN_AGREEMENT
    if min_agreement is not None and report.agreement is not None and report.agreement < min_agreement:
        reasons.append(f"predictions agree on {report.agreement:.4f} of examples (min_agreement {min_agreement})")
    if report.cosine_mean is not None and not report.cosine_mean >= t.min_cosine:
        reasons.append(f"mean embedding cosine {report.cosine_mean:.5f} < min_cosine {t.min_cosine}")
    if report.cosine_min is not None and not report.cosine_min >= t.min_worst_cosine:
        reasons.append(f"lowest embedding cosine {report.cosine_min:.5f} < min_worst_cosine {t.min_worst_cosine}")
    report.reasons = reasons
    report.passed = not reasons


def _kind_of(predictor: Any) -> str:
    names = {
        "HFClassifier": "classifier",
        "HFTokenClassifier": "token-classifier",
        "HFQuestionAnswerer": "qa",
        "HFEmbedder": "encoder",
    }
    return names.get(type(predictor).__name__, type(predictor).__name__)


def _read_inputs(data: str | Path, kind: str, text_field: str, limit: int | None) -> list[Any]:
    """Predictor inputs from a dev file without labels: texts, or question/context records for QA (.jsonl)."""
    if kind != "qa":
        return list(read_texts(data, text_field=text_field, limit=limit))
    inputs: list[Any] = []
    with Path(data).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                record = json.loads(line)
                question, context = (_field(record, k, Path(data), n) for k in ("question", "context"))
                inputs.append({"question": question, "context": context})
    if not inputs[:limit]:
        raise ValueError(f"{data}: no question/context records")
    return inputs[:limit]


def _input_of(example: Any) -> Any:
    if hasattr(example, "question") and hasattr(example, "context"):
        return {"question": example.question, "context": example.context}
    pair = getattr(example, "text_pair", None)
    return (example.text, pair) if pair is not None else example.text


def _key(output: Any) -> Any:
    """What must match for two predictions to agree: the label(s), the entity spans, the answer span."""
    if hasattr(output, "labels") and hasattr(output, "label"):
        return tuple(output.labels)
    if isinstance(output, list):
        return [(e.start, e.end, e.type) for e in output]
    if hasattr(output, "start") and hasattr(output, "end"):
        return (output.start, output.end)
    return output


def read_texts(path: str | Path, *, text_field: str = "text", limit: int | None = None) -> list[str]:
    """Texts of a dev file for embedders: .txt (one a line), .jsonl (`text_field`), .csv / .tsv (header row)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"dev file not found: {path}")
    suffix = file.suffix.lower()
    texts: list[str] = []
    with file.open(encoding="utf-8", newline="") as f:
        if suffix in (".jsonl", ".json"):
            for n, line in enumerate(f, 1):
                if line.strip():
                    texts.append(_field(json.loads(line), text_field, file, n))
        elif suffix in (".csv", ".tsv"):
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",", quoting=csv.QUOTE_NONE)
            if reader.fieldnames is None or text_field not in reader.fieldnames:
                columns = ", ".join(reader.fieldnames or [])
                raise ValueError(f"{path}: no column {text_field!r} (columns: {columns}); pass --text-field")
            texts = [row[text_field] for row in reader if row.get(text_field)]
        else:
            texts = [line.rstrip("\r\n") for line in f if line.strip()]
    texts = texts[:limit]
    if not texts:
        raise ValueError(f"{path}: no texts")
    return texts


def _field(record: Any, name: str, file: Path, line: int) -> str:
    if not isinstance(record, dict) or not isinstance(record.get(name), str):
        keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{file}, line {line}: no text field {name!r} (fields: {keys}); pass --text-field")
    return str(record[name])
