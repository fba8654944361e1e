"""Document loaders: files, folders and globs -> `Document`s with metadata (`source` always).

```
docs = load_docs("faq/")                                   # every supported file below faq/, sorted
docs = load_docs("data/*.jsonl", text_field="question", metadata_fields=["answer", "id"])
docs = load_docs("manual.pdf")                              # one Document per page, metadata["page"]
```

| format | documents | metadata |
|---|---|---|
| .txt, .text, .md, .markdown, .mdx | the whole file | source (+ title: a Markdown file's first `# ` heading) |
| .jsonl, .ndjson | one per line (blank lines skipped) | source, line, the line's other fields |
| .json | one per element of a top-level array (or the one object) | source, index, the other fields |
| .csv, .tsv | one per row (blank lines skipped) | source, row (1 = first data row), the row's other columns |
| .html, .htm | the visible text (no script, style, hidden elements) | source, title |
| .pdf | one per page | source, page (from 1), pages |

Errors name the file (and the line or row): a missing file, a permission problem, text that is not in the
expected encoding (with a suggestion for `encoding=`), a bad JSON line, a missing text field (with the fields
that exist), an unsupported extension. `skip_bad=True` skips bad lines and rows with a warning instead.
More formats: `register_loader(".ext", function)`.
"""

from __future__ import annotations

import difflib
import glob as globlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from yulian._optional import require
from yulian.retrieval.documents import Document

__all__ = [
    "FileLoader",
    "LoadOptions",
    "LoaderError",
    "PathLike",
    "html_text",
    "iter_docs",
    "load_docs",
    "register_loader",
]

PathLike: TypeAlias = str | os.PathLike[str]
_log = logging.getLogger("yulian.retrieval.loaders")


class LoaderError(ValueError):
    """A file could not be turned into documents. `path` is the file; `line` the line or row, when known."""

    def __init__(self, message: str, path: PathLike | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.line = line


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How records become documents; shared by every format (each uses what applies to it).

    Attributes:
        encoding: text encoding of text files ("utf-8" also accepts a byte-order mark).
        text_field: the field (JSON) or column (CSV) holding the text.
        metadata_fields: fields/columns copied into metadata (None: all the others).
        id_field: a field/column whose value becomes the document id (None: a hash of source and text).
        delimiter: the CSV delimiter (None: "," for .csv, tab for .tsv).
        skip_bad: skip bad lines/rows with a logged warning instead of raising.
    """

    encoding: str = "utf-8"
    text_field: str = "text"
    metadata_fields: tuple[str, ...] | None = None
    id_field: str | None = None
    delimiter: str | None = None
    skip_bad: bool = False

    def __post_init__(self) -> None:
        import codecs

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(
                f"unknown encoding {self.encoding!r} (e.g. 'utf-8', 'gb18030', 'big5', 'latin-1')"
            ) from None
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {self.delimiter!r}")
        fields: object = self.metadata_fields  # a list is accepted and stored as a tuple
        if fields is not None and not isinstance(fields, tuple):
            object.__setattr__(self, "metadata_fields", tuple(self.metadata_fields or ()))


FileLoader: TypeAlias = Callable[[Path, str, LoadOptions], Iterator[Document]]
"""A format's loader: (path, source name, options) -> documents."""

_LOADERS: dict[str, FileLoader] = {}


def register_loader(suffix: str, loader: FileLoader) -> None:
    """Make `load_docs` read files ending in `suffix` (e.g. ".docx") with `loader(path, source, options)`."""
    if not suffix.startswith(".") or len(suffix) < 2:
        raise ValueError(f"suffix must look like '.ext', got {suffix!r}")
    _LOADERS[suffix.lower()] = loader


# ============================================================================================ entry points
def load_docs(
    path_or_glob: PathLike | Sequence[PathLike],
    *,
    recursive: bool = True,
    encoding: str = "utf-8",
    text_field: str = "text",
    metadata_fields: Sequence[str] | None = None,
    id_field: str | None = None,
    delimiter: str | None = None,
    skip_bad: bool = False,
    suffixes: Sequence[str] | None = None,
) -> list[Document]:
    """Load documents from a file, a folder, a glob pattern (`data/*.jsonl`, `docs/**/*.md`) or a list of them.

    A folder yields its supported files (below it, with `recursive`), hidden ones excluded, in sorted path order,
    so the result is the same on every machine; unsupported files in a folder or glob are skipped, an explicitly
    named one is an error. `suffixes` (e.g. `[".md"]`) restricts which files a folder or glob yields. See the
    module docstring for the formats and their metadata.
    """
    return list(
        iter_docs(
            path_or_glob,
            recursive=recursive,
            encoding=encoding,
            text_field=text_field,
            metadata_fields=metadata_fields,
            id_field=id_field,
            delimiter=delimiter,
            skip_bad=skip_bad,
            suffixes=suffixes,
        )
    )


def iter_docs(
    path_or_glob: PathLike | Sequence[PathLike],
    *,
    recursive: bool = True,
    encoding: str = "utf-8",
    text_field: str = "text",
    metadata_fields: Sequence[str] | None = None,
    id_field: str | None = None,
    delimiter: str | None = None,
    skip_bad: bool = False,
    suffixes: Sequence[str] | None = None,
) -> Iterator[Document]:
    """`load_docs` one document at a time, for corpora too large to hold as a list."""
    options = LoadOptions(
        encoding=encoding,
        text_field=text_field,
        metadata_fields=None if metadata_fields is None else tuple(metadata_fields),
        id_field=id_field,
        delimiter=delimiter,
        skip_bad=skip_bad,
    )
    wanted = None if suffixes is None else {s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes}
    for path in _resolve(path_or_glob, recursive, wanted):
        yield from _load_file(path, options)


def _resolve(spec: PathLike | Sequence[PathLike], recursive: bool, wanted: set[str] | None) -> Iterator[Path]:
    specs: Iterable[PathLike] = [spec] if isinstance(spec, str | os.PathLike) else spec
    for item in specs:
        name = os.fspath(item)
        if globlib.has_magic(name):
            matches = sorted(globlib.glob(name, recursive=recursive))
            files = [Path(m) for m in matches if Path(m).is_file() and _loadable(Path(m), wanted)]
            if not files:
                raise FileNotFoundError(f"no loadable files match {name!r} (supported: {_supported()})")
            yield from files
            continue
        path = Path(name)
        if path.is_dir():
            found = _walk(path, recursive, wanted)
            if not found:
                what = "below" if recursive else "in"
                raise FileNotFoundError(f"no loadable files {what} {name} (supported: {_supported()})")
            yield from found
        elif path.exists():
            if path.suffix.lower() not in _LOADERS:
                raise LoaderError(
                    f"{name}: unsupported file type {path.suffix or '(no extension)'!r} (supported: {_supported()}; "
                    "add one with register_loader)",
                    path,
                )
            yield path
        else:
            parent = path.parent if str(path.parent) else Path(".")
            hint = ""
            if parent.is_dir():
                close = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir()], n=1)
                hint = f"; did you mean {str(parent / close[0])!r}?" if close else ""
            raise FileNotFoundError(f"no such file or folder: {name}{hint}")


