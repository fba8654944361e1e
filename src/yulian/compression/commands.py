"""`compress(...)` and the `yulian compress` command: build an artefact, gate it on a dev set, keep or refuse it.

    yulian compress --model runs/sst2 --method onnx-int8 --data dev.tsv --out runs/sst2-int8 --max-drop 0.5

The artefact is built in `OUT.partial`, measured against the original (`yulian.compression.fidelity`), then
moved to `OUT` when it passes. When it is refused, it is moved to `OUT.refused` (with its report in
`compression.json`), the report is printed and the command exits with status 3; `--force` keeps it as `OUT`
anyway (marked refused: `load_artifact` then needs `allow_refused=True`).
"""

from __future__ import annotations

import json as _json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.compression.artifacts import ArtifactInfo, folder_size, is_artifact, write_info
from yulian.compression.fidelity import FidelityReport, Thresholds, check_fidelity, read_texts

__all__ = ["METHODS", "CompressionRefused", "CompressionResult", "compress", "compress_command"]

METHODS = (
    "onnx",
    "onnx-int8",
    "onnx-int8-per-tensor",
    "bf16",
    "torch-int8",
    "prune-magnitude",
    "prune-heads",
)
"""The compression methods `compress` knows."""

REFUSED_EXIT = 3
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".data", ".h5", ".msgpack", ".gguf")
_SKIP = {"metrics.json", "report.md", "curves.png", "split.json", "compression.json", "training_args.bin"}


class CompressionRefused(RuntimeError):
    """The fidelity gate refused the artefact; `report` says why and `path` is where the refused artefact is."""

    def __init__(self, report: FidelityReport, path: Path) -> None:
        super().__init__(f"compressed model refused: {'; '.join(report.reasons)} (artefact kept in {path})")
        self.report = report
        self.path = path


@dataclass
class CompressionResult:
    """What `compress` produced: the artefact folder, its info and the gate's report."""

    path: Path
    info: ArtifactInfo
    report: FidelityReport


