"""Compression of encoder models with a fidelity gate: ONNX export, quantisation, pruning, deployable artefacts.

    from yulian.compression import compress, load_artifact
    report = compress("runs/sst2", "onnx-int8", data="dev.tsv", out="runs/sst2-int8")   # raises if refused
    clf = load_artifact("runs/sst2-int8")            # a Runnable with the same interface as HFClassifier

Methods (`METHODS`): "onnx" (ONNX Runtime float32), "onnx-int8" (dynamic int8, per-channel weights),
"onnx-int8-per-tensor" (for comparison: distorts embeddings), "bf16" (bfloat16 weights), "torch-int8" (torch
dynamic int8 Linear layers), "prune-magnitude" (unstructured L1), "prune-heads" (structured: attention heads and,
optionally, FFN neurons by importance, then ONNX; optional recovery fine-tuning).

Every artefact is checked against the original model on a dev set (`yulian.compression.fidelity`) and refused
when the metric drop, label agreement or embedding cosine cross a threshold. `yulian.models.load(artefact_dir)`
returns the artefact's predictor. Nothing heavy is imported here: torch, onnxruntime and friends load on use.
"""

from __future__ import annotations

from yulian.compression.artifacts import (
    ARTIFACT_FILE,
    ArtifactInfo,
    is_artifact,
    load_artifact,
    read_info,
)
from yulian.compression.commands import METHODS, CompressionRefused, compress, compress_command
from yulian.compression.fidelity import FidelityReport, Thresholds, check_fidelity

__all__ = [  # noqa: RUF022 - plain sorted(), as tests/unit/test_public_api.py checks
    "ARTIFACT_FILE",
    "ArtifactInfo",
    "CompressionRefused",
    "FidelityReport",
    "METHODS",
    "Thresholds",
    "check_fidelity",
    "compress",
    "compress_command",
    "is_artifact",
    "load_artifact",
    "read_info",
]