def _walk(root: Path, recursive: bool, wanted: set[str] | None, seen: set[Path] | None = None) -> list[Path]:
    seen = set() if seen is None else seen
    real = root.resolve()
    if real in seen:  # a symlink loop
        return []
    seen.add(real)
    out: list[Path] = []
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except PermissionError:
        raise PermissionError(f"permission denied: cannot list folder {root}") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive:
                out.extend(_walk(entry, recursive, wanted, seen))
        elif entry.is_file() and _loadable(entry, wanted):
            out.append(entry)
    return out


def _loadable(path: Path, wanted: set[str] | None) -> bool:
    suffix = path.suffix.lower()
    return suffix in _LOADERS and (wanted is None or suffix in wanted) and not path.name.startswith(".")


def _supported() -> str:
    return ", ".join(sorted(_LOADERS))


def _load_file(path: Path, options: LoadOptions) -> Iterator[Document]:
    source = path.as_posix()
    loader = _LOADERS[path.suffix.lower()]
    try:
        yield from loader(path, source, options)
    except PermissionError:
        raise PermissionError(f"permission denied: cannot read {source}") from None
    except IsADirectoryError:
        raise LoaderError(f"{source} is a folder, not a file", path) from None
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {source} (it disappeared while loading)") from None


# ============================================================================================ shared helpers
def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:  # opened here so permission errors surface with the file's name
        return f.read()


def _head(path: Path, limit: int = 1 << 20) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def _text_encoding(options: LoadOptions) -> str:
    """The codec to read with: "utf-8" also skips a byte-order mark (which would corrupt a CSV header)."""
    return "utf-8-sig" if options.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else options.encoding


