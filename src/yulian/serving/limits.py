"""Per-key rate limits (token bucket) and concurrency caps; token estimates for request-size checks.

`Limiter.admit(principal)` either returns a `Slot` (release it when the response has been sent) or a number of
seconds to wait, which the server sends as `retry-after` with a 429. All state is per process: with several
workers, a key's effective rate is the workers times its configured rate.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from yulian.serving.auth import Principal
from yulian.serving.config import LimitsConfig

__all__ = ["Limiter", "Slot", "TokenBucket", "estimate_tokens"]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u3001-\u303f\uff00-\uffef"
_PIECE = re.compile(rf"[{_CJK}]|[^\W\d_]{{1,4}}|\d{{1,3}}|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """A quick, tokenizer-free estimate of a text's token count: one per CJK character, per 1-4 letters of a word,
    per 1-3 digits and per punctuation mark. It errs high for English (BPE merges common words), which is the safe
    side for a limit."""
    return len(_PIECE.findall(text))


class TokenBucket:
    """A token bucket: `rate` tokens per second, at most `capacity` stored; each request takes one."""

    __slots__ = ("capacity", "clock", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.clock = clock
        self.updated = clock()

    def take(self) -> float:
        """Take one token: 0.0 if there was one, else the seconds until one is available."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass
class _KeyState:
    bucket: TokenBucket
    in_flight: int
    cap: int


class Slot:
    """A request's place in its key's concurrency cap; `release()` frees it (idempotent)."""

    __slots__ = ("_state",)

    def __init__(self, state: _KeyState) -> None:
        self._state: _KeyState | None = state

    def release(self) -> None:
        """Free the slot."""
        if self._state is not None:
            self._state.in_flight -= 1
            self._state = None


class Limiter:
    """Rate limits and concurrency caps per key. Called from the event loop only (no locks needed)."""

    def __init__(self, limits: LimitsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._states: dict[str, _KeyState] = {}

    def _state(self, principal: Principal) -> _KeyState:
        state = self._states.get(principal.id)
        if state is None:
            key = principal.config
            per_minute = key.rate_per_minute if key.rate_per_minute is not None else self.limits.rate_per_minute
            burst = key.burst if key.burst is not None else self.limits.burst
            cap = key.max_concurrency if key.max_concurrency is not None else self.limits.max_concurrency
            state = self._states[principal.id] = _KeyState(TokenBucket(per_minute / 60.0, burst, self.clock), 0, cap)
        return state

    def admit(self, principal: Principal) -> Slot | tuple[str, float]:
        """A `Slot`, or `(reason, retry_after_seconds)` when the key is over its rate or concurrency limit."""
        state = self._state(principal)
        if state.in_flight >= state.cap:
            return f"too many concurrent requests for this key (limit {state.cap})", 1.0
        wait = state.bucket.take()
        if wait > 0:
            per_minute = state.bucket.rate * 60.0
            return f"rate limit reached for this key ({per_minute:g} requests per minute)", max(wait, 0.001)
        state.in_flight += 1
        return Slot(state)

    def in_flight(self, key_id: str) -> int:
        """Requests of `key_id` in flight now."""
        state = self._states.get(key_id)
        return 0 if state is None else state.in_flight


def retry_after_header(seconds: float) -> str:
    """The `retry-after` value for a wait: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
