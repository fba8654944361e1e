"""Output parsers: turn a model's text (a str, a Message or a stream of chunks) into values.

- `TextParser`: the text itself; streams pass through token by token.
- `JsonParser`: JSON, repaired when models wrap or bend it (fenced blocks, prose around it, trailing commas,
  single quotes, Python literals); optionally streams partial objects as they grow.
- `PydanticParser`: JSON validated into a pydantic model, with `format_instructions()` for the prompt.
- `LabelParser`: one label out of a fixed set, matched tolerantly (case, punctuation, full-width forms, a label
  mentioned in a sentence); works for Chinese labels such as 正面/负面.
- `RegexParser`: the groups of a regular expression, as a dict.

Every parser is a cheap (`blocking = False`) Runnable and raises `OutputParserError`, a `ValueError` whose message
quotes the offending text, when the output cannot be parsed.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from yulian.core.messages import Message
from yulian.core.runnable import ConfigLike, Runnable
from yulian.prompts.json_repair import NOTHING, find_json, parse_partial

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "JsonParser",
    "LabelParser",
    "OutputParser",
    "OutputParserError",
    "ParserInput",
    "PydanticParser",
    "RegexParser",
    "TextParser",
]

ParserInput: TypeAlias = str | Message
"""Model output: text, or a Message (its content is parsed). Streams of chunks are Messages too."""

Out = TypeVar("Out")
M = TypeVar("M", bound="BaseModel")


class OutputParserError(ValueError):
    """Model output could not be parsed. `text` holds the whole output; the message quotes an excerpt."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(f"{message}; output was: {_excerpt(text)}")
        self.message = message
        self.text = text

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle with both arguments
        return type(self), (self.message, self.text), self.__dict__


def _excerpt(text: str, limit: int = 200) -> str:
    if len(text) <= limit:
        return repr(text)
    return repr(text[: limit - 60]) + f" … ({len(text) - limit + 60} more characters) … " + repr(text[-60:])


# ============================================================================================ base
class OutputParser(Runnable[ParserInput, Out]):
    """Base of output parsers: implement `parse(text)`; `invoke` accepts a str or a Message.

    A stream of chunks is joined and parsed once at its end, unless the parser overrides `transform`.
    """

    blocking = False

    def parse(self, text: str) -> Out:
        """Parse the text of a model's output."""
        raise NotImplementedError(f"{type(self).__name__} must implement parse()")

    def format_instructions(self) -> str:
        """A sentence for the prompt telling the model how to format its answer ("" when there is nothing to say)."""
        return ""

    def invoke(self, input: ParserInput, config: ConfigLike = None) -> Out:
        """Parse a str or a Message."""
        return self.parse(self._text(input))

    def transform(self, inputs: Iterable[ParserInput], config: ConfigLike = None) -> Iterator[Out]:
        """Join the stream's text and parse it once."""
        yield self.parse("".join(self._text(x) for x in inputs))

    async def atransform(self, inputs: AsyncIterator[ParserInput], config: ConfigLike = None) -> AsyncIterator[Out]:
        """Async `transform`."""
        yield self.parse("".join([self._text(x) async for x in inputs]))

    def _text(self, value: object) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, Message):
            return value.content
        raise TypeError(f"{self.name} parses text or a Message, got {type(value).__name__}: {value!r:.80}")


# ============================================================================================ text
class TextParser(OutputParser[str]):
    """The text of the output. Streams pass through piece by piece, so tokens reach the caller as they come."""

    def parse(self, text: str) -> str:
        return text

    def transform(self, inputs: Iterable[ParserInput], config: ConfigLike = None) -> Iterator[str]:
        empty = True
        for piece in inputs:
            text = self._text(piece)
            if text:
                empty = False
                yield text
        if empty:
            yield ""

    async def atransform(self, inputs: AsyncIterator[ParserInput], config: ConfigLike = None) -> AsyncIterator[str]:
        empty = True
        async for piece in inputs:
            text = self._text(piece)
            if text:
                empty = False
                yield text
        if empty:
            yield ""


