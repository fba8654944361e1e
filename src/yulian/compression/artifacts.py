"""The compressed artefact: a folder `load_artifact` (and `yulian.models.load`) turns back into a predictor.

An artefact folder holds:

- the model: `model.onnx` (ONNX methods), `model_int8.pt` (torch dynamic int8: the quantised state dict) or
  `model.safetensors` (bf16, magnitude pruning: a plain transformers folder);
- `config.json` and the tokenizer files of the original model, and its `yulian_task.json` when it has one;
- `compression.json` (`ArtifactInfo`): the method and its options, the model kind, where it came from, sizes
  before and after, and the fidelity numbers of the gate.

`load_artifact(path)` returns a `CompressedClassifier`, `CompressedTokenClassifier`, `CompressedQuestionAnswerer`
or `CompressedEmbedder`: subclasses of the `yulian.models` predictors (same interface, same tokenisation,
batching and post-processing) whose forward pass runs the compressed model (an ONNX Runtime session wrapped in
`OrtModel`, or the quantised torch module). Artefacts refused by the gate do not load unless `allow_refused=True`.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.models.hf_embed import HFEmbedder
from yulian.models.hf_encoder import Runtime
from yulian.models.hf_qa import HFQuestionAnswerer
from yulian.models.hf_tasks import HFClassifier, HFTokenClassifier

__all__ = [
    "ARTIFACT_FILE",
    "ArtifactInfo",
    "CompressedClassifier",
    "CompressedEmbedder",
    "CompressedQuestionAnswerer",
    "CompressedTokenClassifier",
    "folder_size",
    "is_artifact",
    "load_artifact",
    "read_info",
    "write_info",
]

ARTIFACT_FILE = "compression.json"
FORMAT_VERSION = 1
BACKENDS = ("onnx", "torch")
MODEL_FILES = {"onnx": "model.onnx", "torch-int8": "model_int8.pt", "hf": "model.safetensors"}


@dataclass
class ArtifactInfo:
    """What `compression.json` says about an artefact.

    Attributes:
        method: the compression method ("onnx-int8", "bf16", "prune-heads", ...).
        kind: the model kind: "classifier", "token-classifier", "qa" or "encoder".
        backend: "onnx" (an ONNX Runtime session) or "torch".
        model_file: the model file inside the folder.
        source: the folder of the original model.
        dtype: the weights' type ("int8", "float32", "bfloat16").
        options: the method's options (per_channel, amount, heads...).
        sizes: bytes of the original model file(s), of the compressed model file and their ratio.
        fidelity: the gate's report (`FidelityReport.to_dict()`), with `passed`.
        pruned: for structured pruning, what was removed ({"heads": {layer: [head, ...]}, "ffn": {...}}).
    """

    method: str
    kind: str
    backend: str
    model_file: str
    source: str = ""
    dtype: str = "float32"
    options: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=dict)
    pruned: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"ArtifactInfo.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.kind not in ("classifier", "token-classifier", "qa", "encoder"):
            raise ValueError(f"ArtifactInfo.kind must be classifier, token-classifier, qa or encoder: {self.kind!r}")

    @property
    def passed(self) -> bool | None:
        """Whether the artefact passed the fidelity gate (None when it was never checked)."""
        value = self.fidelity.get("passed")
        return None if value is None else bool(value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return asdict(self)


def is_artifact(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder holding a `compression.json`."""
    return (Path(path).expanduser() / ARTIFACT_FILE).is_file()