def compress(
    model: str | Path,
    method: str,
    data: str | Path,
    out: str | Path,
    *,
    thresholds: Thresholds | None = None,
    amount: float = 0.3,
    heads: float = 0.25,
    ffn: float = 0.0,
    int8: bool = False,
    int8_embeddings: bool = True,
    fp32_ffn_output: bool = False,
    recover_train: str | Path | None = None,
    recover_steps: int = 200,
    calibration: str | Path | None = None,
    limit: int | None = None,
    text_field: str = "text",
    batch_size: int = 32,
    threads: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> CompressionResult:
    """Compress the model folder `model` with `method` into the artefact folder `out`, gated on `data`.

    Args:
        model: a fine-tuned model folder (`yulian train` output), an encoder folder or a registered name.
        method: one of `METHODS`.
        data: the dev file the gate measures on (and, for prune-heads without `recover_train`, the importance).
        out: the artefact folder to write.
        thresholds: when to refuse (default `Thresholds()`: drop <= 0.5 pt, mean cosine >= 0.99).
        amount: prune-magnitude: fraction of weights zeroed per layer.
        heads / ffn: prune-heads: fraction of attention heads / FFN neurons removed (ranked by importance).
        int8: prune-heads: also quantise the pruned ONNX graph to int8 (per-channel).
        int8_embeddings: int8 methods: quantise the embedding tables too (much smaller file), not only matmuls.
        fp32_ffn_output: int8 ONNX methods: keep the FFN output projections in float32 (closer embeddings,
            slower); the knob to try when an embedder misses `min_cosine`.
        recover_train: training file for recovery fine-tuning after pruning (fine-tuned models only).
        recover_steps: optimiser steps of recovery fine-tuning.
        calibration: prune-heads: the file whose first 256 examples rank heads and neurons (default:
            `recover_train`, else `data`; ranking on the dev set itself flatters the gate).
        limit: gate on the first `limit` dev examples only.
        text_field: the text column of an encoder's dev file.
        batch_size: examples per forward pass in the gate.
        threads: torch / ONNX Runtime threads (None: their defaults).
        force: keep a refused artefact as `out` (marked refused) instead of raising.
        progress: print what happens on stderr.

    Raises:
        CompressionRefused: the gate refused the artefact (it is left in `OUT.refused`).
    """
    from yulian.compression.export import kind_of_model
    from yulian.models.registry import resolve

    if method not in METHODS:
        raise ValueError(f"unknown compression method {method!r} (methods: {', '.join(METHODS)})")
    source = Path(resolve(str(model)).path)
    kind = kind_of_model(source)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not is_artifact(out):
        raise FileExistsError(f"{out} exists and is not a compressed artefact: choose another --out")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    if threads:
        require("torch", extra="hf").set_num_threads(threads)
    o: dict[str, Any] = {
        "amount": amount,
        "heads": heads,
        "ffn": ffn,
        "int8": int8,
        "int8_embeddings": int8_embeddings,
        "fp32_ffn_output": fp32_ffn_output,
        "recover_train": recover_train,
        "recover_steps": recover_steps,
        "calibration": calibration,
        "text_field": text_field,
        "threads": threads,
        "progress": progress,
    }
    try:
        _copy_side_files(source, partial)
        say(f"compressing {source} ({kind}) with {method}")
        info = _build(method, source, kind, partial, data, o, say)
        info.source = str(source)
        before, after = folder_size(source), folder_size(partial)
        ratio = round(after / before, 4) if before else None
        info.sizes = {"source_bytes": before, "artifact_bytes": after, "ratio": ratio}
        write_info(partial, info)
        say(f"artefact {after / 1e6:.1f} MB ({before / 1e6:.1f} MB before); checking fidelity on {data}")
        report = check_fidelity(
            source, partial, data, thresholds, limit=limit, text_field=text_field, batch_size=batch_size
        )
        info.fidelity = report.to_dict()
        write_info(partial, info)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # no half-built artefact left behind
        raise
    say(report.format())
    if report.passed or force:
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
        return CompressionResult(out, info, report)
    refused = out.with_name(out.name + ".refused")
    shutil.rmtree(refused, ignore_errors=True)
    partial.rename(refused)
    raise CompressionRefused(report, refused)


def _copy_side_files(source: Path, dest: Path) -> None:
    """Config, tokenizer and task files (everything small that is not weights or a training by-product)."""
    for file in source.iterdir():
        if file.is_file() and not file.name.endswith(_WEIGHTS) and file.name not in _SKIP:
            shutil.copy2(file, dest / file.name)


def _build(
    method: str, source: Path, kind: str, dest: Path, data: str | Path, o: dict[str, Any], say: Any
) -> ArtifactInfo:
    """Write the compressed model into `dest`; `o` holds the method options of `compress`."""
    from yulian.compression import export, quantize

    if method == "onnx" or method.startswith("onnx-int8"):
        model, _, _ = export.load_torch_model(source, kind)
        if method == "onnx":
            export.export_onnx(model, dest / "model.onnx", kind)
            return ArtifactInfo(method, kind, "onnx", "model.onnx")
        per_channel, tables = method == "onnx-int8", bool(o["int8_embeddings"])
        export.export_onnx(model, dest / "model.fp32.onnx", kind)
        keep = bool(o["fp32_ffn_output"])
        quantize.quantize_onnx(
            dest / "model.fp32.onnx",
            dest / "model.onnx",
            per_channel=per_channel,
            embeddings=tables,
            fp32_ffn_output=keep,
        )
        (dest / "model.fp32.onnx").unlink()
        options = {"per_channel": per_channel, "int8_embeddings": tables, "fp32_ffn_output": keep}
        return ArtifactInfo(method, kind, "onnx", "model.onnx", dtype="int8", options=options)
    if method == "bf16":
        model, _, _ = export.load_torch_model(source, kind)
        quantize.to_bf16(model).save_pretrained(str(dest))
        return ArtifactInfo(method, kind, "torch", "model.safetensors", dtype="bfloat16")
    if method == "torch-int8":
        torch = require("torch", extra="hf")
        model, _, _ = export.load_torch_model(source, kind)
        torch.save(quantize.torch_dynamic_int8(model).state_dict(), dest / "model_int8.pt")
        return ArtifactInfo(method, kind, "torch", "model_int8.pt", dtype="int8")
    if method == "prune-magnitude":
        return _magnitude(source, kind, dest, o, say)
    return _structured(source, kind, dest, data, o, say)


def _recovery_data(source: Path, o: dict[str, Any]) -> tuple[Any, list[Any], list[Any]]:
    """The task, and the recovery training examples split into train and a held-out part that picks the best
    checkpoint (never the gate's dev set: selecting on it would flatter the gate)."""
    from yulian.tuning.data import train_dev_split
    from yulian.tuning.tasks import Task

    if not (source / "yulian_task.json").is_file():
        raise ValueError(f"recovery fine-tuning needs a fine-tuned model (with yulian_task.json); {source} has none")
    task = Task.from_dir(source)
    examples = list(task.read(o["recover_train"]))
    if len(examples) < 20:
        return task, examples, []
    held = min(0.1, 500 / len(examples))
    split = train_dev_split(examples, dev_fraction=held, seed=42)
    return task, list(split.train), list(split.dev)


def _recover(source: Path, model: Any, tokenizer: Any, o: dict[str, Any], say: Any, after_step: Any = None) -> Any:
    """Recovery fine-tuning of a pruned model on `--recover-train` (`prune.recover`)."""
    from yulian.compression import prune

    task, train, dev = _recovery_data(source, o)
    say(f"recovery fine-tuning: {o['recover_steps']} steps on {o['recover_train']}")
    return prune.recover(
        task,
        model,
        tokenizer,
        train,
        dev,
        steps=int(o["recover_steps"]),
        threads=o["threads"],
        progress=o["progress"],
        after_step=after_step,
    )


def _magnitude(source: Path, kind: str, dest: Path, o: dict[str, Any], say: Any) -> ArtifactInfo:
    from yulian.compression import export, prune

    model, tokenizer, _ = export.load_torch_model(source, kind)
    stats = prune.magnitude_prune(model, float(o["amount"]))
    options: dict[str, Any] = {"amount": o["amount"]}
    if o["recover_train"]:
        keep_sparse = lambda m: prune.magnitude_prune(m, float(o["amount"]))  # noqa: E731
        model = _recover(source, model, tokenizer, o, say, after_step=keep_sparse)
        options["recover_steps"] = o["recover_steps"]
    options["sparsity"] = round(prune.sparsity(model), 4)
    say(f"magnitude pruning: sparsity {stats['sparsity']:.3f}")
    model.save_pretrained(str(dest))
    return ArtifactInfo("prune-magnitude", kind, "torch", "model.safetensors", options=options)


def _structured(source: Path, kind: str, dest: Path, data: str | Path, o: dict[str, Any], say: Any) -> ArtifactInfo:
    from yulian.compression import export, prune, quantize

    model, tokenizer, _ = export.load_torch_model(source, kind)
    task = None
    if (source / "yulian_task.json").is_file():
        from yulian.tuning.tasks import Task

        task = Task.from_dir(source)
    calibration = o["calibration"] or o["recover_train"] or data
    batches, loss = _calibration(task, tokenizer, calibration, o["text_field"], kind)
    head_plan = prune.plan(prune.head_importance(model, batches, loss), float(o["heads"]))
    ffn_plan = prune.plan(prune.ffn_importance(model, batches), float(o["ffn"])) if o["ffn"] else {}
    n_heads = prune.prune_heads(model, head_plan)
    n_ffn = prune.prune_ffn(model, ffn_plan)
    say(f"structured pruning: removed {n_heads} attention heads and {n_ffn} FFN neurons")
    options: dict[str, Any] = {"heads": o["heads"], "ffn": o["ffn"], "int8": bool(o["int8"])}
    if o["recover_train"]:
        model = _recover(source, model, tokenizer, o, say)
        options["recover_steps"] = o["recover_steps"]
    target = dest / ("model.fp32.onnx" if o["int8"] else "model.onnx")
    export.export_onnx(model, target, kind)
    if o["int8"]:
        quantize.quantize_onnx(
            target,
            dest / "model.onnx",
            per_channel=True,
            embeddings=bool(o["int8_embeddings"]),
            fp32_ffn_output=bool(o["fp32_ffn_output"]),
        )
        target.unlink()
    pruned = {"heads": {str(k): v for k, v in head_plan.items()}, "ffn": {str(k): len(v) for k, v in ffn_plan.items()}}
    return ArtifactInfo(
        "prune-heads",
        kind,
        "onnx",
        "model.onnx",
        dtype="int8" if o["int8"] else "float32",
        options=options,
        pruned=pruned,
    )


def _calibration(
    task: Any, tokenizer: Any, path: str | Path, text_field: str, kind: str, *, count: int = 256, size: int = 16
) -> tuple[list[dict[str, Any]], Any]:
    """Batches for importance scores (the first `count` examples) and the loss to differentiate, if any."""
    if task is not None:
        examples = list(task.read(path))[:count]
        features = task.encode(examples, tokenizer)
        batches = [task.collate(features[i : i + size], tokenizer) for i in range(0, len(features), size)]
        return batches, task.loss
    texts = read_texts(path, text_field=text_field, limit=count)
    batches = [
        dict(tokenizer(texts[i : i + size], padding=True, truncation=True, max_length=128, return_tensors="pt"))
        for i in range(0, len(texts), size)
    ]
    return batches, None


# ============================================================================================ the CLI command
def compress_command(
    model: str | None = None,
    method: str = "onnx-int8",
    data: str | None = None,
    out: str | None = None,
    max_drop: float = 0.5,
    min_cosine: float = 0.99,
    min_worst_cosine: float = 0.9,
    min_agreement: float | None = None,
    amount: float = 0.3,
    heads: float = 0.25,
    ffn: float = 0.0,
    int8: bool = False,
    int8_embeddings: bool = True,
    fp32_ffn_output: bool = False,
    recover_train: str | None = None,
    recover_steps: int = 200,
    calibration: str | None = None,
    limit: int | None = None,
    text_field: str = "text",
    batch_size: int = 32,
    threads: int | None = None,
    force: bool = False,
    json: bool = False,
) -> int:
    """Compress an encoder (quantise / prune), check it against the original on a dev set, refuse it if it strays.

    Exit status 0 when the artefact passes the fidelity gate, 3 when it is refused (the artefact is left in
    OUT.refused and the report is printed), 1 on bad input.

    Args:
        model: the model folder (a `yulian train` output, an encoder folder) or a registered name.
        method: onnx, onnx-int8, onnx-int8-per-tensor, bf16, torch-int8, prune-magnitude or prune-heads.
        data: dev file for the gate (labelled, in the task's format; for an encoder: texts).
        out: the artefact folder to write.
        max_drop: refuse when the task's primary metric falls more than this many points.
        min_cosine: encoders: refuse when the mean embedding cosine to the original is lower.
        min_worst_cosine: encoders: refuse when any text's embedding cosine is lower.
        min_agreement: refuse when fewer than this fraction of predictions agree with the original.
        amount: prune-magnitude: fraction of weights zeroed per layer.
        heads: prune-heads: fraction of attention heads removed.
        ffn: prune-heads: fraction of FFN neurons removed.
        int8: prune-heads: also quantise the pruned model to int8.
        int8_embeddings: int8 methods: also quantise the embedding tables (smaller file).
        fp32_ffn_output: int8 ONNX methods: keep FFN output projections in float32 (closer embeddings, slower).
        recover_train: training file for recovery fine-tuning after pruning.
        recover_steps: steps of recovery fine-tuning.
        calibration: prune-heads: file ranking heads and neurons (default: --recover-train, else --data).
        limit: gate on the first N dev examples only.
        text_field: the text column of an encoder's dev file.
        batch_size: examples per forward pass in the gate.
        threads: CPU threads (default: all).
        force: keep a refused artefact as OUT anyway (marked refused).
        json: print the result as one JSON object.
    """
    missing = [f"--{n}" for n, v in (("model", model), ("data", data), ("out", out)) if not v]
    if missing:
        raise ValueError(f"yulian compress needs {', '.join(missing)}")
    assert model is not None and data is not None and out is not None
    thresholds = Thresholds(
        max_drop=max_drop, min_agreement=min_agreement, min_cosine=min_cosine, min_worst_cosine=min_worst_cosine
    )
    try:
        result = compress(
            model,
            method,
            data,
            out,
            thresholds=thresholds,
            amount=amount,
            heads=heads,
            ffn=ffn,
            int8=int8,
            int8_embeddings=int8_embeddings,
            fp32_ffn_output=fp32_ffn_output,
            recover_train=recover_train,
            recover_steps=recover_steps,
            calibration=calibration,
            limit=limit,
            text_field=text_field,
            batch_size=batch_size,
            threads=threads,
            force=force,
            progress=not json,
        )
    except CompressionRefused as e:
        if json:
            print(_json.dumps({"out": str(e.path), "passed": False, **e.report.to_dict()}, ensure_ascii=False))
        else:
            print(f"REFUSED: {'; '.join(e.report.reasons)}\nthe refused artefact is in {e.path}", file=sys.stderr)
        return REFUSED_EXIT
    summary = {"out": str(result.path), "method": method, "sizes": result.info.sizes, **result.report.to_dict()}
    if json:
        print(_json.dumps(summary, ensure_ascii=False))
    else:
        print(f"{result.path}: {method}, {result.info.sizes['artifact_bytes'] / 1e6:.1f} MB; fidelity passed")
    return 0 if result.report.passed else REFUSED_EXIT
