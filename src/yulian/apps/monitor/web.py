"""The monitor's dashboard: a FastAPI router with JSON endpoints and a plain HTML + JS page.

app.include_router(router("monitor.sqlite"))            # page at /apps/monitor/
GET /apps/monitor/api/entities          -> [{"entity", "texts", "negatives", "share", "last", "alerts"}, ...]
GET /apps/monitor/api/series?entity=X   -> {"entity", "window", "points": [{"start", "n", "neg", "share"}, ...]}
GET /apps/monitor/api/alerts[?entity=X] -> [alert, ...] newest first
GET /apps/monitor/api/texts[?entity=X]  -> the latest texts with their labels
GET /apps/monitor/plot.png[?entity=X]   -> the PNG export
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from yulian.apps.monitor.store import MonitorStore

__all__ = ["PREFIX", "create_app", "router", "serve"]

PREFIX = "/apps/monitor"


def _page() -> str:
    return resources.files("yulian.apps.monitor").joinpath("static/index.html").read_text(encoding="utf-8")


def router(db: str | Path | MonitorStore, prefix: str = PREFIX) -> Any:
    """A `fastapi.APIRouter` serving the dashboard of the monitor database `db` under `prefix`."""
    from yulian._optional import require

    fastapi = require("fastapi", extra="serve", purpose="the monitor dashboard")
    responses = require("fastapi.responses", extra="serve", purpose="the monitor dashboard")
    store = db if isinstance(db, MonitorStore) else _open_existing(db)
    api = fastapi.APIRouter(prefix=prefix)

    def known(entity: str) -> str:
        if entity not in store.entity_names():
            raise fastapi.HTTPException(404, f"unknown entity {entity!r}")
        return entity

    def page() -> Any:
        return responses.HTMLResponse(_page())

    def entities() -> list[dict[str, Any]]:
        return store.entities()

    def series(entity: str, limit: int = 500) -> dict[str, Any]:
        return {"entity": known(entity), "window": store.window, "points": store.series(entity, min(limit, 5000))}

    def alerts(entity: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        return store.alerts(entity, min(limit, 5000))

    def texts(entity: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return store.texts(entity, min(limit, 1000))

    def plot(entity: str | None = None, top: int = 6) -> Any:
        from yulian.apps.monitor.plot import export_png

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = export_png(store, Path(tmp) / "plot.png", [known(entity)] if entity else None, top=top)
            except ValueError as e:
                raise fastapi.HTTPException(404, str(e)) from None
            data = path.read_bytes()
        return responses.Response(data, media_type="image/png")

    api.add_api_route("/", page, methods=["GET"], response_class=responses.HTMLResponse)
    for path, endpoint in [
        ("/api/entities", entities),
        ("/api/series", series),
        ("/api/alerts", alerts),
        ("/api/texts", texts),
        ("/plot.png", plot),
    ]:
        api.add_api_route(path, endpoint, methods=["GET"])
    return api


def _open_existing(db: str | Path) -> MonitorStore:
    import sqlite3

    path = Path(db)
    if not path.exists():
        raise FileNotFoundError(f"monitor database {path} does not exist (run `yulian app monitor run` first)")
    con = sqlite3.connect(path)
    try:
        row = con.execute("SELECT value FROM meta WHERE key='window'").fetchone()
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path} is not a monitor database ({e})") from None
    finally:
        con.close()
    return MonitorStore(path, window=float(row[0]) if row else 3600.0)


def create_app(db: str | Path | MonitorStore) -> Any:
    """A FastAPI app with the dashboard router; `/` redirects to the page."""
    from yulian._optional import require

    fastapi = require("fastapi", extra="serve", purpose="the monitor dashboard")
    responses = require("fastapi.responses", extra="serve", purpose="the monitor dashboard")
    app = fastapi.FastAPI(title="yulian monitor")
    app.include_router(router(db))

    def home() -> Any:
        return responses.RedirectResponse(PREFIX + "/")

    app.add_api_route("/", home, methods=["GET"], include_in_schema=False)
    return app


def serve(db: str | Path | MonitorStore, host: str = "127.0.0.1", port: int = 8000, block: bool = True) -> Any:
    """Run the dashboard with uvicorn; `block=False` starts it in a daemon thread and returns the server."""
    import threading

    from yulian._optional import require

    uvicorn = require("uvicorn", extra="serve", purpose="the monitor dashboard")
    server = uvicorn.Server(uvicorn.Config(create_app(db), host=host, port=port, log_level="warning"))
    if block:
        server.run()
        return server
    thread = threading.Thread(target=server.run, name="monitor-dashboard", daemon=True)
    thread.start()
    return server
