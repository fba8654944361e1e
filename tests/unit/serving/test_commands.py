"""The `serve` command function: --new-key, config errors before anything starts, its help through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from yulian.serving import ConfigError, hash_key, load_config
from yulian.serving.commands import app_from_env, serve


def test_new_key_prints_a_key_once_and_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve(new_key="ops") == 0
    out, err = capsys.readouterr()
    key = err.split("keep it secret): ")[1].split()[0]
    assert key.startswith("yl-") and key not in out and hash_key(key) in out and "id: ops" in out


def test_config_errors_stop_before_the_server_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--config is required"):
        serve()
    bad = tmp_path / "serve.yaml"
    bad.write_text("models:\n  - name: x\n    sorce: minilm-l6\n")
    with pytest.raises(ConfigError, match=r"serve.yaml: models\[0\]: unknown field 'sorce'.*Did you mean 'source'"):
        serve(config=bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_help_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from yulian.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"], commands={"serve": serve})
    out = capsys.readouterr().out
    assert "--config" in out and "--new-key" in out and "--workers" in out


def test_app_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YULIAN_SERVE_CONFIG", raising=False)
    with pytest.raises(RuntimeError, match="YULIAN_SERVE_CONFIG"):
        app_from_env()
    path = tmp_path / "serve.yaml"
    path.write_text("models:\n  - name: emb\n    factory: yulian.testing:FakeEmbedder\n")
    monkeypatch.setenv("YULIAN_SERVE_CONFIG", str(path))
    app = app_from_env()
    assert list(app.state.yulian.models) == ["emb"] and app.state.yulian.models["emb"].task == "embed"


def test_the_deploy_example_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[3]
    cfg = load_config(root / "deploy" / "serve.example.yaml")
    assert [m.name for m in cfg.models] == ["minilm", "support-bot"]
    assert cfg.keys[0].sha256 == hash_key("yl-demo-change-me") and cfg.keys[1].metrics
