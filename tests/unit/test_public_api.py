"""The public API is explicit: every package lists its names in a sorted, complete `__all__`."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

PACKAGES = [
    "yulian",
    "yulian.core",
    "yulian.prompts",
    "yulian.testing",
    "yulian.models",
    "yulian.retrieval",
    "yulian.tuning",
    "yulian.serving",
    "yulian.compression",
    "yulian.privacy",
    "yulian.federated",
    "yulian.apps",
    "yulian.apps.monitor",
    "yulian.apps.recommend",
    "yulian.apps.support",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_complete_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which does not exist"
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_") and not isinstance(value, types.ModuleType) and attr != "annotations"
    }
    missing = public - set(exported)
    assert not missing, f"{name} has public names missing from __all__: {sorted(missing)}"


def test_import_yulian_is_light() -> None:
    code = (
        "import sys, yulian, yulian.prompts, yulian.testing, yulian.models, yulian.retrieval, yulian.tuning,"
        " yulian.serving, yulian.compression, yulian.privacy, yulian.guardrails, yulian.apps,"
        " yulian.federated\n"
        "heavy = ['torch', 'transformers', 'numpy', 'pydantic', 'asyncio', 'fastapi', 'flwr']\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_help_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "yulian.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout and "version" in out.stdout


def test_every_command_has_working_help(capsys: pytest.CaptureFixture[str]) -> None:
    from yulian.cli import all_commands, main

    for name, command in all_commands().items():
        paths = [[name, child] for child in command] if isinstance(command, dict) else [[name]]
        for path in paths:
            with pytest.raises(SystemExit) as info:
                main([*path, "--help"])
            assert info.value.code == 0, path
            assert "usage: yulian" in capsys.readouterr().out
