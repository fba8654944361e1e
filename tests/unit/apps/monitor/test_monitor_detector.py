"""The change detector's math: exact tails, no alert on clean noise, one alert per burst, CUSUM, restore."""

from __future__ import annotations

import math
import random

import pytest

from yulian.apps.monitor.detector import ChangeDetector, DetectorConfig, WindowCount, beta_binomial_tail

H = 3600.0


def binomial_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, x) * p**x * (1 - p) ** (n - x) for x in range(k, n + 1))


def feed(detector: ChangeDetector, entity: str, window: int, n: int, neg: int, rng: random.Random) -> list:
    """n texts spread over window `window`, `neg` of them negative, in random order; the alerts raised."""
    flags = [True] * neg + [False] * (n - neg)
    rng.shuffle(flags)
    alerts = []
    for i, negative in enumerate(flags):
        alert = detector.update(entity, window * H + (i + 0.5) * H / n, negative)
        if alert is not None:
            alerts.append(alert)
    return alerts


def test_beta_binomial_tail_matches_binomial_with_a_sharp_prior_and_bounds() -> None:
    for k, n, p in [(4, 10, 0.06), (1, 5, 0.3), (12, 40, 0.1)]:
        assert beta_binomial_tail(k, n, p * 1e7, (1 - p) * 1e7) == pytest.approx(binomial_tail(k, n, p), rel=1e-4)
    assert beta_binomial_tail(0, 5, 1, 1) == 1.0
    assert beta_binomial_tail(6, 5, 1, 1) == 0.0
    # a flat prior: every count equally likely -> P(X >= 3 | n=5) = 3/6
    assert beta_binomial_tail(3, 5, 1, 1) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_no_alert_on_clean_binomial_noise(seed: int) -> None:
    rng = random.Random(seed)
    detector = ChangeDetector(DetectorConfig(window=H))
    alerts = []
    for window in range(300):
        for entity, rate, volume in [("A", 0.1, 12), ("B", 0.3, 30), ("C", 0.05, 8), ("D", 0.5, 20)]:
            n = rng.randint(volume // 2, volume * 3 // 2)
            neg = sum(rng.random() < rate for _ in range(n))
            alerts += feed(detector, entity, window, n, neg, rng)
    assert alerts == []


def test_a_burst_raises_one_alert_within_its_window() -> None:
    rng = random.Random(0)
    detector = ChangeDetector(DetectorConfig(window=H, cooldown=4))
    for window in range(48):
        assert feed(detector, "ACME", window, 12, sum(rng.random() < 0.1 for _ in range(12)), rng) == []
    burst: list = []
    for window in range(48, 52):  # four windows of 70% negative: one alert, not four
        burst += feed(detector, "ACME", window, 20, 14, rng)
    assert len(burst) == 1
    alert = burst[0]
    assert alert.entity == "ACME" and alert.reason == "zscore"
    assert 48 * H <= alert.time < 49 * H  # within the first burst window
    assert alert.window_start == 48 * H
    assert alert.share > alert.baseline + 0.2 and alert.z >= 4.0
    assert "ACME" in alert.message and alert.to_dict()["iso_time"].endswith("Z")


def test_rearms_after_the_cooldown_and_a_calm_window() -> None:
    rng = random.Random(1)
    detector = ChangeDetector(DetectorConfig(window=H, cooldown=3, baseline=24))
    for window in range(30):
        feed(detector, "X", window, 15, 1, rng)
    first = feed(detector, "X", 30, 20, 15, rng)
    calm = [a for w in range(31, 60) for a in feed(detector, "X", w, 15, 1, rng)]
    second = feed(detector, "X", 60, 20, 15, rng)
    assert len(first) == 1 and calm == [] and len(second) == 1


def test_cooldown_holds_while_the_burst_persists() -> None:
    rng = random.Random(2)
    detector = ChangeDetector(DetectorConfig(window=H, cooldown=2, baseline=12))
    for window in range(24):
        feed(detector, "X", window, 15, 1, rng)
    alerts = [a for w in range(24, 30) for a in feed(detector, "X", w, 20, 16, rng)]
    assert len(alerts) == 1  # still high after the cool-down: not re-armed (z never fell below rearm_z)


def test_cusum_catches_a_persistent_shift_the_z_test_misses() -> None:
    rng = random.Random(3)
    config = DetectorConfig(
        window=H, z_threshold=50.0, rearm_z=2.0, min_delta=0.05, cusum_k=0.5, cusum_h=5.0, cooldown=20
    )
    detector = ChangeDetector(config)
    for window in range(30):
        assert feed(detector, "X", window, 20, 2, rng) == []
    shifted = [a for w in range(30, 45) for a in feed(detector, "X", w, 20, 6, rng)]  # 10% -> 30%
    assert len(shifted) == 1 and shifted[0].reason == "cusum"
    silent = ChangeDetector(DetectorConfig(window=H, z_threshold=50.0, rearm_z=2.0, cusum_h=0.0))
    for window in range(30):
        feed(silent, "X", window, 20, 2, rng)
    assert [a for w in range(30, 45) for a in feed(silent, "X", w, 20, 6, rng)] == []


def test_min_count_and_baseline_guard_small_samples() -> None:
    rng = random.Random(4)
    detector = ChangeDetector(DetectorConfig(window=H, min_count=8, min_baseline_count=40))
    # no baseline yet: even an all-negative window says nothing
    assert feed(detector, "N", 0, 20, 20, rng) == []
    for window in range(1, 30):
        feed(detector, "N", window, 10, 1, rng)
    # 7 texts, all negative: below min_count
    assert feed(detector, "N", 30, 7, 7, rng) == []


def test_gaps_and_late_texts() -> None:
    detector = ChangeDetector(DetectorConfig(window=H, baseline=5))
    for window in range(5):
        for i in range(10):
            detector.update("G", window * H + i, i == 0)
    detector.update("G", 100 * H, False)  # a long gap: the baseline is all empty windows
    assert detector.update("G", 99 * H, True) is None  # late: counted where it belongs (nowhere), no test
    assert detector.z_score("G") == 0.0


def test_restore_rebuilds_the_state() -> None:
    rng = random.Random(5)
    live = ChangeDetector(DetectorConfig(window=H))
    windows = []
    for window in range(30):
        neg = sum(rng.random() < 0.1 for _ in range(12))
        feed(live, "R", window, 12, neg, rng)
        windows.append(WindowCount(window, 12, neg))
    restored = ChangeDetector(DetectorConfig(window=H))
    restored.restore("R", windows[-25:])
    assert restored.z_score("R") == pytest.approx(live.z_score("R"), abs=0.05)
    for detector in (live, restored):
        assert len(feed(detector, "R", 30, 20, 15, random.Random(9))) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": 0}, "window"),
        ({"baseline": 0}, "baseline"),
        ({"z_threshold": -1}, "z_threshold"),
        ({"min_count": 1.5}, "min_count"),
        ({"rearm_z": 9.0}, "rearm_z"),
        ({"min_delta": float("nan")}, "min_delta"),
    ],
)
def test_config_errors_name_the_field(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DetectorConfig(**options)
