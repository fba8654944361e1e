"""Character-level tokenisation of Chinese text for SentencePiece (XLM-R style) tokenizers.

Chinese token-classification data tags every character, and a model fine-tuned on it (`yulian train --task ner`)
sees one token per character. Split into words, XLM-R's tokenizer spells most lone characters as two pieces, the
bare word-start piece "▁" and the character; `drop_char_markers` removes the bare piece so a character takes one
token, as it does inside running text. `char_encoding` tokenises raw text the same way at prediction time, so the
deployed tagger sees what training saw. WordPiece (BERT) tokenizers have no such piece and need none of this.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["CharEncoding", "char_encoding", "drop_char_markers", "has_cjk", "word_marker_id"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")


def has_cjk(text: str) -> bool:
    """Whether `text` has a Chinese (CJK unified ideograph) character."""
    return _CJK.search(text) is not None


def word_marker_id(tokenizer: Any) -> int | None:
    """The id of a SentencePiece tokenizer's bare word-start piece ("▁"), or None when it has none (WordPiece)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    try:
        found = tokenizer.convert_tokens_to_ids("\u2581")
    except (KeyError, TypeError, ValueError):
        return None
    return found if isinstance(found, int) and found != unk else None


def _dropped(ids: Sequence[int], words: Sequence[int | None], tokens: Sequence[str], marker: int) -> list[bool]:
    return [
        piece == marker and word is not None and len(tokens[word]) == 1 and j + 1 < len(words) and words[j + 1] == word
        for j, (piece, word) in enumerate(zip(ids, words, strict=True))
    ]


def drop_char_markers(
    ids: Sequence[int], words: Sequence[int | None], tokens: Sequence[str], marker: int
) -> tuple[list[int], list[int | None]]:
    """`ids`/`words` without the bare word-start pieces of one-character words that have another piece.

    Longer words keep all their pieces (their "▁" marks a real word start).
    """
    drop = _dropped(ids, words, tokens, marker)
    return [i for i, d in zip(ids, drop, strict=True) if not d], [w for w, d in zip(words, drop, strict=True) if not d]


class CharEncoding(dict[str, list[Any]]):
    """What `char_encoding` returns: the keys of a tokenizer's batch encoding plus `word_ids(i)`."""

    def __init__(
        self,
        ids: list[list[int]],
        offsets: list[list[tuple[int, int]]],
        special: list[list[int]],
        words: list[list[int | None]],
    ) -> None:
        super().__init__(input_ids=ids, offset_mapping=offsets, special_tokens_mask=special)
        self._words = words

    def word_ids(self, index: int) -> list[int | None]:
        """The character (unit) index of each token of text `index`, None for special tokens."""
        return self._words[index]


def char_encoding(tokenizer: Any, texts: Sequence[str], marker: int) -> CharEncoding:
    """Encode `texts` one non-space character per word, bare markers dropped, special tokens around each text.

    Offsets are character offsets into each text, as `return_offsets_mapping` gives them.
    """
    bare: list[int] = tokenizer("a", add_special_tokens=False)["input_ids"]
    full: list[int] = tokenizer("a")["input_ids"]
    at = next((i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare), 0)
    prefix, suffix = full[:at], full[at + len(bare) :]
    all_ids, all_offsets, all_special, all_words = [], [], [], []
    for text in texts:
        where = [i for i, ch in enumerate(text) if not ch.isspace()]
        chars = [text[i] for i in where]
        ids: list[int] = []
        words: list[int | None] = []
        if chars:
            enc = tokenizer(chars, is_split_into_words=True, add_special_tokens=False)
            ids, words = drop_char_markers(enc["input_ids"], enc.word_ids(), chars, marker)
        all_ids.append(prefix + ids + suffix)
        all_offsets.append(
            [(0, 0)] * len(prefix)
            + [(where[w], where[w] + 1) if w is not None else (0, 0) for w in words]
            + [(0, 0)] * len(suffix)
        )
        all_special.append([1] * len(prefix) + [0] * len(ids) + [1] * len(suffix))
        all_words.append([None] * len(prefix) + list(words) + [None] * len(suffix))
    return CharEncoding(all_ids, all_offsets, all_special, all_words)
