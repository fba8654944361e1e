"""Few-shot classification: a handful of labelled examples per class, two ways, from the API and the CLI.

- **In context** (`InContextClassifier`, `yulian.tuning.fewshot_icl`): a local causal LM reads k demonstrations
  per class and the input; each label's verbalised word is scored as the continuation (constrained scoring,
  length-normalised, optionally with contextual calibration). Nothing is trained.
- **SetFit** (`train_setfit` / `SetFitClassifier`, `yulian.tuning.fewshot_setfit`): contrastive fine-tuning of a
  sentence encoder on pairs of the examples, then a logistic-regression head.

```
$ yulian fewshot icl --train sst2.tsv --text-field sentence --eval dev.tsv --per-class 8 \\
      --verbalizer 0=negative,1=positive --template 'Review: {text}\\nSentiment: {label}' --calibrate
{"method": "icl", "accuracy": 0.79, "macro_f1": 0.79, ...}
$ yulian fewshot setfit --train sst2.tsv --text-field sentence --eval dev.tsv --per-class 8 --out runs/setfit
$ echo "a gripping, funny film" | yulian fewshot predict runs/setfit
$ yulian fewshot eval runs/setfit dev.tsv --text-field sentence
```
Both classifiers are Runnables returning `Prediction`s (label, score, every label's probability) with
`task = "classify"`, so they chain, batch, stream and serve like `HFClassifier`. `load_fewshot(folder)` loads
either kind from its folder (`icl --save DIR` writes an in-context one).
"""

from __future__ import annotations

import json as _json
import sys
import time
from pathlib import Path
from typing import Any

from yulian.tuning.fewshot_data import (
    as_shots,
    check_verbalizer,
    classification_scores,
    label_order,
    parse_verbalizer,
    sample_per_class,
)
from yulian.tuning.fewshot_icl import ICL_FILE, ICLConfig, InContextClassifier, LabelScores
from yulian.tuning.fewshot_setfit import (
    SETFIT_FILE,
    SetFitClassifier,
    SetFitConfig,
    SetFitResult,
    contrastive_pairs,
    train_setfit,
)

__all__ = [
    "FEWSHOT_COMMANDS",
    "ICLConfig",
    "InContextClassifier",
    "LabelScores",
    "SetFitClassifier",
    "SetFitConfig",
    "SetFitResult",
    "as_shots",
    "check_verbalizer",
    "classification_scores",
    "contrastive_pairs",
    "fewshot_eval_command",
    "fewshot_icl_command",
    "fewshot_predict_command",
    "fewshot_setfit_command",
    "is_fewshot_folder",
    "label_order",
    "load_fewshot",
    "parse_verbalizer",
    "sample_per_class",
    "train_setfit",
]


def is_fewshot_folder(folder: str | Path) -> bool:
    """Whether `folder` holds a SetFit classifier or a saved in-context classifier."""
    return (Path(folder) / SETFIT_FILE).is_file() or (Path(folder) / ICL_FILE).is_file()


def load_fewshot(folder: str | Path, **options: Any) -> SetFitClassifier | InContextClassifier:
    """The few-shot classifier saved in `folder`: a `SetFitClassifier` or an `InContextClassifier`."""
    if (Path(folder) / SETFIT_FILE).is_file():
        return SetFitClassifier(folder, **options)
    if (Path(folder) / ICL_FILE).is_file():
        return InContextClassifier.load(folder, **options)
    raise FileNotFoundError(f"{folder} holds no few-shot classifier ({SETFIT_FILE} or {ICL_FILE})")


# ============================================================================================ commands
def _read(path: str, text_field: str, label_field: str, fmt: str | None, encoding: str, skip_bad: bool) -> list[Any]:
    from yulian.tuning.data import TextExample, read_records

    records = read_records(
        path,
        task="classification",
        text_field=text_field,
        label_field=label_field,
        fmt=fmt,
        encoding=encoding,
        skip_bad=skip_bad,
    )
    return list(records.of(TextExample))


def _threads(threads: int | None) -> None:
    if threads:
        from yulian._optional import require

        require("torch", extra="hf").set_num_threads(threads)


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def _predict_stdin(predictor: Any, batch_size: int) -> None:
    texts = [line.rstrip("\r\n") for line in sys.stdin]
    texts = [t for t in texts if t.strip()]
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        for text, output in zip(chunk, predictor.batch(chunk), strict=True):
            print(_json.dumps({"text": text, **output.to_dict()}, ensure_ascii=False))