def _decode(data: bytes, source: str, options: LoadOptions) -> str:
    try:
        return data.decode(_text_encoding(options))
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise LoaderError(
            f"{source} line {line}: not valid {options.encoding} (byte {data[e.start : e.start + 1]!r} at offset "
            f"{e.start}); {_encoding_hint(data, options.encoding)}",
            source,
            line,
        ) from None


def _encoding_hint(data: bytes, tried: str) -> str:
    for candidate in ("utf-8", "gb18030", "big5", "utf-16"):
        if candidate == tried.lower():
            continue
        try:
            text = data.decode(candidate)
        except UnicodeDecodeError:
            continue
        if candidate == "utf-16" and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            continue
        if "\x00" not in text:
            return f"it decodes as {candidate}: pass encoding={candidate!r}"
    return "pass the file's encoding, e.g. encoding='gb18030' (Chinese), 'big5' or 'latin-1'"


def _fields_hint(name: str, available: Iterable[str], label: str) -> str:
    names = [str(a) for a in available]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f". Did you mean {close[0]!r}?" if close else ""
    return f"({label}: {', '.join(names) or 'none'}){hint}"


def _record_doc(
    record: Mapping[str, Any], source: str, where: dict[str, Any], options: LoadOptions, label: str
) -> Document:
    """A document from one JSON object or CSV row; raises LoaderError (message without the file prefix).

    `label` names what the record has ("fields", "columns") in error messages. Metadata fields that a record
    lacks are left out of its metadata.
    """
    if options.text_field not in record:
        raise LoaderError(f"no {label[:-1]} {options.text_field!r} {_fields_hint(options.text_field, record, label)}")
    text = record[options.text_field]
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        raise LoaderError(f"{label[:-1]} {options.text_field!r} must be text, got {type(text).__name__}")
    keep = options.metadata_fields
    meta: dict[str, Any] = {"source": source, **where}
    for key, value in record.items():
        if key != options.text_field and (keep is None or key in keep):
            meta[key] = value
    doc_id = ""
    if options.id_field is not None:
        if options.id_field not in record:
            raise LoaderError(
                f"no id {label[:-1]} {options.id_field!r} {_fields_hint(options.id_field, record, label)}"
            )
        doc_id = str(record[options.id_field])
    return Document(text, meta, id=doc_id)


def _bad(error: str, source: str, where: str, line: int, options: LoadOptions) -> None:
    """Raise (or, with skip_bad, log) a bad record's error, naming the file and the line or row."""
    message = f"{source} {where}: {error}"
    if not options.skip_bad:
        raise LoaderError(f"{message}. Pass skip_bad=True to skip bad records.", source, line)
    _log.warning("skipped %s", message)


# ============================================================================================ formats
def _load_text(path: Path, source: str, options: LoadOptions) -> Iterator[Document]:
    text = _decode(_read_bytes(path), source, options)
    meta: dict[str, Any] = {"source": source}
    if path.suffix.lower() in (".md", ".markdown", ".mdx"):
        for line in text.splitlines():
            if line.startswith("# "):
                meta["title"] = line[2:].strip().strip("#").strip()
                break
    yield Document(text, meta)


def _load_jsonl(path: Path, source: str, options: LoadOptions) -> Iterator[Document]:
    encoding = _text_encoding(options)
    number = 0
    with open(path, encoding=encoding) as f:
        lines = iter(f)
        while True:
            try:
                line = next(lines)
            except StopIteration:
                return
            except UnicodeDecodeError:
                line_no = number + 1
                hint = _encoding_hint(_head(path), options.encoding)
                raise LoaderError(
                    f"{source} line {line_no}: not valid {options.encoding}; {hint}",
                    source,
                    line_no,
                ) from None
            number += 1
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                _bad(f"not valid JSON ({e.msg}: column {e.colno})", source, f"line {number}", number, options)
                continue
            if isinstance(value, str):
                yield Document(value, {"source": source, "line": number})
                continue
            if not isinstance(value, dict):
                _bad(f"expected a JSON object, got {type(value).__name__}", source, f"line {number}", number, options)
                continue
            try:
                yield _record_doc(value, source, {"line": number}, options, "fields")
            except LoaderError as e:
                _bad(str(e), source, f"line {number}", number, options)


