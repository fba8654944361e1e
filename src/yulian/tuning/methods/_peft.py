"""What the `peft`-backed methods (`lora`, `adalora`, `ia3`) share: option checking, wrapping the model with the
right task type (so the task head trains and is saved through `modules_to_save`), saving the standard PEFT folder
plus `yulian_adapter.json`, and loading an adapter folder back onto its base model.

A method subclasses `PeftMethod`, declares its options in `OPTIONS` (name -> `Option`) and builds its peft config in
`peft_config`; everything else (validation, QLoRA-style quantised loading, saving, loading) is here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from yulian._optional import require
from yulian.tuning.methods.base import Method

__all__ = [
    "ADAPTER_FILE",
    "Option",
    "PeftMethod",
    "QuantizeUnavailableError",
    "head_config",
    "peft_task_type",
    "split_modules",
]

ADAPTER_FILE = "yulian_adapter.json"
"""yulian's metadata next to adapter_config.json: method, options, task, labels, base model, head config."""

_TASK_TYPES = {
    "classification": "SEQ_CLS",
    "ner": "TOKEN_CLS",
    "qa": "QUESTION_ANS",
    "sft": "CAUSAL_LM",
}
_CLASS_SUFFIXES = {
    "ForSequenceClassification": "SEQ_CLS",
    "ForTokenClassification": "TOKEN_CLS",
    "ForQuestionAnswering": "QUESTION_ANS",
    "ForCausalLM": "CAUSAL_LM",
}
_HEAD_KEYS = ("id2label", "label2id", "problem_type", "pad_token_id")


@dataclass(frozen=True)
class Option:
    """One method option: its kind ("int", "float", "bool", "str", "modules" or "choice"), default and help."""

    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def check(self, method: str, name: str, value: Any) -> Any:
        """`value` converted to this option's kind (strings from the CLI are parsed); ValueError when bad."""
        bad = f"{method} option {name} must be "
        if self.kind == "bool":
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
                return value.lower() in ("1", "true", "yes")
            if not isinstance(value, bool):
                raise ValueError(f"{bad}true or false, got {value!r}")
            return value
        if self.kind in ("int", "float"):
            if self.default is None and (value is None or value == "auto"):
                return None  # a number chosen per model when left unset
            number: Any = value
            if isinstance(value, str):
                try:
                    number = int(value) if self.kind == "int" else float(value)
                except ValueError:
                    raise ValueError(f"{bad}a number, got {value!r}") from None
            ok = isinstance(number, int) or (self.kind == "float" and isinstance(number, float))
            if isinstance(number, bool) or not ok:
                raise ValueError(f"{bad}{'a whole number' if self.kind == 'int' else 'a number'}, got {value!r}")
            if (self.minimum is not None and number < self.minimum) or (
                self.maximum is not None and number > self.maximum
            ):
                raise ValueError(f"{bad}in [{self.minimum}, {self.maximum}], got {value!r}")
            return number
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{bad}one of {', '.join(self.choices)}, got {value!r}")
            return value
        if self.kind == "modules":
            modules = split_modules(value)
            if modules is not None and not modules:
                raise ValueError(f"{bad}module names (e.g. query,value) or all-linear, got {value!r}")
            return modules
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{bad}a string, got {value!r}")
        return value


def split_modules(value: Any) -> list[str] | str | None:
    """`"query,value"` or `["query", "value"]` -> a list of names; `"all-linear"` and None pass through."""
    if value is None or value in ("auto", ""):
        return None
    if value == "all-linear":
        return "all-linear"
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def peft_task_type(task: Any, model: Any) -> str:
    """peft's task type for a yulian task (or, without one, for the model's class): SEQ_CLS, TOKEN_CLS..."""
    name = getattr(task, "name", None)
    if name in _TASK_TYPES:
        return _TASK_TYPES[name]
    cls = type(model).__name__
    for suffix, kind in _CLASS_SUFFIXES.items():
        if cls.endswith(suffix):
            return kind
    return "FEATURE_EXTRACTION"


