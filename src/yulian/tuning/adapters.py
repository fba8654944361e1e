"""The adapter lifecycle: load an adapter folder onto its base model, merge it for deployment, and serve several
adapters on one base model with per-call switching.

An adapter folder is what `yulian train --method lora|adalora|ia3|prefix|adapter ...` writes: the standard PEFT files
(`adapter_config.json`, `adapter_model.safetensors`, loadable by `peft.PeftModel.from_pretrained`) plus
`yulian_adapter.json` (method, options, task, labels, base model, head config), `yulian_task.json`, the tokenizer
and `metrics.json`.

```python
from yulian.tuning.adapters import AdapterModel, load_model, merge

model = load_model("AutoModelForSequenceClassification", "runs/sst2-lora")   # base + adapter, merged
merge("runs/sst2-lora", "deploy/sst2")                                       # a plain transformers folder

multi = AdapterModel().add_adapter("sst2", "runs/sst2-lora").add_adapter("imdb", "runs/imdb-lora")
with multi.use_adapter("imdb"):
    print(multi.invoke("a gripping, funny film"))                            # Prediction(label="pos", ...)
multi.use_adapter("sst2")                                                    # or switch until further notice
```

This module imports nothing heavy at import time; torch, transformers and peft load inside the functions.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.core.runnable import Runnable
from yulian.tuning.methods._peft import ADAPTER_FILE

__all__ = [
    "ADAPTER_FILE",
    "AdapterInfo",
    "AdapterModel",
    "adapter_info",
    "adapters_command",
    "auto_class_of",
    "base_of",
    "is_adapter_folder",
    "load_adapter",
    "load_model",
    "merge",
    "merge_and_unload",
]

PEFT_CONFIG = "adapter_config.json"
_AUTO_BY_TASK_TYPE = {
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "CAUSAL_LM": "AutoModelForCausalLM",
    "FEATURE_EXTRACTION": "AutoModel",
}
_COPIED = ("yulian_task.json", "metrics.json", "report.md", "split.json")


def is_adapter_folder(path: str | Path) -> bool:
    """Whether `path` is a folder holding a PEFT adapter (adapter_config.json) rather than a full model."""
    folder = Path(path).expanduser()
    return folder.is_dir() and (folder / PEFT_CONFIG).is_file()


@dataclass
class AdapterInfo:
    """What an adapter folder says about itself.

    Attributes:
        folder: the adapter folder. method: yulian's method name (lora, adalora, ia3...; or the PEFT type).
        peft_type: peft's type (LORA, ADALORA, IA3...). task_type: peft's task type (SEQ_CLS, CAUSAL_LM...).
        task: yulian's task name (classification, ner, qa, sft) or None. labels: the head's labels, id order.
        base_model: the base model's folder. base_name: its registered name ("minilm-l6"), when it has one.
        options: the method's options.
        metrics: metrics.json's `after` metrics (empty when there is none). size_bytes: adapter weights on disk.
        can_merge: whether `merge` can fold it into the base weights.
    """

    folder: Path
    method: str
    peft_type: str
    task_type: str | None
    task: str | None
    labels: list[str] | None
    base_model: str
    base_name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    can_merge: bool = True
    head_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out = {k: v for k, v in vars(self).items() if k != "head_config"}
        out["folder"] = str(self.folder)
        return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def adapter_info(folder: str | Path) -> AdapterInfo:
    """Read an adapter folder's metadata (adapter_config.json, yulian_adapter.json, metrics.json)."""
    root = Path(folder).expanduser()
    if not is_adapter_folder(root):
        listing = ", ".join(sorted(p.name for p in root.iterdir())[:10]) if root.is_dir() else "no such folder"
        raise FileNotFoundError(f"{folder} is not an adapter folder: {PEFT_CONFIG} is missing ({listing})")
    peft_config = _read_json(root / PEFT_CONFIG)
    meta = _read_json(root / ADAPTER_FILE) if (root / ADAPTER_FILE).is_file() else {}
    metrics = _read_json(root / "metrics.json") if (root / "metrics.json").is_file() else {}
    weights = [p for p in root.glob("adapter_model.*") if p.is_file()]
    peft_type = str(peft_config.get("peft_type", "?"))
    head = dict(meta.get("head_config") or {})
    if "id2label" in head:
        head["id2label"] = {int(k): v for k, v in head["id2label"].items()}
    return AdapterInfo(
        folder=root,
        method=str(meta.get("method") or peft_type.lower()),
        peft_type=peft_type,
        task_type=meta.get("task_type") or peft_config.get("task_type"),
        task=meta.get("task"),
        labels=meta.get("labels"),
        base_model=str(meta.get("base_model") or peft_config.get("base_model_name_or_path") or ""),
        base_name=meta.get("base_name"),
        options=dict(meta.get("options") or {}),
        metrics=dict(metrics.get("after") or {}),
        size_bytes=sum(p.stat().st_size for p in weights),
        can_merge=bool(meta.get("can_merge", True)),
        head_config=head,
    )


