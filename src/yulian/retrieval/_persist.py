"""Saving index directories atomically and reading them back with every file checked.

A saved index is a directory holding its data files and a `manifest.json` that records the format, its version,
the index's settings and, for every data file, its size and sha256. `write_index_dir` writes everything into a
temporary sibling directory and renames it into place, so a reader never sees a half-written index; `read_manifest`
checks the manifest and every listed file before anything is loaded, and raises `IndexCorruptError` naming the
file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from yulian._fs import fsync_dir, fsync_file
from yulian.retrieval.documents import Document
from yulian.retrieval.index import IndexCorruptError, StrPath

MANIFEST = "manifest.json"
DOCS = "docs.jsonl"


def write_index_dir(path: StrPath, writers: Mapping[str, Callable[[Path], None]], manifest: dict[str, Any]) -> Path:
    """Write the files (`writers[name](file_path)`) and the manifest into `path`, replacing it atomically.

    An existing `path` is replaced only if it is an index directory (it has a manifest) or empty: a save never
    deletes an unrelated directory.
    """
    target = Path(path)
    if target.exists() and not _replaceable(target):
        raise FileExistsError(f"{target} exists and is not a saved index: refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        files: dict[str, dict[str, Any]] = {}
        for name, write in writers.items():
            file = tmp / name
            write(file)
            files[name] = {"bytes": file.stat().st_size, "sha256": sha256_file(file)}
            fsync_file(file)
        full = {**manifest, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        fsync_file(tmp / MANIFEST)
        fsync_dir(tmp)
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)  # put the previous index back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _replaceable(path: Path) -> bool:
    return path.is_dir() and ((path / MANIFEST).exists() or not any(path.iterdir()))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: StrPath, fmt: str, version: int, *, verify: bool = True) -> tuple[Path, dict[str, Any]]:
    """The directory and its checked manifest; with `verify`, every listed file's size and sha256 are checked."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no saved index at {root}")
    if not root.is_dir():
        raise IndexCorruptError(f"{root} is a file, not a saved index directory")
    mpath = root / MANIFEST
    if not mpath.exists():
        raise IndexCorruptError(f"{mpath} is missing: {root} is not a saved index, or its save was interrupted")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexCorruptError(f"{mpath} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise IndexCorruptError(f"{mpath} should hold a JSON object, found {type(manifest).__name__}")
    found = manifest.get("format")
    if found != fmt:
        raise IndexCorruptError(f"{mpath}: format is {found!r}, expected {fmt!r} (is this the right kind of index?)")
    saved = manifest.get("version")
    if not isinstance(saved, int) or saved > version:
        raise IndexCorruptError(
            f"{mpath}: format version {saved!r} is not supported (this yulian reads versions up to {version})"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise IndexCorruptError(f"{mpath}: 'files' is missing or empty")
    for name, info in files.items():
        file = root / name
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("bytes"), int)
            or not isinstance(info.get("sha256"), str)
        ):
            raise IndexCorruptError(f"{mpath}: the entry for {name!r} needs 'bytes' and 'sha256'")
        if not file.is_file():
            raise IndexCorruptError(f"{file} is missing (listed in {MANIFEST})")
        size = file.stat().st_size
        if size != info["bytes"]:
            raise IndexCorruptError(
                f"{file} has {size} bytes, but {MANIFEST} records {info['bytes']}: truncated or changed"
            )
        if verify and sha256_file(file) != info["sha256"]:
            raise IndexCorruptError(
                f"{file} does not match its checksum in {MANIFEST}: the file is corrupt or was changed"
            )
    return root, manifest


def field(manifest: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: Path) -> Any:
    """`manifest[name]`, checked to be of `kind` (IndexCorruptError naming the manifest otherwise)."""
    value = manifest.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise IndexCorruptError(f"{where / MANIFEST}: field {name!r} is missing or invalid ({value!r})")
    return value


# ============================================================================================ documents
def write_docs(
    path: Path, rows: list[Document | None], extra: Callable[[int], Mapping[str, Any]] | None = None
) -> None:
    """One JSON line per row: `{"id", "text", "metadata", ...extra(row)}`, or `null` for a deleted row."""
    with open(path, "w", encoding="utf-8") as f:
        for row, doc in enumerate(rows):
            if doc is None:
                f.write("null\n")
                continue
            record: dict[str, Any] = {"id": doc.id, "text": doc.text, "metadata": doc.metadata}
            if extra is not None:
                record.update(extra(row))
            try:
                line = json.dumps(record, ensure_ascii=False)
            except (TypeError, ValueError) as e:
                raise TypeError(
                    f"cannot save document {doc.id!r}: its metadata is not JSON-serialisable ({e})"
                ) from None
            f.write(line + "\n")


def read_docs(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, record or None for a deleted row) for each line of a docs file, each record checked."""
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise IndexCorruptError(f"{path} line {number}: not valid JSON ({e})") from None
                if record is None:
                    yield number, None
                    continue
                if (
                    not isinstance(record, dict)
                    or not isinstance(record.get("id"), str)
                    or not isinstance(record.get("text"), str)
                    or not isinstance(record.get("metadata"), dict)
                ):
                    raise IndexCorruptError(f"{path} line {number}: expected an object with id, text and metadata")
                yield number, record
    except UnicodeDecodeError as e:
        raise IndexCorruptError(f"{path} is not UTF-8 text ({e})") from None
