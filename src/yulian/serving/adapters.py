"""Several LoRA (or other PEFT) classifiers served on one shared base model.

A served model whose `source` is an adapter folder (what `yulian train --method lora|adalora|ia3 ...` writes) is
not merged into its own copy of the base model: every adapter folder of one base model (same base folder, same
head shape) joins one `AdapterModel` (`yulian.tuning.adapters`), which holds the base weights once and switches
adapters per batch. Each served name is an `AdapterPredictor` over that shared model; a lock makes the switch
and the forward pass one step, so the micro-batchers of different adapters take turns on the base.

```yaml
models:
  - {name: sst2, source: runs/sst2-lora}        # one MiniLM in memory for both
  - {name: imdb, source: runs/imdb-lora}
```

Only sequence-classification adapters are served this way (the `classify` route); merge the others into a full
model first (`yulian adapters merge`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yulian.core.runnable import Runnable

__all__ = ["AdapterPool", "AdapterPredictor", "adapter_predictor"]


class AdapterPool:
    """The shared base models: one `AdapterModel` per (base folder, head size), built on first use."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, int | None], _Group] = {}
        self._lock = threading.Lock()

    def group(self, folder: str | Path) -> _Group:
        """The group the adapter in `folder` belongs to (created when it is the first of its base)."""
        from yulian.tuning.adapters import adapter_info, base_of

        info = adapter_info(folder)
        if info.task_type != "SEQ_CLS":
            raise ValueError(
                f"{folder} is a {info.task_type} adapter: only classification adapters share a base in the server; "
                "merge it into a full model first (yulian adapters merge)"
            )
        key = (str(Path(base_of(folder)).resolve()), len(info.labels) if info.labels else None)
        with self._lock:
            if key not in self._groups:
                self._groups[key] = _Group(key[0])
            return self._groups[key]

    @property
    def groups(self) -> int:
        """How many base models the pool holds (or will hold once warmed up)."""
        return len(self._groups)


class _Group:
    """One base model and the adapters registered on it; loads them all on the first `warm_up` of any."""

    def __init__(self, base: str) -> None:
        from yulian.tuning.adapters import AdapterModel

        self.base = base
        self.pending: dict[str, str] = {}
        self.model = AdapterModel(base)
        self.lock = threading.Lock()

    def register(self, name: str, folder: str) -> None:
        if name in self.pending:
            raise ValueError(f"an adapter named {name!r} is already registered on {self.base}")
        self.pending[name] = folder

    def load(self, max_length: int) -> None:
        with self.lock:
            self.model.max_length = max_length
            for name, folder in list(self.pending.items()):
                if name not in self.model.adapters:
                    self.model.add_adapter(name, folder)

    def classify(self, name: str, texts: list[Any], max_length: int) -> list[Any]:
        self.load(max_length)
        with self.lock:
            self.model.max_length = max_length
            self.model.use_adapter(name)
            return self.model.classify(texts)


class AdapterPredictor(Runnable[Any, Any]):
    """A classifier served from an adapter on a shared base model (see the module docstring).

    `invoke(text)` / `batch(texts)` return `Prediction`s like `HFClassifier`; `warm_up()` loads the base model
    (once per group) and every adapter registered on it.
    """

    task = "classify"
    blocking = True

    def __init__(self, name: str, folder: str | Path, group: _Group, *, max_length: int | None = None) -> None:
        self.adapter = name
        self.folder = str(folder)
        self.group = group
        self.max_length = max_length or _task_max_length(folder)
        group.register(name, self.folder)

    def __repr__(self) -> str:
        return f"AdapterPredictor({self.adapter!r}, base={self.group.base!r})"

    def warm_up(self) -> AdapterPredictor:
        """Load the shared base model and the adapters registered on it."""
        self.group.load(self.max_length)
        return self

    def invoke(self, input: Any, config: Any = None) -> Any:
        """The prediction for one text (or a (text, pair) tuple)."""
        return self.group.classify(self.adapter, [input], self.max_length)[0]

    def batch(
        self, inputs: Sequence[Any], config: Any = None, *, return_exceptions: bool = False, **kwargs: Any
    ) -> list[Any]:
        """Predictions for several texts in one forward pass."""
        try:
            return self.group.classify(self.adapter, list(inputs), self.max_length)
        except Exception as e:
            if return_exceptions:
                return [e for _ in inputs]
            raise


def _task_max_length(folder: str | Path) -> int:
    import json

    path = Path(folder) / "yulian_task.json"
    if path.is_file():
        config = json.loads(path.read_text(encoding="utf-8")).get("config", {})
        if isinstance(config, dict) and config.get("max_length"):
            return int(config["max_length"])
    return 256


def adapter_predictor(pool: AdapterPool, name: str, folder: str | Path, **options: Any) -> AdapterPredictor:
    """The served classifier `name` from the adapter in `folder`, on its base model's shared group in `pool`."""
    unknown = set(options) - {"max_length"}
    if unknown:
        raise ValueError(f"adapter model {name!r}: unknown options {', '.join(sorted(unknown))} (known: max_length)")
    return AdapterPredictor(name, folder, pool.group(folder), max_length=options.get("max_length"))
