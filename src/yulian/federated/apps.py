"""The Flower apps (Message API, flwr 1.42): a ClientApp that fine-tunes with yulian's Trainer on its local data,
and a ServerApp running FedAvg or FedProx with central evaluation, per-round logs and the final PEFT adapter.

Deployed, `flwr run` loads `yulian.federated.flower_app:client_app` / `:server_app` (built from the factories
here; see `yulian.federated.deploy`). `flwr` is imported only when an app is built.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.federated.config import FederatedConfig

__all__ = [
    "RoundLog",
    "ServerRun",
    "from_record",
    "make_client_app",
    "make_server_app",
    "make_strategy",
    "to_record",
]

SETTINGS_KEY = "yulian-config"
"""The round ConfigRecord's key holding the FederatedConfig as JSON."""


def _flwr() -> Any:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    return require("flwr", extra="fed", purpose="federated fine-tuning")


# ------------------------------------------------------------------------------------------------- client
_EXAMPLES: dict[str, list[Any]] = {}


def _client_examples(config: FederatedConfig, path: str) -> list[Any]:
    """The node's examples, read once per process."""
    key = f"{path}|{config.text_field}|{config.label_field}"
    if key not in _EXAMPLES:
        from yulian.federated.client import read_examples

        _EXAMPLES[key] = read_examples(config, path)
    return _EXAMPLES[key]


def _data_path(context: Any, data_dir: str | None) -> str:
    node = context.node_config
    if "data-path" in node:
        return str(node["data-path"])
    if data_dir is not None and "partition-id" in node:
        return str(Path(data_dir) / f"client-{int(node['partition-id'])}.jsonl")
    raise ValueError("this SuperNode has no data: start it with --node-config \"data-path='/path/to/data.jsonl'\"")


def _client_name(context: Any) -> str:
    node = context.node_config
    if "client-name" in node:
        return str(node["client-name"])
    if "partition-id" in node:
        return f"client-{int(node['partition-id'])}"
    return f"node-{context.node_id}"


def make_client_app(data_dir: str | None = None, fail_rounds: Mapping[str, Iterable[int]] | None = None) -> Any:
    """The ClientApp. Its data: node config `data-path`, or (simulation) `data_dir/client-<partition-id>.jsonl`.

    `fail_rounds` (for tests of dropout tolerance) maps a client name to rounds in which it raises mid-round.
    """
    flwr = _flwr()
    from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    failing = {name: set(rounds) for name, rounds in (fail_rounds or {}).items()}
    app = ClientApp()

    @app.train()
    def train(msg: Any, context: Any) -> Any:
        from yulian.federated.client import local_train

        settings = msg.content["config"]
        config = FederatedConfig.from_json(str(settings[SETTINGS_KEY]))
        server_round = int(settings.get("server-round", 1))
        name = _client_name(context)
        if server_round in failing.get(name, set()):
            raise RuntimeError(f"{name} failed mid-round {server_round} (injected failure)")
        examples = _client_examples(config, _data_path(context, data_dir))
        weights = from_record(msg.content["arrays"])
        mu = float(settings.get("proximal-mu", 0.0))
        seed = int(context.node_config.get("partition-id", 0))
        new, metrics = local_train(config, examples, weights, server_round, proximal_mu=mu, client_seed=seed)
        values: dict[str, Any] = dict(metrics)
        content = RecordDict(
            {"arrays": to_record(new), "metrics": MetricRecord(values), "client": ConfigRecord({"name": name})}
        )
        return Message(content=content, reply_to=msg)

    del flwr
    return app


