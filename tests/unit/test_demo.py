"""The demo behind `make demo`: the offline chain part, and its fine-tune / compress / serve steps on a tiny model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tuning"))

from tiny_setup import save_base, sentiment, single_thread

from yulian import demo_steps
from yulian.cli import main
from yulian.demo import STEPS, _parse_steps, run
from yulian.demo import main as demo_main

__all__ = ["single_thread"]  # the module-scoped fixture, used below


def test_demo_shows_invoke_batch_stream_async_and_tracing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    summary = run(question="What is a language chain?", stream=True, real=False, out=tmp_path)
    out = capsys.readouterr().out
    for section in ("the chain", "invoke", "batch", "stream", "async", "tracing"):
        assert f"== {section}" in out
    assert "A| language| chain|" in out  # the stream arrived in pieces
    assert "什么是语链？ -> 语链把提示词" in out
    assert "error at step 4 (JsonParser)" in out
    assert "FakeChatModel [step]" in out
    assert list(summary["steps"]) == ["chain"]  # --no-real: the chain only, nothing trains
    spans = (tmp_path / "chain" / "trace.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(spans) == 4 and json.loads(spans[0])
    assert json.loads((tmp_path / "demo_summary.json").read_text())["steps"]["chain"]["trace"].endswith("trace.jsonl")
    assert "where everything is" in out and "chain trace" in out
    run(stream=False, real=False, out=tmp_path, fresh=True)  # a demo folder: --fresh may delete it
    other = tmp_path / "precious"
    (other / "notes.txt").parent.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="does not look like a demo's"):
        run(real=False, out=other, fresh=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_cli_runs_the_demo_and_reports_bad_usage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out, runs/demo, is relative
    assert main(["demo", "--no-stream", "--no-real", "--question", "hi"]) == 0
    assert "== stream" not in capsys.readouterr().out
    assert (tmp_path / "runs" / "demo" / "chain" / "trace.jsonl").is_file()
    assert main([]) == 2
    with pytest.raises(SystemExit):
        main(["demo", "--bogus"])


def test_steps_are_checked_and_ordered(capsys: pytest.CaptureFixture[str]) -> None:
    assert _parse_steps("all") == list(STEPS)
    assert _parse_steps("serve, chain") == ["chain", "serve"]
    with pytest.raises(ValueError, match=r"unknown demo step 'trian' \(steps: chain, train"):
        _parse_steps("chain,trian")
    with pytest.raises(SystemExit) as exit_info:
        demo_main(["--steps", "trian"])
    assert exit_info.value.code == 2
    assert "unknown demo step 'trian'" in capsys.readouterr().err


# ============================================================================================ the real steps, tiny
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> dict[str, Any]:
    """A tiny random BERT, a separable data set, and the train + compress steps run on them once."""
    root = tmp_path_factory.mktemp("demo")
    base = save_base(root / "base")
    rows = [{"text": e.text, "label": e.label, "lang": "en"} for e in sentiment(130, seed=1)]
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    settings = demo_steps.TrainSettings(epochs=6, batch_size=8, lr=2e-2, dev_size=30, threads=1)
    trained = demo_steps.train_classifier(root / "out", base_model=base, data=data, settings=settings, progress=False)
    packed = demo_steps.compress_classifier(root / "out", trained, max_drop=100.0, min_agreement=0.0)
    return {"root": root, "base": base, "data": data, "settings": settings, "trained": trained, "packed": packed}


def test_train_step_writes_the_adapter_report_and_curves_and_is_reused(tiny: dict[str, Any]) -> None:
    trained = tiny["trained"]
    assert not trained["reused"]
    adapter = Path(trained["adapter"])
    for name in ("adapter_model.safetensors", "yulian_adapter.json", "report.md", "curves.png", "metrics.json"):
        assert (adapter / name).is_file(), name
    assert not (adapter / "checkpoints").exists()  # resume state dropped once finished
    assert trained["train_examples"] == 100 and trained["dev_examples"] == 30
    assert trained["after"]["accuracy"] > trained["before"]["accuracy"]  # it learnt the separable words
    assert len(Path(trained["dev"]).read_text().splitlines()) == 30
    again = demo_steps.train_classifier(
        tiny["root"] / "out", base_model=tiny["base"], data=tiny["data"], settings=tiny["settings"], progress=False
    )
    assert again["reused"] and again["after"] == trained["after"]


def test_train_step_retrains_when_its_inputs_change(tiny: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "classifier").mkdir(parents=True)
    marker = {**tiny["trained"], "fingerprint": "stale"}
    (out / "classifier" / "demo_step.json").write_text(json.dumps(marker))
    assert demo_steps._reusable(out / "classifier", tiny["trained"]["fingerprint"]) is None
    settings = demo_steps.TrainSettings(epochs=1, batch_size=8, dev_size=30, threads=1)
    fresh = demo_steps.train_classifier(
        out, base_model=tiny["base"], data=tiny["data"], settings=settings, progress=False
    )
    assert not fresh["reused"] and fresh["fingerprint"] != tiny["trained"]["fingerprint"]


def test_compress_step_gates_the_int8_model(tiny: dict[str, Any]) -> None:
    packed = tiny["packed"]
    assert packed["passed"] and packed["model"] == packed["artifact"]
    artifact = Path(packed["artifact"])
    assert (artifact / "model.onnx").is_file() and (artifact / "compression.json").is_file()
    assert (Path(packed["merged"]) / "config.json").is_file()
    assert packed["fidelity"]["examples"] == 30 and packed["fidelity"]["metric"] == "accuracy"
    assert "PASSED" in packed["verdict"]
    assert packed["sizes"]["artifact_bytes"] > 0 and packed["sizes"]["source_bytes"] > 0
    assert set(packed["texts_per_second"]) == {"fp32", "int8"}
    again = demo_steps.compress_classifier(tiny["root"] / "out", tiny["trained"], max_drop=100.0, min_agreement=0.0)
    assert again["reused"]
    by_lang = demo_steps.accuracy_by_language(packed["model"], tiny["data"], dev_size=30)
    assert list(by_lang) == ["en"] and 0 <= by_lang["en"] <= 1


def test_a_refused_artefact_is_reported_and_the_merged_model_served(
    tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yulian.compression as compression
    from yulian.compression import CompressionRefused, FidelityReport

    def refuse(model: Any, method: str, data: Any, out: Path, **kwargs: Any) -> Any:
        report = FidelityReport(
            "classifier",
            30,
            "accuracy",
            original={"accuracy": 0.9},
            compressed={"accuracy": 0.81},
            drop=9.0,
            passed=False,
            reasons=["accuracy fell by 9.00 pt"],
        )
        raise CompressionRefused(report, Path(str(out) + ".refused"))

    monkeypatch.setattr(compression, "compress", refuse)
    packed = demo_steps.compress_classifier(tmp_path, tiny["trained"])
    assert not packed["passed"] and packed["artifact"] is None
    assert packed["model"] == packed["merged"] and packed["refused"].endswith("int8.refused")
    assert "REFUSED" in packed["verdict"] and "accuracy fell by 9.00 pt" in packed["verdict"]


def test_serve_step_answers_with_the_key_and_refuses_without(
    tiny: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("uvicorn")
    pytest.importorskip("openai")
    import yaml  # type: ignore[import-untyped]

    out = tiny["root"] / "out"
    model = tiny["packed"]["model"]
    with demo_steps.DemoServer(out, model) as server:
        calls = demo_steps.call_server(server, ["good film", "awful movie"])
    assert calls["unauthorised"] == 401 and calls["no_key_status"] == 401
    labels = [item["label"] for item in calls["classify"]]
    assert all(label in {"pos", "neg"} for label in labels)
    assert [f"intent {label}," in reply for label, reply in zip(labels, calls["chat"], strict=True)] == [True, True]
    assert set(calls["chain"]) == {"intent", "confidence", "answer"}
    config = yaml.safe_load(server.config_file.read_text())
    assert [m["name"] for m in config["models"]] == ["intent", "support-bot"]
    assert server.key not in server.config_file.read_text()  # only the hash is stored
    audit = list(demo_steps.audit_lines(server.audit_log))
    statuses = [record.get("status") for record in audit]
    assert 200 in statuses and 401 in statuses
    assert server.key not in server.audit_log.read_text()
    assert "without the key" in capsys.readouterr().out
