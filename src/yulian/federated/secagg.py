"""Secure aggregation with Flower's SecAgg+ (`--secagg`): the server learns only the weighted sum of the clients'
trainable weights, never one client's update.

In flwr 1.42 SecAgg+ exists only in the legacy workflow, so this path uses it: a `NumPyClient` (the same
`local_train` as the Message-API client) behind `secaggplus_mod`, and a ServerApp running
`DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))` with Flower's legacy FedAvg/FedProx strategy. Each client
scales its weights by num_examples / max_weight, quantises them (clipping range 8, 2**22 levels: LoRA weights sit
well inside) and masks them with pairwise secrets shared by Shamir's scheme (`num_shares` = all sampled clients,
reconstruction threshold = min_fit_clients), so the round still completes if some clients drop after sharing keys.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from yulian.federated.apps import SETTINGS_KEY, RoundLog, ServerRun, _client_examples, _client_name, _data_path, _flwr
from yulian.federated.config import FederatedConfig

__all__ = ["make_secagg_client_app", "make_secagg_server_app", "simulate_secagg"]


def make_secagg_client_app(data_dir: str | None = None, fail_rounds: Mapping[str, Iterable[int]] | None = None) -> Any:
    """The legacy ClientApp (NumPyClient + secaggplus_mod); data as in `yulian.federated.apps.make_client_app`."""
    _flwr()
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp

    failing = {name: set(rounds) for name, rounds in (fail_rounds or {}).items()}

    class Client(NumPyClient):
        def __init__(self, context: Any) -> None:
            self.context = context

        def fit(self, parameters: list[Any], config: dict[str, Any]) -> tuple[list[Any], int, dict[str, Any]]:
            from yulian.federated.client import local_train

            cfg = FederatedConfig.from_json(str(config[SETTINGS_KEY]))
            server_round = int(config.get("server-round", 1))
            name = _client_name(self.context)
            if server_round in failing.get(name, set()):
                raise RuntimeError(f"{name} failed mid-round {server_round} (injected failure)")
            names = sorted(str(n) for n in str(config["names"]).split("\n"))
            weights = dict(zip(names, parameters, strict=True))
            examples = _client_examples(cfg, _data_path(self.context, data_dir))
            mu = float(config.get("proximal_mu", 0.0))
            seed = int(self.context.node_config.get("partition-id", 0))
            new, metrics = local_train(cfg, examples, weights, server_round, proximal_mu=mu, client_seed=seed)
            return [new[n].numpy() for n in names], len(examples), metrics

    def client_fn(context: Any) -> Any:
        return Client(context).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


def make_secagg_server_app(
    config: FederatedConfig,
    dev: list[Any],
    out_dir: str | Path | None,
    run: ServerRun,
    max_weight: float,
    log: Callable[[str], None],
) -> Any:
    """The legacy ServerApp: FedAvg/FedProx under SecAgg+, central evaluation each round, the final adapter."""
    _flwr()
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg, FedAvgM, FedProx
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    from yulian.federated.client import GlobalModel

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        model = GlobalModel(config).warm_up()
        initial = model.weights()
        names = sorted(initial)
        run.trainable_bytes = sum(int(initial[n].numel() * initial[n].element_size()) for n in names)
        run.full_model_bytes = model.all_weights_bytes()

        def fit_config(server_round: int) -> dict[str, Any]:
            entry = RoundLog(server_round, bytes_down=0)
            entry.seconds = time.perf_counter()
            run.rounds.append(entry)
            return {SETTINGS_KEY: config.to_json(), "server-round": server_round, "names": "\n".join(names)}

        def evaluate(server_round: int, arrays: list[Any], _cfg: dict[str, Any]) -> tuple[float, dict[str, Any]]:
            model.load(dict(zip(names, arrays, strict=True)))
            metrics = model.evaluate(dev) if dev else {}
            if server_round == 0:
                run.initial = metrics
                log(f"round 0 (initial): dev {' '.join(f'{k} {v:.4f}' for k, v in metrics.items())}")
            elif run.rounds:
                entry = run.rounds[-1]
                entry.dev = metrics
                entry.seconds = round(time.perf_counter() - entry.seconds, 3)
                log(entry.line() + " (SecAgg+: the server saw only the sum)")
            return 0.0, metrics

        legacy_base = {"fedprox": FedProx, "fedavgm": FedAvgM}.get(config.strategy, FedAvg)

        class Logged(legacy_base):  # type: ignore[misc,valid-type]
            def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
                pairs = super().configure_fit(server_round, parameters, client_manager)
                self._sampled = [proxy for proxy, _ in pairs]
                return pairs

            def aggregate_fit(self, server_round: int, results: list[Any], failures: list[Any]) -> Any:
                entry = run.rounds[-1]
                entry.clients = len(getattr(self, "_sampled", [])) - len(failures)
                entry.bytes_down = run.trainable_bytes * len(getattr(self, "_sampled", []))
                for failure in failures:
                    entry.dropped.append(str(failure)[:200])
                eps = [float(res.metrics["epsilon"]) for _, res in results if "epsilon" in res.metrics]
                entry.epsilon = max(eps) if eps else None
                losses = [(float(res.metrics["train-loss"]), res.num_examples) for _, res in results if res.metrics]
                if losses:
                    entry.train_loss = sum(a * n for a, n in losses) / max(1, sum(n for _, n in losses))
                return super().aggregate_fit(server_round, results, failures)

        kwargs: dict[str, Any] = {}
        if config.strategy == "fedprox":
            kwargs["proximal_mu"] = config.proximal_mu
        if config.strategy == "fedavgm":
            kwargs["server_momentum"] = config.server_momentum
        strategy = Logged(
            fraction_fit=config.fraction_fit,
            fraction_evaluate=0.0,
            min_fit_clients=config.min_fit_clients,
            min_available_clients=config.min_available_clients,
            initial_parameters=ndarrays_to_parameters([initial[n].numpy() for n in names]),
            on_fit_config_fn=fit_config,
            evaluate_fn=evaluate,
            **kwargs,
        )
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=config.rounds), strategy=strategy)
        secagg = SecAggPlusWorkflow(
            num_shares=1.0,
            reconstruction_threshold=max(2, config.min_fit_clients),
            max_weight=max_weight,
            timeout=config.timeout,
        )
        DefaultWorkflow(fit_workflow=secagg)(grid, legacy)
        run.weights = {n: model.model.get_parameter(n).detach().cpu().clone() for n in names}
        if out_dir is not None:
            run.out_dir = model.save(out_dir)
            log(f"final global adapter: {out_dir}")

    return app


def simulate_secagg(
    config: FederatedConfig,
    shards: Sequence[Sequence[Any]],
    dev: Sequence[Any] | None,
    out_dir: str | Path | None,
    *,
    fail_rounds: Mapping[str, Iterable[int]] | None = None,
    log: Callable[[str], None] | None = None,
) -> ServerRun:
    """`yulian.federated.simulation.simulate` with SecAgg+ (at least 2 clients; the last evaluation's weights are
    the final global weights)."""
    import os

    from flwr.simulation import run_simulation

    from yulian.federated.simulation import write_shards

    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    if len(shards) < 2:
        raise ValueError("secure aggregation needs at least 2 clients")
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="yulian-fed-") as tmp:
        folder = Path(out_dir) / "partitions" if out_dir is not None else Path(tmp)
        write_shards(shards, folder, config)
        run = ServerRun()
        max_weight = float(max(len(s) for s in shards))
        server = make_secagg_server_app(config, list(dev or []), out_dir, run, max_weight, say)
        client = make_secagg_client_app(str(folder), fail_rounds)
        backend: dict[str, Any] = {"client_resources": {"num_cpus": 1.0, "num_gpus": 0.0}}
        run_simulation(server_app=server, client_app=client, num_supernodes=len(shards), backend_config=backend)
    if not run.rounds:
        raise RuntimeError("the SecAgg+ simulation ran no round (see the Flower log above)")
    return run
