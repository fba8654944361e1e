"""Record types of the tuning data layer, the bad-record report, and its one error type `DataError`.

One dataclass per task: `TextExample` (sequence classification, single- or multi-label, optional text pair),
`TokenExample` (token classification / NER), `QAExample` (extractive QA, SQuAD-style) and `ChatExample`
(causal-LM supervised fine-tuning). Every example remembers the line (or item / question number) it came from,
so that errors and splits can point back to the file. Standard library only.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypedDict, TypeVar, overload

from yulian.tuning.data_tags import Span, tags_to_spans

__all__ = [
    "BadRecord",
    "ChatExample",
    "DataError",
    "Example",
    "QAAnswer",
    "QAExample",
    "RecordSet",
    "TextExample",
    "TokenExample",
    "did_you_mean",
    "name_list",
    "with_suggestion",
]

E = TypeVar("E")
T = TypeVar("T")


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`" Did you mean 'label'?"` when one of `options` is close to `name` (difflib), else `""`."""
    match = difflib.get_close_matches(name, [str(o) for o in options], n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


def with_suggestion(message: str, name: str, options: Iterable[str]) -> str:
    """`message`, plus `". Did you mean 'x'?"` when an option is close to `name`."""
    hint = did_you_mean(name, options)
    return f"{message}.{hint}" if hint else message


def name_list(names: Iterable[Any], limit: int = 20) -> str:
    """`"a, b, c"`, cut after `limit` names with a count of the rest."""
    items = [str(n) for n in names]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"


class DataError(ValueError):
    """A data file cannot be used as it is. The message names the file, the line and what is wrong.

    Attributes: `path` (as given), `line` (1-based line, or item/question number; None for whole-file problems),
    `field` (the column or field concerned, when there is one).
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.field = field


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record that failed validation: where it is, why, and a short `kind` for counting.

    Kinds: `json`, `encoding`, `columns`, `missing_field`, `empty_text`, `empty_label`, `unknown_label`,
    `tag_count`, `span`, `answer`, `message`.
    """

    path: str
    line: int
    reason: str
    kind: str
    field: str | None = None
    unit: str = "line"  # "line", "item" (element of a JSON array) or "question" (SQuAD)

    @property
    def where(self) -> str:
        """`"data.jsonl line 1,204"`."""
        return f"{self.path} {self.unit} {self.line:,}"

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(slots=True)
class TextExample:
    """A text (and optional second text) with one label, or a list of labels (multi-label), or none (unlabelled)."""

    text: str
    label: str | None = None
    labels: list[str] | None = None
    text_pair: str | None = None
    line: int = 0

    @property
    def targets(self) -> list[str]:
        """The labels as a list whatever the kind: `[label]`, `labels`, or `[]` when unlabelled."""
        if self.labels is not None:
            return list(self.labels)
        return [] if self.label is None else [self.label]


@dataclass(slots=True)
class TokenExample:
    """A sentence as tokens with one tag each (`tags` is empty for unlabelled data).

    `sep` is how tokens join into `text`: `" "` for words, `""` for Chinese characters; `offsets` gives each
    token's `[start, end)` in `text`, so predictions can be shown on the original string.
    """

    tokens: list[str]
    tags: list[str]
    line: int = 0
    sep: str = " "

    @property
    def text(self) -> str:
        """The sentence as one string."""
        return self.sep.join(self.tokens)

    @property
    def offsets(self) -> list[tuple[int, int]]:
        """Each token's `[start, end)` character offsets in `text`."""
        out: list[tuple[int, int]] = []
        pos = 0
        for token in self.tokens:
            out.append((pos, pos + len(token)))
            pos += len(token) + len(self.sep)
        return out

    @property
    def entities(self) -> list[Span]:
        """The entities the tags mark, as token spans."""
        return tags_to_spans(self.tags)

    def char_entities(self) -> list[tuple[str, int, int, str]]:
        """The entities as `(type, start, end, surface text)` with character offsets into `text`."""
        offsets = self.offsets
        text = self.text
        out = []
        for kind, start, end in self.entities:
            a, b = offsets[start][0], offsets[end - 1][1]
            out.append((kind, a, b, text[a:b]))
        return out


class QAAnswer(TypedDict):
    """One reference answer: its text and its character offset in the context."""

    text: str
    start: int


@dataclass(slots=True)
class QAExample:
    """An extractive-QA question on a context, with its reference answers (none when `is_impossible`)."""

    id: str
    question: str
    context: str
    answers: list[QAAnswer]
    is_impossible: bool = False
    line: int = 0  # question number in the file (1-based), or the JSONL line
    article: str = ""  # title (or index) of the article the context comes from: splits keep articles whole


@dataclass(slots=True)
class ChatExample:
    """A conversation for supervised fine-tuning: `[{"role": ..., "content": ...}, ...]` with an assistant turn."""

    messages: list[dict[str, str]]
    line: int = 0


Example = TextExample | TokenExample | QAExample | ChatExample


@dataclass
class RecordSet(Generic[E]):
    """What a reader returns: the good examples, the bad records (when skipped) and counts.

    Behaves as a sequence of examples (`len`, iteration, indexing). `of(TextExample)` gives them typed.
    """

    path: str
    fmt: str
    task: str
    examples: list[E]
    bad: list[BadRecord] = field(default_factory=list)
    n_fixed: int = 0  # QA answers whose start offset was recomputed (fix_answer_starts=True)

    @property
    def n_good(self) -> int:
        """Number of good examples."""
        return len(self.examples)

    @property
    def n_bad(self) -> int:
        """Number of bad records skipped."""
        return len(self.bad)

    @property
    def n_read(self) -> int:
        """Records seen: good plus bad."""
        return self.n_good + self.n_bad

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[E]:
        return iter(self.examples)

    @overload
    def __getitem__(self, index: int) -> E: ...
    @overload
    def __getitem__(self, index: slice) -> list[E]: ...
    def __getitem__(self, index: int | slice) -> E | list[E]:
        return self.examples[index]

    def of(self, kind: type[T]) -> list[T]:
        """The examples as a typed list, checking they are of `kind` (e.g. `records.of(TextExample)`)."""
        for example in self.examples:
            if not isinstance(example, kind):
                raise DataError(
                    f"{self.path} holds {type(example).__name__}s ({self.task} data), not {kind.__name__}s",
                    path=self.path,
                )
        return list(self.examples)  # type: ignore[arg-type]  # checked just above

    def labels(self) -> list[str]:
        """Every label (classification) or tag (token classification) seen, sorted; `[]` for other tasks."""
        seen: set[str] = set()
        for example in self.examples:
            if isinstance(example, TextExample):
                seen.update(example.targets)
            elif isinstance(example, TokenExample):
                seen.update(example.tags)
        return sorted(seen)

    @property
    def multi_label(self) -> bool:
        """Whether any example carries a list of labels (multi-label classification)."""
        return any(isinstance(e, TextExample) and e.labels is not None for e in self.examples)

    def bad_counts(self) -> dict[str, int]:
        """Bad records counted by kind, most frequent first."""
        return dict(Counter(b.kind for b in self.bad).most_common())

    def summary(self) -> str:
        """One line: `"train.csv: 10,003 classification examples, 2 bad skipped (empty_text 2)"`."""
        text = f"{self.path}: {self.n_good:,} {self.task} examples"
        if self.bad:
            counts = ", ".join(f"{k} {v:,}" for k, v in self.bad_counts().items())
            text += f", {self.n_bad:,} bad skipped ({counts})"
        if self.n_fixed:
            text += f", {self.n_fixed:,} answer offsets fixed"
        return text
