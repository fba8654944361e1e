"""The server's configuration: dataclasses validated in one place, read from YAML with errors naming file and field.

```yaml
# serve.yaml
models:
  - name: support-bot          # the `model` clients send
    source: smollm2-135m-instruct   # anything yulian.models.registry.load accepts: a name, a folder, a .gguf
    task: chat                 # chat | embed | classify | ner | qa (default: from the model's kind)
    options: {max_tokens: 128} # passed to the backend's constructor
    batch: {max_batch: 8, max_wait_ms: 10}
  - name: minilm
    source: minilm-l6
  - name: intent
    source: models/intent      # a `yulian train` output folder, or a compressed artefact
  - name: intent-zh
    source: runs/intent-zh-lora  # LoRA classifiers of one base model share it in memory (serving/adapters.py)
chains:
  - name: faq
    factory: myapp.chains:build_faq_chain   # "module:attr": a Runnable, or a callable returning one
keys:
  - id: alice
    sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
    models: ["*"]              # or a list of model / chain names
    rate_per_minute: 600
    burst: 60
    max_concurrency: 16
limits: {max_request_bytes: 1048576, max_input_tokens: 8192, max_output_tokens: 1024, max_items: 256}
audit_log: logs/audit.jsonl
```

`load_config(path)` reads and validates such a file; `ServeConfig(...)` builds the same thing in Python, where a
model entry may also hold a ready object (`ModelConfig(name="bot", model=FakeChatModel())`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from yulian.serving.apps import AppConfig

__all__ = [
    "TASKS",
    "BatchConfig",
    "ChainConfig",
    "ConfigError",
    "KeyConfig",
    "LimitsConfig",
    "ModelConfig",
    "ServeConfig",
    "config_from_dict",
    "load_config",
]

TASKS = ("chat", "embed", "classify", "ner", "qa")
"""What a served model does; it decides the routes that accept it."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ConfigError(ValueError):
    """The server configuration is invalid: the message names the file and the field (`serve.yaml: keys[0].id`)."""


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _int(where: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(where, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _num(where: str, value: object, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise _fail(where, f"must be a number >= {minimum}, got {value!r}")
    return float(value)


# ============================================================================================ parts
@dataclass(frozen=True)
class BatchConfig:
    """Dynamic micro-batching of one model: requests arriving together share one forward pass.

    Attributes:
        max_batch: the most items in one call of the model (1 turns batching off).
        max_wait_ms: how long a batch waits for the next item to join; each arrival extends the wait, up to 8x
            this in all (skipped when the previous batch was a single item: a lone request at low load does not
            wait).
        max_queue: the most items waiting; beyond it requests get 503 with `retry-after` (back-pressure).
        parallel: batches of this model in flight at once, each in its own thread (1: one at a time; 0: auto, 2 for
            local transformers encoders (embed, classify, ner, qa) on a CPU with 2 or more cores, else 1: their one
            call leaves cores idle while Python dispatches its kernels; measured 1.27x the req/s of one at a time).
        threads: torch threads each batch call uses (0: torch's default when one batch runs at a time, else the
            CPU's cores shared out: `cores // parallel`, at least 1).
    """

    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 4096
    parallel: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        _int("max_batch", self.max_batch, 1)
        _num("max_wait_ms", self.max_wait_ms, 0.0)
        _int("max_queue", self.max_queue, 1)
        _int("parallel", self.parallel, 0)
        _int("threads", self.threads, 0)


@dataclass(frozen=True)
class ModelConfig:
    """One served model: a name clients use, and where it comes from.

    Attributes:
        name: the `model` field of requests (letters, digits, `.`, `_`, `-`, `:`, `/`).
        source: what `yulian.models.registry.load` builds it from (registered name, folder, `.gguf`, `openai:M`).
        factory: instead of `source`, `"module:attr"`: an object, or a callable returning one (called with
            `options`).
        model: instead of either, the object itself (Python configs only).
        task: chat, embed, classify, ner or qa; None: read from the model (its kind, or what the object is).
        options: keyword arguments for the backend's constructor (or the factory).
        batch: micro-batching settings.
        warm_up: load the weights at start-up (readiness waits for it); False loads on the first request.
    """

    name: str
    source: str | None = None
    factory: str | None = None
    model: Any = field(default=None, repr=False, compare=False)
    task: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    batch: BatchConfig = field(default_factory=BatchConfig)
    warm_up: bool = True

    def __post_init__(self) -> None:
        _check_name("name", self.name)
        given = [n for n in ("source", "factory", "model") if getattr(self, n) is not None]
        if len(given) != 1:
            raise _fail("source", f"give exactly one of source, factory or model (got {', '.join(given) or 'none'})")
        if self.factory is not None:
            _check_import_path("factory", self.factory)
        if self.task is not None and self.task not in TASKS:
            raise _fail("task", f"must be one of {', '.join(TASKS)}, got {self.task!r}{_hint(self.task, TASKS)}")
        if not isinstance(self.options, Mapping):
            raise _fail("options", f"must be a mapping of constructor options, got {self.options!r:.80}")


@dataclass(frozen=True)
class ChainConfig:
    """One served chain (any Runnable), reachable at `/v1/chains/{name}/invoke|batch|stream`.

    Attributes:
        name: the chain's name in URLs and key scopes.
        factory: `"module:attr"`: a Runnable, or a callable returning one (called with `options`).
        runnable: instead of `factory`, the Runnable itself (Python configs only).
        options: keyword arguments for the factory.
        timeout_s: seconds one call may take (RunConfig timeout); None: no limit.
    """

    name: str
    factory: str | None = None
    runnable: Any = field(default=None, repr=False, compare=False)
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        _check_name("name", self.name)
        if (self.factory is None) == (self.runnable is None):
            raise _fail("factory", "give exactly one of factory ('module:attr') or runnable")
        if self.factory is not None:
            _check_import_path("factory", self.factory)
        if self.timeout_s is not None:
            _num("timeout_s", self.timeout_s, 0.001)


@dataclass(frozen=True)
class KeyConfig:
    """One API key, stored hashed: the key itself never appears in the configuration.

    Attributes:
        id: who the key belongs to; written to the audit log and metrics (never the key).
        sha256: hex sha256 of the key (`yulian serve --new-key ID` prints a key and its hash).
        scrypt: instead of sha256, `"scrypt$n$r$p$salt_hex$hash_hex"` (slow to brute-force; checked once per key
            and process, then cached by its sha256).
        models: the model and chain names the key may use; `["*"]` for all. Empty: none (deny by default).
        rate_per_minute: requests per minute (token bucket); None: the limits' default.
        burst: the bucket's size (requests allowed at once after a quiet period); None: the limits' default.
        max_concurrency: requests in flight at once; None: the limits' default.
        metrics: the key may read `/metrics`.
    """

    id: str
    sha256: str | None = None
    scrypt: str | None = field(default=None, repr=False)
    models: Sequence[str] = ()
    rate_per_minute: float | None = None
    burst: int | None = None
    max_concurrency: int | None = None
    metrics: bool = False

    def __post_init__(self) -> None:
        _check_name("id", self.id)
        if (self.sha256 is None) == (self.scrypt is None):
            raise _fail("sha256", "give exactly one of sha256 or scrypt (the hash of the key, never the key)")
        if self.sha256 is not None and not _HEX64.fullmatch(self.sha256):
            raise _fail("sha256", "must be 64 lowercase hex digits (hashlib.sha256(key.encode()).hexdigest())")
        if self.scrypt is not None and len(self.scrypt.split("$")) != 6:
            raise _fail("scrypt", "must be 'scrypt$n$r$p$salt_hex$hash_hex' (see yulian.serving.hash_key)")
        if isinstance(self.models, str) or not all(isinstance(m, str) for m in self.models):
            raise _fail("models", f"must be a list of model names or ['*'], got {self.models!r}")
        object.__setattr__(self, "models", tuple(self.models))
        if self.rate_per_minute is not None:
            _num("rate_per_minute", self.rate_per_minute, 0.001)
        if self.burst is not None:
            _int("burst", self.burst, 1)
        if self.max_concurrency is not None:
            _int("max_concurrency", self.max_concurrency, 1)


@dataclass(frozen=True)
class LimitsConfig:
    """Request limits, and the per-key defaults.

    Attributes:
        max_request_bytes: the largest request body; larger ones get 413.
        max_input_tokens: the most (estimated) input tokens of one request; more gets 400.
        max_output_tokens: the largest `max_tokens` a request may ask for; more gets 400.
        max_items: the most inputs in one embeddings / classify / ner / qa / chain batch request.
        rate_per_minute: default requests per minute of a key.
        burst: default bucket size of a key.
        max_concurrency: default requests in flight per key.
        request_timeout_s: seconds a model call may take before the request fails with 504.
    """

    max_request_bytes: int = 1 << 20
    max_input_tokens: int = 8192
    max_output_tokens: int = 2048
    max_items: int = 256
    rate_per_minute: float = 6000.0
    burst: int = 200
    max_concurrency: int = 64
    request_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("float",):
                _num(f.name, value, 0.001)
            else:
                _int(f.name, value, 1)


# ============================================================================================ whole config
@dataclass(frozen=True)
class ServeConfig:
    """Everything `create_app` needs.

    Attributes:
        models: the served models.
        chains: the served chains.
        keys: the API keys; with none, every request but `/healthz` and `/readyz` gets 401 (deny by default).
        limits: request limits and per-key defaults.
        audit_log: a JSONL file that receives one line per request (None: no audit log).
        host: the address `yulian serve` binds (127.0.0.1 unless you mean to expose it).
        port: the port `yulian serve` listens on.
        workers: uvicorn worker processes (each loads the models; limits and metrics are per process).
        drain_timeout_s: on SIGTERM, seconds to let in-flight requests finish before closing.
        public_docs: serve `/docs` and `/openapi.json` without a key.
        apps: the applications whose pages and APIs are served under `/apps/<name>/` (`yulian.serving.apps`).
        source: the file the configuration was read from (for error messages).
    """

    models: Sequence[ModelConfig] = ()
    chains: Sequence[ChainConfig] = ()
    keys: Sequence[KeyConfig] = ()
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    audit_log: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    drain_timeout_s: float = 30.0
    public_docs: bool = False
    apps: Sequence[AppConfig] = ()
    source: str = "<python>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "apps", tuple(self.apps))
        if len({a.name for a in self.apps}) != len(self.apps):
            raise _fail(f"{self.source}: apps", "an app is listed twice")
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "chains", tuple(self.chains))
        object.__setattr__(self, "keys", tuple(self.keys))
        seen: dict[str, str] = {}
        named: tuple[tuple[str, Sequence[ModelConfig | ChainConfig]], ...] = (
            ("models", self.models),
            ("chains", self.chains),
        )
        for kind, items in named:
            for i, item in enumerate(items):
                if item.name in seen:
                    raise _fail(
                        f"{self.source}: {kind}[{i}].name", f"{item.name!r} is already used by a {seen[item.name]}"
                    )
                seen[item.name] = kind[:-1]
        ids: set[str] = set()
        for i, key in enumerate(self.keys):
            if key.id in ids:
                raise _fail(f"{self.source}: keys[{i}].id", f"{key.id!r} is used twice")
            ids.add(key.id)
            for name in key.models:
                if name != "*" and name not in seen:
                    raise _fail(
                        f"{self.source}: keys[{i}].models",
                        f"unknown model or chain {name!r} (served: {', '.join(sorted(seen)) or 'none'})"
                        f"{_hint(name, list(seen))}",
                    )
        _int("port", self.port, 0)
        _int("workers", self.workers, 1)
        _num("drain_timeout_s", self.drain_timeout_s, 0.0)


# ============================================================================================ YAML
def load_config(path: str | Path) -> ServeConfig:
    """Read and validate a YAML server configuration; every error names the file and the field."""
    import yaml  # type: ignore[import-untyped]  # pyyaml: part of the serve extra

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the server configuration {where}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    return config_from_dict(data, source=where)


def config_from_dict(data: object, *, source: str = "<dict>") -> ServeConfig:
    """A `ServeConfig` from plain data (parsed YAML or JSON); errors name `source` and the field."""
    top = _mapping(source, data, ServeConfig)
    models = [_build(f"{source}: models[{i}]", m, ModelConfig) for i, m in enumerate(_list(source, top, "models"))]
    chains = [_build(f"{source}: chains[{i}]", c, ChainConfig) for i, c in enumerate(_list(source, top, "chains"))]
    keys = [_build(f"{source}: keys[{i}]", k, KeyConfig) for i, k in enumerate(_list(source, top, "keys"))]
    apps = [_build(f"{source}: apps[{i}]", a, AppConfig) for i, a in enumerate(_list(source, top, "apps"))]
    limits = _build(f"{source}: limits", top.get("limits") or {}, LimitsConfig)
    rest = {k: v for k, v in top.items() if k not in ("models", "chains", "keys", "limits", "apps")}
    config: ServeConfig = _build(
        source,
        {**rest, "models": models, "chains": chains, "keys": keys, "limits": limits, "apps": apps, "source": source},
        ServeConfig,
        prefix=False,
    )
    return config


def _mapping(where: str, data: object, cls: type) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(data).__name__}")
    return data


def _list(source: str, top: Mapping[str, Any], name: str) -> list[Any]:
    value = top.get(name) or []
    if not isinstance(value, list):
        raise ConfigError(f"{source}: {name} must be a list, got {type(value).__name__}")
    return value


def _build(where: str, data: object, cls: type, *, prefix: bool = True) -> Any:
    """`cls(**data)` with unknown fields and validation errors reported at `where`."""
    mapping = _mapping(where, data, cls)
    known = [f.name for f in fields(cls) if f.name not in ("model", "runnable")]
    for name in mapping:
        if name not in known:
            raise ConfigError(f"{where}: unknown field {name!r} (fields: {', '.join(known)}){_hint(str(name), known)}")
    values = dict(mapping)
    if cls is ModelConfig and isinstance(values.get("batch"), Mapping):
        values["batch"] = _build(f"{where}.batch", values["batch"], BatchConfig)
    try:
        return cls(**values)
    except ConfigError as e:
        message = str(e)
        if prefix and not message.startswith(where):
            message = f"{where}.{message}"
        raise ConfigError(message) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _check_name(where: str, name: object) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(where, f"must be letters, digits, '.', '_', '-', ':' or '/' (1-128), got {name!r}")


def _check_import_path(where: str, value: object) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[\w.]+:[\w.]+", value):
        raise _fail(where, f"must be 'package.module:attribute', got {value!r}")


def _hint(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""
