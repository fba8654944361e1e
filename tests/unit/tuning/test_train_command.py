"""`yulian train / eval / predict` through the CLI machinery: a round trip on tmp files, config files, errors."""

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
from yulian.tuning.commands import eval_command, parse_freeze, predict_command, train_command

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread
COMMANDS: dict[str, Callable[..., Any]] = {"train": train_command, "eval": eval_command, "predict": predict_command}
FAST = [
    "--epochs",
    "8",
    "--batch-size",
    "8",
    "--lr",
    "0.01",
    "--precision",
    "fp32",
    "--no-progress",
    "--max-length",
    "32",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base(tmp_path_factory.mktemp("base"))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_train_eval_predict_round_trip(
    base: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jsonl(Path("train.jsonl"), sentiment(80))
    write_jsonl(Path("test.jsonl"), sentiment(24, seed=5))
    args = ["train", "--model", str(base), "--train", "train.jsonl", "--out", "run", "--label-smoothing", "0.05"]
    assert main([*args, *FAST], COMMANDS) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["out"] == "run" and summary["accuracy"] >= 0.75
    assert json.loads(Path("run/yulian_task.json").read_text())["config"]["label_smoothing"] == 0.05
    split = json.loads(Path("run/split.json").read_text())
    assert len(split["dev"]) == 8 and len(split["train"]) == 72 and split["seed"] == 42
    assert not set(split["dev"]) & set(split["train"])
    assert Path("run/report.md").exists() and Path("run/metrics.json").exists()

    assert main(["eval", "run", "test.jsonl", "--json"], COMMANDS) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"accuracy", "macro_f1"} and metrics["accuracy"] >= 0.75

    monkeypatch.setattr(sys, "stdin", io.StringIO("this was a great film\n\nvery bad movie\n"))
    assert main(["predict", "run"], COMMANDS) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["text"], r["label"]) for r in rows] == [("this was a great film", "pos"), ("very bad movie", "neg")]
    assert set(rows[0]["scores"]) == {"pos", "neg"}


def test_config_file_with_cli_override(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(Path("train.jsonl"), sentiment(40))
    write_jsonl(Path("dev.jsonl"), sentiment(10, seed=2))
    Path("run.yaml").write_text(
        f"model: {base}\ntrain: train.jsonl\neval: dev.jsonl\nout: run\nepochs: 1\nbatch-size: 8\nprogress: false\n"
        "max_length: 32\nfreeze: embeddings\n"
    )
    assert main(["train", "--config", "run.yaml", "--epochs", "2"], COMMANDS) == 0
    metrics = json.loads(Path("run/metrics.json").read_text())
    assert metrics["config"]["epochs"] == 2 and metrics["steps"] == 10  # CLI flag beats the file
    assert metrics["method"] == "freeze" and metrics["config"]["method_options"] == {"embeddings": True}
    assert not Path("run/split.json").exists()
    Path("bad.yaml").write_text("epoch: 2\n")
    capsys.readouterr()
    assert main(["train", "--config", "bad.yaml"], COMMANDS) == 1
    assert capsys.readouterr().err == "error: bad.yaml: unknown option 'epoch'. Did you mean 'epochs'?\n"


def test_bad_data_errors_name_file_and_line(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("data.csv").write_text("text,label\nhello,a\nbye,b\n")
    args = ["train", "--model", str(base), "--train", "data.csv", "--no-progress"]
    assert main([*args, "--label-field", "labl"], COMMANDS) == 1
    assert capsys.readouterr().err == (
        "error: data.csv has no column 'labl' (columns: text, label). Did you mean 'label'?\n"
    )
    rows = [json.dumps({"text": f"t{i}", "label": "a"}) for i in range(5)] + ['{"text": "x" "label": "a"}']
    Path("broken.jsonl").write_text("\n".join(rows) + "\n")
    assert main(["train", "--model", str(base), "--train", "broken.jsonl"], COMMANDS) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: broken.jsonl line 6: not valid JSON") and "--skip-bad" in err
    assert main(["train", "--model", str(base)], COMMANDS) == 1
    assert "no training data: give --train FILE" in capsys.readouterr().err
    assert main(["eval", "nowhere", "data.csv"], COMMANDS) == 1
    assert "nowhere is not a yulian fine-tuned model" in capsys.readouterr().err


def test_parse_freeze() -> None:
    assert parse_freeze("embeddings, layers=2") == {"embeddings": True, "layers": 2}
    assert parse_freeze("all-but-head") == {"all_but_head": True}
    assert parse_freeze(None) == {}


def test_model_auto_picks_by_task_and_language() -> None:
    from yulian.tuning.commands import _auto_model
    from yulian.tuning.data import TextExample

    zh = [TextExample("这家酒店的服务很好，房间也干净", label="pos"), TextExample("太差了", label="neg")]
    en = [TextExample("the room was clean and the staff kind", label="pos")]
    assert _auto_model("classification", zh, "auto") == "multilingual-e5-small"
    assert _auto_model("classification", en, "auto") == "minilm-l6"
    assert _auto_model("ner", en, "zh") == "multilingual-e5-small"
    assert _auto_model("classification", zh, "en") == "minilm-l6"
    assert _auto_model("sft", zh, "auto") == "smollm2-135m-instruct"
    with pytest.raises(ValueError, match="--lang"):
        _auto_model("classification", en, "fr")


def test_default_head_lr_only_for_ner_on_small_feature_encoders(tmp_path: Path) -> None:
    from yulian.tuning.commands import default_head_lr

    assert default_head_lr("multilingual-e5-small", "ner", "lora") == 1e-2
    assert default_head_lr("multilingual-e5-small", "ner", "adalora") == 1e-2
    assert default_head_lr("multilingual-e5-small", "ner", "full") == 1e-2
    assert default_head_lr("multilingual-e5-small", "classification", "lora") is None
    assert default_head_lr("minilm-l6", "ner", "lora") is None
    folder = tmp_path / "multilingual-e5-small"
    folder.mkdir()
    assert default_head_lr(str(folder), "ner", "lora") == 1e-2