# ============================================================================================ JSON
class JsonParser(OutputParser[Any]):
    """JSON from model output, repaired when it is slightly off.

    Tried in order: the whole text; the contents of ```json fenced blocks; the longest balanced `{...}` / `[...]`
    in the text that parses (so prose around it is ignored). Each candidate is parsed as is, then repaired:
    trailing commas dropped, single-quoted strings and keys turned into JSON strings, `True`/`False`/`None` into
    JSON literals. Raw newlines inside strings are accepted. Truncated JSON is an error, never silently completed.
    (The machinery is `yulian.prompts.json_repair.find_json`.)

    With `partial=True`, a stream yields snapshots of the value as it grows (`{"a": "He"}`, `{"a": "Hello"}`, ...):
    each piece is the whole value so far, the last one is the complete value, and pieces must not be joined.
    """

    def __init__(self, *, partial: bool = False) -> None:
        self.partial = partial
        self.stream_snapshots = partial

    def format_instructions(self) -> str:
        return "Answer with a single JSON value and nothing else."

    def parse(self, text: str) -> Any:
        try:
            return find_json(text)
        except ValueError as e:
            raise OutputParserError(str(e), text) from None

    def transform(self, inputs: Iterable[ParserInput], config: ConfigLike = None) -> Iterator[Any]:
        if not self.partial:
            yield from super().transform(inputs, config)
            return
        text, last = "", NOTHING
        for piece in inputs:
            text += self._text(piece)
            snapshot = parse_partial(text)
            if snapshot is not NOTHING and snapshot != last:
                last = snapshot
                yield snapshot
        final = self.parse(text)
        if final != last:
            yield final

    async def atransform(self, inputs: AsyncIterator[ParserInput], config: ConfigLike = None) -> AsyncIterator[Any]:
        if not self.partial:
            async for item in super().atransform(inputs, config):
                yield item
            return
        text, last = "", NOTHING
        async for piece in inputs:
            text += self._text(piece)
            snapshot = parse_partial(text)
            if snapshot is not NOTHING and snapshot != last:
                last = snapshot
                yield snapshot
        final = self.parse(text)
        if final != last:
            yield final


# ============================================================================================ pydantic
class PydanticParser(OutputParser[M]):
    """JSON (repaired like `JsonParser`) validated into a pydantic model; errors name the failing fields.

    `format_instructions()` gives the model's JSON schema to put in the prompt. pydantic loads on first use.
    """

    def __init__(self, model: type[M]) -> None:
        if not (isinstance(model, type) and hasattr(model, "model_validate")):
            raise TypeError(f"PydanticParser needs a pydantic model class, got {model!r}")
        self.model = model
        self._json = JsonParser()
        self._name = f"PydanticParser({model.__name__})"

    def parse(self, text: str) -> M:
        from pydantic import ValidationError

        data = self._json.parse(text)
        try:
            return self.model.model_validate(data)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                field = ".".join(map(str, err["loc"])) or "(the whole value)"
                got = "" if err["type"] == "missing" else f" (got {err['input']!r:.40})"
                problems.append(f"field {field!r}: {err['msg']}{got}")
            raise OutputParserError(f"output does not match {self.model.__name__}: {'; '.join(problems)}", text) from e

    def format_instructions(self) -> str:
        schema = json.dumps(self.model.model_json_schema(), ensure_ascii=False)
        return f"Answer with a JSON object that matches this JSON schema, and nothing else:\n```json\n{schema}\n```"

    @property
    def output_type(self) -> Any:
        return self.model


# ============================================================================================ labels
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_WORDISH = rf"[^\W_{_CJK}]"  # a letter or digit of a script that separates words with spaces


def _fold(text: str) -> str:
    """Case- and width-insensitive form: NFKC (full-width -> ASCII) then casefold."""
    return unicodedata.normalize("NFKC", text).casefold()


def _squash(text: str) -> str:
    """`_fold` without whitespace, punctuation, symbols and control characters."""
    return "".join(c for c in _fold(text) if unicodedata.category(c)[0] not in "PSZC")


