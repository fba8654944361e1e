"""Load a transformers encoder for compression, and export it to ONNX.

`load_torch_model(path)` gives (model, tokenizer, kind) in float32 eval mode; `export_onnx(model, out_file)` writes
an ONNX graph with dynamic batch and sequence axes whose inputs are `input_ids`, `attention_mask` (and
`token_type_ids` when the model has token types) and whose outputs carry the transformers output names
(`logits`, `start_logits` / `end_logits`, `last_hidden_state`), so an ONNX Runtime session can stand in for the
torch model behind the `yulian.models` predictors.

The TorchScript exporter (`dynamo=False`, opset 17) works offline; it can leave the model in train mode, so the
model is put back in eval mode afterwards (KNOWN.md).
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Any

from yulian._optional import require

__all__ = ["AUTO_CLASSES", "OUTPUT_NAMES", "export_onnx", "kind_of_model", "load_torch_model"]

AUTO_CLASSES = {
    "classifier": "AutoModelForSequenceClassification",
    "token-classifier": "AutoModelForTokenClassification",
    "qa": "AutoModelForQuestionAnswering",
    "encoder": "AutoModel",
}
"""Model kind (as in `yulian.models.registry`) -> the transformers Auto class that loads it."""

OUTPUT_NAMES = {
    "classifier": ("logits",),
    "token-classifier": ("logits",),
    "qa": ("start_logits", "end_logits"),
    "encoder": ("last_hidden_state",),
}
"""Model kind -> the outputs an exported graph returns (named as the transformers output fields)."""

OPSET = 17


def kind_of_model(path: str | Path) -> str:
    """ "classifier", "token-classifier", "qa" or "encoder", from the folder's config.json; chat models are refused."""
    from yulian.models.registry import kind_of_config

    file = Path(path) / "config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{path} is not a model folder: cannot read {file} ({e})") from None
    kind = kind_of_config(config)
    if kind == "chat":
        raise ValueError(
            f"{path} is a text generator; yulian compress handles encoders (classifiers, taggers, QA, embedders)"
        )
    return str(kind)


def load_torch_model(path: str | Path, kind: str | None = None) -> tuple[Any, Any, str]:
    """(model in float32 eval mode, tokenizer, kind) of a local transformers folder."""
    torch = require("torch", extra="hf")
    transformers = require("transformers", extra="hf")
    kind = kind or kind_of_model(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    model = getattr(transformers, AUTO_CLASSES[kind]).from_pretrained(str(path), dtype=torch.float32)
    model.eval()
    return model, tokenizer, kind


def input_names(model: Any) -> list[str]:
    """The inputs the exported graph takes: ids, mask and, for models with token types, token type ids."""
    names = ["input_ids", "attention_mask"]
    accepts = "token_type_ids" in inspect.signature(model.forward).parameters
    if accepts and int(getattr(model.config, "type_vocab_size", 0) or 0) > 0:
        names.append("token_type_ids")
    return names


def export_onnx(model: Any, out_file: str | Path, kind: str, *, opset: int = OPSET) -> Path:
    """Write `model` (a transformers encoder of `kind`) to `out_file` as ONNX; returns the path.

    The batch and sequence axes are dynamic. The model is left in eval mode.
    """
    torch = require("torch", extra="hf")
    outputs = OUTPUT_NAMES[kind]
    names = input_names(model)

    class _Graph(torch.nn.Module):  # type: ignore[misc,name-defined]
        """Plain tensors in, the named outputs out (what the exporter traces)."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> tuple[Any, ...]:
            result = self.inner(**dict(zip(names, args, strict=True)))
            return tuple(getattr(result, name) for name in outputs)

    model.eval()
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102, 0, 0], [101, 2178, 2028, 102, 0, 0, 0, 0]])
    ids = ids.clamp(max=int(model.config.vocab_size) - 1)
    mask = (ids != 0).long()
    mask[:, 0] = 1
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    for name in outputs:
        axes[name] = {0: "batch"} if kind == "classifier" else {0: "batch", 1: "sequence"}
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes: expected
        torch.onnx.export(
            _Graph(model),
            tuple(example[n] for n in names),
            str(out),
            input_names=names,
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    model.eval()  # the exporter can leave the model in train mode
    return out
