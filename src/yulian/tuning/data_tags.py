"""Tag schemes for token classification: BIO, BIOES and BMES, and conversion between them through spans.

A tag is `O` or a prefix and an entity type joined by `-` (or `_`): `B-PER`, `I-LOC`, `M-NT`, `E-ORG`, `S-NR`.
Bare prefixes (`B`, `M`, `E`, `S`: word segmentation) are tags of the empty type. Reading is lenient, as seqeval's
default mode is: an `I-`/`M-`/`E-` that does not continue an entity of its type starts a new one, so any tag
sequence has one span reading, and `convert_tags` always produces a well-formed sequence in the target scheme.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["SCHEMES", "Span", "convert_tags", "detect_scheme", "spans_to_tags", "split_tag", "tags_to_spans"]

SCHEMES = ("bio", "bioes", "bmes")
"""The tag schemes `convert_tags` writes: BIO (IOB2), BIOES (IOBES) and BMES (B/M/E/S, common in Chinese data)."""

_PREFIXES = {"B": "B", "I": "I", "M": "I", "E": "E", "S": "S", "L": "E", "U": "S"}  # BILOU's L/U are E/S


class Span(NamedTuple):
    """An entity: its type and the tokens `[start, end)` it covers."""

    type: str
    start: int
    end: int


def split_tag(tag: str) -> tuple[str, str]:
    """A tag's prefix and type: `"B-PER"` -> `("B", "PER")`, `"O"` -> `("O", "")`, `"M-NT"` -> `("I", "NT")`.

    A bare type `"PER"` (IO scheme) is `("I", "PER")`. The prefix is normalised to one of `B I E S O`
    (`M` and BILOU's `L`/`U` map to `I`/`E`/`S`).
    """
    if tag == "O" or not tag:
        return "O", ""
    head, sep, rest = tag.partition("-")
    if not sep:
        head, sep, rest = tag.partition("_")
    if sep and head in _PREFIXES:
        return _PREFIXES[head], rest
    if tag in _PREFIXES:  # bare B/M/E/S (segmentation)
        return _PREFIXES[tag], ""
    return "I", tag  # IO scheme: the tag is the type


def tags_to_spans(tags: Sequence[str]) -> list[Span]:
    """The entities a tag sequence marks, in order, read leniently (see the module docstring)."""
    spans: list[Span] = []
    current: str | None = None  # type of the open entity
    start = 0
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == "O":
            if current is not None:
                spans.append(Span(current, start, i))
            current = None
            continue
        continues = current == kind and prefix in ("I", "E")
        if not continues:
            if current is not None:
                spans.append(Span(current, start, i))
            current, start = kind, i
        if prefix in ("E", "S"):
            spans.append(Span(kind, start, i + 1))
            current = None
    if current is not None:
        spans.append(Span(current, start, len(tags)))
    return spans


def _join(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind}" if kind else prefix


def spans_to_tags(spans: Sequence[Span], length: int, scheme: str = "bio") -> list[str]:
    """Tags for `length` tokens marking `spans` in `scheme` (`bio`, `bioes` or `bmes`); spans must not overlap."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r} (schemes: {', '.join(SCHEMES)})")
    tags = ["O"] * length
    inside = "M" if scheme == "bmes" else "I"
    for kind, start, end in spans:
        if not 0 <= start < end <= length:
            raise ValueError(f"span {kind!r} [{start}, {end}) is outside the {length} tokens")
        if any(t != "O" for t in tags[start:end]):
            raise ValueError(f"span {kind!r} [{start}, {end}) overlaps another span")
        if scheme == "bio":
            tags[start] = _join("B", kind)
            for i in range(start + 1, end):
                tags[i] = _join("I", kind)
        elif end - start == 1:
            tags[start] = _join("S", kind)
        else:
            tags[start] = _join("B", kind)
            for i in range(start + 1, end - 1):
                tags[i] = _join(inside, kind)
            tags[end - 1] = _join("E", kind)
    return tags


def convert_tags(tags: Sequence[str], to: str = "bio") -> list[str]:
    """Rewrite a tag sequence in the scheme `to` (`bio`, `bioes` or `bmes`), whatever scheme it is in.

    `convert_tags(["B-NR", "M-NR", "E-NR", "S-NS"], to="bio") == ["B-NR", "I-NR", "I-NR", "B-NS"]`; converting a
    well-formed sequence to another scheme and back gives it back unchanged.
    """
    return spans_to_tags(tags_to_spans(tags), len(tags), to)


def detect_scheme(tags: Sequence[str]) -> str:
    """The scheme a tag sequence (or a whole data set's tags) is written in: `bmes` if any `M-` tag, `bioes` if any
    `E-`/`S-` tag, else `bio`."""
    heads = {tag.partition("-")[0] for tag in tags if tag != "O"}
    if "M" in heads:
        return "bmes"
    if heads & {"E", "S", "L", "U"}:
        return "bioes"
    return "bio"