def base_of(folder: str | Path, base: str | Path | None = None) -> str:
    """The local folder of the base model of an adapter: `base` when given (a path or registered name), else the
    one the adapter records (its path, or a registered name resolved through `yulian.models.registry`)."""
    from yulian.tuning.tasks._hf import model_folder

    if base is not None:
        return model_folder(base)
    info = adapter_info(folder)
    if not info.base_model and not info.base_name:
        raise ValueError(f"{folder}: the adapter does not name its base model; pass base=PATH")
    if info.base_name and not Path(info.base_model).exists():
        return model_folder(info.base_name)  # the recorded folder moved; the registered name still resolves
    try:
        return model_folder(info.base_model)
    except Exception as e:  # the recorded folder moved: say what to do
        raise FileNotFoundError(
            f"{folder}: its base model {info.base_model!r} cannot be found ({e}); pass base=PATH (or --base)"
        ) from None


def auto_class_of(folder: str | Path) -> str:
    """The transformers Auto class an adapter's base model loads with (from its task type)."""
    info = adapter_info(folder)
    return _AUTO_BY_TASK_TYPE.get(str(info.task_type), "AutoModel")


def _load_base(auto_class: str, folder: Path, base: str | Path | None, **kwargs: Any) -> Any:
    transformers = require("transformers", extra="hf")
    info = adapter_info(folder)
    head = {k: v for k, v in info.head_config.items() if k not in kwargs}
    if "id2label" in head:
        head["num_labels"] = len(head["id2label"])
    return getattr(transformers, auto_class).from_pretrained(base_of(folder, base), **head, **kwargs)


def load_adapter(
    folder: str | Path,
    base: str | Path | Any | None = None,
    *,
    auto_class: str | None = None,
    adapter_name: str = "default",
    trainable: bool = False,
    **kwargs: Any,
) -> Any:
    """The base model with the adapter in `folder` attached (a `peft.PeftModel`, not merged).

    `base` is a path or registered name of the base model (default: the one the adapter records) or an already
    loaded model; `kwargs` go to `from_pretrained` (e.g. `dtype`).
    """
    root = Path(folder).expanduser()
    info = adapter_info(root)
    _register_own_tuners(root)
    if base is not None and not isinstance(base, str | Path):
        model = base
    else:
        model = _load_base(auto_class or auto_class_of(root), root, base, **kwargs)
    return _method_loader(info.method).load(model, root, adapter_name=adapter_name, trainable=trainable)


def _register_own_tuners(folder: Path) -> None:
    """Make peft know yulian's own tuners (bottleneck adapters, KV prefixes) before it reads such a folder."""
    peft_type = _read_json(folder / "adapter_config.json").get("peft_type")
    if peft_type in ("BOTTLENECK", "KV_PREFIX"):
        import yulian.tuning.tuners  # noqa: F401 - registers them with peft


def _method_loader(method: str) -> Any:
    """The registered method that knows how to load its adapters (peft's loader for unknown ones)."""
    from yulian.tuning.methods import METHODS, get_method
    from yulian.tuning.methods.lora import LoraMethod

    if method in METHODS:
        try:
            found = get_method(method)
        except ValueError:
            found = None
        if found is not None and hasattr(found, "load"):
            return found
    return LoraMethod()  # peft's own PeftModel.from_pretrained, which reads the type from adapter_config.json


def load_model(auto_class: str, folder: str | Path, *, merge: bool = True, **kwargs: Any) -> Any:
    """`transformers.<auto_class>.from_pretrained(folder, **kwargs)`, or for an adapter folder the base model with
    the adapter attached: merged into the weights (`merge=True`, the fast choice for inference) when the method
    can merge, else the `PeftModel`. This is the one loader the tasks and the predictors go through."""
    if not is_adapter_folder(folder):
        transformers = require("transformers", extra="hf")
        return getattr(transformers, auto_class).from_pretrained(str(folder), **kwargs)
    model = load_adapter(folder, auto_class=auto_class, **kwargs)
    if merge and adapter_info(folder).can_merge and hasattr(model, "merge_and_unload"):
        return merge_and_unload(model)
    return model


