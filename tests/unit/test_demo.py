"""The demo behind `make demo` runs offline and shows every way of calling a chain."""

from __future__ import annotations

import pytest

from yulian.cli import main
from yulian.demo import run


def test_demo_shows_invoke_batch_stream_async_and_tracing(capsys: pytest.CaptureFixture[str]) -> None:
    run(question="What is a language chain?", stream=True, real=False)
    out = capsys.readouterr().out
    for section in ("the chain", "invoke", "batch", "stream", "async", "tracing"):
        assert f"== {section}" in out
    assert "A| language| chain|" in out  # the stream arrived in pieces
    assert "什么是语链？ -> 语链把提示词" in out
    assert "error at step 4 (JsonParser)" in out
    assert "FakeChatModel [step]" in out


def test_cli_runs_the_demo_and_reports_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--no-stream", "--no-real", "--question", "hi"]) == 0
    assert "== stream" not in capsys.readouterr().out
    assert main([]) == 2
    with pytest.raises(SystemExit):
        main(["demo", "--bogus"])
