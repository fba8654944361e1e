"""The tokenisation cache: keyed by tokenizer, max_length, options and texts; atomic; survives damage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from yulian.tuning.data import TokenCache, cache_root, texts_digest, tokenize_cached, tokenizer_fingerprint

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "good", "bad", "movie", "我", "你", "好"]


def tiny_tokenizer(extra: list[str] | None = None) -> Any:
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab={token: i for i, token in enumerate(VOCAB + (extra or []))})


class Counting:
    """Wraps a tokenizer and counts calls, to tell cache hits from misses."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.backend_tokenizer = inner.backend_tokenizer
        self.special_tokens_map = inner.special_tokens_map
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.inner(*args, **kwargs)


def test_cache_hit_returns_the_same_ids_without_tokenising(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    tok = Counting(tiny_tokenizer())
    texts = ["hello world", "good movie 我你好", "bad"] * 5
    first = tokenize_cached(tok, texts, max_length=4, cache=cache, batch_size=4)
    assert tok.calls == 4 and first["input_ids"][0] == [2, 5, 6, 3] and len(first["input_ids"][1]) == 4
    assert "attention_mask" not in first and len(first["token_type_ids"]) == 15
    again = tokenize_cached(tok, texts, max_length=4, cache=cache)
    assert tok.calls == 4 and again == first
    assert len(list(tmp_path.glob("*.npz"))) == 1 and not list(tmp_path.glob("*.tmp"))
    tokenize_cached(tok, texts, max_length=8, cache=cache)  # another max_length: another entry
    tokenize_cached(tok, texts[:-1], max_length=4, cache=cache)  # other texts: another entry
    tokenize_cached(tok, texts, max_length=4, cache=cache, return_special_tokens_mask=True)  # other options
    assert tok.calls == 4 + 3
    assert len(list(tmp_path.glob("*.npz"))) == 4


def test_offset_mappings_round_trip(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    tok = tiny_tokenizer()
    fresh = tokenize_cached(tok, ["hello world", "我你"], max_length=8, cache=cache, return_offsets_mapping=True)
    assert fresh["offset_mapping"] == [[[0, 0], [0, 5], [6, 11], [0, 0]], [[0, 0], [0, 1], [1, 2], [0, 0]]]
    assert (
        tokenize_cached(tok, ["hello world", "我你"], max_length=8, cache=cache, return_offsets_mapping=True) == fresh
    )


def test_pairs_and_no_cache(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    out = tokenize_cached(tok, ["hello"], ["world"], max_length=16, cache=False)
    assert out["input_ids"] == [[2, 5, 3, 6, 3]] and out["token_type_ids"] == [[0, 0, 0, 1, 1]]
    with pytest.raises(ValueError, match="1 texts but 2 text pairs"):
        tokenize_cached(tok, ["a"], ["b", "c"], cache=False)


def test_fingerprint_follows_the_vocabulary_not_the_object() -> None:
    tok = tiny_tokenizer()
    before = tokenizer_fingerprint(tok)
    tok(["hello world"], truncation=True, max_length=3, padding="max_length")  # leaves call settings behind
    assert tokenizer_fingerprint(tok) == before == tokenizer_fingerprint(tiny_tokenizer())
    assert tokenizer_fingerprint(tiny_tokenizer()) != tokenizer_fingerprint(tiny_tokenizer(["extra"]))
    assert texts_digest(["ab", "c"]) != texts_digest(["a", "bc"])
    assert texts_digest(["a"], ["b"]) != texts_digest(["a", "b"])


def test_damaged_entry_is_recomputed(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    tok = Counting(tiny_tokenizer())
    tokenize_cached(tok, ["hello"], max_length=4, cache=cache)
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(b"not a zip file")
    assert tokenize_cached(tok, ["hello"], max_length=4, cache=cache)["input_ids"] == [[2, 5, 3]]
    assert tok.calls == 2 and cache.load(entry.stem) is not None


def test_cache_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YULIAN_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c" and TokenCache().directory == tmp_path / "c" / "tokenized"
    tokenize_cached(tiny_tokenizer(), ["hello"], max_length=4)
    assert len(list((tmp_path / "c" / "tokenized").glob("*.npz"))) == 1
    monkeypatch.delenv("YULIAN_CACHE")
    assert cache_root() == Path.home() / ".cache" / "yulian"


def test_truncated_cache_entry_is_recomputed(tmp_path: Path) -> None:
    from yulian.tuning.data import TokenCache

    cache = TokenCache(tmp_path)
    path = cache.save("k", {"input_ids": [[1, 2, 3], [4]]})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert cache.load("k") is None
    path.write_bytes(b"PK\x03\x04garbage")
    assert cache.load("k") is None
