"""The `yulian` command machinery: signatures become options, and a dict of functions is a command group."""

from __future__ import annotations

import pytest

from yulian.cli import main


def _run(name: str, times: int = 1, loud: bool = False) -> int:
    """Repeat a name.

    Args:
        name: what to print.
        times: how many times.
        loud: upper-case it.
    """
    print((name.upper() if loud else name) * times)
    return 3


def test_a_group_runs_its_subcommand_and_prints_its_help_alone(capsys: pytest.CaptureFixture[str]) -> None:
    commands = {"app": {"echo": _run}, "echo": _run}
    assert main(["app", "echo", "ab", "--times", "2", "--loud"], commands=commands) == 3
    assert capsys.readouterr().out == "ABAB\n"
    assert main(["echo", "x"], commands=commands) == 3
    assert main(["app"], commands=commands) == 2
    out = capsys.readouterr().out
    assert "app commands" in out and "echo" in out and "Repeat a name." in out
    with pytest.raises(SystemExit):
        main(["app", "nope"], commands=commands)
