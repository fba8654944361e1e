"""`yulian split`: files, folders or globs -> chunks, one JSON object per line on stdout.

$ yulian split faq/ --size 300 --lang zh > chunks.jsonl
$ yulian split data.csv --text-field question --size 128 --unit tokens --tokenizer path/to/model
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

__all__ = ["split_command", "write_chunks"]


def split_command(
    paths: list[str],
    size: int = 500,
    overlap: int = 50,
    unit: str = "chars",
    lang: str = "auto",
    tokenizer: str | None = None,
    text_field: str = "text",
    encoding: str = "utf-8",
    skip_bad: bool = False,
) -> None:
    """Split documents into chunks: one JSON object per chunk on stdout.

    Loads the files, folders or glob patterns given (.txt .md .jsonl .json .csv .tsv .html .pdf; folders in sorted
    order) and writes each chunk as {"id", "text", "metadata"}, the metadata holding source, chunk, start and end
    (character offsets into the document), the record's other fields, and the heading path for Markdown.

    Args:
        paths: files, folders or glob patterns to load.
        size: the most characters (or tokens, with --unit tokens) per chunk.
        overlap: characters (or tokens) repeated from the end of one chunk at the start of the next.
        unit: chars or tokens.
        lang: zh, en or auto (per document).
        tokenizer: a tokenizer folder or name, for --unit tokens.
        text_field: the JSON field or CSV column holding the text.
        encoding: the files' text encoding (e.g. gb18030 for older Chinese files).
        skip_bad: skip bad JSON lines or CSV rows (with a warning) instead of stopping.
    """
    write_chunks(
        paths,
        sys.stdout,
        size=size,
        overlap=overlap,
        unit=unit,
        lang=lang,
        tokenizer=tokenizer,
        text_field=text_field,
        encoding=encoding,
        skip_bad=skip_bad,
    )


def write_chunks(
    paths: list[str],
    out: TextIO,
    *,
    size: int = 500,
    overlap: int = 50,
    unit: str = "chars",
    lang: str = "auto",
    tokenizer: str | None = None,
    text_field: str = "text",
    encoding: str = "utf-8",
    skip_bad: bool = False,
) -> int:
    """Load `paths`, split them, write one JSON line per chunk to `out`; returns the number of chunks."""
    from yulian.retrieval.loaders import iter_docs
    from yulian.retrieval.splitters import TextSplitter

    splitter = TextSplitter(size=size, overlap=overlap, unit=unit, lang=lang, tokenizer=tokenizer)  # type: ignore[arg-type]
    written = 0
    for doc in iter_docs(paths, text_field=text_field, encoding=encoding, skip_bad=skip_bad):
        for chunk in splitter.split_document(doc):
            out.write(json.dumps(chunk.to_dict(), ensure_ascii=False, default=str) + "\n")
            written += 1
    out.flush()
    return written
