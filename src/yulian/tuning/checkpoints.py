"""Training checkpoints on disk: `root/step-N/state.pt`, with `latest` and `best` pointer files naming folders.

A checkpoint is written into a temporary folder, renamed into place, and only then do the pointers move (each
pointer is itself replaced atomically), so a kill at any moment leaves the previous checkpoint loadable. Old
step folders are removed once a newer one is in place; the best one is kept.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yulian._optional import require

__all__ = ["CheckpointStore"]

STATE = "state.pt"


class CheckpointStore:
    """The checkpoints of one training run, under `root`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def pointer(self, name: str) -> Path | None:
        """The folder the `name` pointer ("latest" or "best") names, if it holds a complete checkpoint."""
        path = self.root / name
        if not path.exists():
            return None
        folder = self.root / path.read_text(encoding="utf-8").strip()
        return folder if (folder / STATE).exists() else None

    def _write_pointer(self, name: str, target: str) -> None:
        tmp = self.root / f".{name}.tmp"
        tmp.write_text(target, encoding="utf-8")
        os.replace(tmp, self.root / name)

    def save(self, step: int, payload: Mapping[str, Any], meta: Mapping[str, Any], *, best: bool) -> Path:
        """Write `payload` (tensors and states, via torch.save) and `meta` (trainer.json) as checkpoint `step-N`;
        move `latest` (and `best` when `best`) to it; remove older step folders except the best."""
        torch = require("torch", extra="hf")
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"step-{step}"
        tmp = self.root / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            torch.save(dict(payload), tmp / STATE)
            (tmp / "trainer.json").write_text(json.dumps(dict(meta)), encoding="utf-8")
        except (OSError, RuntimeError) as e:  # torch reports a full disk as "unexpected pos ..." (RuntimeError)
            shutil.rmtree(tmp, ignore_errors=True)
            free = shutil.disk_usage(self.root).free / 2**20
            raise OSError(
                f"could not write checkpoint {name} to {self.root} ({free:,.0f} MB free on that disk): {e}. "
                "The previous checkpoints are intact; free some space (or pass a --out on a larger disk) and "
                "run the same command again with --resume (API: fit(..., resume=True))."
            ) from e
        final = self.root / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if best:
            self._write_pointer("best", name)
        self._write_pointer("latest", name)
        keep = {name}
        kept = self.pointer("best")
        if kept is not None:
            keep.add(kept.name)
        for old in self.root.glob("step-*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def load(self, folder: Path) -> dict[str, Any]:
        """The payload of the checkpoint in `folder` (on the CPU)."""
        torch = require("torch", extra="hf")
        payload: dict[str, Any] = torch.load(folder / STATE, map_location="cpu", weights_only=False)
        return payload

    def clear(self) -> None:
        """Remove every checkpoint (a fresh run)."""
        shutil.rmtree(self.root, ignore_errors=True)
