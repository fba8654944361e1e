"""Federated fine-tuning on Flower: the data stays with its owners, only trainable weights travel.

Simulation on one machine (Flower's simulation engine, one virtual SuperNode per shard):

    $ yulian federate --clients 4 --rounds 10 --partition dirichlet:0.5 --data train.jsonl --dev dev.jsonl \\
        --method lora --out runs/fed
    round 1: 4 clients loss 0.6101 dev accuracy 0.7982 macro_f1 0.7950; up 1,200,000 B, down ...; 41.2 s

```python
from yulian.federated import FederatedConfig, parse_partition, simulate
names, shards = parse_partition("dirichlet:0.5").split(train, clients=4, label_of=lambda e: e.label)
run = simulate(FederatedConfig(base_model="minilm-l6", labels=["0", "1"], rounds=5), shards, dev, "runs/fed")
```

Each round the server (ServerApp, `yulian.federated.apps`) sends the global trainable weights (LoRA + task head:
~1 MB for MiniLM instead of ~90 MB for the full model) and the run's settings; each client (ClientApp) fine-tunes
with `yulian.tuning.trainer.Trainer` on its own data for `local_epochs` (or `local_steps`) and replies with its
new trainable weights and its number of examples; the strategy (FedAvg, or FedProx whose proximal term
mu/2 * ||w - w_global||^2 the client adds to its loss against the live parameters) averages them weighted by
examples; the server evaluates the global model on a central dev set after every round and finally saves it as a
PEFT adapter folder (`yulian eval --model OUT`, `yulian.tuning.adapters.load_adapter`).

Real deployment (separate processes on 127.0.0.1; each SuperNode with its own data file):

    $ flower-superlink --insecure                                    # Fleet API :9092, Control API :9093
    $ flower-supernode --insecure --superlink 127.0.0.1:9092 --clientappio-api-address 127.0.0.1:9094 \\
        --node-config "data-path='/data/bank-a.jsonl' client-name='bank-a'"
    $ flower-supernode --insecure --superlink 127.0.0.1:9092 --clientappio-api-address 127.0.0.1:9095 \\
        --node-config "data-path='/data/bank-b.jsonl' client-name='bank-b'"
    $ python -m yulian.federated.deploy write-app APP_DIR --config run.json      # a Flower app project
    $ flwr run APP_DIR local --stream                                   # run.json: {"config": {...}, "dev", "out"}

`yulian.federated.deploy` writes the app project (pyproject.toml naming `yulian.federated.flower_app:server_app`
and `:client_app`) and starts/stops the processes for tests (`LocalDeployment`).

Privacy:
- Client-side record-level DP (`--dp --dp-epsilon 8 --dp-delta 1e-5`): each client trains with DP-SGD (Opacus:
  per-example gradient clipping to `--dp-max-grad-norm` and Gaussian noise), its noise calibrated so that all
  its rounds together spend epsilon; the epsilon spent so far is reported every round. This protects each record
  (one customer message) within a client's data. User-level (client-level) DP, which hides whether a whole client
  took part, needs noise scaled to one client's entire update divided by the number of clients per round: with 4
  clients the noise would be about a quarter of the averaged signal's own size per client, and training stalls;
  it pays off with hundreds of clients per round.
- Secure aggregation (`--secagg`, Flower SecAgg+, legacy workflow): clients mask their (quantised) updates with
  pairwise secrets so the server only learns the sum; it tolerates dropouts up to the reconstruction threshold.
- Dropouts: a client that fails or times out mid-round is logged by name and skipped; the round aggregates the
  others when at least `min_fit_clients` replied (otherwise the global weights stay as they were).

Partitions for experiments: `iid`, `dirichlet:ALPHA` (label skew), `field:NAME` (one client per value).
"""

from __future__ import annotations

import typing

from yulian.federated.config import STRATEGIES, FederatedConfig
from yulian.federated.partition import (
    PARTITIONS,
    PartitionSpec,
    dirichlet_partition,
    field_partition,
    iid_partition,
    parse_partition,
)

__all__ = [  # noqa: RUF022  (plain sorted(), as tests/unit/test_public_api.py checks)
    "FederatedConfig",
    "PARTITIONS",
    "PartitionSpec",
    "STRATEGIES",
    "dirichlet_partition",
    "field_partition",
    "iid_partition",
    "parse_partition",
    "simulate",
]


def simulate(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
    """Simulate a federated run on this machine (see `yulian.federated.simulation.simulate`)."""
    from yulian.federated.simulation import simulate as run

    return run(*args, **kwargs)
