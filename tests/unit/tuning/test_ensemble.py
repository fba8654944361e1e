"""Ensembles through `yulian train --ensemble`: members by seed and by fold, the mean of probabilities in eval
and predict, and the arithmetic of the averaging itself."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiny_setup import save_base, sentiment, single_thread, write_jsonl

from yulian.cli import main
from yulian.models.predictions import Prediction
from yulian.tuning.commands import eval_command, predict_command, train_command
from yulian.tuning.ensemble import EnsembleClassifier, ensemble_members, is_ensemble

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread
COMMANDS: dict[str, Callable[..., Any]] = {"train": train_command, "eval": eval_command, "predict": predict_command}
FAST = [
    "--epochs",
    "8",
    "--batch-size",
    "8",
    "--lr",
    "0.003",
    "--precision",
    "fp32",
    "--no-progress",
]  # 1e-2: seed luck
FAST += ["--max-length", "32"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base(tmp_path_factory.mktemp("base"))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("by", ["seed", "fold"])
def test_train_eval_and_predict_an_ensemble(
    by: str, base: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jsonl(Path("train.jsonl"), sentiment(60))
    write_jsonl(Path("dev.jsonl"), sentiment(20, seed=5))
    args = ["train", "--model", str(base), "--train", "train.jsonl", "--eval", "dev.jsonl", "--out", "ens", *FAST]
    assert main([*args, "--ensemble", "2", "--ensemble-by", by], COMMANDS) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(summary["members"]) == 2 and summary["accuracy"] >= 0.75
    assert is_ensemble("ens") and [p.name for p in ensemble_members("ens")] == ["member-1", "member-2"]
    manifest = json.loads(Path("ens/ensemble.json").read_text())
    assert manifest["by"] == by and manifest["metrics"]["accuracy"] == summary["accuracy"]
    if by == "fold":  # member i picked its checkpoint on fold i: dev sets of 30, not the 20 of dev.jsonl
        first = json.loads(Path("ens/member-1/metrics.json").read_text())
        assert first["config"]["seed"] == 42
        assert json.loads(Path("ens/member-2/metrics.json").read_text())["config"]["seed"] == 43

    assert main(["eval", "ens", "dev.jsonl", "--json"], COMMANDS) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-4)
    monkeypatch.setattr(sys, "stdin", io.StringIO("this was a great film\nvery bad movie\n"))
    assert main(["predict", "ens"], COMMANDS) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"]
    assert sum(rows[0]["scores"].values()) == pytest.approx(1.0, abs=1e-4)


class _Fixed:
    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def batch(self, inputs: list[Any], config: Any = None) -> list[Prediction]:
        best = max(self.scores, key=lambda k: self.scores[k])
        return [Prediction(best, self.scores[best], self.scores, (best,)) for _ in inputs]


def test_the_ensemble_averages_probabilities_not_votes() -> None:
    # two members lean "a" weakly, one is sure of "b": the mean says b (majority vote would say a)
    ens = EnsembleClassifier(
        [_Fixed({"a": 0.55, "b": 0.45}), _Fixed({"a": 0.55, "b": 0.45}), _Fixed({"a": 0.0, "b": 1.0})]
    )
    p = ens.invoke("x")
    assert p.label == "b" and p.score == pytest.approx((0.45 + 0.45 + 1.0) / 3)
    assert list(p.scores) == ["b", "a"]
    with pytest.raises(ValueError, match="at least 2 member"):
        EnsembleClassifier([_Fixed({"a": 1.0})])
