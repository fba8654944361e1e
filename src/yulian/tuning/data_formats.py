"""Readers: JSONL, JSON (records, rows, SQuAD), CSV/TSV/delimited text with field mapping, CoNLL and BMES files.

`DataConfig` holds every reading option (validated in one place); `DataConfig(...).read(path)` returns a
`RecordSet`. Whole-file problems (no such column, unreadable JSON document, unknown format) raise `DataError`
at once; record problems are bad records: they raise `DataError` at the first one, or with `skip_bad=True` are
skipped and listed in `RecordSet.bad`. Standard library only.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from yulian.tuning.data_labels import LabelMap
from yulian.tuning.data_records import (
    Builder,
    chat_builder,
    check_tags,
    classification_builder,
    guess_sep,
    json_type,
    qa_builder,
    qa_example,
    token_builder,
)
from yulian.tuning.data_source import Bad, Collector, Source
from yulian.tuning.data_tags import SCHEMES
from yulian.tuning.data_types import DataError, RecordSet, TokenExample, name_list, with_suggestion

__all__ = [  # noqa: RUF022  (plain sorted(), as tests/unit/test_public_api.py checks)
    "DataConfig",
    "FORMATS",
    "TASKS",
]

FORMATS = ("jsonl", "json", "csv", "tsv", "txt", "conll", "squad")
"""Formats a file can be read as; `bmes`, `bio`, `bioes`, `iob` and `ner` are names for `conll`."""
TASKS = ("classification", "token", "qa", "chat")
_FORMAT_ALIASES = {"bmes": "conll", "bio": "conll", "bioes": "conll", "iob": "conll", "ner": "conll", "ndjson": "jsonl"}
_TASK_ALIASES = {
    "sequence_classification": "classification",
    "text_classification": "classification",
    "token_classification": "token",
    "ner": "token",
    "extractive_qa": "qa",
    "question_answering": "qa",
    "sft": "chat",
    "causal_lm": "chat",
}
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "txt",
    **{f".{name}": "conll" for name in ("conll", "bmes", "bio", "bioes", "iob", "ner")},
}
_TASKS_BY_FORMAT = {
    "csv": ("classification", "chat"),
    "tsv": ("classification", "chat"),
    "txt": ("classification", "chat"),
    "conll": ("token",),
    "squad": ("qa",),
}
_TAG_LIKE = re.compile(r"^(O|[BIMESLU](?:[-_]\S+)?)$")


def _field(value: str | int | None) -> str | None:
    return None if value is None else str(value)


@dataclass
class DataConfig:
    """How to read a data file. Every option has a default that fits the common case.

    Attributes:
        fmt: jsonl, json, csv, tsv, txt, conll (also bmes/bio/bioes) or squad; None: from the extension.
        task: classification, token, qa or chat; None: from the format and the first record.
        encoding: the file's text encoding (Chinese files are often gbk/gb18030, older European ones latin-1).
        text_field: column/field of the text (a name, or a 0-based column number for files without header).
        label_field: column/field of the label(s); None for unlabelled data.
        text_pair_field: column/field of a second text (sentence-pair tasks).
        label_sep: split label strings on this to get several labels (multi-label), e.g. "," or "|".
        delimiter: column delimiter for csv/tsv/txt (default "," / tab / tab).
        header: whether the first row names the columns (default for csv/tsv: yes, except that with column numbers a
            first row whose label cell also labels later rows is data, as in headerless AFQMC or TNEWS; txt: no).
        messages_field, prompt_field, response_field: where chat data keeps its messages or prompt/response.
        tag_scheme: rewrite tags to bio, bioes or bmes while reading (None keeps them).
        label_map: if given, labels/tags not in it are bad records ("unknown label").
        fix_answer_starts: move a QA answer whose answer_start is wrong (or -1) to where its text occurs.
        skip_bad: skip bad records (listed in `RecordSet.bad`) instead of stopping at the first.
    """

    fmt: str | None = None
    task: str | None = None
    encoding: str = "utf-8"
    text_field: str | int = "text"
    label_field: str | int | None = "label"
    text_pair_field: str | int | None = None
    label_sep: str | None = None
    delimiter: str | None = None
    header: bool | None = None
    messages_field: str = "messages"
    prompt_field: str = "prompt"
    response_field: str = "response"
    tag_scheme: str | None = None
    label_map: LabelMap | None = None
    fix_answer_starts: bool = False
    skip_bad: bool = False

    def __post_init__(self) -> None:
        if self.fmt is not None:
            fmt = self.fmt.lower().lstrip(".")
            fmt = _FORMAT_ALIASES.get(fmt, fmt)
            if fmt not in FORMATS:
                names = [*FORMATS, *_FORMAT_ALIASES]
                raise DataError(
                    with_suggestion(f"unknown format {self.fmt!r} (formats: {', '.join(FORMATS)})", self.fmt, names),
                    field="fmt",
                )
            self.fmt = fmt
        if self.task is not None:
            task = _TASK_ALIASES.get(self.task.lower(), self.task.lower())
            if task not in TASKS:
                raise DataError(
                    with_suggestion(f"unknown task {self.task!r} (tasks: {', '.join(TASKS)})", self.task, TASKS),
                    field="task",
                )
            self.task = task
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise DataError(
                f"unknown encoding {self.encoding!r} (e.g. utf-8, gbk, gb18030, latin-1)", field="encoding"
            ) from None
        if self.tag_scheme is not None and self.tag_scheme.lower() not in SCHEMES:
            raise DataError(
                f"unknown tag scheme {self.tag_scheme!r} (schemes: {', '.join(SCHEMES)})", field="tag_scheme"
            )
        if self.tag_scheme is not None:
            self.tag_scheme = self.tag_scheme.lower()
        if self.label_sep == "":
            raise DataError("label_sep must not be empty", field="label_sep")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise DataError(f"delimiter must be one character, not {self.delimiter!r}", field="delimiter")
        for name in (
            "text_field",
            "label_field",
            "text_pair_field",
            "messages_field",
            "prompt_field",
            "response_field",
        ):
            if getattr(self, name) == "":
                raise DataError(f"{name} must not be empty", field=name)
        fixed_tasks = _TASKS_BY_FORMAT.get(self.fmt) if self.fmt not in (None, "txt") else None  # .txt may be CoNLL
        if fixed_tasks is not None and self.task is not None and self.task not in fixed_tasks:
            raise DataError(f"{self.fmt} files cannot hold {self.task} data", field="task")

    def read(self, path: str | os.PathLike[str]) -> RecordSet[Any]:
        """Read one file with these options."""
        return _Reader(self, path).read()


class _Reader:
    def __init__(self, cfg: DataConfig, path: str | os.PathLike[str]) -> None:
        self.cfg = cfg
        self.display = os.fspath(path)
        self.path = Path(path)

    def fail(self, message: str, *, line: int | None = None, field: str | None = None) -> DataError:
        return DataError(message, path=self.display, line=line, field=field)

    # -------------------------------------------------------------------------------------- dispatch
    def read(self) -> RecordSet[Any]:
        if not self.path.exists():
            raise self.fail(f"{self.display}: no such file")
        if self.path.is_dir():
            raise self.fail(f"{self.display} is a folder, not a data file")
        fmt = self.cfg.fmt or self._format_from_extension()
        src = Source(self.path, self.display, self.cfg.encoding)
        if fmt == "txt" and self._txt_is_conll(src):
            fmt = "conll"
        if fmt in ("json", "squad"):
            doc = self._json_document(src, allow_lines=fmt == "json")
            if doc is None:
                fmt = "jsonl"
            else:
                return self._read_json(doc, src)
        allowed = _TASKS_BY_FORMAT.get(fmt)
        if allowed and self.cfg.task is not None and self.cfg.task not in allowed:
            raise self.fail(f"{self.display} is read as {fmt}, which cannot hold {self.cfg.task} data")
        if fmt == "jsonl":
            return self._read_jsonl(src)
        if fmt == "conll":
            return self._read_conll(src)
        return self._read_delimited(src, fmt)

    def _format_from_extension(self) -> str:
        suffix = self.path.suffix.lower()
        if suffix in _EXTENSIONS:
            return _EXTENSIONS[suffix]
        raise self.fail(
            f"cannot tell the format of {self.display} from its extension {suffix or '(none)'!r}: pass the format "
            f"(--format {'/'.join(FORMATS)})",
            field="fmt",
        )

    def _result(self, col: Collector, fmt: str, task: str) -> RecordSet[Any]:
        col.check_not_empty()
        return RecordSet(self.display, fmt, task, col.examples, col.bad, col.n_fixed)

    def _collector(self, unit: str = "line", noun: str = "lines") -> Collector:
        return Collector(self.display, skip_bad=self.cfg.skip_bad, unit=unit, noun=noun)

    def _detect_task(self, record: Mapping[str, Any]) -> str:
        cfg = self.cfg
        if cfg.task is not None:
            return cfg.task
        if cfg.messages_field in record or "conversations" in record:
            return "chat"
        if (cfg.prompt_field in record and cfg.response_field in record) or (
            "instruction" in record and "output" in record
        ):
            return "chat"
        if "question" in record and "context" in record:
            return "qa"
        text, label = record.get(str(cfg.text_field)), record.get(str(cfg.label_field))
        if isinstance(text, list) or isinstance(label, dict):
            return "token"
        return "classification"

    def _require(self, record: Mapping[str, Any], keys: Sequence[str | None], noun: str) -> None:
        for key in keys:
            if key is not None and key not in record:
                message = f"{self.display} has no {noun} {key!r} ({noun}s: {name_list(record)})"
                raise self.fail(with_suggestion(message, key, record), field=key)

    def _builder(self, record: Mapping[str, Any], task: str, noun: str, col: Collector, counter: list[int]) -> Builder:
        """The builder for records shaped like `record`, after checking the mapped fields exist."""
        cfg = self.cfg
        text, label, pair = _field(cfg.text_field), _field(cfg.label_field), _field(cfg.text_pair_field)
        if task == "classification":
            assert text is not None
            self._require(record, [text, label, pair], noun)
            return classification_builder(text, label, pair, cfg.label_sep, cfg.label_map)
        if task == "token":
            assert text is not None
            self._require(record, [text, label], noun)
            return token_builder(text, label, cfg.tag_scheme, cfg.label_map)
        if task == "chat":
            return chat_builder(record, cfg.messages_field, cfg.prompt_field, cfg.response_field, self.display)
        self._require(record, ["question", "context"], noun)
        return qa_builder(
            cfg.fix_answer_starts, counter, lambda line, bad: col.reject(line, bad.reason, bad.kind, bad.field)
        )

    # -------------------------------------------------------------------------------------- JSON
    def _json_document(self, src: Source, *, allow_lines: bool) -> Any:
        """The parsed JSON document, or None if the file is JSON Lines (several values, one per line)."""
        try:
            doc = json.loads(src.text)
        except json.JSONDecodeError as e:
            if allow_lines and e.msg == "Extra data" and "\n" in src.text[: e.pos]:
                return None
            raise self.fail(
                f"{self.display} line {e.lineno:,}: not valid JSON ({e.msg}: column {e.colno})", line=e.lineno
            ) from None
        bad_line = src.first_bad_line()
        if bad_line is not None:
            raise self.fail(f"{self.display} line {bad_line:,}: {src.check_lines(bad_line)}", line=bad_line)
        return doc

    def _read_json(self, doc: Any, src: Source) -> RecordSet[Any]:
        if isinstance(doc, dict) and isinstance(doc.get("data"), list):
            return self._read_squad(doc["data"])
        if not isinstance(doc, list):
            keys = f" (keys: {name_list(doc)})" if isinstance(doc, dict) else ""
            raise self.fail(
                f'{self.display}: expected a list of records, or SQuAD\'s {{"data": [...]}}; '
                f"found {json_type(doc)}{keys}"
            )
        col = self._collector("item", "items")
        first = next((item for item in doc if isinstance(item, dict | list)), None)
        if first is None:
            col.check_not_empty()
        if isinstance(first, list):
            build = self._row_builder(self._row_keys(None, len(first)), None)
            for number, item in enumerate(doc, 1):
                if not isinstance(item, list):
                    col.reject(number, f"expected a list like item 1, found {json_type(item)}", "json")
                elif len(item) != len(first):
                    col.reject(number, f"expected {len(first)} values, found {len(item)}", "columns")
                else:
                    col.build(build, item, number)
            return self._result(col, "json", "classification")
        assert isinstance(first, dict)
        task = self._detect_task(first)
        counter = [0]
        build = self._builder(first, task, "field", col, counter)
        for number, item in enumerate(doc, 1):
            if isinstance(item, dict):
                col.build(build, item, number)
            else:
                col.reject(number, f"expected a JSON object, found {json_type(item)}", "json")
        col.n_fixed = counter[0]
        return self._result(col, "json", task)

    def _read_squad(self, articles: list[Any]) -> RecordSet[Any]:
        if self.cfg.task not in (None, "qa"):
            raise self.fail(f"{self.display} is SQuAD JSON (question answering), not {self.cfg.task} data")
        col = self._collector("question", "questions")
        number = 0
        for index, article in enumerate(articles, 1):
            paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
            if not isinstance(paragraphs, list):
                raise self.fail(f'{self.display}: article {index} has no "paragraphs" list (not SQuAD JSON?)')
            name = str(article.get("title") or article.get("id") or index)
            for paragraph in paragraphs:
                context = paragraph.get("context") if isinstance(paragraph, dict) else None
                qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
                for qa in qas if isinstance(qas, list) else []:
                    number += 1
                    if not isinstance(qa, dict):
                        col.reject(number, f"question is {json_type(qa)}, not an object", "json")
                        continue
                    reject = functools.partial(self._reject_answer, col, number)
                    try:
                        example, fixed = qa_example(qa, context, number, name, self.cfg.fix_answer_starts, reject)
                    except Bad as bad:
                        col.reject(number, bad.reason, bad.kind, bad.field)
                        continue
                    if example is not None:
                        col.examples.append(example)
                    col.n_fixed += fixed
        return self._result(col, "squad", "qa")

    @staticmethod
    def _reject_answer(col: Collector, number: int, bad: Bad) -> None:
        col.reject(number, bad.reason, bad.kind, bad.field)

    def _read_jsonl(self, src: Source) -> RecordSet[Any]:
        col = self._collector()
        build: Builder | None = None
        task = self.cfg.task or "classification"
        counter = [0]
        for number, line in src.lines():
            if not line.strip():
                continue
            reason = src.check_lines(number)
            if reason:
                col.reject(number, reason, "encoding")
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                col.reject(number, f"not valid JSON ({e.msg}: column {e.colno})", "json")
                continue
            if not isinstance(record, dict):
                col.reject(number, f"expected a JSON object, found {json_type(record)}", "json")
                continue
            if build is None:
                task = self._detect_task(record)
                build = self._builder(record, task, "field", col, counter)
            col.build(build, record, number)
        col.n_fixed = counter[0]
        return self._result(col, "jsonl", task)

    # -------------------------------------------------------------------------------------- CSV / TSV / txt
    def _row_keys(self, names: list[str] | None, ncols: int) -> dict[str, int | None]:
        """Column numbers of the text, label and text-pair fields: by header name, by number, or (no header,
        default field names) the first and the last column."""
        cfg = self.cfg
        wanted: dict[str, tuple[str | None, int | None]] = {
            "text": (_field(cfg.text_field), 0),
            "label": (_field(cfg.label_field), ncols - 1),
            "text-pair": (_field(cfg.text_pair_field), None),
        }
        columns: dict[str, int | None] = {}
        for role, (value, default) in wanted.items():
            if value is None:
                columns[role] = None
            elif value.lstrip("-").isdigit():
                index = int(value) + (ncols if value.startswith("-") else 0)
                if not 0 <= index < ncols:
                    raise self.fail(f"{self.display} has no column {value} (it has {ncols} columns)", field=value)
                columns[role] = index
            elif names is not None:
                if value not in names:
                    message = f"{self.display} has no column {value!r} (columns: {name_list(names)})"
                    raise self.fail(with_suggestion(message, value, names), field=value)
                columns[role] = names.index(value)
            elif default is not None and value == role:  # the default field names mean "first" / "last" column
                columns[role] = default
            else:
                raise self.fail(
                    f"{self.display} has no header row, so --{role}-field must be a column number (0-based), "
                    f"not {value!r}",
                    field=value,
                )
        if columns["label"] is not None and columns["label"] == columns["text"]:
            raise self.fail(
                f"{self.display} has only {ncols} column: no label column (pass --label-field none for unlabelled text)"
            )
        return columns

    def _row_builder(self, columns: dict[str, int | None], names: list[str] | None) -> Builder:
        cfg = self.cfg
        text = columns["text"]
        assert text is not None
        return classification_builder(
            text, columns["label"], columns["text-pair"], cfg.label_sep, cfg.label_map, names=names
        )

    def _chat_columns(self, names: list[str] | None) -> bool:
        cfg = self.cfg
        if cfg.task == "chat":
            return True
        has = names is not None and cfg.prompt_field in names and cfg.response_field in names
        return cfg.task is None and has and _field(cfg.text_field) not in (names or [])

    def _read_delimited(self, src: Source, fmt: str) -> RecordSet[Any]:
        cfg = self.cfg
        if fmt == "txt" and cfg.delimiter is None and not any("\t" in line for _, line in islice(src.lines(), 50)):
            raise self.fail(
                f"cannot tell how {self.display} is laid out: pass --format conll for token-per-line tags, or "
                f"--delimiter for text<delimiter>label lines (e.g. --delimiter '@')"
            )
        delimiter = cfg.delimiter or ("," if fmt == "csv" else "\t")

        def rows() -> Any:
            text = io.StringIO(src.text, newline="")
            if fmt == "csv":
                return csv.reader(text, delimiter=delimiter)
            return csv.reader(text, delimiter=delimiter, quoting=csv.QUOTE_NONE)  # TSV: a quote is part of the text

        header = cfg.header if cfg.header is not None else fmt != "txt" and self._first_row_names(rows())
        reader = rows()
        col = self._collector()
        build: Builder | None = None
        names: list[str] | None = None
        ncols = 0
        task = "classification"
        previous = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                start, previous = previous + 1, reader.line_num
                col.reject(start, f"not valid {fmt.upper()} ({e})", "columns")
                continue
            start, previous = previous + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            reason = src.check_lines(start, previous)
            if build is None:
                if reason and header:
                    raise self.fail(f"{self.display} line {start:,}: {reason}", line=start)
                names = [name.strip() for name in row] if header else None
                if names is not None and self._chat_columns(names):
                    task = "chat"
                    build = chat_builder(
                        dict.fromkeys(names, ""), cfg.messages_field, cfg.prompt_field, cfg.response_field, self.display
                    )
                else:
                    build = self._row_builder(self._row_keys(names, len(row)), names)
                ncols = len(row)
                if header:
                    continue
            if reason:
                col.reject(start, reason, "encoding")
                continue
            if len(row) != ncols:
                col.reject(start, f"expected {ncols} columns, found {len(row)}", "columns")
                continue
            col.build(build, dict(zip(names, row, strict=True)) if task == "chat" and names else row, start)
        return self._result(col, fmt, task)

    def _first_row_names(self, reader: Any) -> bool:
        """Whether a csv/tsv file starts with a header row. With fields given by name it must; with column numbers
        (headerless files such as AFQMC's or TNEWS's), the first row is a header only if its label cell is none of
        the labels of the next 200 rows (`sentence<TAB>label` above `it's great<TAB>1`)."""
        cfg = self.cfg
        fields = (cfg.text_field, cfg.label_field, cfg.text_pair_field)
        if not all(f is None or re.fullmatch(r"-?\d+", str(f)) for f in fields) or cfg.label_field is None:
            return True
        try:
            sample = [row for row in islice(reader, 201) if row and any(cell.strip() for cell in row)]
            column = int(cfg.label_field)
            first, rest = sample[0][column], {row[column] for row in sample[1:] if -len(row) <= column < len(row)}
        except (csv.Error, IndexError):
            return True
        return bool(rest) and first not in rest

    # -------------------------------------------------------------------------------------- CoNLL / BMES
    def _txt_is_conll(self, src: Source) -> bool:
        if self.cfg.delimiter is not None or self.cfg.task not in (None, "token"):
            return False
        sample = [line for _, line in islice(((n, s) for n, s in src.lines() if s.strip()), 50)]
        if any(line.startswith("-DOCSTART-") for line in sample):
            return True
        return bool(sample) and all(len(parts := line.split()) >= 2 and _TAG_LIKE.match(parts[-1]) for line in sample)

    def _read_conll(self, src: Source) -> RecordSet[Any]:
        """Token per line (tag in the last column, blank line between sentences, -DOCSTART- skipped), or one
        sentence per line as `tokens<TAB>tags`, space-separated (Resume NER's .char.bmes)."""
        col = self._collector(noun="sentences")
        cfg = self.cfg
        tokens: list[str] = []
        tags: list[str] = []
        lines: list[int] = []
        error: tuple[int, str, str] | None = None
        per_sentence: bool | None = None

        def add(tokens: list[str], tags: list[str], lines: list[int]) -> None:
            checked, index, reason = check_tags(tags, cfg.tag_scheme, cfg.label_map)
            if reason:
                col.reject(lines[index], reason, "unknown_label")
            else:
                col.examples.append(TokenExample(tokens, checked, lines[0], guess_sep(tokens)))

        def flush() -> None:
            nonlocal tokens, tags, lines, error
            if error is not None:
                col.reject(*error)
            elif tokens:
                add(tokens, tags, lines)
            tokens, tags, lines, error = [], [], [], None

        for number, line in src.lines():
            if not line.strip() or line.startswith("-DOCSTART-"):
                flush()
                continue
            reason = src.check_lines(number)
            if per_sentence is None:
                halves = line.split("\t")
                per_sentence = len(halves) == 2 and len(halves[0].split()) > 1 and len(halves[1].split()) > 1
            if per_sentence:
                if reason:
                    col.reject(number, reason, "encoding")
                    continue
                words, _, marks = line.partition("\t")
                sentence, sentence_tags = words.split(), marks.split()
                if len(sentence) != len(sentence_tags):
                    col.reject(number, f"{len(sentence)} tokens but {len(sentence_tags)} tags", "tag_count")
                else:
                    add(sentence, sentence_tags, [number] * len(sentence))
                continue
            if error is not None:
                continue
            if reason:
                error = (number, reason, "encoding")
                continue
            parts = line.split()
            if len(parts) == 1 and line[0].isspace() and line[0] not in " \t":
                parts = [line[0], parts[0]]  # a token that is itself a wide space (U+3000), then its tag
            if len(parts) < 2:
                error = (number, f"expected a token and a tag, found one column ({line.strip()!r})", "columns")
                continue
            tokens.append(parts[0])
            tags.append(parts[-1])
            lines.append(number)
        flush()
        return self._result(col, "conll", "token")
