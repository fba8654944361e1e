"""Retries, fallbacks and bound config."""

from __future__ import annotations

import asyncio

import pytest

from yulian import MemoryTracer, RunConfig, runnable


class Flaky:
    def __init__(self, fail_times: int, error: type[Exception] = ConnectionError) -> None:
        self.calls = 0
        self.fail_times = fail_times
        self.error = error

    def __call__(self, x: int) -> int:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise self.error(f"failure {self.calls}")
        return x


def test_retry_until_success() -> None:
    flaky = Flaky(2)
    r = runnable(flaky).with_retry(attempts=3, backoff=0)
    assert r.invoke(7) == 7
    assert flaky.calls == 3


def test_retry_gives_up_with_note_and_respects_types() -> None:
    flaky = Flaky(5)
    r = runnable(flaky).with_retry(attempts=2, backoff=0)
    with pytest.raises(ConnectionError) as info:
        r.invoke(1)
    assert flaky.calls == 2
    assert any("failed 2 time(s)" in n for n in info.value.__notes__)
    other = Flaky(1, error=KeyError)
    with pytest.raises(KeyError):
        runnable(other).with_retry(attempts=3, retry_on=(ConnectionError,), backoff=0).invoke(1)
    assert other.calls == 1


def test_retry_backoff_waits_grow() -> None:
    r = runnable(lambda x: x).with_retry(attempts=4, backoff=0.1, max_backoff=0.25, jitter=False)
    assert [r._wait(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.25]


def test_retry_async_and_batch_only_failed_items() -> None:
    flaky = Flaky(1)
    assert asyncio.run(runnable(flaky).with_retry(backoff=0).ainvoke(3)) == 3
    seen: list[int] = []

    def sometimes(x: int) -> int:
        seen.append(x)
        if x == 2 and seen.count(2) == 1:
            raise ConnectionError("once")
        return x

    assert runnable(sometimes).with_retry(backoff=0).batch([1, 2, 3]) == [1, 2, 3]
    assert sorted(seen) == [1, 2, 2, 3]


def test_fallbacks_in_order() -> None:
    def broken(x: int) -> int:
        raise TimeoutError("primary down")

    chain = runnable(broken).with_fallbacks([lambda x: x * 2])
    assert chain.invoke(2) == 4
    assert asyncio.run(chain.ainvoke(2)) == 4
    all_bad = runnable(broken).with_fallbacks([broken])
    with pytest.raises(TimeoutError, match="primary down") as info:
        all_bad.invoke(1)
    assert any("fallback broken also failed" in n for n in info.value.__notes__)
    only_value_errors = runnable(broken).with_fallbacks([lambda x: 0], exceptions=(ValueError,))
    with pytest.raises(TimeoutError):
        only_value_errors.invoke(1)


def test_with_config_binds_tags_and_callbacks() -> None:
    tracer = MemoryTracer()
    chain = (runnable(lambda x: x + 1).named("inc") | (lambda x: x * 2)).with_config(
        tags=["bound"], callbacks=[tracer], run_name="my-chain"
    )
    assert chain.invoke(1) == 4
    assert chain.invoke(1, RunConfig(tags=("call",))) == 4
    roots = [s for s in tracer.spans if s.parent_id is None]
    assert [s.name for s in roots] == ["my-chain", "my-chain"]
    assert roots[1].tags == ("bound", "call")
    # a leaf bound with callbacks gets its own span
    leaf_tracer = MemoryTracer()
    runnable(lambda x: x, name="leaf").with_config(callbacks=[leaf_tracer]).invoke(1)
    assert [s.name for s in leaf_tracer.spans] == ["leaf"]
