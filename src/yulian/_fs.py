"""Durable files: a cross-process lock, and fsync of files and folders, so that what is renamed into place
(model conversion caches, saved indexes) survives a crash of the machine as well as of the process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["exclusive", "fsync_dir", "fsync_file", "fsync_tree"]


@contextlib.contextmanager
def exclusive(lock_path: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold an exclusive POSIX lock on `lock_path`; calls `on_wait()` once if it has to wait."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the atomic rename keeps the cache consistent
        yield
        return
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def fsync_file(file: Path) -> None:
    """fsync one file's contents."""
    fd = os.open(file, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (and `root` itself)."""
    for p in root.rglob("*"):
        if p.is_file():
            fsync_file(p)
    for d in [*(p for p in root.rglob("*") if p.is_dir()), root]:
        fsync_dir(d)


def fsync_dir(folder: Path) -> None:
    """fsync a folder's entry list (a rename inside it is then durable); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
