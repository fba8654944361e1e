"""The support bot's HTTP API and chat page, as a FastAPI `APIRouter` (mounted by `yulian serve`, or run alone).

    GET  /apps/support/                 the chat page (plain HTML + a little JS)
    POST /apps/support/chat             {"session": "u1", "message": "..."} -> {"answer", "intent", "confidence",
                                        "sources", "handoff", "reason", "lang", "retrieval_score", "timings"}
    GET  /apps/support/history/{id}     the session's messages, oldest first
    GET  /apps/support/info             languages, intents, thresholds

fastapi is imported when `router()` is called, never at import.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["PREFIX", "STATIC_DIR", "app", "router"]

PREFIX = "/apps/support"
STATIC_DIR = Path(__file__).resolve().parent / "static"
_MAX_MESSAGE = 2000


def router(bot: Any = None, *, bot_dir: str | Path | None = None, loader: Callable[[], Any] | None = None) -> Any:
    """The API and page routes under `/apps/support`.

    Args:
        bot: a `SupportBot` to serve.
        bot_dir: else a trained bot folder, loaded on the first request.
        loader: else a function returning the bot (called once, on the first request); default: the demo bot.
    """
    from yulian._optional import require

    fastapi = require("fastapi", extra="serve", purpose="the support bot's HTTP API")
    responses = require("fastapi.responses", extra="serve")
    import threading

    state: dict[str, Any] = {"bot": bot}
    lock = threading.Lock()

    def get_bot() -> Any:
        if state["bot"] is None:
            with lock:
                if state["bot"] is None:
                    from yulian.apps.support.bot import SupportBot

                    if loader is not None:
                        state["bot"] = loader()
                    elif bot_dir is not None:
                        state["bot"] = SupportBot.load(bot_dir)
                    else:
                        from yulian.apps.support.build import demo_bot

                        state["bot"] = SupportBot.load(demo_bot())
        return state["bot"]

    api = fastapi.APIRouter(prefix=PREFIX, tags=["support"])
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    def index() -> Any:
        return responses.HTMLResponse(page)

    def chat(payload: dict[str, Any] = fastapi.Body(...)) -> Any:  # noqa: B008 - FastAPI's way
        message = payload.get("message")
        session = payload.get("session", "web")
        if not isinstance(message, str) or not message.strip():
            raise fastapi.HTTPException(422, "field 'message' must be a non-empty string")
        if len(message) > _MAX_MESSAGE:
            raise fastapi.HTTPException(422, f"field 'message' is longer than {_MAX_MESSAGE} characters")
        if not isinstance(session, str) or not session.strip() or len(session) > 200:
            raise fastapi.HTTPException(422, "field 'session' must be a non-empty string of at most 200 characters")
        return get_bot().chat(session.strip(), message).to_dict()

    def history(session: str) -> Any:
        return {
            "session": session,
            "messages": [
                {"role": m.role, "content": m.content, **{k: v for k, v in m.metadata.items() if k != "created_at"}}
                for m in get_bot().history(session)
            ],
        }

    def info() -> Any:
        b = get_bot()
        cfg = b.config
        return {
            "languages": sorted(set(b.classifiers) | set(b.retrievers)),
            "intent_threshold": cfg.intent_threshold,
            "retrieval_threshold": cfg.retrieval_threshold,
            "oos_labels": cfg.oos_labels,
            "handoff_intents": cfg.handoff_intents,
            "generator": cfg.generator if b.generator is not None else "none",
            "generate_langs": cfg.generate_langs,
        }

    api.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    api.add_api_route("/chat", chat, methods=["POST"])
    api.add_api_route("/history/{session}", history, methods=["GET"])
    api.add_api_route("/info", info, methods=["GET"])
    return api


def app(bot: Any = None, *, bot_dir: str | Path | None = None) -> Any:
    """A plain FastAPI app with only the support routes (for `yulian app support --serve` and tests); `/` redirects
    to the page."""
    from yulian._optional import require

    fastapi = require("fastapi", extra="serve", purpose="the support bot's HTTP API")
    responses = require("fastapi.responses", extra="serve")
    application = fastapi.FastAPI(title="yulian support bot")
    application.include_router(router(bot, bot_dir=bot_dir))

    def root() -> Any:
        return responses.RedirectResponse(PREFIX + "/")

    application.add_api_route("/", root, methods=["GET"], include_in_schema=False)
    return application
