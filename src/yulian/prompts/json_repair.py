"""Finding and repairing JSON in model output, and reading unfinished JSON while it streams. Standard library only."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["NOTHING", "find_json", "parse_partial", "repair"]

NOTHING: Any = object()
"""Returned by `parse_partial` when there is no value yet."""
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_MAX_STARTS = 20  # brackets tried as the start of a value, so a long prose answer costs little


def _direct_candidates(text: str) -> Iterator[str]:
    """The whole text, then the contents of fenced blocks (```json ones first)."""
    yield text.strip()
    for match in sorted(_FENCE.finditer(text), key=lambda m: m.group(1).lower() != "json"):
        yield match.group(2).strip()


def _loads(candidate: str) -> Any:
    """Parse `candidate` as is, else repaired; raises the error of the unrepaired text."""
    try:
        return json.loads(candidate, strict=False)
    except json.JSONDecodeError as e:
        try:
            return json.loads(repair(candidate), strict=False)
        except json.JSONDecodeError:
            raise e from None


def _balanced_end(text: str, start: int) -> int | None:
    """The end (exclusive) of the bracketed value opening at `start`, skipping strings; None if it never closes."""
    closers = {"{": "}", "[": "]"}
    stack: list[str] = []
    quote = ""
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in closers:
            stack.append(closers[c])
        elif c in "}]":
            if not stack or stack.pop() != c:
                return None
            if not stack:
                return i + 1
        i += 1
    return None


_LITERALS = {"True": "true", "False": "false", "None": "null"}


def repair(text: str) -> str:
    """Fix, outside JSON strings only, what models get wrong: trailing commas, 'single quotes', Python literals."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif c == "'":
            j = i + 1
            body: list[str] = []
            while j < n and text[j] != "'":
                if text[j] == "\\" and j + 1 < n:
                    body.append("'" if text[j + 1] == "'" else text[j : j + 2])
                    j += 2
                    continue
                body.append('\\"' if text[j] == '"' else text[j])
                j += 1
            out.append('"' + "".join(body) + '"')
            i = j + 1
        elif c == ",":
            k = i + 1
            while k < n and text[k].isspace():
                k += 1
            if k == n or text[k] not in "]}":
                out.append(c)
            i += 1
        elif c.isalpha():
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            out.append(_LITERALS.get(word, word))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_partial(text: str) -> Any:
    """The value of an unfinished JSON text, its open strings and brackets closed (`NOTHING` if none yet)."""
    match = re.search(r"[\[{]", text)
    if match is None:
        return NOTHING
    s = text[match.start() :]
    stack: list[str] = []
    in_string = escape = False
    safe: tuple[int, str] = (0, "")  # the last cut point that leaves complete values, and its closers
    for i, c in enumerate(s):
        if in_string:
            if escape:
                escape = False
            elif c == "\\":
                escape = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            stack.append("}" if c == "{" else "]")
            safe = (i + 1, "".join(reversed(stack)))
        elif c in "}]":
            if stack:
                stack.pop()
            if not stack:  # the value is complete: the parse of the whole text decides
                return NOTHING
            safe = (i + 1, "".join(reversed(stack)))
        elif c == ",":
            safe = (i, "".join(reversed(stack)))
    closers = "".join(reversed(stack))
    whole = (s[:-1] if escape else s) + ('"' if in_string else "") + closers
    for candidate in (whole, s[: safe[0]] + safe[1]):
        try:
            return json.loads(candidate, strict=False)
        except json.JSONDecodeError:
            continue
    return NOTHING


def find_json(text: str) -> Any:
    """The JSON value in model output, repaired if needed; a ValueError says what is wrong when there is none.

    Tried in order: the whole text; the contents of fenced blocks (```json ones first); the longest balanced
    `{...}` / `[...]` in the text that parses (so prose around it, and "[1]" in that prose, are ignored). Each
    candidate is parsed as is, then repaired (see `repair`). Raw newlines inside strings are accepted.
    """
    error: json.JSONDecodeError | None = None
    for candidate in _direct_candidates(text):
        try:
            return _loads(candidate)
        except json.JSONDecodeError as e:
            if error is None and candidate[:1] in "{[":
                error = e
    best: tuple[int, Any] | None = None  # the longest bracketed value that parses wins over "[1]" in prose
    after = tried = 0
    for match in re.finditer(r"[\[{]", text):
        start = match.start()
        if start < after:  # nested inside a value already found
            continue
        if tried == _MAX_STARTS:
            break
        tried += 1
        end = _balanced_end(text, start)
        if end is None:
            continue
        try:
            value = _loads(text[start:end])
        except json.JSONDecodeError as e:
            error = error or e
            continue
        if best is None or end - start > best[0]:
            best = (end - start, value)
        after = end
    if best is not None:
        return best[1]
    opening = re.search(r"[\[{]", text)
    if opening is not None and _balanced_end(text, opening.start()) is None:
        raise ValueError(
            f"incomplete JSON: the {opening.group()!r} at character {opening.start()} is never closed "
            "(was the output cut short, e.g. by max_tokens?)"
        )
    if error is None:
        raise ValueError("no JSON object or array found")
    where = f"line {error.lineno} column {error.colno}"
    raise ValueError(f"invalid JSON: {error.msg} ({where} of the JSON part)")
