"""Client round, weight exchange, FedProx term, aggregation and dropouts, DP wiring: tiny random BERT, no Flower
network (the strategy is driven with hand-made reply messages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fed_setup import save_base, sentiment, single_thread, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")
__all__ = ["single_thread"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base(tmp_path_factory.mktemp("fed") / "base")


@pytest.fixture(scope="module")
def global_weights(base: Path) -> dict[str, Any]:
    from yulian.federated.client import GlobalModel

    return GlobalModel(tiny_config(base)).weights()


def test_only_trainable_lora_and_head_weights_travel(base: Path, global_weights: dict[str, Any]) -> None:
    from yulian.federated.apps import from_record, to_record
    from yulian.federated.client import GlobalModel, local_train

    names = list(global_weights)
    assert names and all("lora_" in n or "classifier" in n for n in names)
    model = GlobalModel(tiny_config(base)).warm_up().model
    total = sum(p.numel() for p in model.parameters())
    sent = sum(t.numel() for t in global_weights.values())
    assert sent < total / 10
    new, metrics = local_train(tiny_config(base), sentiment(48), global_weights, 1)
    assert sorted(new) == sorted(names)
    assert metrics["num-examples"] == 48 and metrics["steps"] == 6
    changed = [n for n in names if (new[n] - global_weights[n]).abs().max() > 0]
    assert any("lora_B" in n for n in changed) and any("classifier" in n for n in changed)
    back = from_record(to_record(new))
    assert all((back[n] == new[n].numpy()).all() for n in names)


def test_client_starts_from_the_global_weights(base: Path, global_weights: dict[str, Any]) -> None:
    from yulian.federated.client import local_train

    config = tiny_config(base, local_steps=1, lr=1e-9)  # one step that moves nothing visible
    shifted = {n: t + 0.5 for n, t in global_weights.items()}
    new, _ = local_train(config, sentiment(16), shifted, 1)
    assert all((new[n] - shifted[n]).abs().max() < 1e-3 for n in new)


def test_fedprox_term_adds_mu_times_distance_to_the_gradient(base: Path, global_weights: dict[str, Any]) -> None:
    import torch

    from yulian.federated.client import GlobalModel, proximal_term

    model = GlobalModel(tiny_config(base)).warm_up().model
    ref = {n: t - 0.25 for n, t in global_weights.items()}  # live weights sit 0.25 above the "global" ones
    mu = 0.1
    base_loss = sum((p * 0).sum() for p in model.parameters() if p.requires_grad)
    loss = proximal_term(mu, ref)(model, base_loss)
    loss.backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert torch.allclose(param.grad, torch.full_like(param, mu * 0.25), atol=1e-6), name
    expected = mu / 2 * sum(0.25**2 * t.numel() for t in ref.values())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_fedprox_keeps_the_client_closer_to_the_global_model(base: Path, global_weights: dict[str, Any]) -> None:
    from yulian.federated.client import local_train

    config = tiny_config(base, lr=5e-2, local_epochs=2)

    def drift(mu: float) -> float:
        new, _ = local_train(config, sentiment(48), global_weights, 1, proximal_mu=mu)
        return float(sum(((new[n] - global_weights[n]) ** 2).sum() for n in new))

    assert drift(5.0) < 0.8 * drift(0.0)


@pytest.fixture
def flower_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages are built inside a run in Flower: give this process a run, task and node id."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def _replies(weights: list[dict[str, Any]], sizes: list[int], fail: dict[int, str] | None = None) -> list[Any]:
    from flwr.app import ConfigRecord, Error, Message, MetricRecord, RecordDict

    from yulian.federated.apps import to_record

    out = []
    for i, (w, n) in enumerate(zip(weights, sizes, strict=True)):
        node = 100 + i
        instruction = Message(content=RecordDict(), dst_node_id=node, message_type="train")
        if fail and i in fail:
            out.append(Message(Error(code=0, reason=fail[i]), reply_to=instruction))
            continue
        metrics = MetricRecord({"num-examples": float(n), "train-loss": 1.0 + i})
        content = RecordDict({"arrays": to_record(w), "metrics": metrics, "client": ConfigRecord({"name": f"c{i}"})})
        out.append(Message(content, reply_to=instruction))
    return out


@pytest.mark.usefixtures("flower_identity")
def test_fedavg_weights_by_examples_and_logs_who_dropped(base: Path) -> None:
    import numpy as np

    from yulian.federated.apps import RoundLog, ServerRun, from_record, make_strategy

    config = tiny_config(base, min_fit_clients=2, min_available_clients=3)
    run = ServerRun()
    strategy = make_strategy(config, run, print)
    ws = [{"w": np.full((2, 2), v, dtype=np.float32)} for v in (1.0, 3.0, 100.0)]
    run.rounds.append(RoundLog(1))
    arrays, _ = strategy.aggregate_train(1, _replies(ws, [10, 30, 60]))
    assert from_record(arrays)["w"] == pytest.approx(np.full((2, 2), 0.1 + 0.9 + 60.0))
    assert run.rounds[-1].clients == 3 and run.rounds[-1].bytes_up == 3 * 16
    assert run.rounds[-1].train_loss == pytest.approx((10 * 1 + 30 * 2 + 60 * 3) / 100)
    # round 2: client 2 fails mid-round; the two others are enough (min_fit_clients 2)
    run.rounds.append(RoundLog(2))
    arrays, _ = strategy.aggregate_train(2, _replies(ws, [10, 30, 60], fail={2: "out of memory"}))
    assert from_record(arrays)["w"] == pytest.approx(np.full((2, 2), 2.5))
    assert run.rounds[-1].dropped == ["c2 [node 102]: out of memory"]
    assert "dropped: c2 [node 102]: out of memory" in run.rounds[-1].line()
    # round 3: two fail, one is too few: the global weights stay
    run.rounds.append(RoundLog(3))
    arrays, _ = strategy.aggregate_train(3, _replies(ws, [10, 30, 60], fail={0: "killed", 2: "killed"}))
    assert arrays is None and run.rounds[-1].skipped and len(run.rounds[-1].dropped) == 2


def test_fedprox_strategy_sends_mu(base: Path) -> None:
    from flwr.serverapp.strategy import FedProx

    from yulian.federated.apps import ServerRun, make_strategy

    strategy = make_strategy(tiny_config(base, strategy="fedprox", proximal_mu=0.01), ServerRun(), print)
    assert isinstance(strategy, FedProx) and strategy.proximal_mu == 0.01


def test_dp_sgd_reports_epsilon_growing_to_the_budget(base: Path, global_weights: dict[str, Any]) -> None:
    from yulian.federated.client import local_train
    from yulian.tuning.dp import epsilon_spent

    config = tiny_config(base, dp=True, dp_epsilon=4.0, rounds=3)
    eps = []
    for server_round in (1, 3):
        _, metrics = local_train(config, sentiment(64), global_weights, server_round)
        eps.append(metrics["epsilon"])
        assert metrics["noise-multiplier"] > 0.3
    assert 0 < eps[0] < eps[1] <= 4.0 * 1.02
    assert eps[1] == pytest.approx(4.0, rel=0.02)
    assert epsilon_spent(1.0, 0.1, 100, 1e-5) < epsilon_spent(1.0, 0.1, 200, 1e-5)
    assert epsilon_spent(2.0, 0.1, 100, 1e-5) < epsilon_spent(1.0, 0.1, 100, 1e-5)


def test_dp_noise_changes_the_update(base: Path, global_weights: dict[str, Any]) -> None:
    from yulian.federated.client import local_train

    plain, _ = local_train(tiny_config(base), sentiment(32), global_weights, 1)
    private, _ = local_train(tiny_config(base, dp=True, dp_epsilon=1.0), sentiment(32), global_weights, 1)
    assert any((plain[n] - private[n]).abs().max() > 1e-4 for n in plain)


def test_config_validation_names_the_problem(base: Path) -> None:
    from yulian.federated.config import FederatedConfig

    with pytest.raises(ValueError, match="unknown strategy 'fedsgd'"):
        tiny_config(base, strategy="fedsgd")
    with pytest.raises(ValueError, match="fedprox needs proximal_mu > 0"):
        tiny_config(base, strategy="fedprox")
    with pytest.raises(ValueError, match="min_available_clients \\(1\\) must be >= min_fit_clients \\(2\\)"):
        tiny_config(base, min_fit_clients=2, min_available_clients=1)
    with pytest.raises(ValueError, match="--dp needs an adapter method"):
        tiny_config(base, dp=True, method="full")
    config = tiny_config(base, rounds=5)
    assert FederatedConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown FederatedConfig fields: colour"):
        FederatedConfig.from_json(json.dumps({**json.loads(config.to_json()), "colour": 1}))


def test_saved_global_adapter_loads_and_evaluates(base: Path, global_weights: dict[str, Any], tmp_path: Path) -> None:
    from yulian.federated.client import GlobalModel, local_train
    from yulian.tuning.adapters import adapter_info, load_adapter

    config = tiny_config(base, local_epochs=3, lr=5e-2)
    new, _ = local_train(config, sentiment(64), global_weights, 1)
    server = GlobalModel(config)
    server.load(new)
    before = server.evaluate(sentiment(32, seed=7))
    out = server.save(tmp_path / "fed")
    assert adapter_info(out).method == "lora"
    model = load_adapter(out)
    assert model is not None
    again = GlobalModel(config)
    again.load(new)
    assert again.evaluate(sentiment(32, seed=7)) == before


def test_logit_adjustment_adds_the_local_label_prior_to_the_training_logits(base: Path) -> None:
    import math

    import torch

    from yulian.federated.client import GlobalModel, build_task, logit_adjusted

    config = tiny_config(base)
    server = GlobalModel(config).warm_up()
    examples = sentiment(8)[1:2] + [e for e in sentiment(8) if e.label == "pos"]  # 1 neg, 4 pos
    assert [e.label for e in examples].count("neg") == 1
    task = logit_adjusted(build_task(config), examples, config.labels)
    batch = task.collate(task.encode(examples, server.tokenizer), server.tokenizer)
    with torch.no_grad():
        logits = server.model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        prior = torch.tensor([math.log(1 / 5), math.log(4 / 5)])  # labels in order: neg, pos
        expected = torch.nn.functional.cross_entropy(logits + prior, batch["labels"])
        plain = build_task(config).loss(server.model, batch)
        assert float(task.loss(server.model, batch)) == pytest.approx(float(expected), rel=1e-5)
        assert float(plain) != pytest.approx(float(expected), rel=1e-3)


def test_fedavgm_strategy_has_server_momentum(base: Path) -> None:
    from flwr.serverapp.strategy import FedAvgM

    from yulian.federated.apps import ServerRun, make_strategy

    strategy = make_strategy(tiny_config(base, strategy="fedavgm", server_momentum=0.5), ServerRun(), print)
    assert isinstance(strategy, FedAvgM) and strategy.server_momentum == 0.5
    with pytest.raises(ValueError, match="server_momentum must be in"):
        tiny_config(base, server_momentum=1.0)