# ------------------------------------------------------------------------------------------------- server
@dataclass
class RoundLog:
    """One round: who trained, who dropped, bytes both ways, wall time, central dev metrics, epsilon."""

    round: int
    clients: int = 0
    dropped: list[str] = field(default_factory=list)
    bytes_down: int = 0
    bytes_up: int = 0
    seconds: float = 0.0
    train_loss: float | None = None
    dev: dict[str, float] = field(default_factory=dict)
    epsilon: float | None = None
    skipped: bool = False

    def line(self) -> str:
        """The round as one human line."""
        dev = " ".join(f"{k} {v:.4f}" for k, v in self.dev.items())
        eps = f" epsilon {self.epsilon:.2f}" if self.epsilon is not None else ""
        drop = f" dropped: {', '.join(self.dropped)}" if self.dropped else ""
        skip = " (too few replies: global weights unchanged)" if self.skipped else ""
        loss = f" loss {self.train_loss:.4f}" if self.train_loss is not None else ""
        return (
            f"round {self.round}: {self.clients} clients{loss} dev {dev}{eps}; up {self.bytes_up:,} B, "
            f"down {self.bytes_down:,} B; {self.seconds:.1f} s{drop}{skip}"
        )


@dataclass
class ServerRun:
    """What the server app produced: per-round logs, the initial dev metrics, the final weights, the out folder."""

    rounds: list[RoundLog] = field(default_factory=list)
    initial: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None
    weights: dict[str, Any] | None = None
    trainable_bytes: int = 0
    full_model_bytes: int = 0
    names: dict[int, str] = field(default_factory=dict)


def to_record(weights: Mapping[str, Any]) -> Any:
    """Tensors (or arrays) by name -> a Flower ArrayRecord of numpy arrays."""
    import numpy as np
    from flwr.app import Array, ArrayRecord

    arrays = {k: Array(np.ascontiguousarray(v.numpy() if hasattr(v, "numpy") else v)) for k, v in weights.items()}
    return ArrayRecord(arrays)


def from_record(record: Any) -> dict[str, Any]:
    """A Flower ArrayRecord -> numpy arrays by name (torch is not needed to read it)."""
    return {k: v.numpy() for k, v in record.items()}


def _reason(error: Any) -> str:
    """The last meaningful line of a client's error (Ray wraps the traceback around it)."""
    text = str(getattr(error, "reason", "") or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not set(ln.strip()) <= set("^~ ")]
    found = [ln for ln in lines if "Message:" in ln or "Error:" in ln]
    last = (found or lines or ["no reason given"])[-1]
    last = last.split("Message:", 1)[-1].strip().rstrip("'>)")
    return last[:200]


def _arrays_bytes(record: Any) -> int:
    return int(sum(array.numpy().nbytes for array in record.values()))


def make_strategy(config: FederatedConfig, run: ServerRun, log: Callable[[str], None]) -> Any:
    """FedAvg or FedProx (Flower's), with per-round accounting: bytes down/up, dropped clients (named from the
    replies' errors), the fewest-clients rule and the clients' epsilon."""
    _flwr()
    from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx

    base: type[Any] = {"fedprox": FedProx, "fedavgm": FedAvgM}.get(config.strategy, FedAvg)

    class Logged(base):  # type: ignore[misc]
        def configure_train(self, server_round: int, arrays: Any, cfg: Any, grid: Any) -> Any:
            messages = list(super().configure_train(server_round, arrays, cfg, grid))
            entry = RoundLog(server_round, bytes_down=_arrays_bytes(arrays) * len(messages))
            entry.seconds = time.perf_counter()
            run.rounds.append(entry)
            self._sent = {m.metadata.dst_node_id for m in messages}
            return messages

        def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> Any:
            replies = list(replies)
            entry = run.rounds[-1]
            good = [m for m in replies if not m.has_error()]
            names: dict[int, str] = run.names
            for m in good:
                if "client" in m.content.config_records:
                    names[m.metadata.src_node_id] = str(m.content.config_records["client"]["name"])
            answered = {m.metadata.src_node_id for m in replies}
            for m in replies:
                if m.has_error():
                    node = m.metadata.src_node_id
                    entry.dropped.append(f"{names.get(node, 'node')} [node {node}]: {_reason(m.error)}")
            for node in sorted(getattr(self, "_sent", set()) - answered):
                entry.dropped.append(f"{names.get(node, 'node')} [node {node}]: no reply before the timeout")
            entry.clients = len(good)
            entry.bytes_up = sum(_arrays_bytes(r) for m in good for r in m.content.array_records.values())
            losses = [(m.content["metrics"]["train-loss"], m.content["metrics"]["num-examples"]) for m in good]
            if losses:
                entry.train_loss = float(sum(a * n for a, n in losses) / sum(n for _, n in losses))
            eps = [float(m.content["metrics"]["epsilon"]) for m in good if "epsilon" in m.content["metrics"]]
            entry.epsilon = max(eps) if eps else None
            if len(good) < config.min_fit_clients:
                entry.skipped = True
                return None, None
            return super().aggregate_train(server_round, good)

    kwargs: dict[str, Any] = {
        "fraction_train": config.fraction_fit,
        "fraction_evaluate": 0.0,
        "min_train_nodes": config.min_fit_clients,
        "min_evaluate_nodes": config.min_fit_clients,
        "min_available_nodes": config.min_available_clients,
    }
    if config.strategy == "fedprox":
        kwargs["proximal_mu"] = config.proximal_mu
    if config.strategy == "fedavgm":
        kwargs["server_momentum"] = config.server_momentum
    del log
    return Logged(**kwargs)