def _load_json(path: Path, source: str, options: LoadOptions) -> Iterator[Document]:
    text = _decode(_read_bytes(path), source, options)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise LoaderError(
            f"{source} line {e.lineno}: not valid JSON ({e.msg}: column {e.colno})", source, e.lineno
        ) from None
    records = value if isinstance(value, list) else [value]
    for index, record in enumerate(records):
        if isinstance(record, str):
            yield Document(record, {"source": source, "index": index})
            continue
        if not isinstance(record, dict):
            _bad(f"expected a JSON object, got {type(record).__name__}", source, f"element {index}", index, options)
            continue
        try:
            yield _record_doc(record, source, {"index": index}, options, "fields")
        except LoaderError as e:
            _bad(str(e), source, f"element {index}", index, options)


def _load_csv(path: Path, source: str, options: LoadOptions) -> Iterator[Document]:
    import csv
    import io

    text = _decode(_read_bytes(path), source, options)
    delimiter = options.delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise LoaderError(f"{source} line 1: bad CSV header ({e})", source, 1) from None
    header = [h.strip() for h in header]
    needed = [options.text_field, *(options.metadata_fields or ()), *([options.id_field] if options.id_field else [])]
    for name in needed:
        if name not in header:
            hint = _fields_hint(name, header, "columns")
            raise LoaderError(f"{source} has no column {name!r} {hint}", source, 1)
    row_number = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            _bad(f"bad CSV ({e})", source, f"row {row_number + 1} (line {reader.line_num})", reader.line_num, options)
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line is not a row
        row_number += 1
        where = f"row {row_number} (line {reader.line_num})"
        if len(row) != len(header):
            _bad(f"{len(row)} fields, the header has {len(header)}", source, where, reader.line_num, options)
            continue
        try:
            yield _record_doc(dict(zip(header, row, strict=True)), source, {"row": row_number}, options, "columns")
        except LoaderError as e:
            _bad(str(e), source, where, reader.line_num, options)


_BLOCK_TAGS = frozenset(
    "address article aside blockquote caption dd details div dl dt fieldset figcaption figure footer form h1 h2 h3 "  # noqa: SIM905
    "h4 h5 h6 header hr li main nav ol p pre section summary table tbody td tfoot th thead tr ul".split()
)
_DROP_TAGS = ("script", "style", "noscript", "template", "head", "svg", "iframe", "object", "canvas")


def _load_html(path: Path, source: str, options: LoadOptions) -> Iterator[Document]:
    bs4 = require("bs4", extra="rag", purpose="reading HTML (pip install beautifulsoup4)")
    html = _decode(_read_bytes(path), source, options)
    soup = bs4.BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag is not None else ""
    yield Document(html_text(soup), {"source": source, **({"title": title} if title else {})})


def html_text(soup: Any) -> str:
    """The visible text of a BeautifulSoup tree: no script/style/hidden parts, one line per block element."""
    import re

    bs4 = require("bs4", extra="rag")
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for comment in soup.find_all(string=lambda s: isinstance(s, bs4.Comment)):
        comment.extract()
    for tag in soup.find_all(True):
        if tag.decomposed:
            continue
        style = str(tag.get("style", "")).replace(" ", "").lower()
        if tag.has_attr("hidden") or "display:none" in style or "visibility:hidden" in style:
            tag.decompose()
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    text = soup.get_text("")
    lines = [re.sub(r"[ \t\r\f\v\u00a0]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _load_pdf(path: Path, source: str, options: LoadOptions) -> Iterator[Document]:
    pypdf = require("pypdf", extra="rag", purpose="reading PDF files")
    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoaderError(f"{source}: the PDF is encrypted with a password", source)
        pages = len(reader.pages)
        meta = reader.metadata
        title = str(meta.title).strip() if meta is not None and meta.title else ""
    except (LoaderError, OSError):
        raise
    except Exception as e:  # pypdf raises many kinds of errors on damaged files
        raise LoaderError(f"{source}: not a readable PDF ({type(e).__name__}: {e})", source) from e
    for number in range(1, pages + 1):
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except Exception as e:
            _bad(f"cannot extract text ({type(e).__name__}: {e})", source, f"page {number}", number, options)
            continue
        page_meta: dict[str, Any] = {"source": source, "page": number, "pages": pages}
        if title:
            page_meta["title"] = title
        yield Document(text, page_meta)


for _suffix in (".txt", ".text", ".md", ".markdown", ".mdx"):
    register_loader(_suffix, _load_text)
for _suffix in (".jsonl", ".ndjson"):
    register_loader(_suffix, _load_jsonl)
register_loader(".json", _load_json)
register_loader(".csv", _load_csv)
register_loader(".tsv", _load_csv)
register_loader(".html", _load_html)
register_loader(".htm", _load_html)
register_loader(".pdf", _load_pdf)
