"""A disk cache of tokenised texts, so the second run (and every epoch's data set) skips tokenisation.

Entries are keyed by (tokenizer fingerprint, max_length, tokenizer options, digest of the texts) and stored as
`.npz` files (flat int arrays plus offsets) under `~/.cache/yulian/tokenized` (`$YULIAN_CACHE/tokenized` when
set). Writes are atomic (temporary file + rename), so readers never see half a file and concurrent writers
are harmless. numpy is imported only when the cache is used.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yulian._optional import require

__all__ = ["TokenCache", "cache_root", "texts_digest", "tokenize_cached", "tokenizer_fingerprint"]

_FORMAT_VERSION = 1


def cache_root() -> Path:
    """yulian's cache folder, the same one models use (`yulian.models.registry.cache_dir`)."""
    from yulian.models.registry import cache_dir

    return cache_dir()


def texts_digest(texts: Sequence[str], pairs: Sequence[str] | None = None) -> str:
    """sha256 of the texts (and pairs), length-prefixed so that no two different lists collide."""
    h = hashlib.sha256()
    for group in (texts, pairs or []):
        h.update(f"{len(group)}:".encode())
        for text in group:
            data = text.encode("utf-8", errors="surrogatepass")
            h.update(f"{len(data)}:".encode())
            h.update(data)
    return h.hexdigest()


def _without_call_settings(spec: str) -> str:
    """`tokenizer.json` text without `truncation`/`padding`: settings the last call left behind, not the tokenizer.

    tokenizers writes them first (`{"version", "truncation", "padding", "added_tokens", ...}`): cut that stretch
    out of the text (parsing and re-serialising the JSON costs ~0.3 s for a BERT vocabulary).
    """
    start, end = spec.find('"truncation":'), spec.find('"added_tokens":')
    if 0 <= start < end:
        return spec[:start] + spec[end:]
    data = json.loads(spec)
    data.pop("truncation", None)
    data.pop("padding", None)
    return json.dumps(data, sort_keys=True)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A digest of what makes a tokenizer tokenise the way it does: its class, vocabulary and rules (the full
    `tokenizer.json` for fast tokenizers) and special tokens; the same files under another path agree."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(_without_call_settings(backend.to_str()).encode())
    else:
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        h.update(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode())
        h.update(repr(getattr(tokenizer, "do_lower_case", None)).encode())
    special = getattr(tokenizer, "special_tokens_map", {})
    h.update(json.dumps(special, sort_keys=True, default=str).encode())
    h.update(repr((getattr(tokenizer, "padding_side", None), getattr(tokenizer, "truncation_side", None))).encode())
    return h.hexdigest()


class TokenCache:
    """Tokenised data sets on disk, one `.npz` per key. `TokenCache()` uses `cache_root() / "tokenized"`."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else cache_root() / "tokenized"

    def key(self, fingerprint: str, digest: str, max_length: int | None, options: dict[str, Any] | None = None) -> str:
        """The entry name for tokenizer `fingerprint`, texts `digest`, `max_length` and tokenizer `options`."""
        parts = {"v": _FORMAT_VERSION, "tok": fingerprint, "texts": digest, "max": max_length, "opt": options or {}}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]

    def path(self, key: str) -> Path:
        """Where the entry `key` lives."""
        return self.directory / f"{key}.npz"

    def load(self, key: str) -> dict[str, list[list[Any]]] | None:
        """The cached fields of `key`, or None when absent or unreadable."""
        path = self.path(key)
        if not path.exists():
            return None
        np = require("numpy", extra="hf", purpose="the tokenisation cache")
        # Building ~100k small lists makes the cyclic GC rescan every live object many times over (5x the load
        # time here); these lists cannot form cycles, so collection is paused while they are made.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with np.load(path, allow_pickle=False) as data:
                names = [str(n) for n in data["__fields__"].tolist()]
                out: dict[str, list[list[Any]]] = {}
                for name in names:
                    flat = data[f"{name}.values"].tolist()
                    bounds = data[f"{name}.offsets"].tolist()
                    out[name] = [flat[a:b] for a, b in itertools.pairwise(bounds)]
                return out
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # a damaged entry is recomputed and rewritten
        finally:
            if gc_was_enabled:
                gc.enable()

    def save(self, key: str, fields: Mapping[str, Sequence[Sequence[Any]]]) -> Path:
        """Write the entry `key` atomically; returns its path."""
        np = require("numpy", extra="hf", purpose="the tokenisation cache")
        arrays: dict[str, Any] = {"__fields__": np.array(sorted(fields))}
        for name, rows in fields.items():
            lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
            offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            flat = itertools.chain.from_iterable(rows)
            first = next((row for row in rows if len(row)), None)
            if first is not None and isinstance(first[0], list | tuple):  # pairs, e.g. offset_mapping
                values = np.asarray(list(flat), dtype=np.int32)
            else:
                values = np.fromiter(flat, dtype=np.int32, count=int(offsets[-1]))
            arrays[f"{name}.values"] = values
            arrays[f"{name}.offsets"] = offsets
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(key)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


def _plain(row: Sequence[Any]) -> list[Any]:
    """A row as the cache gives it back: a list of ints, or of `[start, end]` lists (offsets)."""
    return [list(v) for v in row] if row and isinstance(row[0], tuple | list) else list(row)


def tokenize_cached(
    tokenizer: Any,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    *,
    max_length: int | None = None,
    cache: TokenCache | bool | None = None,
    batch_size: int = 1000,
    **options: Any,
) -> dict[str, list[list[Any]]]:
    """Tokenise `texts` (and `text_pairs`) with truncation to `max_length` and no padding, through the cache.

    Returns `{"input_ids": [[...], ...], "token_type_ids": ...}`: every field the tokenizer gives except
    `attention_mask` (all ones before padding: `PadCollator` makes it). `options` go to the tokenizer call and
    into the cache key. `cache=False` skips the cache; None or True uses `TokenCache()`.
    """
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(text_pairs)} text pairs")
    store = None if cache is False else cache if isinstance(cache, TokenCache) else TokenCache()
    key = ""
    if store is not None:
        key = store.key(tokenizer_fingerprint(tokenizer), texts_digest(texts, text_pairs), max_length, options)
        hit = store.load(key)
        if hit is not None:
            return hit
    fields: dict[str, list[list[Any]]] = {}
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        pairs = list(text_pairs[start : start + batch_size]) if text_pairs is not None else None
        encoded = tokenizer(
            chunk, pairs, truncation=max_length is not None, max_length=max_length, padding=False, **options
        )
        for name, rows in encoded.items():
            if name != "attention_mask":
                fields.setdefault(name, []).extend(_plain(row) for row in rows)
    if store is not None:
        store.save(key, fields)
    return fields