def head_config(model: Any) -> dict[str, Any]:
    """The config fields a task head needs to be rebuilt on the base model (labels, problem type, pad id)."""
    config = getattr(model, "config", None)
    out: dict[str, Any] = {}
    for key in _HEAD_KEYS:
        value = getattr(config, key, None)
        if value is not None:
            out[key] = {str(k): v for k, v in value.items()} if isinstance(value, dict) else value
    if "id2label" in out:
        out["id2label"] = {int(k): v for k, v in out["id2label"].items()}
    return out


def _base_path(model: Any) -> str:
    """The folder the base model was loaded from (absolute when it is a local folder)."""
    name = str(getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", ""))
    path = Path(name).expanduser()
    return str(path.resolve()) if name and path.exists() else name


def registered_name(folder: str) -> str | None:
    """The registered model name (e.g. "minilm-l6") whose local folder is `folder`, if any: recorded next to the
    path so that an adapter still finds its base when the package moves (another venv, another machine)."""
    from yulian.models.gguf import conversion_folder
    from yulian.models.registry import model_names, resolve

    if not folder or not Path(folder).exists():
        return None
    target = Path(folder).resolve()
    for name in model_names():
        try:
            resolved = resolve(name)
        except Exception:  # a registered model that is not installed here is simply not a match
            continue
        if resolved.source in ("hub", "openai"):
            continue
        local = conversion_folder(resolved.gguf_path) if resolved.gguf_path is not None else Path(resolved.path)
        if local.resolve() == target:
            return name
    return None


class PeftMethod(Method):
    """A fine-tuning method backed by `peft`: wraps the model in a `PeftModel` and saves an adapter folder."""

    OPTIONS: ClassVar[dict[str, Option]] = {}
    default_lr: ClassVar[float] = 3e-3
    """The learning rate `yulian train` uses for this method when none is given (adapters want far more than full
    fine-tuning's 5e-5: LoRA on MiniLM/SST-2 did not move its loss in 63 steps at 5e-4, and learned at 3e-3)."""
    can_merge: ClassVar[bool] = True
    """Whether the adapter folds into the base weights (`merge_and_unload`) for deployment."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}
        self.base_path = ""

    @classmethod
    def describe(cls) -> str:
        """One line per option: `name (kind, default X): help`."""
        lines = []
        for name, opt in cls.OPTIONS.items():
            kind = "|".join(opt.choices) if opt.kind == "choice" else opt.kind
            lines.append(f"{name} ({kind}, default {opt.default!r}): {opt.help}")
        return "; ".join(lines)

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Unknown names and bad values are errors naming the option and what is allowed; quantize needs CUDA."""
        resolved = self.resolve_options(options)
        if resolved.get("quantize"):
            _check_quantize(resolved["quantize"])

    def normalize_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The given options checked and converted (CLI strings -> numbers, lists...), without the defaults."""
        resolved = self.resolve_options(options)
        return {name: resolved[name] for name in options}

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every option with its default filled in and its value checked and converted."""
        allowed = {**self.OPTIONS, **_COMMON}
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown {self.name} option(s) {', '.join(unknown)} (options: {', '.join(allowed)}).{hint}"
            )
        resolved = {name: opt.default for name, opt in allowed.items()}
        for name, value in options.items():
            resolved[name] = allowed[name].check(self.name, name, value)
        self._check_together(resolved)
        return resolved

    def _check_together(self, options: Mapping[str, Any]) -> None:
        """Checks across options (override when some combinations are invalid)."""

    def peft_config(self, options: Mapping[str, Any], task_type: str, model: Any) -> Any:
        """The peft config for these (checked) options."""
        raise NotImplementedError

    def apply(self, model: Any, task: Any, options: Mapping[str, Any]) -> Any:
        """Wrap `model` with the adapter; the task head (classifier / score / qa_outputs) trains and is saved."""
        peft = require("peft", extra="tune", purpose=f"the {self.name} method")
        resolved = self.resolve_options(options)
        self.options = resolved
        self.base_path = _base_path(model)
        if resolved.get("quantize"):
            model = _prepare_quantized(model, resolved["quantize"])
        task_type = peft_task_type(task, model)
        if task_type == "SEQ_CLS" and getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = getattr(model.config, "eos_token_id", None) or 0
        config = self.peft_config(resolved, task_type, model)
        config.base_model_name_or_path = self.base_path
        if task_type == "QUESTION_ANS":
            # peft 0.21's PeftModelForQuestionAnswering drops token_type_ids (and lists qa_outputs twice): use the
            # generic PeftModel, which passes every input through, and save the span head explicitly.
            config.task_type = None
            config.modules_to_save = sorted({*(config.modules_to_save or ()), "qa_outputs"})
        self.task_type = task_type
        wrapped = peft.get_peft_model(model, config)
        self.task_name = getattr(task, "name", None)
        self.task_state = task.state() if task is not None and hasattr(task, "state") else {}
        return wrapped

    def save(self, model: Any, out_dir: str | Path) -> None:
        """adapter_config.json + adapter_model.safetensors (with the trained head) and yulian_adapter.json."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for config in getattr(model, "peft_config", {}).values():
            if self.base_path:
                config.base_model_name_or_path = self.base_path
        model.save_pretrained(str(out))
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        meta = {
            "format": 1,
            "method": self.name,
            "options": {k: v for k, v in self.options.items() if k in self.OPTIONS or v},
            "task": getattr(self, "task_name", None),
            "labels": _labels(base),
            "base_model": self.base_path,
            "base_name": registered_name(self.base_path),
            "model_class": type(base).__name__,
            "task_type": getattr(self, "task_type", None),
            "head_config": {k: v for k, v in head_config(base).items()},
            "can_merge": self.can_merge,
        }
        tmp = out / (ADAPTER_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        tmp.replace(out / ADAPTER_FILE)

    def load(
        self, base_model: Any, folder: str | Path, *, adapter_name: str = "default", trainable: bool = False
    ) -> Any:
        """Load the adapter in `folder` onto `base_model` (a `PeftModel`)."""
        import warnings

        peft = require("peft", extra="tune", purpose="loading adapters")
        with warnings.catch_warnings():  # peft 0.21 warns wrongly about AdaLoRA's rank_pattern keys when reloading
            warnings.filterwarnings("ignore", message="The following rank_pattern keys", category=RuntimeWarning)
            return peft.PeftModel.from_pretrained(
                base_model, str(folder), adapter_name=adapter_name, is_trainable=trainable
            )


def _labels(model: Any) -> list[str] | None:
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if not id2label:
        return None
    return [str(id2label[i]) for i in sorted(int(k) for k in id2label)] if id2label else None


_COMMON: dict[str, Option] = {
    "quantize": Option(
        "choice", None, "load the base model quantised (QLoRA-style; CUDA + bitsandbytes)", choices=("4bit", "8bit")
    ),
}


class QuantizeUnavailableError(ValueError):
    """QLoRA-style training was asked for where it cannot run (no CUDA device, or no bitsandbytes)."""


def _check_quantize(bits: str) -> None:
    """Stop with a clear message when a quantised base cannot be trained here."""
    torch = require("torch", extra="hf")
    if not torch.cuda.is_available():
        raise QuantizeUnavailableError(
            f"quantize={bits} (QLoRA-style training on a quantised base) needs a CUDA GPU with bitsandbytes; "
            "this machine has none. Train without quantize (plain LoRA) on the CPU."
        )
    try:
        import bitsandbytes  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        raise QuantizeUnavailableError(f"quantize={bits} needs bitsandbytes: pip install bitsandbytes") from None


def _prepare_quantized(model: Any, bits: str) -> Any:
    """QLoRA-style: reload the base model quantised with bitsandbytes (NF4 with double quantisation, bf16 compute;
    or int8) and prepare it for k-bit training. Needs CUDA; stops with a clear message elsewhere."""
    torch = require("torch", extra="hf")
    _check_quantize(bits)
    transformers = require("transformers", extra="hf")
    peft = require("peft", extra="tune")
    if bits == "4bit":
        quant = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    else:
        quant = transformers.BitsAndBytesConfig(load_in_8bit=True)
    path = _base_path(model)
    head = head_config(model)
    quantized = type(model).from_pretrained(path, quantization_config=quant, device_map={"": 0}, **head)
    return peft.prepare_model_for_kbit_training(quantized)
