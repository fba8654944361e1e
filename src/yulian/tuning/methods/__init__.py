"""Fine-tuning methods, registered by name: which parameters train, and how the result is saved.

`full` trains everything; `freeze` freezes embeddings, the bottom k layers or all but the head. Parameter-efficient
methods (`lora`, `adalora`, `ia3`, `prefix`, `adapter`) drop in as one module each plus one line in `METHODS`.
"""

from __future__ import annotations

import importlib
from typing import Any

from yulian.tuning.methods.base import Method, count_parameters, trainable_summary

__all__ = ["METHODS", "Method", "count_parameters", "get_method", "trainable_summary"]

METHODS: dict[str, str] = {
    "full": "yulian.tuning.methods.full:FullMethod",
    "freeze": "yulian.tuning.methods.freeze:FreezeMethod",
    "lora": "yulian.tuning.methods.lora:LoraMethod",
    "adalora": "yulian.tuning.methods.adalora:AdaLoraMethod",
    "ia3": "yulian.tuning.methods.ia3:IA3Method",
    "prefix": "yulian.tuning.methods.prefix:PrefixMethod",
    "adapter": "yulian.tuning.methods.adapter:AdapterMethod",
}
"""Method name -> "module:Class"; a new method adds one line here and one module."""


def get_method(name: str) -> Method:
    """The method registered as `name` (a fresh instance)."""
    if name not in METHODS:
        import difflib

        close = difflib.get_close_matches(name, METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown method {name!r} (methods: {', '.join(METHODS)}).{hint}")
    module, _, cls_name = METHODS[name].partition(":")
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise ValueError(f"method {name!r} is registered but its module {module} is not available") from None
    cls: Any = getattr(loaded, cls_name)
    method: Method = cls()
    return method
