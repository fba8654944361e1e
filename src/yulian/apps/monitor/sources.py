"""Where the monitor's texts come from: a JSONL/CSV/TXT file followed as it grows (like `tail -f`, surviving
truncation and rotation), a directory of such files (new files picked up while following), or stdin.

    source = open_source("news.jsonl", FieldMap(text="headline", time="published"), follow=True)
    for batch in source.batches(max_size=64):       # lists of Record / BadLine, as soon as lines are available
        ...

Every line is parsed into a `Record` (text, time, entities, source, file, line) or a `BadLine` that names the
file, the line and the problem; the caller decides whether bad lines stop the run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["BadLine", "FieldMap", "FileFollower", "Record", "Source", "open_source", "parse_time"]

FORMATS = ("jsonl", "csv", "tsv", "txt")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "txt"}


@dataclass(frozen=True)
class FieldMap:
    """Which fields of a record hold what.

    Attributes:
        text: the text field (required in every record).
        time: the time field (ISO 8601 or epoch seconds); "" or a record without it: the time of arrival.
        entity: an optional field of entity names (a string, "A;B" or a JSON list) added to the tagger's.
        source: an optional field naming the text's source (feed, site, author).
    """

    text: str = "text"
    time: str = "time"
    entity: str = "entity"
    source: str = "source"


@dataclass(frozen=True, slots=True)
class Record:
    """One text to monitor."""

    text: str
    time: float
    entities: tuple[str, ...] = ()
    source: str = ""
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that could not be read: `file:line: message`."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def parse_time(value: Any) -> float:
    """Epoch seconds from epoch seconds (number or digits; milliseconds when > 1e11) or an ISO 8601 string
    (`2026-01-02T03:04:05Z`, `2026-01-02 03:04`, a date; naive times are UTC). ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("/", "-"))
            except ValueError:
                raise ValueError(f"not a time (ISO 8601 or epoch seconds): {text!r}") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"not a time: {value!r}")
    return number / 1000.0 if number > 1e11 else number


