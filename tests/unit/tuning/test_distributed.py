"""Data-parallel training through torchrun (gloo on CPU): two processes of batch b give the same model as one
process accumulating two batches of b, and only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_setup import save_base

from yulian.tuning.distributed import Distributed, launched_by_torchrun

WORKER = """
import json, sys
from pathlib import Path
import torch
from tiny_setup import sentiment
from yulian.tuning.tasks import TaskConfig, get_task
from yulian.tuning.trainer import TrainConfig, Trainer

base, out, accum = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
config = TrainConfig(epochs=2, batch_size=4, grad_accum=accum, lr=1e-2, precision="fp32", dropout=0.0,
                     progress=False, eval_every=4, seed=3)
task = get_task("classification", TaskConfig(max_length=32))
result = Trainer(task, config, out).fit(sentiment(32), sentiment(16, seed=1), base)
import os
rank = int(os.environ.get("RANK", "0"))
(out / f"losses-{rank}.json").write_text(json.dumps({"losses": result.losses, "evals": result.evals}))
"""


def _run(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path]), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]


def _weights(folder: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_two_processes_match_one_process_accumulating_two_batches(tmp_path: Path) -> None:
    import torch

    base = save_base(tmp_path / "base")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, str(worker), str(base), str(single), "2"], tmp_path)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    _run([*launcher, str(worker), str(base), str(ddp), "1"], tmp_path)

    one, two = _weights(single), _weights(ddp)
    assert one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name], two[name], atol=2e-5), name  # type: ignore[arg-type]
    a = json.loads((single / "losses-0.json").read_text())
    b0 = json.loads((ddp / "losses-0.json").read_text())
    b1 = json.loads((ddp / "losses-1.json").read_text())
    assert len(a["losses"]) == len(b0["losses"]) == len(b1["losses"]) == 8  # 32 / (4 x 2) x 2 epochs
    assert a["losses"] == pytest.approx(b0["losses"], abs=1e-5)  # the logged loss is the mean over ranks
    assert b0["losses"] == pytest.approx(b1["losses"], abs=1e-9)
    assert [e["step"] for e in b1["evals"]] == [4, 8]  # rank 0's evaluations are shared
    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["samples_per_second"] > 0
    assert sorted(p.name for p in (ddp / "checkpoints").glob("step-*"))  # rank 0 wrote checkpoints


def test_single_process_context_is_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launched_by_torchrun()
    single = Distributed.setup(object(), "cpu")
    assert not single.enabled and single.is_main and single.mean(2.5) == 2.5 and single.broadcast("x") == "x"
    batches = [[0], [1], [2]]
    assert single.shard(batches) is batches
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched_by_torchrun()


def test_shard_pads_to_equal_steps_per_rank() -> None:
    batches = [[0], [1], [2], [3], [4]]
    ranks = [Distributed(rank=r, world_size=2).shard(batches) for r in (0, 1)]
    assert ranks == [[[0], [2], [4]], [[1], [3], [0]]]
    three = [Distributed(rank=r, world_size=3).shard(batches) for r in range(3)]
    assert [len(r) for r in three] == [2, 2, 2]