def _trained_copy(module: Any) -> Any:
    """The active adapter's trained copy inside a (possibly nested) peft `ModulesToSaveWrapper`."""
    from peft.utils import ModulesToSaveWrapper

    while isinstance(module, ModulesToSaveWrapper):
        active = module.active_adapter
        module = module.modules_to_save[active[0] if isinstance(active, list | tuple) else active]
    return module


def merge_and_unload(model: Any) -> Any:
    """`model.merge_and_unload()`, keeping the trained task heads (`modules_to_save`).

    peft 0.21 lists `qa_outputs` twice in a question-answering adapter's `modules_to_save`, wraps the head twice,
    and its `merge_and_unload` then puts back the untrained head; so the trained copies are taken out first and
    put back into the merged model.
    """
    from peft.utils import ModulesToSaveWrapper

    heads: dict[str, Any] = {}
    for name, module in model.get_base_model().named_modules():
        if isinstance(module, ModulesToSaveWrapper) and not any(name.startswith(h + ".") for h in heads):
            heads[name] = _trained_copy(module)
    merged = model.merge_and_unload()
    for name, head in heads.items():
        parent_name, _, attr = name.rpartition(".")
        parent = merged.get_submodule(parent_name) if parent_name else merged
        setattr(parent, attr, head)
    return merged


def merge(folder: str | Path, out_dir: str | Path, *, base: str | Path | None = None) -> Path:
    """Merge the adapter into its base weights and save a plain transformers folder (no peft needed to load it),
    with the tokenizer and yulian's task files copied along; returns `out_dir`."""
    transformers = require("transformers", extra="hf")
    root, out = Path(folder).expanduser(), Path(out_dir)
    info = adapter_info(root)
    if not info.can_merge:
        raise ValueError(f"{folder}: a {info.method} adapter cannot be merged into the base weights")
    model = merge_and_unload(load_adapter(root, base))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer_from = root if (root / "tokenizer_config.json").exists() else Path(base_of(root, base))
    transformers.AutoTokenizer.from_pretrained(str(tokenizer_from)).save_pretrained(str(out))
    for name in _COPIED:
        if (root / name).is_file():
            shutil.copy2(root / name, out / name)
    return out


