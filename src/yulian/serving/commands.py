"""`yulian serve`: run the HTTP server from a YAML configuration (see `yulian.serving.config` for the format).

    $ yulian serve --new-key alice              # print a fresh API key and the YAML lines that declare it
    $ yulian serve --config serve.yaml          # 127.0.0.1:8000 unless the file or --host/--port say otherwise
    $ yulian serve --config serve.yaml --host 0.0.0.0 --port 8080 --workers 2

Only light modules are imported here: FastAPI and uvicorn load when the server starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["app_from_env", "serve"]

CONFIG_ENV = "YULIAN_SERVE_CONFIG"


def serve(
    config: Path | None = None,
    host: str = "",
    port: int = 0,
    workers: int = 0,
    log_level: str = "info",
    new_key: str = "",
    scrypt: bool = False,
) -> int:
    """Serve models, task predictors and chains over an authenticated, OpenAI-compatible HTTP API.

    Args:
        config: the server's YAML file (models, chains, keys, limits, audit log).
        host: the address to bind (default: the file's host, else 127.0.0.1).
        port: the port (default: the file's port, else 8000).
        workers: uvicorn worker processes, each with its own copy of the models (default: the file's, else 1).
        log_level: uvicorn's log level (critical, error, warning, info, debug).
        new_key: print a fresh API key for this key id, and the YAML lines for the config file, then exit.
        scrypt: with --new-key, store the key as an scrypt hash instead of sha256.
    """
    if new_key:
        from yulian.serving.auth import new_key as make_key

        key, snippet = make_key(new_key, "scrypt" if scrypt else "sha256")
        print(f"API key (shown once, keep it secret): {key}", file=sys.stderr)
        print("add under keys: in the server config:", file=sys.stderr)
        print(snippet)
        return 0
    if config is None:
        raise ValueError("--config is required (a YAML file; see `yulian serve --help` and yulian.serving.config)")
    from yulian._optional import require
    from yulian.serving.config import load_config

    cfg = load_config(config)  # validate before starting anything: errors name the file and the field
    uvicorn = require("uvicorn", extra="serve", purpose="yulian serve")
    host = host or cfg.host
    port = port or cfg.port
    workers = workers or cfg.workers
    if not cfg.keys:
        print(f"warning: {config} declares no keys: every request but /healthz and /readyz gets 401", file=sys.stderr)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "timeout_graceful_shutdown": cfg.drain_timeout_s,
        "access_log": False,  # the audit log records every request, without content
    }
    if workers > 1:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
        uvicorn.run("yulian.serving.commands:app_from_env", factory=True, workers=workers, **options)
    else:
        from yulian.serving.app import create_app

        uvicorn.run(create_app(cfg, freeze_gc=True), **options)
    return 0


def app_from_env() -> Any:
    """The app for the file named by `$YULIAN_SERVE_CONFIG` (uvicorn's factory for several workers)."""
    from yulian.serving.app import create_app

    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start the server with `yulian serve --config FILE`")
    return create_app(path, freeze_gc=True)
