"""TensorBoard logging of the trainer (optional: without tensorboard installed, nothing is logged)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TensorBoard"]


class TensorBoard:
    """A SummaryWriter opened on demand; every call is a no-op while it is closed."""

    def __init__(self) -> None:
        self._writer: Any = None

    def open(self, folder: Path, log: Callable[[str], None]) -> None:
        """Start writing event files into `folder` (or tell `log` that tensorboard is missing)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._writer = None
            log("(tensorboard is not installed: no TensorBoard logs)")
            return
        self._writer = SummaryWriter(str(folder))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One scalar point."""
        if self._writer is not None:
            self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        """Flush and close."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