def make_server_app(
    config: FederatedConfig | None,
    dev: list[Any] | None = None,
    out_dir: str | Path | None = None,
    run: ServerRun | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """The ServerApp: `config` (or, deployed, the run config's `yulian-config` JSON file with `config`, `dev` and
    `out` keys), central evaluation on `dev` before training and after each round, the final adapter in
    `out_dir`. Results go into `run`."""
    _flwr()
    from flwr.app import ConfigRecord, MetricRecord
    from flwr.serverapp import ServerApp

    app = ServerApp()
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    state = run if run is not None else ServerRun()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        from yulian.federated.client import GlobalModel

        cfg, dev_set, out = config, dev, out_dir
        if cfg is None:
            cfg, dev_set, out = _deployed_settings(context)
        global_model = GlobalModel(cfg).warm_up()
        state.trainable_bytes = sum(int(t.numel() * t.element_size()) for t in global_model.weights().values())
        state.full_model_bytes = global_model.all_weights_bytes()
        strategy = make_strategy(cfg, state, say)

        def evaluate(server_round: int, arrays: Any) -> Any:
            global_model.load(from_record(arrays))
            metrics: dict[str, Any] = global_model.evaluate(dev_set) if dev_set else {}
            if server_round == 0:
                state.initial = metrics
                say(f"round 0 (initial): dev {' '.join(f'{k} {v:.4f}' for k, v in metrics.items())}")
                return MetricRecord(metrics) if metrics else None
            entry = next((r for r in reversed(state.rounds) if r.round == server_round), None)
            if entry is not None:
                entry.dev = metrics
                entry.seconds = round(time.perf_counter() - entry.seconds, 3)
                say(entry.line())
            return MetricRecord(metrics) if metrics else None

        settings = ConfigRecord({SETTINGS_KEY: cfg.to_json()})
        result = strategy.start(
            grid=grid,
            initial_arrays=to_record(global_model.weights()),
            num_rounds=cfg.rounds,
            timeout=cfg.timeout,
            train_config=settings,
            evaluate_fn=evaluate,
        )
        final = from_record(result.arrays) if result.arrays is not None else global_model.weights()
        global_model.load(final)
        state.weights = final
        if out is not None:
            state.out_dir = global_model.save(out)
            rounds = [r.__dict__ for r in state.rounds]
            (Path(out) / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds), encoding="utf-8")
            say(f"final global adapter: {out}")

    return app


def _deployed_settings(context: Any) -> tuple[FederatedConfig, list[Any], str | None]:
    """(config, dev examples, out folder) from the run config's `yulian-config` file (a deployed run)."""
    path = context.run_config.get(SETTINGS_KEY)
    if not path:
        raise ValueError(f"the run config has no {SETTINGS_KEY!r}: pass --run-config \"{SETTINGS_KEY}='run.json'\"")
    data = json.loads(Path(str(path)).read_text(encoding="utf-8"))
    config = FederatedConfig(**data["config"])
    dev: list[Any] = []
    if data.get("dev"):
        from yulian.federated.client import read_examples

        dev = read_examples(config, data["dev"])
    return config, dev, data.get("out")