class LabelParser(OutputParser[str]):
    """One label from a fixed set, e.g. `LabelParser(["正面", "负面"])` or with synonyms,
    `LabelParser({"positive": ["好评", "pos"], "negative": ["差评"]})`.

    Tried in order: an exact match; a match ignoring case, width, spaces and punctuation ("Positive." ->
    positive, "【正面】" -> 正面); a label the answer starts with ("Negative: the review..." -> negative); the
    only label the answer mentions ("情感倾向为负面。" -> 负面). Latin-script labels match whole words only, so
    "negatively" does not mention "negative". When nothing matches, or several labels are mentioned, `default`
    is returned if given, else `OutputParserError` lists the allowed labels.
    """

    def __init__(self, labels: Sequence[str] | Mapping[str, Sequence[str]], *, default: str | None = None) -> None:
        if isinstance(labels, str) or not labels:
            raise ValueError(f"LabelParser needs a list of labels, got {labels!r}")
        forms = {k: [k, *v] for k, v in labels.items()} if isinstance(labels, Mapping) else {k: [k] for k in labels}
        if not isinstance(labels, Mapping) and len(forms) != len(labels):
            raise ValueError(f"LabelParser labels must be unique, got {list(labels)}")
        self.labels: tuple[str, ...] = tuple(forms)
        self.default = default
        self._exact: dict[str, str] = {}
        self._squashed: dict[str, str] = {}
        patterns: list[tuple[re.Pattern[str], str]] = []
        for label, surfaces in forms.items():
            for surface in surfaces:
                if not isinstance(surface, str) or not surface.strip():
                    raise ValueError(f"LabelParser labels must be non-empty strings, got {surface!r} for {label!r}")
                for table, key in ((self._exact, surface.strip()), (self._squashed, _squash(surface))):
                    if key and table.setdefault(key, label) != label:
                        raise ValueError(f"LabelParser: {surface!r} would match both {table[key]!r} and {label!r}")
                patterns.append((_mention_pattern(_fold(surface.strip())), label))
        self._patterns = patterns

    def format_instructions(self) -> str:
        return f"Answer with exactly one of these labels: {', '.join(self.labels)}."

    def parse(self, text: str) -> str:
        stripped = text.strip()
        label = self._exact.get(stripped) or self._squashed.get(_squash(stripped))
        if label is not None:
            return label
        folded = _fold(stripped)
        mentions = self._mentions(folded)
        lead = next((i for i, c in enumerate(folded) if c.isalnum()), 0)  # after leading "**", "「" and the like
        if mentions and mentions[0][0] == lead:
            return mentions[0][2]
        found = list(dict.fromkeys(m[2] for m in mentions))
        if len(found) == 1:
            return found[0]
        if self.default is not None:
            return self.default
        allowed = ", ".join(self.labels)
        if found:
            raise OutputParserError(
                f"ambiguous label: the output mentions {', '.join(found)} (allowed: {allowed})", text
            )
        raise OutputParserError(f"no label found (allowed: {allowed})", text)

    def _mentions(self, folded: str) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, label) mentions in `folded`, leftmost first, longest at a tie or overlap."""
        hits = sorted(
            ((m.start(), m.end(), label) for pattern, label in self._patterns for m in pattern.finditer(folded)),
            key=lambda h: (h[0], h[0] - h[1]),
        )
        kept: list[tuple[int, int, str]] = []
        for hit in hits:
            if kept and hit[0] < kept[-1][1]:
                continue
            kept.append(hit)
        return kept


def _mention_pattern(surface: str) -> re.Pattern[str]:
    body = r"\s+".join(map(re.escape, surface.split()))
    before = rf"(?<!{_WORDISH})" if re.match(_WORDISH, surface) else ""
    after = rf"(?!{_WORDISH})" if re.match(_WORDISH, surface[-1]) else ""
    return re.compile(before + body + after)


# ============================================================================================ regex
class RegexParser(OutputParser[dict[str, str | None]]):
    """The groups of the first match of a regular expression, as a dict.

    Named groups give the keys: `RegexParser(r"score: (?P<score>\\d+)")`. For unnamed groups, pass `keys` in
    group order; with named groups, `keys` picks some of them. A group that did not take part maps to None.
    """

    def __init__(self, pattern: str | re.Pattern[str], keys: Sequence[str] | None = None, *, flags: int = 0) -> None:
        self.pattern = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        named = list(self.pattern.groupindex)
        if keys is None:
            if not named:
                raise ValueError(
                    f"pattern {self.pattern.pattern!r} has no named groups: name them, (?P<name>...), or pass keys="
                )
            self._groups: dict[str, str | int] = {k: k for k in named}
        elif named:
            unknown = [k for k in keys if k not in named]
            if unknown:
                raise ValueError(f"keys {unknown} are not groups of the pattern (groups: {', '.join(named)})")
            self._groups = {k: k for k in keys}
        else:
            if len(keys) != self.pattern.groups:
                raise ValueError(f"{len(keys)} keys given for a pattern with {self.pattern.groups} groups")
            self._groups = {k: i for i, k in enumerate(keys, 1)}

    def parse(self, text: str) -> dict[str, str | None]:
        match = self.pattern.search(text)
        if match is None:
            raise OutputParserError(f"output does not match the pattern {self.pattern.pattern!r}", text)
        return {key: match.group(group) for key, group in self._groups.items()}
