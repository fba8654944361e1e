"""Where alerts go: an alerts JSONL file (one object per line, appended and flushed) and an optional webhook.

`Webhook.send` POSTs the alert as JSON with a timeout and retries (exponential back-off); a webhook that keeps
failing is logged, never fatal: the monitor goes on, and the alert is in the JSONL file and the database anyway.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yulian.apps.monitor.detector import Alert

__all__ = ["AlertsFile", "Webhook"]

log = logging.getLogger("yulian.apps.monitor")


class AlertsFile:
    """Appends alerts to a JSONL file (created with its folder when missing)."""

    def __init__(self, path: str | Path) -> None:
        """Open `path` for appending."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, alert: Alert) -> None:
        """Append one alert as a JSON line."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(alert.to_dict(), ensure_ascii=False) + "\n")


@dataclass
class Webhook:
    """POST each alert as JSON to `url`.

    Attributes:
        url: http(s) URL. timeout: seconds per attempt. retries: further attempts after a failure (4xx other than
        408/429 is not retried). backoff: seconds before the first retry, doubled each time. headers: extra headers.
    """

    url: str
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.5
    headers: dict[str, str] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"--webhook must be an http:// or https:// URL, got {self.url!r}")
        if self.retries < 0 or self.timeout <= 0:
            raise ValueError("Webhook needs timeout > 0 and retries >= 0")

    def send(self, alert: Alert | dict[str, Any]) -> bool:
        """POST the alert; True when the server answered 2xx (after retries), False (logged) otherwise."""
        payload = alert.to_dict() if isinstance(alert, Alert) else alert
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "yulian-monitor", **self.headers}
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                self.sent += 1
                return True
            except urllib.error.HTTPError as e:
                problem = f"HTTP {e.code}"
                if 400 <= e.code < 500 and e.code not in (408, 429):
                    break
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                problem = str(getattr(e, "reason", e))
        self.failed += 1
        log.warning("webhook %s failed after %d attempt(s): %s", self.url, attempt + 1, problem)
        return False