def read_info(path: str | os.PathLike[str]) -> ArtifactInfo:
    """The `ArtifactInfo` of the artefact folder `path` (clear errors for a missing or malformed file)."""
    file = Path(path).expanduser() / ARTIFACT_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a compressed artefact: {ARTIFACT_FILE} is missing")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{file}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a JSON object")
    known = set(ArtifactInfo.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{file}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if int(data.get("format", FORMAT_VERSION)) > FORMAT_VERSION:
        raise ValueError(f"{file}: format {data['format']} is newer than this yulian reads ({FORMAT_VERSION})")
    try:
        return ArtifactInfo(**data)
    except TypeError as e:
        raise ValueError(f"{file}: {e}") from None


def write_info(path: str | os.PathLike[str], info: ArtifactInfo) -> Path:
    """Write `info` as the folder's `compression.json`; returns the file."""
    file = Path(path) / ARTIFACT_FILE
    file.write_text(json.dumps(info.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return file


def folder_size(path: str | os.PathLike[str], *, weights_only: bool = True) -> int:
    """Bytes of the model weight files in a folder (`*.onnx`, `*.onnx.data`, `*.safetensors`, `*.bin`, `*.pt`)."""
    suffixes = (".onnx", ".data", ".safetensors", ".bin", ".pt")
    files = [p for p in Path(path).iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in files if not weights_only or p.name.endswith(suffixes))


# ============================================================================================ predictors
class _Compressed:
    """Mixin over an `HFEncoder` predictor: the forward pass runs the artefact's compressed model.

    It uses the `HFEncoder._load_model` seam (the model at a path) and keeps the artefact's dtype.
    """

    info: ArtifactInfo
    threads: int | None
    _auto_class: str

    def _init_artifact(self, path: str, threads: int | None, allow_refused: bool) -> None:
        info = read_info(path)
        if info.passed is False and not allow_refused:
            reasons = "; ".join(info.fidelity.get("reasons", [])) or "see compression.json"
            raise ValueError(
                f"{path} was refused by the fidelity gate ({reasons}); pass allow_refused=True to load it anyway"
            )
        self.info = info
        self.threads = threads

    def _load_model(self, path: str) -> Any:
        return build_model(path, self.info, threads=self.threads)

    def _choose_dtype(self, rt: Runtime) -> tuple[Any, str, str]:
        return rt.model, self.info.dtype, f"compressed artefact ({self.info.method}, {self.info.backend})"

    def runtime_info(self) -> dict[str, Any]:
        """The predictor's runtime info plus the artefact's method, backend, model file and size."""
        info: dict[str, Any] = super().runtime_info()  # type: ignore[misc]
        info.update(
            method=self.info.method,
            backend=self.info.backend,
            model_file=self.info.model_file,
            model_bytes=self.info.sizes.get("artifact_bytes"),
        )
        return info


class CompressedClassifier(_Compressed, HFClassifier):
    """`HFClassifier` over a compressed artefact (see `load_artifact`)."""

    def __init__(self, path: str, *, threads: int | None = None, allow_refused: bool = False, **options: Any) -> None:
        self._init_artifact(path, threads, allow_refused)
        options["dtype"] = "float32"
        HFClassifier.__init__(self, path, **options)


class CompressedTokenClassifier(_Compressed, HFTokenClassifier):
    """`HFTokenClassifier` over a compressed artefact (see `load_artifact`)."""

    def __init__(self, path: str, *, threads: int | None = None, allow_refused: bool = False, **options: Any) -> None:
        self._init_artifact(path, threads, allow_refused)
        options["dtype"] = "float32"
        HFTokenClassifier.__init__(self, path, **options)


class CompressedQuestionAnswerer(_Compressed, HFQuestionAnswerer):
    """`HFQuestionAnswerer` over a compressed artefact (see `load_artifact`)."""

    def __init__(self, path: str, *, threads: int | None = None, allow_refused: bool = False, **options: Any) -> None:
        self._init_artifact(path, threads, allow_refused)
        options["dtype"] = "float32"
        HFQuestionAnswerer.__init__(self, path, **options)


class CompressedEmbedder(_Compressed, HFEmbedder):
    """`HFEmbedder` over a compressed artefact (see `load_artifact`)."""

    def __init__(self, path: str, *, threads: int | None = None, allow_refused: bool = False, **options: Any) -> None:
        self._init_artifact(path, threads, allow_refused)
        options["dtype"] = "float32"
        HFEmbedder.__init__(self, path, **options)


PREDICTORS: dict[str, type[Any]] = {
    "classify": CompressedClassifier,
    "ner": CompressedTokenClassifier,
    "qa": CompressedQuestionAnswerer,
    "embed": CompressedEmbedder,
}
_TASK_OF_KIND = {"classifier": "classify", "token-classifier": "ner", "qa": "qa", "encoder": "embed"}


def load_artifact(
    path: str | os.PathLike[str],
    task: str | None = None,
    *,
    threads: int | None = None,
    allow_refused: bool = False,
    **options: Any,
) -> Any:
    """The predictor of a compressed artefact folder; cheap: the model loads on first use or `warm_up()`.

    Args:
        path: the artefact folder (the --out of `yulian compress`).
        task: "classify", "ner", "qa" or "embed"; None: the one that fits the model kind. An encoder artefact
            can only embed; a classifier artefact can also embed only if it was exported as an encoder.
        threads: ONNX Runtime intra-op threads (None: its default, one per core).
        allow_refused: load an artefact the fidelity gate refused.
        **options: the predictor's options (`batch_size`, `max_length`, `top_k`, `pooling`, ...).
    """
    folder = str(Path(path).expanduser())
    info = read_info(folder)
    expected = _TASK_OF_KIND[info.kind]
    task = {"classification": "classify", "embedding": "embed", "token-classification": "ner"}.get(task or "", task)
    if task is not None and task != expected:
        raise ValueError(
            f"{path} is a compressed {info.kind} ({info.method}): it serves task {expected!r}, not {task!r}"
        )
    options.pop("dtype", None)  # the artefact decides its dtype
    cls = PREDICTORS[expected]
    return cls(folder, threads=threads, allow_refused=allow_refused, **options)


def build_model(path: str | os.PathLike[str], info: ArtifactInfo, *, threads: int | None = None) -> Any:
    """The artefact's model, ready for inference: an `OrtModel` or a torch module (in eval mode)."""
    transformers = require("transformers", extra="hf")
    torch = require("torch", extra="hf")
    from yulian.compression.export import AUTO_CLASSES

    folder = Path(path)
    file = folder / info.model_file
    if not file.is_file():
        raise FileNotFoundError(f"{path}: the artefact's model file {info.model_file} is missing")
    config = transformers.AutoConfig.from_pretrained(str(folder))
    if info.backend == "onnx":
        from yulian.compression.runtime import OrtModel, session

        return OrtModel(session(file, threads=threads), config)
    auto = getattr(transformers, AUTO_CLASSES[info.kind])
    if info.method == "torch-int8":
        from yulian.compression.quantize import torch_dynamic_int8

        model = torch_dynamic_int8(auto.from_config(config))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation inside torch's quantised-tensor loading
            state = torch.load(file, map_location="cpu", weights_only=False)
        model.load_state_dict(state)
        return model.eval()
    dtype = getattr(torch, info.dtype) if info.dtype in ("bfloat16", "float16", "float32") else torch.float32
    return auto.from_pretrained(str(folder), dtype=dtype).eval()
