"""Response bodies serialised once, fast: `orjson` when installed (the `serve` extra), the standard library otherwise.

Embedding responses dominate the cost: 384 floats per text through `json.dumps` took ~230 µs per response here,
a third of the event loop's time under load (py-spy, `yulian serve` at concurrency 32); `orjson` writes the model's
float32 arrays directly in ~13 µs, as the shortest text that reads back to the same float32 (8.2 KB -> 4.8 KB for a
MiniLM vector; `np.float32(float(text)) == value` exactly). Without `orjson`, arrays become lists of floats (exact
too, longer text). Output is UTF-8 without ASCII escapes, compact separators, either way.

    body = dumps({"data": [{"embedding": np.ones(3, dtype=np.float32)}]})   # b'{"data":[{"embedding":[1.0,1.0,1.0]}]}'
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps"]

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the serve extra installs it
    _orjson = None  # type: ignore[assignment]

_OPTIONS = 0 if _orjson is None else _orjson.OPT_SERIALIZE_NUMPY | _orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if tolist is not None:
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(data: Any) -> bytes:
    """`data` as compact UTF-8 JSON bytes; numpy arrays and scalars are written as their values."""
    if _orjson is not None:
        try:
            return _orjson.dumps(data, option=_OPTIONS)
        except TypeError:  # what orjson refuses (ints beyond 64 bits, non-contiguous arrays...): the slow path
            pass
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_default).encode()
