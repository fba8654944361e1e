"""Real Flower runs: the simulation engine (Ray) with a client that fails mid-round, `yulian federate` with DP and
SecAgg+, and a real deployment (SuperLink + SuperNodes as processes on 127.0.0.1, each with its own data file).

Tiny random BERT and tiny separable data keep each run bounded (about 30-150 s on 2 loaded cores); one test uses
the packaged MiniLM to show federated LoRA learning real sentiment."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "federated"))

from fed_setup import save_base, sentiment, tiny_config, write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base(tmp_path_factory.mktemp("fedint") / "base")


def _eval(model: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    from yulian.cli import main

    capsys.readouterr()
    assert main(["eval", str(model), str(data), "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return result


def test_simulation_survives_a_client_failing_mid_round(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from yulian.federated import simulate
    from yulian.federated.partition import iid_partition

    config = tiny_config(base, rounds=3, local_epochs=3, lr=5e-2, min_fit_clients=2, min_available_clients=3)
    shards = iid_partition(sentiment(120, seed=1), 3, seed=0)
    dev = sentiment(40, seed=2)
    logged: list[str] = []
    run = simulate(config, shards, dev, tmp_path / "fed", fail_rounds={"client-1": [2]}, log=logged.append)
    assert [r.clients for r in run.rounds] == [3, 2, 3]
    assert run.rounds[1].dropped and run.rounds[1].dropped[0].startswith("client-1 [node ")
    assert "injected failure" in run.rounds[1].dropped[0]
    assert any("dropped: client-1" in line for line in logged)
    assert run.rounds[0].bytes_up == 3 * run.trainable_bytes and run.rounds[1].bytes_up == 2 * run.trainable_bytes
    assert run.rounds[-1].dev["accuracy"] >= 0.9 > run.initial["accuracy"]
    # the saved global adapter is a PEFT folder that `yulian eval` scores the same
    saved = _eval(tmp_path / "fed", write_jsonl(tmp_path / "dev.jsonl", dev), capsys)
    assert saved["accuracy"] == pytest.approx(run.rounds[-1].dev["accuracy"], abs=1e-4)
    assert (tmp_path / "fed" / "adapter_config.json").exists()


def test_federate_command_with_dp_and_secagg(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from yulian.cli import main
    from yulian.federated.commands import federate_command

    data = write_jsonl(tmp_path / "train.jsonl", sentiment(150, seed=3))
    dev = write_jsonl(tmp_path / "dev.jsonl", sentiment(40, seed=4))
    out = tmp_path / "fed"
    argv = ["federate", "--data", str(data), "--dev", str(dev), "--clients", "3", "--rounds", "2"]
    argv += ["--partition", "iid", "--model", str(base), "--lr", "0.05", "--local-epochs", "3", "--max-length", "16"]
    argv += ["--dp", "--dp-epsilon", "8", "--secagg", "--out", str(out)]
    assert main(argv, commands={"federate": federate_command}) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((out / "federated.json").read_text())
    assert summary["config"]["dp"] and summary["config"]["secagg"]
    assert len(summary["rounds"]) == 2 and all(r["clients"] == 3 for r in summary["rounds"])
    assert 0 < summary["rounds"][0]["epsilon"] < summary["rounds"][1]["epsilon"] <= 8.0 * 1.02
    assert result["epsilon"] == pytest.approx(summary["rounds"][1]["epsilon"], abs=1e-3)
    assert (out / "adapter_config.json").exists() and (out / "partitions" / "client-2.jsonl").exists()


def test_bad_partition_is_a_clear_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from yulian.cli import main
    from yulian.federated.commands import federate_command

    data = write_jsonl(tmp_path / "train.jsonl", sentiment(10))
    argv = ["federate", "--data", str(data), "--partition", "shards:4"]
    assert main(argv, commands={"federate": federate_command}) == 1
    assert "unknown --partition 'shards:4' (valid: iid, dirichlet:ALPHA, field:NAME)" in capsys.readouterr().err


def test_real_deployment_superlink_and_supernodes(base: Path, tmp_path: Path) -> None:
    from yulian.federated.deploy import LocalDeployment

    a = write_jsonl(tmp_path / "bank-a.jsonl", sentiment(60, seed=5))
    b = write_jsonl(tmp_path / "bank-b.jsonl", sentiment(60, seed=6))
    dev = write_jsonl(tmp_path / "dev.jsonl", sentiment(40, seed=7))
    config = tiny_config(base, rounds=2, local_epochs=3, lr=5e-2, min_fit_clients=2, min_available_clients=2)
    with LocalDeployment({"bank-a": a, "bank-b": b}, tmp_path / "deploy") as fed:
        assert len(fed.processes) == 3 and all(p.poll() is None for p in fed.processes.values())
        rounds = fed.run(config, dev, tmp_path / "out", timeout=240)
        processes = list(fed.processes.values())
    assert all(p.poll() is not None for p in processes)  # stopped on exit
    assert [r["clients"] for r in rounds] == [2, 2]
    assert rounds[-1]["dev"]["accuracy"] >= 0.8
    assert (tmp_path / "out" / "adapter_config.json").exists()
    node_logs = (tmp_path / "deploy" / "supernode-bank-a.log").read_text(errors="replace")
    assert "bank-b.jsonl" not in node_logs


def test_minilm_federated_lora_learns_sentiment(tmp_path: Path) -> None:
    from yulian.federated import FederatedConfig, simulate
    from yulian.federated.partition import iid_partition
    from yulian.models.registry import resolve
    from yulian.tuning.data import TextExample

    pos = ["a gripping , funny film", "warm and wonderful", "the best movie this year", "i loved every minute"]
    neg = ["a dull , tedious mess", "boring and far too long", "the worst film this year", "i hated every minute"]
    train = [TextExample(t, label="pos") for t in pos * 12] + [TextExample(t, label="neg") for t in neg * 12]
    dev = [TextExample(t + " !", label="pos") for t in pos] + [TextExample(t + " !", label="neg") for t in neg]
    shards = iid_partition(train, 2, seed=1)
    config = FederatedConfig(
        base_model=str(resolve("minilm-l6").path),
        labels=["neg", "pos"],
        rounds=3,
        local_epochs=2,
        batch_size=8,
        max_length=16,
        min_fit_clients=2,
        min_available_clients=2,
    )
    run = simulate(config, shards, dev, None)
    assert run.trainable_bytes * 100 < run.full_model_bytes  # LoRA + head: under 1% of the model
    assert run.rounds[-1].dev["accuracy"] >= 0.875 > run.initial["accuracy"]