def _entities(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    text = str(value).strip()
    if text.startswith("["):
        with contextlib.suppress(ValueError):
            return _entities(json.loads(text))
    return tuple(p.strip() for p in text.replace("|", ";").split(";") if p.strip())


class _Parser:
    """Turns raw lines of one file into Records (knows the format, the CSV header and the field map)."""

    def __init__(self, name: str, fmt: str, fields: FieldMap) -> None:
        self.name, self.fmt, self.fields = name, fmt, fields
        self.header: list[str] | None = None

    def reset(self) -> None:
        self.header = None

    def parse(self, raw: bytes, line: int) -> Record | BadLine | None:
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            return BadLine(self.name, line, f"not valid UTF-8 (byte {e.start}); convert the file to UTF-8")
        if text.startswith("\ufeff"):
            text = text[1:]
        if not text.strip():
            return None
        if self.fmt == "txt":
            return Record(text=text.strip(), time=time.time(), file=self.name, line=line)
        if self.fmt == "jsonl":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                return BadLine(self.name, line, f"not valid JSON ({e.msg}: column {e.colno})")
            if not isinstance(data, dict):
                return BadLine(self.name, line, f"expected a JSON object, got {type(data).__name__}")
            return self._record(data, line)
        cells = next(csv.reader(io.StringIO(text), delimiter="\t" if self.fmt == "tsv" else ","), [])
        if self.header is None:
            self.header = [c.strip() for c in cells]
            if self.fields.text not in self.header:
                return BadLine(
                    self.name, line, f"no column {self.fields.text!r} in the header (columns: {', '.join(self.header)})"
                )
            return None
        if len(cells) != len(self.header):
            return BadLine(self.name, line, f"{len(cells)} cells, the header has {len(self.header)}")
        return self._record(dict(zip(self.header, cells, strict=True)), line)

    def _record(self, data: dict[str, Any], line: int) -> Record | BadLine:
        f = self.fields
        text = data.get(f.text)
        if not isinstance(text, str) or not text.strip():
            if f.text not in data:
                fields = ", ".join(sorted(map(str, data))) or "none"
                return BadLine(self.name, line, f"no field {f.text!r} (fields: {fields}); use --text-field")
            return BadLine(self.name, line, f"field {f.text!r} is empty or not a string")
        when = time.time()
        if f.time and data.get(f.time) not in (None, ""):
            try:
                when = parse_time(data[f.time])
            except ValueError as e:
                return BadLine(self.name, line, f"field {f.time!r}: {e}")
        entities = _entities(data.get(f.entity)) if f.entity else ()
        source = str(data.get(f.source) or "") if f.source else ""
        return Record(text=text.strip(), time=when, entities=entities, source=source, file=self.name, line=line)


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        if fmt not in FORMATS:
            raise ValueError(f"--format must be auto or one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise ValueError(f"{path}: unknown extension {path.suffix!r}; give --format ({', '.join(FORMATS)})")
    return found


class FileFollower:
    """Reads a file's complete lines as they appear; with `follow`, survives truncation and rotation.

    Truncation (size below the position read) restarts from the top; rotation (the path now names another file)
    finishes the old file, then reads the new one from its start. A last line without a newline is held back while
    following (it may still be being written) and read as a line at the end otherwise.
    """

    def __init__(self, path: str | Path, fmt: str, fields: FieldMap, follow: bool = False) -> None:
        self.path = Path(path)
        self.follow = follow
        self.parser = _Parser(str(path), _format_of(self.path, fmt), fields)
        self._file: BinaryIO | None = None
        self._inode = 0
        self._buffer = b""
        self.offset = 0
        self.line = 0
        self.finished = False
        self.rotations = 0
        self.truncations = 0

    @property
    def inode(self) -> int:
        """The inode of the file being read."""
        return self._inode

    def seek(self, inode: int, offset: int, line: int) -> None:
        """Resume at a saved position (ignored when the file was replaced or is now shorter)."""
        self._open()
        if self._file is not None and inode == self._inode and os.fstat(self._file.fileno()).st_size >= offset:
            self._file.seek(offset)
            self.offset, self.line = offset, line
            if line > 0 and self.parser.fmt in ("csv", "tsv"):
                self._read_header()

    def _read_header(self) -> None:
        with open(self.path, "rb") as f:
            first = f.readline()
        self.parser.parse(first, 1)

    def _open(self) -> None:
        if self._file is not None:
            return
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - held open while following
        except FileNotFoundError:
            if not self.follow:
                raise
            return
        self._inode = os.fstat(self._file.fileno()).st_ino
        self.offset = self.line = 0
        self._buffer = b""
        self.parser.reset()

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self, max_lines: int = 1000) -> list[Record | BadLine]:
        """Up to `max_lines` parsed lines available now (possibly none)."""
        out: list[Record | BadLine] = []
        self._open()
        if self._file is None or self.finished:
            return out
        while len(out) < max_lines:
            chunk = self._file.readline()
            if not chunk:
                if not self.follow:
                    if self._buffer:
                        self._emit(self._buffer, out)
                        self._buffer = b""
                    self.finished = True
                    self.close()
                    break
                if self._check_replaced():
                    continue
                break
            self.offset += len(chunk)
            if not chunk.endswith(b"\n"):
                self._buffer += chunk
                continue
            self._emit(self._buffer + chunk, out)
            self._buffer = b""
        return out

    def _emit(self, raw: bytes, out: list[Record | BadLine]) -> None:
        self.line += 1
        parsed = self.parser.parse(raw, self.line)
        if parsed is not None:
            out.append(parsed)

    def _check_replaced(self) -> bool:
        """At the end of the file while following: reopen after truncation or rotation. True if it did."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # rotated away, the new file not there yet
        if st.st_ino != self._inode:
            self.rotations += 1
        elif st.st_size < self.offset:
            self.truncations += 1
        else:
            return False
        self.close()
        self._open()
        return self._file is not None


@dataclass
class Source:
    """Batches of Records / BadLines from files, a directory or stdin (build with `open_source`)."""

    followers: list[FileFollower]
    follow: bool = False
    directory: Path | None = None
    fmt: str = "auto"
    fields: FieldMap = field(default_factory=FieldMap)
    stdin: Any = None
    poll: float = 0.2
    idle_exit: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    _stdin_queue: queue.Queue[bytes | None] | None = None
    _stdin_done: bool = False

    def _scan(self) -> None:
        if self.directory is None:
            return
        known = {str(f.path) for f in self.followers}
        for path in sorted(self.directory.iterdir()):
            if path.is_file() and path.suffix.lower() in _EXTENSIONS and str(path) not in known:
                self.followers.append(FileFollower(path, self.fmt, self.fields, follow=self.follow))

    def _read_stdin(self, max_lines: int, wait: float) -> tuple[list[Record | BadLine], bool]:
        if self._stdin_done:
            return [], True
        if self._stdin_queue is None:
            self._stdin_queue = queue.Queue()
            self._stdin_parser = _Parser("<stdin>", self.fmt if self.fmt != "auto" else "jsonl", self.fields)
            self._stdin_line = 0
            q, stream = self._stdin_queue, self.stdin

            def pump() -> None:
                for raw in iter(stream.readline, b""):
                    q.put(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
                q.put(None)

            threading.Thread(target=pump, name="monitor-stdin", daemon=True).start()
        out: list[Record | BadLine] = []
        ended = False
        try:
            item = self._stdin_queue.get(timeout=wait)
            while True:
                if item is None:
                    ended = self._stdin_done = True
                    break
                self._stdin_line += 1
                parsed = self._stdin_parser.parse(item, self._stdin_line)
                if parsed is not None:
                    out.append(parsed)
                if len(out) >= max_lines:
                    break
                item = self._stdin_queue.get_nowait()
        except queue.Empty:
            pass
        return out, ended

    def batches(self, max_size: int = 64) -> Iterator[list[Record | BadLine]]:
        """Yield lists of parsed lines as they become available; ends when every input is read (without follow),
        on `stop.set()`, or after `idle_exit` seconds without new lines."""
        idle_since = time.monotonic()
        while not self.stop.is_set():
            self._scan()
            batch: list[Record | BadLine] = []
            ended = True
            if self.stdin is not None:
                got, ended = self._read_stdin(max_size, self.poll)
                batch += got
            for follower in self.followers:
                if len(batch) < max_size:
                    batch += follower.read(max_size - len(batch))
                ended = ended and follower.finished
            if batch:
                idle_since = time.monotonic()
                yield batch
                continue
            if ended and not self.follow:
                return
            if self.idle_exit is not None and time.monotonic() - idle_since >= self.idle_exit:
                return
            if self.stdin is None:
                self.stop.wait(self.poll)

    def close(self) -> None:
        """Close every file."""
        for follower in self.followers:
            follower.close()


def open_source(
    inputs: str | Path | Sequence[str | Path],
    fields: FieldMap | None = None,
    *,
    fmt: str = "auto",
    follow: bool = False,
    poll: float = 0.2,
    idle_exit: float | None = None,
) -> Source:
    """A Source over a file, a directory (its .jsonl/.csv/.tsv/.txt files, by name), several files, or `-`
    (stdin, JSONL unless `fmt` says otherwise)."""
    fields = fields or FieldMap()
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    source = Source([], follow=follow, fmt=fmt, fields=fields, poll=poll, idle_exit=idle_exit)
    for item in items:
        if str(item) == "-":
            source.stdin = sys.stdin.buffer
            continue
        path = Path(item)
        if path.is_dir():
            if source.directory is not None:
                raise ValueError("give at most one directory as --input")
            source.directory = path
        elif path.exists() or follow:
            source.followers.append(FileFollower(path, fmt, fields, follow=follow))
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    source._scan()
    return source
