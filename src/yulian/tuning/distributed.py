"""Data-parallel training across processes (torch.distributed DDP): the scale-out path of `Trainer`.

Launch the same `yulian train` command (or a script calling `Trainer.fit`) with `torchrun`:

```bash
torchrun --standalone --nproc-per-node 2 $(which yulian) train --task classification --train train.csv ...
```

`torchrun` sets RANK / LOCAL_RANK / WORLD_SIZE; the trainer then joins the process group (gloo on CPU, NCCL on
GPU, one GPU per process), wraps the model in `DistributedDataParallel`, and gives each process every
`world_size`-th batch of the same seeded, length-grouped order, so one optimiser step sees `world_size` batches
(the global batch is `batch_size * grad_accum * world_size`). Gradients are averaged by DDP; only rank 0
evaluates, logs, writes checkpoints and the final model, and its early-stopping decision is broadcast.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

__all__ = ["Distributed", "launched_by_torchrun"]


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by `torchrun` (WORLD_SIZE > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@dataclass
class Distributed:
    """This process's place in a data-parallel run; a single process is rank 0 of 1 and every call is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    _torch: Any = None

    @classmethod
    def setup(cls, torch: Any, device: str) -> Distributed:
        """Join the process group when launched by torchrun (else a single-process context)."""
        if not launched_by_torchrun():
            return cls()
        dist = torch.distributed
        if not dist.is_available():
            raise RuntimeError("this PyTorch build has no torch.distributed: cannot train across processes")
        try:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            local = int(os.environ.get("LOCAL_RANK", rank))
        except (KeyError, ValueError) as e:
            raise RuntimeError(f"WORLD_SIZE is set but the torchrun environment is incomplete: {e}") from e
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
        return cls(rank, world, local, backend, torch)

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, logs and writes."""
        return self.rank == 0

    def device(self, device: str) -> str:
        """The device of this process: its own GPU (cuda:LOCAL_RANK) when distributed on GPUs."""
        if self.enabled and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def wrap(self, model: Any, device: str) -> Any:
        """`model` in DistributedDataParallel (the same model when single-process)."""
        if not self.enabled:
            return model
        ids = [self.local_rank] if device.startswith("cuda") else None
        return self._torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def shard(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's batches: every world_size-th, after padding the list (repeating its start) to a
        multiple of world_size so every rank runs the same number of steps."""
        if not self.enabled or not batches:
            return batches
        short = -len(batches) % self.world_size
        padded = batches + [batches[i % len(batches)] for i in range(short)]
        return padded[self.rank :: self.world_size]

    @contextlib.contextmanager
    def no_sync(self, model: Any, sync: bool) -> Iterator[None]:
        """Skip DDP's gradient all-reduce for micro-batches before the last of an accumulated step."""
        if self.enabled and not sync:
            with model.no_sync():
                yield
        else:
            yield

    def mean(self, value: float) -> float:
        """The mean of `value` over all processes."""
        if not self.enabled:
            return value
        tensor = self._torch.tensor([value], dtype=self._torch.float64)
        if self.backend == "nccl":
            tensor = tensor.cuda()
        self._torch.distributed.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        self._torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every process."""
        if self.enabled:
            self._torch.distributed.barrier()

    def close(self) -> None:
        """Leave the process group."""
        if self.enabled and self._torch.distributed.is_initialized():
            self._torch.distributed.destroy_process_group()
