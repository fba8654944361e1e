"""The recommender's page and JSON API as a FastAPI router (fastapi imported lazily).

GET /apps/recommend/                         the page: pick a user, see recommendations with reasons + history
GET /apps/recommend/api/users                [{"id", "info", "ratings"}]
GET /apps/recommend/api/users/{id}?k=10      {"user", "info", "genres", "recommendations", "history"}

app = fastapi.FastAPI(); app.include_router(router(Recommender.load("runs/apps/recommend")))
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from yulian._optional import require
from yulian.apps.recommend.recommender import Recommender

__all__ = ["PREFIX", "page_html", "router", "serve"]

PREFIX = "/apps/recommend"


def page_html() -> str:
    """The page's HTML (package data `static/index.html`)."""
    return (resources.files("yulian.apps.recommend") / "static" / "index.html").read_text(encoding="utf-8")


def router(recommender: Recommender, prefix: str = PREFIX) -> Any:
    """A FastAPI `APIRouter` serving the page and the JSON endpoints under `prefix`."""
    fastapi = require("fastapi", extra="serve", purpose="the recommender page")
    responses = require("fastapi.responses", extra="serve")
    api = fastapi.APIRouter(prefix=prefix)
    html = page_html()

    @api.get("/", response_class=responses.HTMLResponse)  # type: ignore[untyped-decorator]
    def page() -> Any:
        return responses.HTMLResponse(html)

    @api.get("/api/users")  # type: ignore[untyped-decorator]
    def users() -> list[dict[str, Any]]:
        return recommender.users()

    @api.get("/api/users/{user_id}")  # type: ignore[untyped-decorator]
    def user(user_id: int, k: int = 10, history: int = 50) -> dict[str, Any]:
        if not 1 <= k <= 100:
            raise fastapi.HTTPException(status_code=422, detail=f"k must be between 1 and 100, got {k}")
        try:
            recs = recommender.recommend(user_id, k)
        except ValueError as e:
            raise fastapi.HTTPException(status_code=404, detail=str(e)) from None
        u = recommender.data.user_index(user_id)
        return {
            "user": user_id,
            "info": recommender.data.user_info[u] if recommender.data.user_info else "",
            "genres": [{"genre": g, "lift": round(lift, 2)} for g, lift in recommender.favourite_genres(user_id)],
            "recommendations": [r.to_dict() for r in recs],
            "history": recommender.history(user_id, limit=history),
        }

    return api


def serve(recommender: Recommender, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run a plain FastAPI app with the router (blocking) until interrupted."""
    fastapi = require("fastapi", extra="serve", purpose="the recommender page")
    uvicorn = require("uvicorn", extra="serve", purpose="the recommender page")
    responses = require("fastapi.responses", extra="serve")
    app = fastapi.FastAPI(title="yulian recommender")
    app.include_router(router(recommender))

    @app.get("/")  # type: ignore[untyped-decorator]
    def root() -> Any:
        return responses.RedirectResponse(PREFIX + "/")

    recommender.warm_up()
    print(f"recommender page on http://{host}:{port}{PREFIX}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
