"""One place for optional imports: a missing extra never breaks `import yulian`, and the error says what to install.

torch = require("torch", extra="hf")          # ImportError: ... pip install 'yulian[hf]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "is_available", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, *, extra: str, purpose: str | None = None) -> ModuleType:
    """Import `module` or raise `MissingExtraError` naming `pip install 'yulian[extra]'`."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        if e.name is not None and e.name != top and not e.name.startswith(top + "."):
            raise  # the package is there but one of *its* imports failed: show that error as it is
        why = f" for {purpose}" if purpose else ""
        raise MissingExtraError(
            f"{top} is needed{why} but is not installed: pip install 'yulian[{extra}]' (or pip install {top})"
        ) from e


def is_available(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
