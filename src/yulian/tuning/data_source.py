"""Reading a data file's text with exact positions, and collecting bad records (internal to the data readers).

The file is decoded with `errors="surrogateescape"`, so bytes that are not valid in the encoding survive as
lone surrogates: a line holding one is a bad record ("not valid UTF-8 at byte N"), the rest of the file still
reads, and the byte offset reported is exact. Standard library only.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from yulian.tuning.data_types import BadRecord, DataError

__all__ = ["Bad", "Collector", "Source"]

_UNDECODABLE = re.compile("[\udc80-\udcff]")
_HIGH_RUNS = re.compile(rb"[\x80-\xff]+")


class Bad(Exception):  # a signal inside the readers, not an error users see
    """Raised by a record builder: this record is bad, for `reason`."""

    def __init__(self, reason: str, kind: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.field = field


class Source:
    """A data file's decoded text, its lines, and the exact byte offset of any undecodable bytes."""

    def __init__(self, path: Path, display: str, encoding: str) -> None:
        self.display = display
        self.encoding = encoding
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise DataError(f"{display}: cannot read the file ({e.strerror})", path=display) from None
        text = raw.decode(encoding, errors="surrogateescape")
        self.bom_bytes = 0
        if text.startswith("\ufeff"):
            text = text[1:]
            self.bom_bytes = len("\ufeff".encode(encoding))
        self.text = text
        self.clean = _UNDECODABLE.search(text) is None
        self._starts: list[int] | None = None
        self._cursor = (0, self.bom_bytes)  # (char position, byte offset) of the last offset computed

    def lines(self) -> Iterator[tuple[int, str]]:
        """`(line number, line)` for every physical line, 1-based, without the line break."""
        for number, line in enumerate(self.text.split("\n"), 1):
            yield number, line[:-1] if line.endswith("\r") else line

    def _line_starts(self) -> list[int]:
        if self._starts is None:
            self._starts = [0, *(m.end() for m in re.finditer("\n", self.text))]
        return self._starts

    def _byte_offset(self, pos: int) -> int:
        char, byte = self._cursor
        if pos < char:
            char, byte = 0, self.bom_bytes
        byte += len(self.text[char:pos].encode(self.encoding, errors="surrogateescape"))
        self._cursor = (pos, byte)
        return byte

    def check_lines(self, first: int, last: int | None = None) -> str | None:
        """`None` if lines `first..last` decode cleanly, else the reason (`"not valid UTF-8 at byte 1,234; ..."`)."""
        if self.clean:
            return None
        starts = self._line_starts()
        end_line = last if last is not None else first
        a = starts[first - 1]
        b = starts[end_line] if end_line < len(starts) else len(self.text)
        m = _UNDECODABLE.search(self.text, a, b)
        if m is None:
            return None
        line_no = first + self.text.count("\n", a, m.start())
        line_end = starts[line_no] if line_no < len(starts) else len(self.text)
        line_bytes = self.text[starts[line_no - 1] : line_end].encode(self.encoding, errors="surrogateescape")
        return f"not valid {self._encoding_name()} at byte {self._byte_offset(m.start()):,}; {self._hint(line_bytes)}"

    def first_bad_line(self) -> int | None:
        """The first line holding undecodable bytes, if any."""
        if self.clean:
            return None
        m = _UNDECODABLE.search(self.text)
        return None if m is None else self.text.count("\n", 0, m.start()) + 1

    def _encoding_name(self) -> str:
        name = codecs.lookup(self.encoding).name
        return "UTF-8" if name == "utf-8" else self.encoding

    def _hint(self, line_bytes: bytes) -> str:
        if codecs.lookup(self.encoding).name != "utf-8":
            return "pass the file's real encoding with --encoding (e.g. utf-8, gb18030, latin-1)"
        runs = _HIGH_RUNS.findall(line_bytes)
        even = sum(1 for r in runs if len(r) % 2 == 0)
        if runs and even * 2 >= len(runs):  # GBK: two-byte characters, mostly in runs of whole characters
            return "pass --encoding gbk if the file is GBK"
        return "pass --encoding latin-1 if the file is Latin-1 (Western European), or --encoding gbk if it is GBK"


class Collector:
    """Gathers the good examples and the bad records of one file; raises at the first bad one unless skip_bad."""

    def __init__(self, display: str, *, skip_bad: bool, unit: str = "line", noun: str = "lines") -> None:
        self.display = display
        self.skip_bad = skip_bad
        self.unit = unit
        self.noun = noun
        self.examples: list[Any] = []
        self.bad: list[BadRecord] = []
        self.n_fixed = 0

    def reject(self, line: int, reason: str, kind: str, field: str | None = None) -> None:
        """Record a bad record, or raise `DataError` for it when not skipping."""
        record = BadRecord(self.display, line, reason, kind, field, self.unit)
        if not self.skip_bad:
            text = str(record)
            end = "" if text.endswith((".", "?", "!")) else "."
            raise DataError(
                f"{text}{end} Use --skip-bad to skip bad {self.noun}.", path=self.display, line=line, field=field
            )
        self.bad.append(record)

    def build(self, build: Callable[[Any, int], Any], record: Any, line: int) -> None:
        """Run a record builder; a `Bad` it raises becomes a bad record, a None it returns is dropped."""
        try:
            example = build(record, line)
        except Bad as bad:
            self.reject(line, bad.reason, bad.kind, bad.field)
            return
        if example is not None:
            self.examples.append(example)

    def check_not_empty(self) -> None:
        """A file with no good examples is an error even when skipping bad ones."""
        if self.examples:
            return
        if self.bad:
            raise DataError(
                f"{self.display}: no valid records ({len(self.bad):,} bad; the first: {self.bad[0]})",
                path=self.display,
                line=self.bad[0].line,
            )
        raise DataError(f"{self.display}: no records found (is the file empty?)", path=self.display)
