"""Run a federated fine-tuning on one machine: Flower's simulation engine (Ray) with one virtual SuperNode per
data shard, the ClientApp and ServerApp of `yulian.federated.apps`.

```python
from yulian.federated import FederatedConfig, simulate
run = simulate(FederatedConfig(base_model="minilm-l6", labels=["neg", "pos"], rounds=3), shards, dev, "runs/fed")
run.rounds[-1].dev["accuracy"]; run.out_dir        # runs/fed: the global PEFT adapter, rounds.jsonl
```
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from yulian.federated.apps import ServerRun, make_client_app, make_server_app
from yulian.federated.config import FederatedConfig

__all__ = ["simulate", "write_shards"]


def write_shards(shards: Sequence[Sequence[Any]], folder: str | Path, config: FederatedConfig) -> list[Path]:
    """Write each shard's examples as `client-<i>.jsonl` (the config's field names) into `folder`."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, shard in enumerate(shards):
        path = out / f"client-{i}.jsonl"
        rows = ({config.text_field: e.text, config.label_field: e.label} for e in shard)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        paths.append(path)
    return paths


def simulate(
    config: FederatedConfig,
    shards: Sequence[Sequence[Any]],
    dev: Sequence[Any] | None,
    out_dir: str | Path | None,
    *,
    cpus_per_client: float = 1.0,
    fail_rounds: Mapping[str, Iterable[int]] | None = None,
    log: Callable[[str], None] | None = None,
    quiet: bool = True,
) -> ServerRun:
    """Simulate `len(shards)` clients (shard i is client-i) for `config.rounds` rounds; returns the ServerRun.

    The shards are written under `out_dir/partitions` (or a temporary folder) so each virtual client reads only
    its own file, as a deployed SuperNode does. `fail_rounds` makes named clients fail (tests of dropouts).
    """
    import tempfile

    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from yulian._optional import require

    require("ray", extra="fed", purpose="Flower simulation (pip install 'flwr[simulation]')")
    from flwr.simulation import run_simulation

    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="yulian-fed-") as tmp:
        folder = Path(out_dir) / "partitions" if out_dir is not None else Path(tmp)
        write_shards(shards, folder, config)
        run = ServerRun()
        server = make_server_app(config, list(dev or []), out_dir, run, say)
        client = make_client_app(str(folder), fail_rounds)
        backend: dict[str, Any] = {"client_resources": {"num_cpus": cpus_per_client, "num_gpus": 0.0}}
        flwr_logger = logging.getLogger("flwr")
        level = flwr_logger.level
        if quiet:
            flwr_logger.setLevel(logging.WARNING)
        try:
            run_simulation(server_app=server, client_app=client, num_supernodes=len(shards), backend_config=backend)
        finally:
            flwr_logger.setLevel(level)
    if not run.rounds:
        raise RuntimeError("the simulation ran no round (see the Flower log above)")
    return run
