"""Record builders: one mapping (a JSON object, or a CSV row keyed by column) -> one example, or `Bad(reason)`.

Internal to the readers in `data_formats`. Every check a single record can fail lives here: missing field, empty
text, label kinds (one, a list, a delimiter-separated string), unknown label, tag/token count, entity spans,
QA answers and chat messages.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from yulian.tuning.data_labels import LabelMap
from yulian.tuning.data_source import Bad
from yulian.tuning.data_tags import Span, convert_tags, spans_to_tags
from yulian.tuning.data_types import (
    ChatExample,
    DataError,
    QAAnswer,
    QAExample,
    TextExample,
    TokenExample,
    name_list,
)

__all__ = [
    "ROLES",
    "Builder",
    "Reject",
    "chat_builder",
    "check_tags",
    "classification_builder",
    "guess_sep",
    "qa_answers",
    "qa_builder",
    "qa_example",
    "token_builder",
]

Builder = Callable[[Any, int], Any]
"""Turns one record (a mapping, or a row list indexed by column number) and its line into an example."""
ROLES = ("system", "user", "assistant", "tool")
_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "ai": "assistant", "model": "assistant"}


def json_type(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def get(record: Mapping[str, Any], key: str) -> Any:
    """`record[key]`, or `Bad("no field 'key'")`."""
    try:
        return record[key]
    except KeyError:
        raise Bad(f"no field {key!r}", "missing_field", key) from None


def as_text(value: object, what: str, key: str) -> str:
    """A non-empty string (stripped of surrounding whitespace), or `Bad`."""
    if type(value) is str:  # the common case first: this runs once per record
        text = value.strip()
        if text:
            return text
        raise Bad(f"empty {what}", "empty_text", key)
    if value is None:
        raise Bad(f"{what} is null", "missing_field", key)
    if not isinstance(value, str):
        raise Bad(f"{what} is {json_type(value)}, not a string", "type", key)
    return as_text(str(value), what, key)


def _label_name(value: object, key: str) -> str:
    if type(value) is str:
        name = value.strip()
    elif isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Bad(f"label is {json_type(value)}, not a string or number", "type", key)
    else:
        name = str(int(value) if isinstance(value, float) and value.is_integer() else value).strip()
    if not name:
        raise Bad("empty label", "empty_label", key)
    return name


def label_value(value: object, label_sep: str | None, key: str) -> tuple[str | None, list[str] | None]:
    """`(label, None)` for one label, `(None, labels)` for a list or a `label_sep`-separated string."""
    if value is None:
        raise Bad("label is null", "missing_field", key)
    if isinstance(value, list):
        return None, [_label_name(v, key) for v in value]
    if label_sep is not None and isinstance(value, str):
        return None, [part.strip() for part in value.split(label_sep) if part.strip()]
    return _label_name(value, key), None


def classification_builder(
    text_key: str | int,
    label_key: str | int | None,
    pair_key: str | int | None,
    label_sep: str | None,
    label_map: LabelMap | None,
    names: Sequence[str] | None = None,
) -> Builder:
    """Builder of `TextExample`s from records with the given keys: field names for mappings, or column numbers
    for row lists of the right length (then `names`, if given, name the columns in messages)."""

    def name(key: str | int) -> str:
        return names[key] if names is not None and isinstance(key, int) else str(key)

    text_name, label_name = name(text_key), name(label_key) if label_key is not None else ""
    pair_name = name(pair_key) if pair_key is not None else ""
    rows = isinstance(text_key, int)

    def value(record: Any, key: str | int) -> Any:
        return record[key] if rows else get(record, str(key))

    def build(record: Any, line: int) -> TextExample:
        text = as_text(value(record, text_key), "text", text_name)
        pair = as_text(value(record, pair_key), "text pair", pair_name) if pair_key is not None else None
        label: str | None = None
        labels: list[str] | None = None
        if label_key is not None:
            label, labels = label_value(value(record, label_key), label_sep, label_name)
            if label_map is not None:
                for one in labels if labels is not None else [label or ""]:
                    reason = label_map.unknown(one)
                    if reason:
                        raise Bad(reason, "unknown_label", label_name)
        return TextExample(text, label, labels, pair, line)

    return build


# ---------------------------------------------------------------------------------------------- tokens
def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF or code >= 0x20000


def guess_sep(tokens: Sequence[str]) -> str:
    """How tokens join into text: `""` for Chinese (any CJK character), `" "` otherwise."""
    return "" if any(_is_cjk(ch) for token in tokens for ch in token) else " "


def check_tags(tags: list[str], tag_scheme: str | None, label_map: LabelMap | None) -> tuple[list[str], int, str]:
    """Convert `tags` to `tag_scheme` (if given); `(tags, index, reason)` with `reason` set for an unknown tag."""
    if tag_scheme is not None:
        tags = convert_tags(tags, tag_scheme)
    if label_map is not None:
        for i, tag in enumerate(tags):
            reason = label_map.unknown(tag, "tag")
            if reason:
                return tags, i, reason
    return tags, -1, ""


def _tags_from_spans(text: str, spans: Mapping[str, Any], key: str, scheme: str) -> list[str]:
    """CLUENER-style `{type: {entity text: [[start, end_inclusive], ...]}}` -> one tag per character."""
    found: list[Span] = []
    for kind, mentions in spans.items():
        if not isinstance(mentions, Mapping):
            raise Bad(f"entities of type {kind!r} are {json_type(mentions)}, not {{text: [[start, end]]}}", "span", key)
        for surface, positions in mentions.items():
            for pos in positions if isinstance(positions, list) else [positions]:
                if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(p, int) for p in pos)):
                    raise Bad(f"entity {surface!r} ({kind}) has position {pos!r}, not [start, end]", "span", key)
                start, end = pos
                if not 0 <= start <= end < len(text) or text[start : end + 1] != surface:
                    got = text[start : end + 1] if 0 <= start <= end else ""
                    raise Bad(
                        f"entity {surface!r} ({kind}) does not match the text at {start}-{end} ({got!r})", "span", key
                    )
                found.append(Span(str(kind), start, end + 1))
    found.sort(key=lambda s: (s.start, s.end))
    for a, b in itertools.pairwise(found):
        if b.start < a.end:
            raise Bad(
                f"entities {a.type} {a.start}-{a.end - 1} and {b.type} {b.start}-{b.end - 1} overlap", "span", key
            )
    return spans_to_tags(found, len(text), scheme)


def token_builder(text_key: str, label_key: str | None, tag_scheme: str | None, label_map: LabelMap | None) -> Builder:
    """Builder of `TokenExample`s: tokens as a list with a tag list, or a string (split into characters) with a
    tag list or CLUENER-style entity spans."""

    def build(record: Mapping[str, Any], line: int) -> TokenExample:
        raw = get(record, text_key)
        if isinstance(raw, str):
            if not raw.strip():
                raise Bad("empty text", "empty_text", text_key)
            tokens, sep = list(raw), ""
        elif isinstance(raw, list) and all(isinstance(t, str) for t in raw):
            if not raw:
                raise Bad("empty text (no tokens)", "empty_text", text_key)
            tokens, sep = list(raw), guess_sep(raw)
        else:
            raise Bad(f"text is {json_type(raw)}, not a string or a list of tokens", "type", text_key)
        tags: list[str] = []
        if label_key is not None:
            value = get(record, label_key)
            if isinstance(value, Mapping):
                if not isinstance(raw, str):
                    raise Bad("entity spans need the text as a string", "span", label_key)
                tags = _tags_from_spans(raw, value, label_key, tag_scheme or "bio")
            elif isinstance(value, list):
                tags = [str(t) for t in value]
                if len(tags) != len(tokens):
                    raise Bad(f"{len(tokens)} tokens but {len(tags)} tags", "tag_count", label_key)
            else:
                raise Bad(f"tags are {json_type(value)}, not a list of tags or entity spans", "type", label_key)
            tags, _, reason = check_tags(tags, tag_scheme, label_map)
            if reason:
                raise Bad(reason, "unknown_label", label_key)
        return TokenExample(tokens, tags, line, sep)

    return build


# ---------------------------------------------------------------------------------------------- QA
def _nearest(context: str, text: str, start: int) -> int:
    best, pos = -1, context.find(text)
    while pos >= 0:
        if best < 0 or abs(pos - start) < abs(best - start):
            best = pos
        pos = context.find(text, pos + 1)
    return best


Reject = Callable[[Bad], None]
"""Called with each bad answer: records it, or raises `DataError` when bad records are not skipped."""


def _answer(item: object, i: int, context: str, fix: bool) -> tuple[QAAnswer, bool]:
    """One validated answer and whether its start was fixed; `Bad` if it cannot be used."""
    if not isinstance(item, Mapping):
        raise Bad(f"answer {i} is {json_type(item)}, not an object", "answer", "answers")
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise Bad(f"answer {i} has empty text", "answer", "answers")
    try:
        start = int(item.get("answer_start", -1))
    except (TypeError, ValueError):
        raise Bad(
            f"answer {i} has answer_start {item.get('answer_start')!r}, not a number", "answer", "answers"
        ) from None
    if start >= 0 and context.startswith(text, start):
        return {"text": text, "start": start}, False
    found = _nearest(context, text, start)
    if fix and found >= 0:
        return {"text": text, "start": found}, True
    if found < 0:
        at = f"has answer_start {start} and " if start < 0 else ""
        raise Bad(f"answer {i} {text!r} {at}does not occur in the context", "answer", "answers")
    if start < 0:
        raise Bad(f"answer {i} {text!r} has answer_start {start} (the text occurs at {found})", "answer", "answers")
    there = context[start : start + len(text)]
    raise Bad(
        f"answer {i} {text!r} not found at answer_start {start} (the context has {there!r} there; "
        f"the text occurs at {found})",
        "answer",
        "answers",
    )


def qa_answers(raw: object, context: str, fix: bool, reject: Reject) -> tuple[list[QAAnswer], int]:
    """Validated answers (`[{"text", "start"}]`) from SQuAD's list or the `{"text": [...], "answer_start": [...]}`
    form, and how many start offsets were fixed (`fix=True` moves a wrong start to the nearest occurrence).

    Each bad answer goes to `reject` (a question keeps its good answers); a malformed list raises `Bad`.
    """
    items: list[Any]
    if isinstance(raw, Mapping):
        texts, starts = list(raw.get("text") or []), list(raw.get("answer_start") or [])
        if len(texts) != len(starts):
            raise Bad(f"{len(texts)} answer texts but {len(starts)} answer_start values", "answer", "answers")
        items = [{"text": t, "answer_start": s} for t, s in zip(texts, starts, strict=True)]
    elif isinstance(raw, list):
        items = raw
    else:
        raise Bad(f"answers are {json_type(raw)}, not a list", "answer", "answers")
    answers: list[QAAnswer] = []
    fixed = 0
    for i, item in enumerate(items, 1):
        try:
            answer, moved = _answer(item, i, context, fix)
        except Bad as bad:
            reject(bad)
            continue
        answers.append(answer)
        fixed += moved
    return answers, fixed


def qa_example(
    qa: Mapping[str, Any], context: object, line: int, article: str, fix: bool, reject: Reject
) -> tuple[QAExample | None, int]:
    """One validated `QAExample` from a SQuAD question object and its context, and the number of fixed offsets.

    Problems name the question id. A whole-question problem (empty question or context, no answers) raises `Bad`;
    each bad answer goes to `reject`, and a question left with no good answer gives None.
    """
    qid = str(qa.get("id", f"q{line}"))

    def with_id(bad: Bad) -> Bad:
        return Bad(f"{bad.reason} (id {qid})", bad.kind, bad.field)

    try:
        question = as_text(qa.get("question"), "question", "question")
        as_text(context, "context", "context")  # a non-empty string; kept unstripped: offsets point into it
        text = str(context)
        impossible = bool(qa.get("is_impossible", False))
        answers: list[QAAnswer] = []
        fixed = 0
        if not impossible:
            raw = qa.get("answers", [])
            answers, fixed = qa_answers(raw, text, fix, lambda bad: reject(with_id(bad)))
            if not answers:
                if raw:
                    return None, fixed  # every answer was bad, and each is reported
                raise Bad("no answers, and not marked is_impossible", "answer", "answers")
    except Bad as bad:
        raise with_id(bad) from None
    return QAExample(qid, question, text, answers, impossible, line, article), fixed


def qa_builder(fix: bool, counter: list[int], reject: Callable[[int, Bad], None]) -> Builder:
    """Builder of `QAExample`s from flat records `{"id", "question", "context", "answers", "title"?}`; fixed
    offsets are added to `counter[0]`, bad answers go to `reject(line, bad)`."""

    def build(record: Mapping[str, Any], line: int) -> QAExample | None:
        article = str(record.get("title", ""))
        example, fixed = qa_example(record, record.get("context"), line, article, fix, lambda bad: reject(line, bad))
        counter[0] += fixed
        return example

    return build


# ---------------------------------------------------------------------------------------------- chat
def _messages(value: object, key: str, *, sharegpt: bool = False) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise Bad(
            f"{key} is {json_type(value) if value != [] else 'an empty list'}, not a list of messages", "message", key
        )
    out: list[dict[str, str]] = []
    for i, message in enumerate(value, 1):
        if not isinstance(message, Mapping):
            raise Bad(f"message {i} is {json_type(message)}, not an object", "message", key)
        role = message.get("from" if sharegpt else "role")
        content = message.get("value" if sharegpt else "content")
        if isinstance(role, str) and sharegpt:
            role = _ROLE_ALIASES.get(role, role)
        if role not in ROLES:
            hint = f". Did you mean {_ROLE_ALIASES[role]!r}?" if isinstance(role, str) and role in _ROLE_ALIASES else ""
            raise Bad(f"message {i} has unknown role {role!r} (roles: {', '.join(ROLES)}){hint}", "message", key)
        if not isinstance(content, str) or not content.strip():
            raise Bad(f"message {i} ({role}) has empty content", "message", key)
        out.append({"role": str(role), "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise Bad("no assistant message to learn from", "message", key)
    return out


def chat_builder(
    first: Mapping[str, Any], messages_key: str, prompt_key: str, response_key: str, display: str
) -> Builder:
    """Builder of `ChatExample`s. The first record decides the layout: `messages` (OpenAI style),
    `conversations` (ShareGPT `from`/`value`), `prompt`/`response` (+ optional `system`), or Alpaca's
    `instruction`/`input`/`output`."""
    if messages_key in first:
        return lambda record, line: ChatExample(_messages(get(record, messages_key), messages_key), line)
    if "conversations" in first:
        return lambda record, line: ChatExample(
            _messages(get(record, "conversations"), "conversations", sharegpt=True), line
        )
    if prompt_key in first and response_key in first:

        def build(record: Mapping[str, Any], line: int) -> ChatExample:
            prompt = as_text(get(record, prompt_key), "prompt", prompt_key)
            response = as_text(get(record, response_key), "response", response_key)
            system = record.get("system")
            head = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
            return ChatExample(
                [*head, {"role": "user", "content": prompt}, {"role": "assistant", "content": response}], line
            )

        return build
    if "instruction" in first and "output" in first:

        def build_alpaca(record: Mapping[str, Any], line: int) -> ChatExample:
            prompt = as_text(get(record, "instruction"), "instruction", "instruction")
            extra = record.get("input")
            if isinstance(extra, str) and extra.strip():
                prompt = f"{prompt}\n\n{extra.strip()}"
            response = as_text(get(record, "output"), "output", "output")
            return ChatExample([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], line)

        return build_alpaca
    raise DataError(
        f"{display} has no field {messages_key!r} (or {prompt_key!r} and {response_key!r}) for chat data "
        f"(fields: {name_list(first)})",
        path=display,
        field=messages_key,
    )
