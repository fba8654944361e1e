"""Label-preserving augmentation of token-classification (NER) examples, used by `yulian.tuning.augment`.

Only two operations keep tokens and tags aligned without guessing: deleting O tokens (never one between two entity
tokens, which in IO tagging would merge two entities) and replacing an entity mention by another mention of the
same type seen in the training data (mention replacement, Dai & Adel 2020), with its tags rewritten in the data's
scheme (BIO, BIOES, BMES or IO; `B_PER`-style separators kept). Standard library only.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from yulian.tuning.data_tags import Span, detect_scheme, spans_to_tags, split_tag, tags_to_spans

__all__ = ["MentionPool", "delete_o_tokens"]


def delete_o_tokens(tokens: list[str], tags: list[str], p: float, rng: random.Random) -> bool:
    """Delete O tokens in place, each with probability p (never every token); whether any went."""
    n = len(tokens)
    doomed = [
        i
        for i in range(n)
        if tags[i] == "O"
        and tokens[i].strip()
        and not (0 < i < n - 1 and tags[i - 1] != "O" and tags[i + 1] != "O")
        and rng.random() < p
    ]
    if len(doomed) >= n:
        doomed = doomed[:-1]
    for i in reversed(doomed):
        del tokens[i]
        del tags[i]
    return bool(doomed)


class MentionPool:
    """The entity mentions of a training set by type, and the tag scheme they are written in."""

    def __init__(self, examples: Iterable[Any]) -> None:
        examples = list(examples)
        self.scheme = detect_scheme([t for e in examples for t in e.tags])
        self.mentions: dict[str, list[list[str]]] = {}
        for e in examples:
            for kind, start, end in e.entities:
                if kind:
                    self.mentions.setdefault(kind, []).append(list(e.tokens[start:end]))

    def replace(self, tokens: list[str], tags: list[str], alpha: float, rng: random.Random) -> bool:
        """Replace, in place, each mention with probability alpha (at least one) by another of its type."""
        spans = [s for s in tags_to_spans(tags) if s.type and len(self.mentions.get(s.type, [])) > 1]
        picked = [s for s in spans if rng.random() < alpha]
        if not picked and spans:
            picked = [rng.choice(spans)]  # at least one mention, as EDA changes at least one word
        changed = False
        for span in sorted(picked, key=lambda s: -s.start):  # right to left: earlier offsets stay valid
            old = tokens[span.start : span.end]
            choices = [m for m in self.mentions[span.type] if m != old]
            if not choices:
                continue
            new = list(rng.choice(choices))
            tokens[span.start : span.end] = new
            tags[span.start : span.end] = self._tags(span.type, len(new), tags[span.start])
            changed = True
        return changed

    def _tags(self, kind: str, length: int, like: str) -> list[str]:
        """Tags for a mention of `length` tokens, written like the tag `like` (IO, or B-/B_ prefixes)."""
        if split_tag(like)[0] == "I" and "-" not in like and "_" not in like:
            return [like] * length  # IO tagging: the bare type on every token
        tags = spans_to_tags([Span(kind, 0, length)], length, self.scheme)
        sep = "_" if "_" in like and "-" not in like else "-"
        return [t.replace("-", sep, 1) for t in tags]
