"""`create_app(config)`: the FastAPI app that serves models, task predictors and chains.

    from yulian.serving import ServeConfig, ModelConfig, KeyConfig, create_app, hash_key
    app = create_app(ServeConfig(models=[ModelConfig(name="bot", source="smollm2-135m-instruct")],
                                 keys=[KeyConfig(id="me", sha256=hash_key("yl-secret"), models=["*"])]))
    # uvicorn.run(app, host="127.0.0.1", port=8000)   or   yulian serve --config serve.yaml

Every request passes one gate (a plain ASGI middleware, cheap): `/healthz` and `/readyz` are open; everything
else needs a valid API key (401 otherwise, also for unknown paths: deny by default), fits the size limit (413)
and the key's rate and concurrency limits (429 with `retry-after`). The gate counts the request in the metrics
and writes its audit line once the response is sent. Routes live in `routes_openai.py` and `routes_tasks.py`.

A model entry is a name and anything `yulian.models.registry.load` builds (registered names, fine-tuned folders,
compressed artefacts from `yulian compress`, GGUF files, `openai:MODEL`) or a ready object. Models are built when
the app is created (cheap: no weights), warmed up in the background at start-up (`/readyz` answers 503 until
then), and drained on shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yulian._optional import require

if TYPE_CHECKING:
    from fastapi import FastAPI
from yulian.serving.adapters import AdapterPool
from yulian.serving.apps import add_app_routes, open_app_path
from yulian.serving.audit import AuditLog, audit_masker, mask, set_masker
from yulian.serving.auth import KeyStore, Principal, bearer_token
from yulian.serving.batching import MicroBatcher
from yulian.serving.config import ConfigError, ModelConfig, ServeConfig, load_config
from yulian.serving.errors import APIError, error_body
from yulian.serving.limits import Limiter, Slot, retry_after_header
from yulian.serving.metrics import Metrics

__all__ = ["ServedModel", "ServerState", "create_app", "detect_task"]

log = logging.getLogger("yulian.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
DOC_PATHS = frozenset({"/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"})


# ============================================================================================ served things
def detect_task(obj: Any) -> str | None:
    """The task an object serves, from what it is: chat, embed, classify, ner, qa; None if it cannot tell.

    An object may say it itself with a `task` attribute (e.g. a compressed classifier: `task = "classify"`).
    """
    from yulian.models.base import ChatModel, Embedder
    from yulian.serving.config import TASKS

    declared = getattr(obj, "task", None)
    if isinstance(declared, str) and declared in TASKS:
        return declared

    if isinstance(obj, ChatModel):
        return "chat"
    if isinstance(obj, Embedder):
        return "embed"
    names = {cls.__name__ for cls in type(obj).__mro__}
    for cls_name, task in (("HFClassifier", "classify"), ("HFTokenClassifier", "ner"), ("HFQuestionAnswerer", "qa")):
        if cls_name in names:
            return task
    return None


@dataclass
class ServedModel:
    """One model as the server holds it: its task, the object, and its micro-batcher (None: called directly)."""

    name: str
    task: str
    obj: Any
    config: ModelConfig
    batcher: MicroBatcher[Any, Any] | None = None
    error: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    async def run_batch(self, items: list[Any], group: Any = None) -> list[Any]:
        """Results for `items` through the batcher (or one direct batched call)."""
        if self.batcher is not None:
            return await self.batcher.submit_many(items, group)
        return list(await asyncio.to_thread(_batch_fn(self.obj, self.task), items))


def _batch_fn(obj: Any, task: str) -> Callable[[list[Any]], list[Any]]:
    if task == "embed" and hasattr(obj, "embed_numpy"):  # float32 rows: written exactly and fast (fastjson)

        def embed_rows(items: list[Any]) -> list[Any]:
            return list(obj.embed_numpy(items))

        return embed_rows
    if task == "embed" and hasattr(obj, "embed"):
        embed: Callable[[list[Any]], list[Any]] = obj.embed
        return embed

    def call(items: list[Any]) -> list[Any]:
        return list(obj.batch(items, return_exceptions=True))

    return call


def _default_threads() -> int:
    """torch's intra-op thread count before any batch thread set its own (physical cores by default); 0 while
    torch is not imported (then nothing has changed it either)."""
    global _DEFAULT_THREADS
    with _THREADS_LOCK:
        if _DEFAULT_THREADS is None:
            torch = sys.modules.get("torch")
            if torch is None:
                return 0
            _DEFAULT_THREADS = int(torch.get_num_threads())
        return _DEFAULT_THREADS


_DEFAULT_THREADS: int | None = None
"""Read once, before any batch thread sets its own count: `torch.set_num_threads` also moves the default that
threads starting later pick up, so it is never read back afterwards."""
_THREADS_LOCK = threading.Lock()

AUTO_PARALLEL_TASKS = frozenset({"embed", "classify", "ner"})
"""Tasks `parallel: 0` runs two batches of at once. Not "qa": its predictor switches the shared fast tokenizer's
truncation settings per call, which two threads must not do at once (huggingface/tokenizers#537)."""


def _auto_parallel(obj: Any, task: str) -> int:
    """`parallel: 0`: two batches in flight for a local transformers encoder on a CPU where torch uses 2+ threads,
    else one."""
    from yulian.models.hf_encoder import HFEncoder, _pick_device

    if task not in AUTO_PARALLEL_TASKS or not isinstance(obj, HFEncoder):
        return 1
    torch = require("torch", extra="hf")
    if _default_threads() < 2:
        return 1
    device = _pick_device(torch, str(getattr(obj.options, "device", "cpu")))
    return 2 if device == "cpu" else 1


def _with_threads(fn: Callable[[list[Any]], Any], threads: int, parallel: int) -> Callable[[list[Any]], Any]:
    """`fn` with torch's intra-op threads set for the calling (batch) thread: `threads`, else torch's default shared
    out between `parallel` batches. OpenMP keeps the count per thread, so two batch threads with one torch thread
    each compute two batches side by side; every batcher sets its count (one at a time: the default), so none runs
    with a count another batcher left behind."""

    def call(items: list[Any]) -> Any:
        torch = sys.modules.get("torch")
        if torch is not None:
            want = threads or max(1, _default_threads() // parallel)
            if torch.get_num_threads() != want:
                torch.set_num_threads(want)
        return fn(items)

    return call


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"cannot import {module!r} for factory {path!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"factory {path!r}: {module} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _from_factory(path: str, options: dict[str, Any]) -> Any:
    target = _import(path)
    if isinstance(target, type) or (callable(target) and not hasattr(target, "invoke")):
        return target(**options)
    if options:
        raise ValueError(f"factory {path!r} is an object, not a callable: it takes no options")
    return target


def _load_source(source: str, task: str | None, options: dict[str, Any]) -> Any:
    """`yulian.models.registry.load`: registered names, folders (fine-tuned, or compressed artefacts, which it hands
    to `yulian.compression`), GGUF files, `openai:MODEL`."""
    from yulian.models.registry import load

    return load(source, task=task, **options)


def build_model(entry: ModelConfig, adapters: AdapterPool | None = None) -> ServedModel:
    """The `ServedModel` of a config entry: built (cheaply: weights load at warm-up), its task checked.

    An adapter folder as `source` joins the other adapters of its base model in `adapters` (one base in memory,
    `yulian.serving.adapters`)."""
    options = dict(entry.options)
    if entry.model is not None:
        obj = entry.model
    elif entry.factory is not None:
        obj = _from_factory(entry.factory, options)
    elif entry.source is not None and _is_adapter(entry.source) and entry.task in (None, "classify"):
        from yulian.serving.adapters import adapter_predictor

        obj = adapter_predictor(
            adapters if adapters is not None else AdapterPool(), entry.name, entry.source, **options
        )
    else:
        assert entry.source is not None
        obj = _load_source(entry.source, entry.task, options)
    task = entry.task or detect_task(obj)
    if task is None:
        raise ValueError(
            f"model {entry.name!r}: cannot tell what {type(obj).__name__} does; set task: chat, embed, classify, "
            "ner or qa"
        )
    served = ServedModel(entry.name, task, obj, entry)
    batchable = task != "chat" or type(obj).batch is not _runnable_batch()
    if batchable:
        fn = _batch_fn(obj, task) if task != "chat" else _chat_batch_fn(obj)
        parallel = entry.batch.parallel or _auto_parallel(obj, task)
        served.batcher = MicroBatcher(
            entry.name,
            _with_threads(fn, entry.batch.threads, parallel),
            max_batch=entry.batch.max_batch,
            max_wait_ms=entry.batch.max_wait_ms,
            max_queue=entry.batch.max_queue,
            inline=not getattr(obj, "blocking", True),
            parallel=parallel,
        )
    return served


def _is_adapter(source: str) -> bool:
    from yulian.tuning.adapters import is_adapter_folder

    return is_adapter_folder(source)


def _runnable_batch() -> Any:
    from yulian.core.runnable import Runnable

    return Runnable.batch


def _chat_batch_fn(model: Any) -> Callable[[list[Any]], list[Any]]:
    """Batched generation: every item of a batch has the same options (the batcher's group), bound once."""

    def call(items: list[tuple[dict[str, Any], Any]]) -> list[Any]:
        options = items[0][0]
        bound = model.bind(**options) if options else model
        return list(bound.batch([messages for _, messages in items], return_exceptions=True))

    return call


# ============================================================================================ state
class ServerState:
    """What the routes share: config, keys, limits, metrics, audit log, models and chains, readiness."""

    def __init__(self, config: ServeConfig, *, freeze_gc: bool = False) -> None:
        self.config = config
        self.freeze_gc = freeze_gc
        self.keys = KeyStore(config.keys)
        self.limiter = Limiter(config.limits)
        self.metrics = Metrics()
        self.audit = AuditLog(config.audit_log)
        self.models: dict[str, ServedModel] = {}
        self.adapters = AdapterPool()
        for entry in config.models:
            try:
                self.models[entry.name] = build_model(entry, self.adapters)
            except Exception as e:
                message = str(e) if f"{entry.name!r}" in str(e) else f"model {entry.name!r}: {e}"
                raise ConfigError(f"{config.source}: {message}") from e
        for served in self.models.values():
            if served.batcher is not None:
                name = served.name
                served.batcher.on_batch = lambda size, depth, name=name: self.metrics.observe_batch(name, size, depth)
        self.chains: dict[str, Any] = {}
        for chain in config.chains:
            runnable = (
                chain.runnable
                if chain.runnable is not None
                else _from_factory(chain.factory or "", dict(chain.options))
            )
            if not hasattr(runnable, "ainvoke"):
                raise ValueError(f"{config.source}: chain {chain.name!r}: {type(runnable).__name__} is not a Runnable")
            self.chains[chain.name] = runnable
        self.chain_configs = {c.name: c for c in config.chains}
        self.ready = False
        self.draining = False
        self.loading_errors: dict[str, str] = {}

    def model(self, principal: Principal | None, name: str, task: str) -> ServedModel:
        """The served model `name` for a route of `task`: 404 unknown, 403 out of the key's scope, 400 wrong task."""
        served = self.models.get(name)
        if served is None or principal is None or not principal.allows(name):
            if served is not None and principal is not None:
                raise APIError(
                    403, f"this API key may not use the model {name!r}", code="model_not_allowed", param="model"
                )
            raise APIError(
                404,
                f"the model {name!r} does not exist or you do not have access to it",
                code="model_not_found",
                param="model",
            )
        if served.task != task:
            raise APIError(
                400,
                f"the model {name!r} serves {served.task!r}, not {task!r}: use the route for its task",
                code="wrong_task",
                param="model",
            )
        if served.error is not None:
            raise APIError(503, f"the model {name!r} failed to load", code="model_unavailable")
        if not self.ready and served.config.warm_up:
            raise APIError(503, "the server is still loading its models", code="loading", headers={"retry-after": "2"})
        return served

    async def warm_up(self) -> None:
        """Load every model marked `warm_up` (in worker threads); then the server is ready."""
        self.draining = False
        self.audit.open()
        for served in self.models.values():
            if served.batcher is not None:
                served.batcher.reopen()
        for served in self.models.values():
            warm = getattr(served.obj, "warm_up", None)
            if not served.config.warm_up or warm is None:
                continue
            try:
                await asyncio.to_thread(warm)
            except Exception as e:
                served.error = f"{type(e).__name__}"
                self.loading_errors[served.name] = mask(str(e))
                log.error("model %s failed to load: %s: %s", served.name, type(e).__name__, mask(str(e)))
        if self.freeze_gc:  # a full collection walked every object of the loaded models: ~250 ms stalls
            gc.collect()
            gc.freeze()
        self.ready = not self.loading_errors
        self.metrics.ready.set(1 if self.ready else 0)

    async def drain(self) -> None:
        """Stop being ready, finish queued batches, close the audit log."""
        self.draining = True
        self.ready = False
        self.metrics.ready.set(0)
        await asyncio.gather(
            *(s.batcher.drain(self.config.drain_timeout_s) for s in self.models.values() if s.batcher is not None)
        )
        self.audit.close()


# ============================================================================================ the gate
class Gate:
    """The ASGI middleware in front of every route: auth, size limit, rate limits, metrics, audit."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        st = self.state
        path: str = scope["path"]
        started = time.perf_counter()
        request_id = "req_" + secrets.token_hex(8)
        info: dict[str, Any] = {"request_id": request_id}
        scope.setdefault("state", {})["info"] = info
        status = [0]

        async def send_wrapped(message: Message) -> None:
            if "too_large" in info:  # the body ran over the limit: answer 413, whatever the app made of it
                if status[0] == 0:
                    status[0] = 413
                    await _send_error(send, info["too_large"])
                return
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        if path in OPEN_PATHS or (st.config.public_docs and path in DOC_PATHS) or open_app_path(st.config.apps, path):
            await self.app(scope, receive, send_wrapped)
            return
        principal: Principal | None = None
        slot: Slot | None = None
        try:
            headers = _headers(scope)
            token = bearer_token(headers.get("authorization"), headers.get("x-api-key"))
            principal = st.keys.authenticate(token) if token else None
            if principal is None:
                st.metrics.rejected.labels("auth").inc()
                raise APIError(
                    401,
                    "missing or invalid API key: send 'Authorization: Bearer <key>'",
                    code="invalid_api_key",
                    headers={"www-authenticate": "Bearer"},
                )
            info["key"] = principal.id
            scope["state"]["principal"] = principal
            if path == "/metrics" and not principal.metrics:
                raise APIError(403, "this API key may not read /metrics", code="metrics_not_allowed")
            length = headers.get("content-length")
            limit = st.config.limits.max_request_bytes
            if length is not None and length.isdigit() and int(length) > limit:
                st.metrics.rejected.labels("size").inc()
                raise APIError(
                    413, f"the request body is {int(length):,} bytes; the limit is {limit:,}", code="request_too_large"
                )
            admitted = st.limiter.admit(principal)
            if isinstance(admitted, tuple):
                reason, wait = admitted
                st.metrics.rejected.labels("rate").inc()
                raise APIError(
                    429,
                    reason,
                    code="rate_limit_exceeded",
                    headers={"retry-after": retry_after_header(wait), "retry-after-ms": str(int(wait * 1000))},
                )
            slot = admitted
            st.metrics.in_flight.inc()
            try:
                await self.app(scope, _limited(receive, limit, info), send_wrapped)
            finally:
                st.metrics.in_flight.dec()
        except APIError as e:
            if status[0] == 0:
                await _send_error(send_wrapped, e)
        except Exception as e:
            log.error(
                "request %s failed: %s: %s\n%s",
                request_id,
                type(e).__name__,
                mask(str(e)),
                "".join(traceback.format_tb(e.__traceback__)),
            )
            if status[0] == 0:
                await _send_error(
                    send_wrapped, APIError(500, f"internal error (request {request_id})", code="internal_error")
                )
        finally:
            if slot is not None:
                slot.release()
            self._record(scope, path, principal, info, status[0], started)

    def _record(
        self, scope: Scope, path: str, principal: Principal | None, info: dict[str, Any], status: int, started: float
    ) -> None:
        elapsed = time.perf_counter() - started
        route = _route_template(scope, path)
        model = info.get("model", "")
        st = self.state
        st.metrics.requests.labels(route, model, str(status)).inc()
        st.metrics.latency.labels(route).observe(elapsed)
        record = {
            "request_id": info["request_id"],
            "key": principal.id if principal else None,
            "method": scope.get("method"),
            "route": route,
            "model": model or None,
            "status": status,
            "latency_ms": round(elapsed * 1000, 2),
            "request_bytes": info.get("request_bytes", 0),
        }
        for name in ("items", "input_tokens", "output_tokens", "error_code", "stream"):
            if name in info:
                record[name] = info[name]
        st.audit.write(record)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _route_template(scope: Scope, path: str) -> str:
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    return path if path in OPEN_PATHS or path in DOC_PATHS or path == "/metrics" else "<unmatched>"


def _limited(receive: Receive, limit: int, info: dict[str, Any]) -> Receive:
    """`receive` that counts body bytes and fails with 413 past `limit` (bodies without a content-length)."""
    seen = [0]

    async def wrapped() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            seen[0] += len(message.get("body", b""))
            info["request_bytes"] = seen[0]
            if seen[0] > limit:
                error = APIError(
                    413, f"the request body is over the limit of {limit:,} bytes", code="request_too_large"
                )
                info["too_large"] = error
                raise error
        return message

    return wrapped


async def _send_error(send: Send, error: APIError) -> None:
    body = error.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ============================================================================================ the app
def create_app(config: ServeConfig | str | Path, *, freeze_gc: bool = False) -> Any:
    """The FastAPI app serving `config` (a `ServeConfig` or a YAML file's path). Models are built now (cheaply),
    warmed up when the app starts, and drained when it stops. `freeze_gc` (what `yulian serve` does): once the
    models are loaded, move every object there is out of the garbage collector's sight (`gc.freeze`), so full
    collections stop walking the models' objects (they stalled every in-flight request ~250 ms at 500 req/s).
    Cyclic garbage among the frozen objects is never freed, and models with `warm_up: false` load after the
    freeze (their objects are walked again); leave it off where the process also does other work (tests,
    notebooks)."""
    fastapi = require("fastapi", extra="serve", purpose="yulian serve")
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from yulian.serving.routes_openai import add_openai_routes
    from yulian.serving.routes_tasks import add_task_routes

    cfg = config if isinstance(config, ServeConfig) else load_config(config)
    state = ServerState(cfg, freeze_gc=freeze_gc)
    if audit_masker() is None:  # free text the server logs (error messages) goes through PII masking
        from yulian.privacy import mask_text

        set_masker(mask_text)

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        warm = asyncio.get_running_loop().create_task(state.warm_up())
        try:
            yield
        finally:
            warm.cancel()
            await state.drain()

    app: FastAPI = fastapi.FastAPI(
        title="yulian serve",
        version=_version(),
        description="OpenAI-compatible and task routes for yulian models and chains. Every route but /healthz and "
        "/readyz needs `Authorization: Bearer <key>`.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.yulian = state
    Response = fastapi.Response

    @app.exception_handler(APIError)
    async def _api_error(request: Any, exc: APIError) -> Any:
        _note_error(request, exc)
        return Response(exc.body(), status_code=exc.status, headers=exc.headers, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Any, exc: Any) -> Any:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = f"invalid request: {param + ': ' if param else ''}{first.get('msg', 'bad body')}"
        if not loc and first.get("type") in ("model_attributes_type", "dict_type", "json_invalid", "missing"):
            message = "invalid request: the body must be a JSON object, sent with 'Content-Type: application/json'"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problems)"
        error = APIError(400, message, param=param, code="invalid_request")
        _note_error(request, error)
        return Response(error.body(), status_code=400, media_type="application/json")

    @app.exception_handler(HTTPException)
    async def _http(request: Any, exc: Any) -> Any:
        status = int(exc.status_code)
        message = {404: "no such route", 405: "method not allowed for this route"}.get(status, str(exc.detail))
        body = error_body(message, "invalid_request_error" if status < 500 else "server_error", None, None)
        return Response(body, status_code=status, media_type="application/json", headers=getattr(exc, "headers", None))

    @app.get("/healthz", tags=["system"])
    async def healthz() -> Any:
        """Liveness: 200 while the process runs."""
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", tags=["system"])
    async def readyz() -> Any:
        """Readiness: 200 once the models are loaded, 503 while loading, draining or after a failed load."""
        import json

        why = "draining" if state.draining else "loading" if not state.loading_errors else "failed"
        body = {"ready": state.ready, "status": "ready" if state.ready else why}
        if state.loading_errors:
            body["failed_models"] = sorted(state.loading_errors)
        return Response(
            json.dumps(body).encode(), status_code=200 if state.ready else 503, media_type="application/json"
        )

    @app.get("/metrics", tags=["system"])
    async def metrics() -> Any:
        """Prometheus metrics (needs a key with `metrics: true`)."""
        for served in state.models.values():
            if served.batcher is not None:
                state.metrics.queue_depth.labels(served.name).set(served.batcher.depth)
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    add_openai_routes(app, state)
    add_task_routes(app, state)
    add_app_routes(app, cfg.apps)
    return _wrap(app, state)


def _wrap(app: Any, state: ServerState) -> Any:
    """The FastAPI app with the gate in front (added as the outermost middleware, so it sees every request)."""
    app.add_middleware(Gate, state=state)
    return app


def _note_error(request: Any, error: APIError) -> None:
    info = request.scope.get("state", {}).get("info")
    if isinstance(info, dict):
        info["error_code"] = error.code


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("yulian")
    except Exception:
        return "0"
