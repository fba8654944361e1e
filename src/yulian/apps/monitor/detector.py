"""A robust change detector for the negative share of an entity's texts, one instance for all entities.

Time is cut into windows of `window` seconds. For each entity the detector keeps the last `baseline` closed windows
and the current one, and tests the current window's negatives k out of n against the baseline share p0. The test
is exact, not a normal approximation (which is far too optimistic for a handful of texts: 4 negatives out of 10
at p0 = 6% has z = 4.5 but a tail probability of 0.002): the tail P(X >= k) of a beta-binomial whose beta has
mean p0 and a variance made of the baseline's own uncertainty, p0(1-p0)/N, plus the extra-binomial variation
between windows, estimated from the baseline windows (a trimmed Pearson dispersion, used only when significantly
above 1). The tail is
reported as the equivalent one-sided z. An alert needs at least `min_count` texts in the window,
`min_baseline_count` in the baseline, z >= `z_threshold` and p - p0 >= `min_delta`. A one-sided CUSUM over the
closed windows' z (drift `cusum_k`, threshold `cusum_h`) catches smaller shifts that persist. After an alert the
entity is quiet for `cooldown` windows and until a window's z falls back below `rearm_z`, so one burst gives one
alert.

    detector = ChangeDetector(DetectorConfig(window=3600))
    alert = detector.update("AAPL", ts, negative=True)      # an Alert, or None
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

_TRIMMED_CHI2_MEAN = 0.623  # E[X | X below its 90th percentile] for X ~ chi-square(1)

__all__ = ["Alert", "ChangeDetector", "DetectorConfig", "WindowCount", "beta_binomial_tail"]


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of the change detector. Checked once, here.

    Attributes:
        window: window length in seconds (the unit of the rolling negative share).
        baseline: how many closed windows form the baseline.
        min_count: texts needed in the current window before it can raise an alert.
        min_baseline_count: texts needed in the baseline windows together.
        z_threshold: z-score of the current window's share over the baseline that raises an alert.
        min_delta: the share must also exceed the baseline share by at least this much (absolute).
        cusum_k: CUSUM drift (in z units) subtracted per closed window.
        cusum_h: CUSUM threshold (0 switches CUSUM off).
        cooldown: windows after an alert during which the entity raises no new alert.
        rearm_z: after the cool-down, a window must fall below this z before the next alert (hysteresis).
        prior: pseudo-texts added to the baseline at the baseline share of all entities (smooths sparse ones).
    """

    window: float = 3600.0
    baseline: int = 24
    min_count: int = 8
    min_baseline_count: int = 40
    z_threshold: float = 4.0
    min_delta: float = 0.2
    cusum_k: float = 1.0
    cusum_h: float = 8.0
    cooldown: int = 6
    rearm_z: float = 2.0
    prior: float = 10.0

    def __post_init__(self) -> None:
        def positive(name: str, minimum: float = 0.0, strict: bool = True) -> None:
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (value <= minimum if strict else value < minimum):
                sign = ">" if strict else ">="
                raise ValueError(f"DetectorConfig.{name} must be a number {sign} {minimum}, got {value!r}")

        positive("window")
        for name in ("baseline", "min_count", "min_baseline_count", "cooldown"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "baseline" else 0):
                raise ValueError(f"DetectorConfig.{name} must be a whole number >= 0, got {value!r}")
        positive("z_threshold")
        positive("min_delta", strict=False)
        positive("cusum_k", strict=False)
        positive("cusum_h", strict=False)
        positive("prior", strict=False)
        if not isinstance(self.rearm_z, int | float) or self.rearm_z > self.z_threshold:
            raise ValueError(
                f"DetectorConfig.rearm_z must be <= z_threshold ({self.z_threshold}), got {self.rearm_z!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-ready dict."""
        return asdict(self)


@dataclass(slots=True)
class WindowCount:
    """Counts of one window of one entity: `start` is the window's index (start time = index * window)."""

    index: int
    n: int = 0
    neg: int = 0


@dataclass(frozen=True)
class Alert:
    """A jump of an entity's negative share.

    Attributes:
        entity: the entity or topic.
        time: the time (epoch seconds) of the text that raised it.
        window_start: start of the window (epoch seconds). window: its length in seconds.
        share / baseline: the window's negative share and the baseline share.
        n / negatives: texts and negative texts in the window.
        z: the window's z-score. cusum: the CUSUM statistic. reason: "zscore" or "cusum".
    """

    entity: str
    time: float
    window_start: float
    window: float
    share: float
    baseline: float
    n: int
    negatives: int
    z: float
    cusum: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with an ISO time and a one-line message."""
        from datetime import UTC, datetime

        data = asdict(self)
        data["iso_time"] = datetime.fromtimestamp(self.time, UTC).isoformat().replace("+00:00", "Z")
        data["message"] = self.message
        return data

    @property
    def message(self) -> str:
        """`ACME: negative share 62% (13/21) vs baseline 11%, z=7.9`."""
        return (
            f"{self.entity}: negative share {self.share:.0%} ({self.negatives}/{self.n}) vs baseline "
            f"{self.baseline:.0%}, z={self.z:.1f} ({self.reason})"
        )


@dataclass
class _EntityState:
    baseline: deque[WindowCount]
    current: WindowCount
    cusum: float = 0.0
    armed: bool = True
    last_alert: int | None = None
    base_n: int = 0
    base_neg: int = 0
    extra_var: float = 0.0


@dataclass
class ChangeDetector:
    """Per-entity rolling windows and the change test (see the module docstring). Not thread-safe."""

    config: DetectorConfig = field(default_factory=DetectorConfig)
    _states: dict[str, _EntityState] = field(default_factory=dict, init=False, repr=False)
    _all_n: int = field(default=0, init=False, repr=False)
    _all_neg: int = field(default=0, init=False, repr=False)

    def window_index(self, ts: float) -> int:
        """The window a time falls in."""
        return math.floor(ts / self.config.window)

    def restore(self, entity: str, windows: list[WindowCount], last_alert: int | None = None) -> None:
        """Rebuild an entity's state from stored windows (oldest first; the last one is the current window)."""
        if not windows:
            return
        state = self._new_state(windows[0].index)
        self._states[entity] = state
        state.current = WindowCount(windows[0].index, windows[0].n, windows[0].neg)
        for window in windows[1:]:
            self._advance(state, window.index, entity, close_only=True)
            state.current.n, state.current.neg = window.n, window.neg
        for window in windows:
            self._all_n += window.n
            self._all_neg += window.neg
        state.last_alert = last_alert
        state.armed = last_alert is None or state.current.index >= last_alert + self.config.cooldown

    def update(self, entity: str, ts: float, negative: bool) -> Alert | None:
        """Count one text of `entity` at time `ts`; return an Alert when the negative share just jumped."""
        index = self.window_index(ts)
        state = self._states.get(entity)
        if state is None:
            state = self._states[entity] = self._new_state(index)
        self._all_n += 1
        self._all_neg += int(negative)
        if index < state.current.index:  # a late text: count it where it belongs, test nothing
            for window in state.baseline:
                if window.index == index:
                    window.n += 1
                    window.neg += int(negative)
                    state.base_n += 1
                    state.base_neg += int(negative)
            return None
        closed = self._advance(state, index, entity)
        state.current.n += 1
        state.current.neg += int(negative)
        return closed or self._test(entity, state, ts)

    def z_score(self, entity: str) -> float:
        """The current window's z-score for `entity` (0.0 when there is no baseline yet)."""
        state = self._states.get(entity)
        return self._z(state, state.current) if state else 0.0

    # internals -----------------------------------------------------------------------------------------------
    def _new_state(self, index: int) -> _EntityState:
        return _EntityState(baseline=deque(), current=WindowCount(index))

    def _global_share(self) -> float:
        return (self._all_neg + 1.0) / (self._all_n + 2.0)

    def _p0(self, state: _EntityState) -> float:
        prior = self.config.prior
        return (state.base_neg + prior * self._global_share()) / (state.base_n + prior)

    def _z_normal(self, state: _EntityState, window: WindowCount) -> float:
        """The normal-approximation z (signed; cheap): used to skip the exact test when nothing is going on."""
        if window.n == 0 or state.base_n < self.config.min_baseline_count:
            return 0.0
        p0 = min(max(self._p0(state), 1e-3), 1 - 1e-3)
        var = p0 * (1 - p0) * (1 / window.n + 1 / (state.base_n + self.config.prior)) + state.extra_var
        return (window.neg / window.n - p0) / math.sqrt(var)

    def _z(self, state: _EntityState, window: WindowCount) -> float:
        """The window's z: the exact beta-binomial upper tail as a one-sided z when the share is up, else the
        (negative or small) normal-approximation z."""
        approx = self._z_normal(state, window)
        if approx <= 1.0:
            return approx
        p0 = min(max(self._p0(state), 1e-3), 1 - 1e-3)
        var_p = p0 * (1 - p0) / (state.base_n + self.config.prior) + state.extra_var
        concentration = max(p0 * (1 - p0) / var_p - 1.0, 1.0)
        tail = beta_binomial_tail(window.neg, window.n, p0 * concentration, (1 - p0) * concentration)
        return min(approx, -NormalDist().inv_cdf(min(max(tail, 1e-300), 0.5)))

    def _advance(self, state: _EntityState, index: int, entity: str, close_only: bool = False) -> Alert | None:
        """Close windows up to `index`: CUSUM update, baseline roll; a CUSUM alert at a window close is returned."""
        if index <= state.current.index:
            return None
        cfg = self.config
        closed = state.current
        z = self._z(state, closed)
        alert = None
        if closed.n:
            state.cusum = max(0.0, state.cusum + z - cfg.cusum_k)
            if not close_only and cfg.cusum_h > 0 and state.cusum >= cfg.cusum_h and self._may_alert(state, closed):
                alert = self._alert(entity, closed, state, z, "cusum", (closed.index + 1) * cfg.window)
        cooled = state.last_alert is not None and closed.index >= state.last_alert + cfg.cooldown - 1
        if not state.armed:
            state.cusum = 0.0  # CUSUM restarts once the alarm is over, not during it
            if cooled and z < cfg.rearm_z:
                state.armed = True
        gap = min(index - closed.index - 1, cfg.baseline)
        for window in [closed, *(WindowCount(index - gap + i) for i in range(gap))]:
            state.baseline.append(window)
            state.base_n += window.n
            state.base_neg += window.neg
            while len(state.baseline) > cfg.baseline:
                old = state.baseline.popleft()
                state.base_n -= old.n
                state.base_neg -= old.neg
        if gap:
            state.cusum = 0.0
        state.extra_var = self._extra_var(state)
        state.current = WindowCount(index)
        return alert

    def _extra_var(self, state: _EntityState) -> float:
        """Between-window variance of the share beyond binomial noise: (dispersion - 1) * p0(1-p0) / n.

        The dispersion is the mean squared standardised residual of the baseline windows (1 for pure binomial noise)
        with the largest tenth trimmed off (so a past burst in the baseline does not blind the detector) and
        rescaled by the trimmed mean of chi-square(1), 0.623. It counts only when significant: above
        1 + 2 sqrt(2 / (m - 1)) for m windows; below that it is estimation noise, not over-dispersion."""
        windows = [w for w in state.baseline if w.n > 0]
        m = len(windows)
        if m < 8:
            return 0.0
        p0 = min(max(self._p0(state), 1e-3), 1 - 1e-3)
        unit = p0 * (1 - p0)
        residuals = sorted((w.neg - w.n * p0) ** 2 / (w.n * unit) for w in windows)
        kept = residuals[: m - max(1, m // 10)]
        dispersion = sum(kept) / len(kept) / _TRIMMED_CHI2_MEAN
        if dispersion <= 1 + 2 * math.sqrt(2 / (m - 1)):
            return 0.0
        typical_n = sorted(w.n for w in windows)[m // 2]
        return (dispersion - 1.0) * unit / typical_n

    def _may_alert(self, state: _EntityState, window: WindowCount) -> bool:
        cfg = self.config
        if not state.armed or window.n < cfg.min_count or state.base_n < cfg.min_baseline_count:
            return False
        return window.neg / window.n - self._p0(state) >= cfg.min_delta

    def _test(self, entity: str, state: _EntityState, ts: float) -> Alert | None:
        window = state.current
        if not self._may_alert(state, window):
            return None
        cfg = self.config
        approx = self._z_normal(state, window)  # an upper bound of the exact z for shares above p0: a cheap gate
        if approx < 0.8 * cfg.z_threshold and (cfg.cusum_h <= 0 or state.cusum + approx - cfg.cusum_k < cfg.cusum_h):
            return None
        z = self._z(state, window)
        if z >= cfg.z_threshold:
            return self._alert(entity, window, state, z, "zscore", ts)
        if cfg.cusum_h > 0 and state.cusum + z - cfg.cusum_k >= cfg.cusum_h:
            return self._alert(entity, window, state, z, "cusum", ts)
        return None

    def _alert(self, entity: str, window: WindowCount, state: _EntityState, z: float, reason: str, ts: float) -> Alert:
        cusum = max(state.cusum, state.cusum + z - self.config.cusum_k)
        state.armed = False
        state.last_alert = window.index
        state.cusum = 0.0
        return Alert(
            entity=entity,
            time=ts,
            window_start=window.index * self.config.window,
            window=self.config.window,
            share=window.neg / window.n,
            baseline=self._p0(state),
            n=window.n,
            negatives=window.neg,
            z=z,
            cusum=cusum,
            reason=reason,
        )


def beta_binomial_tail(k: int, n: int, a: float, b: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(n, a, b) (exact sum in log space; O(n - k))."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    lg = math.lgamma
    log_norm = lg(a + b) - lg(a) - lg(b) - lg(n + a + b) + lg(n + 1)
    terms = [log_norm - lg(x + 1) - lg(n - x + 1) + lg(x + a) + lg(n - x + b) for x in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))
