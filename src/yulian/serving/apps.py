"""The applications' pages and APIs (`yulian.apps`) inside `yulian serve`, behind the same API keys.

```yaml
apps:
  - name: support            # the customer-service bot: /apps/support/ (path: a bot folder; none: the demo bot)
    path: runs/support
  - name: monitor            # the sentiment dashboard: /apps/monitor/ (path: the monitor's SQLite database)
    path: monitor.sqlite
  - name: recommend          # the recommender: /apps/recommend/ (path: a trained recommender folder)
    path: runs/recommend
    public: true             # no key needed for this app's page and API (a demo); default false
```

Each page itself is open (it is static HTML and holds no data); its JSON calls go through the key check like
every other route. The page gets a small script (`/apps/_auth.js`) that adds `Authorization: Bearer <key>` to
its same-origin requests, asks for the key once on a 401 and keeps it in the browser's local storage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["APP_NAMES", "AUTH_JS", "AppConfig", "add_app_routes", "open_app_path"]

APP_NAMES = ("monitor", "recommend", "support")

AUTH_JS = """// yulian serve: send the API key with this page's requests; ask for it once on a 401.
(() => {
  const KEY = "yulian-api-key";
  const original = window.fetch.bind(window);
  const sameOrigin = (url) => new URL(url, location.href).origin === location.origin;
  window.fetch = async (input, init = {}) => {
    const url = typeof input === "string" ? input : input.url;
    if (!sameOrigin(url)) return original(input, init);
    const send = (key) => {
      const headers = new Headers(init.headers || (typeof input !== "string" ? input.headers : undefined));
      if (key) headers.set("Authorization", "Bearer " + key);
      return original(input, { ...init, headers });
    };
    let response = await send(localStorage.getItem(KEY));
    if (response.status === 401) {
      const key = window.prompt("API key for this yulian server:");
      if (key) {
        localStorage.setItem(KEY, key);
        response = await send(key);
      }
    }
    return response;
  };
})();
"""


@dataclass(frozen=True)
class AppConfig:
    """One application served by `yulian serve`.

    Attributes:
        name: monitor, recommend or support (its page is at `/apps/<name>/`).
        path: what it serves: the monitor's SQLite database, a trained recommender folder, or a support bot
            folder (None: the embedded demo bot, built on first use).
        public: serve this app's page and API without a key (for demos; default: keys required).
    """

    name: str
    path: str | None = None
    public: bool = False

    def __post_init__(self) -> None:
        if self.name not in APP_NAMES:
            raise ValueError(f"unknown app {self.name!r} (apps: {', '.join(APP_NAMES)})")
        if self.path is None and self.name != "support":
            raise ValueError(f"app {self.name!r} needs a path ({_WHAT[self.name]})")
        if not isinstance(self.public, bool):
            raise ValueError(f"public must be true or false, got {self.public!r}")


_WHAT = {"monitor": "its SQLite database", "recommend": "a trained recommender folder", "support": "a bot folder"}


def _router(config: AppConfig) -> Any:
    if config.name == "monitor":
        from yulian.apps.monitor.web import router as monitor_router

        return monitor_router(str(config.path))
    if config.name == "recommend":
        from yulian.apps.recommend import Recommender
        from yulian.apps.recommend.web import router as recommend_router

        return recommend_router(Recommender.load(str(config.path)))
    from yulian.apps.support import router as support_router

    return support_router(bot_dir=config.path) if config.path else support_router()


def _page(name: str) -> str:
    html = (resources.files(f"yulian.apps.{name}") / "static" / "index.html").read_text(encoding="utf-8")
    tag = '<script src="/apps/_auth.js"></script>'
    return html.replace("<head>", "<head>" + tag, 1) if "<head>" in html else tag + html


def open_app_path(apps: Sequence[AppConfig], path: str) -> bool:
    """Whether `path` is served without a key: the auth script, every app's page, a public app's routes."""
    if path == "/apps/_auth.js":
        return True
    for app in apps:
        prefix = f"/apps/{app.name}"
        if path in (prefix, prefix + "/") or (app.public and path.startswith(prefix + "/")):
            return True
    return False


def add_app_routes(app: Any, apps: Sequence[AppConfig]) -> None:
    """Mount each configured app's router, its page (with the auth script) and `/apps/_auth.js` on `app`."""
    if not apps:
        return
    import fastapi

    def script() -> Any:
        return fastapi.Response(AUTH_JS, media_type="text/javascript")

    app.add_api_route("/apps/_auth.js", script, methods=["GET"], include_in_schema=False)

    def page_of(html: str) -> Callable[[], Any]:
        def page() -> Any:
            return fastapi.responses.HTMLResponse(html)

        return page

    for config in apps:
        page = page_of(_page(config.name))
        app.add_api_route(f"/apps/{config.name}/", page, methods=["GET"], include_in_schema=False)
        app.include_router(_router(config))