class AdapterModel(Runnable[Any, Any]):
    """One base model, several adapters, switched per call.

    `add_adapter(name, folder)` loads an adapter (the first one also loads the base model it records, unless
    `base` was given); `use_adapter(name)` switches to it, either until further notice (a plain call) or for a
    block (`with model.use_adapter("b"): ...`, restoring the previous one afterwards). All adapters must share the
    base model and, for heads, the head's shape (same number of labels). `invoke(text)` classifies with the
    active adapter (sequence-classification adapters) and returns a `Prediction`.
    """

    def __init__(self, base: str | Path | None = None, *, auto_class: str | None = None, max_length: int = 256):
        self.base = base
        self.auto_class = auto_class
        self.max_length = max_length
        self.model: Any = None
        self.tokenizer: Any = None
        self._infos: dict[str, AdapterInfo] = {}
        self._active: str | None = None

    def __repr__(self) -> str:
        return f"AdapterModel(adapters={list(self._infos)}, active={self._active!r})"

    @property
    def adapters(self) -> dict[str, AdapterInfo]:
        """Name -> metadata (task, labels, metrics...) of every loaded adapter."""
        return dict(self._infos)

    @property
    def active(self) -> str | None:
        """The adapter the next call uses."""
        return self._active

    def add_adapter(self, name: str, folder: str | Path) -> AdapterModel:
        """Load the adapter in `folder` under `name` (the first becomes active); returns self."""
        if name in self._infos:
            raise ValueError(f"an adapter named {name!r} is already loaded (adapters: {', '.join(self._infos)})")
        info = adapter_info(folder)
        if self.model is None:
            transformers = require("transformers", extra="hf")
            self.auto_class = self.auto_class or auto_class_of(folder)
            self.model = load_adapter(folder, self.base, auto_class=self.auto_class, adapter_name=name)
            source = folder if (Path(folder) / "tokenizer_config.json").exists() else base_of(folder, self.base)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))
            self.model.eval()
            self._active = name
        else:
            first = next(iter(self._infos.values()))
            if info.labels is not None and first.labels is not None and len(info.labels) != len(first.labels):
                raise ValueError(
                    f"adapter {name!r} has {len(info.labels)} labels but the loaded ones have {len(first.labels)}: "
                    "adapters on one AdapterModel must share the head's shape"
                )
            with warnings.catch_warnings():  # peft 0.21 warns wrongly about AdaLoRA rank_pattern keys on reload
                warnings.filterwarnings("ignore", message="The following rank_pattern keys", category=RuntimeWarning)
                _register_own_tuners(Path(folder).expanduser())
                self.model.load_adapter(str(folder), adapter_name=name)
            self.model.set_adapter(self._active)
            self.model.eval()
        self._infos[name] = info
        return self

    def use_adapter(self, name: str) -> _Switch:
        """Make `name` the active adapter now; as a context manager, restore the previous one on exit."""
        if name not in self._infos:
            raise ValueError(f"no adapter named {name!r} (adapters: {', '.join(self._infos) or 'none loaded'})")
        previous = self._active
        self._set(name)
        return _Switch(self, previous)

    def _set(self, name: str | None) -> None:
        if name is not None and name != self._active:
            self.model.set_adapter(name)
            self.model.eval()
        self._active = name

    def __call__(self, **batch: Any) -> Any:
        """The active adapter's forward pass on a batch of tensors."""
        return self.model(**batch)

    @contextmanager
    def _no_grad(self) -> Iterator[Any]:
        torch = require("torch", extra="hf")
        with torch.inference_mode():
            yield torch

    def invoke(self, input: Any, config: Any = None) -> Any:
        """Classify one text with the active adapter: a `Prediction` (label, score, scores)."""
        return self.classify([input])[0]

    def classify(self, texts: list[str]) -> list[Any]:
        """Classify texts with the active adapter (a sequence-classification adapter)."""
        from yulian.models.predictions import Prediction

        if self.model is None or self._active is None:
            raise RuntimeError("no adapter loaded: call add_adapter(name, folder) first")
        info = self._infos[self._active]
        if info.task_type != "SEQ_CLS":
            raise ValueError(f"adapter {self._active!r} is a {info.task_type} adapter, not a text classifier")
        labels = info.labels or [str(i) for i in range(self.model.config.num_labels)]
        with self._no_grad() as torch:
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            probs = torch.softmax(self.model(**enc).logits.float(), dim=-1).tolist()
        out = []
        for row in probs:
            scores = dict(sorted(zip(labels, row, strict=True), key=lambda kv: -kv[1]))
            best = next(iter(scores))
            out.append(Prediction(label=best, score=scores[best], scores=scores, labels=(best,)))
        return out


class _Switch:
    """What `use_adapter` returns: the switch is already made; as a context manager it is undone on exit."""

    def __init__(self, owner: AdapterModel, previous: str | None) -> None:
        self._owner, self._previous = owner, previous

    def __enter__(self) -> AdapterModel:
        return self._owner

    def __exit__(self, *exc: object) -> None:
        self._owner._set(self._previous)


def adapters_command(
    action: str, folder: str, out: str | None = None, base: str | None = None, json: bool = False
) -> int:
    """Inspect or merge adapter folders written by `yulian train --method lora|adalora|ia3|prefix|adapter`.

    Actions: `info FOLDER` (method, task, labels, base model, options, metrics, size); `list FOLDER` (every
    adapter folder under FOLDER); `merge FOLDER --out DIR` (fold the adapter into its base model and save a plain
    transformers folder for deployment).

    Args:
        action: info, list or merge.
        folder: the adapter folder (for list: a folder to search).
        out: where merge writes the merged model.
        base: the base model (path or registered name) when the recorded one moved.
        json: print JSON.
    """
    import json as _json

    if action == "info":
        info = adapter_info(folder)
        data = info.to_dict()
        if json:
            print(_json.dumps(data, ensure_ascii=False, default=str))
        else:
            for key, value in data.items():
                print(f"{key}: {value}")
        return 0
    if action == "list":
        found = sorted({p.parent for p in Path(folder).rglob(PEFT_CONFIG)})
        rows = [adapter_info(p) for p in found]
        for row in rows:
            if json:
                print(_json.dumps(row.to_dict(), ensure_ascii=False, default=str))
            else:
                print(f"{row.folder}\t{row.method}\t{row.task}\t{row.size_bytes / 1e6:.2f} MB\t{row.metrics}")
        if not rows and not json:
            print(f"no adapter folders under {folder}")
        return 0
    if action == "merge":
        if not out:
            raise ValueError("adapters merge needs --out DIR")
        print(str(merge(folder, out, base=base)))
        return 0
    raise ValueError(f"unknown action {action!r} (actions: info, list, merge)")
