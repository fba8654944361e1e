"""Checkpoint store: a failed write (a full disk) is a clear error and leaves the previous checkpoint usable."""

from __future__ import annotations

from pathlib import Path

import pytest

from yulian.tuning.checkpoints import STATE, CheckpointStore


def test_a_failed_write_names_the_folder_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    store = CheckpointStore(tmp_path / "ckpt")
    first = store.save(1, {"w": torch.ones(3)}, {"step": 1}, best=True)
    real_save = torch.save

    def full_disk(obj: object, path: object, *args: object, **kwargs: object) -> None:
        real_save(obj, path)  # a partial file is left behind, as on a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 375334784 vs 375334736")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"could not write checkpoint step-2 to .*ckpt .*MB free.*--resume"):
        store.save(2, {"w": torch.zeros(3)}, {"step": 2}, best=False)
    assert store.pointer("latest") == first and store.pointer("best") == first
    assert torch.equal(store.load(first)["w"], torch.ones(3))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best", "latest", "step-1"]
    assert (first / STATE).exists()