def fewshot_icl_command(
    train: str | None = None,
    eval: str | None = None,
    model: str = "smollm2-135m-instruct",
    per_class: int = 8,
    seed: int = 0,
    verbalizer: str | None = None,
    template: str = "Text: {text}\\nLabel: {label}",
    instruction: str = "",
    calibrate: bool = False,
    embedder: str | None = None,
    batch_size: int = 16,
    max_text_tokens: int = 96,
    dtype: str = "auto",
    limit: int | None = None,
    save: str | None = None,
    text_field: str = "text",
    label_field: str = "label",
    format: str | None = None,  # the CLI option is --format
    encoding: str = "utf-8",
    skip_bad: bool = False,
    threads: int | None = None,
) -> int:
    """Classify with a local causal LM and k demonstrations per class (in-context, constrained scoring).

    With --eval, print the metrics as JSON; without, read texts from stdin (one per line) and print one JSON
    prediction per line.

    Args:
        train: the labelled examples the demonstrations are drawn from (jsonl, csv, tsv...).
        eval: a labelled file to score (default: predict the texts on stdin).
        model: the causal LM: smollm2-135m-instruct, a Hugging Face folder or a .gguf file.
        per_class: demonstrations of every label in the prompt.
        seed: which demonstrations are drawn (and their order).
        verbalizer: the word of every label, LABEL=WORD,... (e.g. 0=negative,1=positive); default: the names.
        template: how an example is written: {text}, then {label} at the end (\\n for a new line).
        instruction: text before the demonstrations.
        calibrate: contextual calibration (divide out the label bias measured on content-free inputs).
        embedder: an encoder (e.g. minilm-l6): each input gets the most similar examples of every label.
        batch_size: inputs per forward pass.
        max_text_tokens: texts are cut to this many tokens.
        dtype: auto, float32 or bfloat16.
        limit: score only the first N examples of --eval.
        save: write the classifier (model, demonstrations, verbalizer) into this folder for `fewshot predict`.
        text_field: field or column of the text.
        label_field: field or column of the label.
        format: the data format (default: from the extension).
        encoding: the data files' encoding.
        skip_bad: skip bad records instead of stopping at the first.
        threads: torch CPU threads.
    """
    if not train:
        raise ValueError("no examples: give --train FILE")
    _threads(threads)
    examples = _read(train, text_field, label_field, format, encoding, skip_bad)
    clf = InContextClassifier(
        model,
        examples,
        verbalizer=verbalizer,
        embedder=embedder,
        per_class=per_class,
        seed=seed,
        template=template.replace("\\n", "\n"),
        instruction=instruction.replace("\\n", "\n"),
        calibrate=calibrate,
        batch_size=batch_size,
        max_text_tokens=max_text_tokens,
        dtype=dtype,
    )
    if save:
        clf.save(save)
    if not eval:
        _predict_stdin(clf, batch_size)
        return 0
    shots = as_shots(_read(eval, text_field, label_field, format, encoding, skip_bad), what="eval examples")
    shots = shots[:limit] if limit else shots
    clf.warm_up()
    started = time.perf_counter()
    predicted = [p.label for p in clf.batch([t for t, _ in shots])]
    seconds = time.perf_counter() - started
    metrics = classification_scores([y for _, y in shots], predicted, clf.labels)
    summary = {
        "method": "icl",
        "model": model,
        "per_class": per_class,
        "calibrate": calibrate,
        "examples": len(shots),
        **metrics,
        "ms_per_text": 1000 * seconds / len(shots),
    }
    print(_json.dumps(_rounded(summary), ensure_ascii=False))
    return 0


