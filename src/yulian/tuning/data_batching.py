"""Batches with little padding: length-grouped batch order and dynamic padding of token-id lists.

`length_grouped_batches` shuffles, then sorts by length inside mega-batches (50 batches by default), cuts
batches and shuffles their order: batches hold similar lengths (little padding) but the order stays random.
`PadCollator` pads a batch of tokenised features to its own longest sequence. Pure Python; torch is imported
only when tensors are asked for.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yulian._optional import require

__all__ = ["PadCollator", "length_grouped_batches", "pad_sequences", "padding_efficiency"]

_PAD_DEFAULTS: dict[str, Any] = {
    "labels": -100,
    "attention_mask": 0,
    "token_type_ids": 0,
    "special_tokens_mask": 1,
    "offset_mapping": (0, 0),
}
_TOKEN_KEYS = frozenset(
    {"input_ids", "attention_mask", "token_type_ids", "special_tokens_mask", "position_ids", "offset_mapping"}
)


def length_grouped_batches(
    lengths: Sequence[int],
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    *,
    mega_batch: int = 50,
    drop_last: bool = False,
) -> list[list[int]]:
    """Batches of indices into `lengths`, grouped by length. Deterministic for a seed (pass `seed + epoch`).

    shuffle=True: shuffle, sort by length (longest first) within mega-batches of `mega_batch * batch_size`, cut
    batches, shuffle the batch order. shuffle=False: sort everything by length (evaluation). `drop_last` drops a
    final batch smaller than `batch_size`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
        size = max(mega_batch, 1) * batch_size
        groups = [order[i : i + size] for i in range(0, len(order), size)]
    else:
        groups = [order]
    batches: list[list[int]] = []
    for group in groups:
        group.sort(key=lambda i: -lengths[i])  # stable: ties keep the shuffled order
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    if drop_last:
        batches = [b for b in batches if len(b) == batch_size]
    if shuffle:
        rng.shuffle(batches)
    return batches


def padding_efficiency(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Real tokens / tokens after padding each batch to its longest (1.0 = no padding)."""
    real = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches if batch)
    return real / padded if padded else 1.0


def pad_sequences(
    sequences: Sequence[Sequence[Any]], value: Any, *, length: int | None = None, side: str = "right"
) -> list[list[Any]]:
    """Pad each sequence with `value` to `length` (default: the longest), on the right or the left."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', not {side!r}")
    target = max((len(s) for s in sequences), default=0) if length is None else length
    if side == "right":
        return [list(s) + [value] * (target - len(s)) for s in sequences]
    return [[value] * (target - len(s)) + list(s) for s in sequences]


@dataclass
class PadCollator:
    """Collate tokenised features (`{"input_ids": [...], "labels": ..., ...}`) into a padded batch.

    Sequence fields (lists as long as `input_ids`) are padded to the batch's longest (rounded up to
    `pad_to_multiple_of`): `input_ids` with `pad_id`, `labels` with `label_pad_id` (-100: ignored by the loss),
    `attention_mask`/`token_type_ids` with 0, others with 0. `attention_mask` is made when missing. Scalars and
    fixed-length lists (class ids, multi-hot vectors) are stacked. `return_tensors="pt"` gives torch tensors,
    None gives Python lists.

    Token-level fields (`input_ids`, `attention_mask`, `token_type_ids`, `special_tokens_mask`, `position_ids`,
    `offset_mapping`, padded with (0, 0) pairs) are always sequences. Whether `labels` is one label per token is
    said by `token_labels` (True: token classification, SFT; False: a class id or multi-hot vector); None guesses
    from the lengths, which cannot tell a multi-hot vector from token labels when they happen to be as long as
    the input: tasks should say.
    """

    pad_id: int = 0
    label_pad_id: int = -100
    pad_to_multiple_of: int | None = None
    padding_side: str = "right"
    return_tensors: str | None = "pt"
    token_labels: bool | None = None

    def __post_init__(self) -> None:
        if self.padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', not {self.padding_side!r}")
        if self.return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors must be 'pt' or None, not {self.return_tensors!r}")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError("pad_to_multiple_of must be at least 1")

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        keys = list(features[0])
        lengths = [len(f["input_ids"]) for f in features] if "input_ids" in features[0] else None
        target = max(lengths) if lengths else 0
        if self.pad_to_multiple_of and target % self.pad_to_multiple_of:
            target += self.pad_to_multiple_of - target % self.pad_to_multiple_of
        batch: dict[str, Any] = {}
        for key in keys:
            values = [f[key] for f in features]
            if key in _TOKEN_KEYS:
                is_sequence = lengths is not None
            elif key == "labels" and self.token_labels is not None:
                is_sequence = self.token_labels and lengths is not None
            else:
                is_sequence = (
                    lengths is not None
                    and all(isinstance(v, list | tuple) for v in values)
                    and all(len(v) == n for v, n in zip(values, lengths, strict=True))
                )
            if is_sequence:
                pad = self.pad_id if key == "input_ids" else _PAD_DEFAULTS.get(key, 0)
                if key == "labels":
                    pad = self.label_pad_id
                batch[key] = pad_sequences(values, pad, length=target, side=self.padding_side)
            else:
                if isinstance(values[0], list | tuple) and len({len(v) for v in values}) > 1:
                    raise ValueError(f"field {key!r} has lists of different lengths that are not token sequences")
                batch[key] = [list(v) if isinstance(v, tuple) else v for v in values]
        if lengths is not None and "attention_mask" not in batch:
            batch["attention_mask"] = pad_sequences(
                [[1] * n for n in lengths], 0, length=target, side=self.padding_side
            )
        if self.return_tensors == "pt":
            torch = require("torch", extra="hf", purpose="tensor batches")
            return {key: torch.tensor(value) for key, value in batch.items()}
        return batch
