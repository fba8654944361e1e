"""Helpers the fine-tuning tasks share: where a base model's files are, padding features into tensors, and
running a model over features in evaluation mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from yulian._optional import require

__all__ = ["eval_mode", "load_pretrained", "model_folder", "pad_features", "require_fast"]


def model_folder(base_model: str | Path) -> str:
    """The local Hugging Face folder of `base_model`: a path, a registered name (e.g. the packaged
    "smollm2-135m-instruct"), or a GGUF model (converted once and cached, see `yulian.models.gguf`). An adapter
    folder (adapter_config.json, see `yulian.tuning.adapters`) is returned as it is."""
    from yulian.models.registry import resolve
    from yulian.tuning.adapters import is_adapter_folder

    if is_adapter_folder(base_model):
        return str(base_model)

    resolved = resolve(str(base_model))
    if resolved.gguf_path is not None:
        from yulian.models.gguf import ensure_converted

        return str(ensure_converted(resolved.gguf_path))
    return resolved.path


def load_pretrained(auto_class: str, folder: str, **kwargs: Any) -> Any:
    """`transformers.<auto_class>.from_pretrained(folder, **kwargs)`; an adapter folder loads its base model with
    the adapter merged in (`yulian.tuning.adapters.load_model`).

    transformers' multi-line LOAD REPORT table (printed whenever a fresh task head is initialised) is kept off the
    terminal; what it said is on the model as `yulian_load_report` ({"missing": [...], "unexpected": [...]}), which
    the trainer logs in one line."""
    from yulian.tuning.adapters import load_model

    with load_report() as report:
        model = load_model(auto_class, folder, **kwargs)
    with contextlib.suppress(AttributeError, TypeError):
        model.yulian_load_report = report
    return model


@contextmanager
def load_report() -> Iterator[dict[str, list[str]]]:
    """Capture (and silence) transformers' LOAD REPORT warnings in the block: yields {"missing", "unexpected",
    "mismatched"} key lists, filled when the block ends."""
    import logging

    report: dict[str, list[str]] = {"missing": [], "unexpected": [], "mismatched": []}
    status = {"MISSING": "missing", "UNEXPECTED": "unexpected", "MISMATCH": "mismatched"}

    def keep(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        for line in message.splitlines():
            cells = [c.strip() for c in line.split("|")]
            if len(cells) >= 2 and cells[1] in status:
                report[status[cells[1]]].append(cells[0])
        return False

    logger = logging.getLogger("transformers.modeling_utils")
    logger.addFilter(keep)
    try:
        yield report
    finally:
        logger.removeFilter(keep)


def require_fast(tokenizer: Any, task: str) -> Any:
    """`tokenizer` if it is a fast (Rust) tokenizer: word ids and offset mappings need one."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"the {task} task needs a fast tokenizer (word ids, offset mappings); "
            f"{type(tokenizer).__name__} is a slow one"
        )
    return tokenizer


def pad_features(features: Sequence[Mapping[str, Any]], pads: Mapping[str, int]) -> dict[str, Any]:
    """Right-pad the list-valued keys named in `pads` (key -> pad value) to the longest feature and stack them
    as int64 tensors; scalar-valued keys in `pads` are stacked as they are. Other keys are left out."""
    torch = require("torch", extra="hf")
    if not features:
        raise ValueError("cannot collate an empty batch")
    longest = max(len(f["input_ids"]) for f in features)
    batch: dict[str, Any] = {}
    for key, pad in pads.items():
        if key not in features[0]:
            continue
        values = [f[key] for f in features]
        if isinstance(values[0], list):
            rows = [v + [pad] * (longest - len(v)) for v in values]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        else:
            batch[key] = torch.tensor(values, dtype=torch.long)
    if "attention_mask" in pads and "attention_mask" not in features[0]:
        rows = [[1] * len(f["input_ids"]) + [0] * (longest - len(f["input_ids"])) for f in features]
        batch["attention_mask"] = torch.tensor(rows, dtype=torch.long)
    return batch


@contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """Evaluation mode and no gradients for the block; the model's training mode is restored afterwards."""
    torch = require("torch", extra="hf")
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        if was_training:
            model.train()


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of `items` of at most `size`."""
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    for i in range(0, len(items), size):
        yield items[i : i + size]


def device_of(model: Any) -> Any:
    """The device of the model's first parameter."""
    return next(model.parameters()).device