def fewshot_setfit_command(
    train: str | None = None,
    out: str = "runs/setfit",
    eval: str | None = None,
    model: str = "minilm-l6",
    per_class: int = 8,
    seed: int = 42,
    epochs: int = 1,
    batch_size: int = 16,
    lr: float = 2e-5,
    sampling: str = "oversampling",
    iterations: int | None = None,
    max_length: int = 128,
    precision: str = "auto",
    text_field: str = "text",
    label_field: str = "label",
    format: str | None = None,  # the CLI option is --format
    encoding: str = "utf-8",
    skip_bad: bool = False,
    threads: int | None = None,
    progress: bool = True,
) -> int:
    """Train a SetFit classifier (contrastive tuning of a sentence encoder + logistic regression) into --out.

    Prints one JSON line: the folder, pairs, steps, seconds and, with --eval, the metrics.

    Args:
        train: the labelled examples (jsonl, csv, tsv...).
        out: the output folder (an encoder folder plus fewshot-setfit.json).
        eval: a labelled file to score the result on.
        model: the sentence encoder: minilm-l6, multilingual-e5-small or a folder.
        per_class: draw this many examples of every label from --train (0: use them all).
        seed: the draw, the pairs, the batches and the head.
        epochs: passes over the pairs.
        batch_size: pairs per step.
        lr: the encoder's learning rate.
        sampling: oversampling, undersampling or unique (how many positive and negative pairs).
        iterations: instead of --sampling, 2 x iterations x examples pairs.
        max_length: tokens per text.
        precision: auto, fp32 or bf16.
        text_field: field or column of the text.
        label_field: field or column of the label.
        format: the data format (default: from the extension).
        encoding: the data files' encoding.
        skip_bad: skip bad records instead of stopping at the first.
        threads: torch CPU threads.
        progress: print training progress on stderr.
    """
    if not train:
        raise ValueError("no training data: give --train FILE")
    shots = as_shots(_read(train, text_field, label_field, format, encoding, skip_bad))
    if per_class:
        shots = sample_per_class(shots, per_class, seed)
    dev = _read(eval, text_field, label_field, format, encoding, skip_bad) if eval else None
    config = SetFitConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        sampling=sampling,
        iterations=iterations,
        max_length=max_length,
        seed=seed,
        precision=precision,
        threads=threads,
        progress=progress,
    )
    if progress:
        print(f"SetFit on {len(shots)} examples, base {model}", file=sys.stderr)
    result = train_setfit(shots, out, base=model, config=config, eval_examples=dev)
    summary = {
        "out": str(result.out_dir),
        "examples": len(shots),
        "pairs": result.pairs,
        "steps": result.steps,
        "train_seconds": result.train_seconds,
        **result.metrics,
    }
    print(_json.dumps(_rounded(summary), ensure_ascii=False))
    return 0


def fewshot_predict_command(model: str, batch_size: int = 32) -> int:
    """Read texts from stdin, one per line; write one JSON line of predictions per text.

    Args:
        model: a SetFit folder (`fewshot setfit --out`) or a saved in-context classifier (`fewshot icl --save`).
        batch_size: texts per batch.
    """
    _predict_stdin(load_fewshot(model), batch_size)
    return 0


def fewshot_eval_command(
    model: str,
    data: str,
    text_field: str = "text",
    label_field: str = "label",
    format: str | None = None,  # the CLI option is --format
    encoding: str = "utf-8",
    skip_bad: bool = False,
    limit: int | None = None,
) -> int:
    """Score a few-shot classifier on a labelled file: one JSON line of metrics.

    Args:
        model: a SetFit folder or a saved in-context classifier.
        data: the labelled data file.
        text_field: field or column of the text.
        label_field: field or column of the label.
        format: the data format (default: from the extension).
        encoding: the data file's encoding.
        skip_bad: skip bad records instead of stopping at the first.
        limit: score only the first N examples.
    """
    clf = load_fewshot(model)
    shots = as_shots(_read(data, text_field, label_field, format, encoding, skip_bad), what="examples")
    shots = shots[:limit] if limit else shots
    started = time.perf_counter()
    predicted = [p.label for p in clf.batch([t for t, _ in shots])]
    seconds = time.perf_counter() - started
    metrics = classification_scores([y for _, y in shots], predicted, clf.labels)
    print(_json.dumps(_rounded({"examples": len(shots), **metrics, "ms_per_text": 1000 * seconds / len(shots)})))
    return 0


FEWSHOT_COMMANDS: dict[str, Any] = {
    "eval": fewshot_eval_command,
    "icl": fewshot_icl_command,
    "predict": fewshot_predict_command,
    "setfit": fewshot_setfit_command,
}
"""`yulian fewshot icl|setfit|predict|eval`: register as `"fewshot": FEWSHOT_COMMANDS` in `yulian.cli`."""
