"""Modules outside the package-level API checks (tests/unit/test_public_api.py) also keep a sorted `__all__`."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["yulian.core.messages", "yulian.prompts.json_repair", "yulian.models.base"])
def test_all_is_sorted_and_importable(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__ == sorted(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), name
