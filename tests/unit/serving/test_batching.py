"""The micro-batcher: concurrent requests share calls, groups stay apart, a bad input fails alone, back-pressure."""

from __future__ import annotations

import asyncio
import time

import pytest

from yulian.serving.batching import MicroBatcher, OverloadedError


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_concurrent_items_share_a_call() -> None:
    calls: list[list[int]] = []

    def double(items: list[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(0.01)
        return [2 * x for x in items]

    async def main() -> list[int]:
        batcher = MicroBatcher("m", double, max_batch=8, max_wait_ms=20)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        await batcher.drain()
        return list(results)

    assert _run(main()) == [2 * i for i in range(20)]
    assert max(len(c) for c in calls) == 8 and len(calls) <= 4  # batched, never above max_batch
    assert sorted(x for c in calls for x in c) == list(range(20))


def test_groups_do_not_mix_and_a_bad_item_fails_alone() -> None:
    calls: list[list[str]] = []

    def upper(items: list[str]) -> list[str]:
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad input")
        return [x.upper() for x in items]

    async def main() -> list[object]:
        batcher = MicroBatcher("m", upper, max_batch=8, max_wait_ms=20)
        jobs = [
            batcher.submit("a", "g1"),
            batcher.submit("b", "g2"),
            batcher.submit("bad", "g1"),
            batcher.submit("c", "g1"),
        ]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        await batcher.drain()
        return list(results)

    results = _run(main())
    assert results[0] == "A" and results[1] == "B" and results[3] == "C"
    assert isinstance(results[2], ValueError)
    assert all(len({x in ("a", "bad", "c") for x in c}) == 1 for c in calls)  # g1 and g2 never share a call


def test_full_queue_raises_overloaded() -> None:
    async def main() -> None:
        batcher = MicroBatcher("m", lambda xs: xs, max_batch=2, max_wait_ms=50, max_queue=3)
        first = asyncio.ensure_future(batcher.submit_many([1, 2, 3]))
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError):
            await batcher.submit(4)
        assert await first == [1, 2, 3]
        await batcher.drain()
        with pytest.raises(OverloadedError, match="shutting down"):
            await batcher.submit(5)

    _run(main())


def test_wrong_result_count_is_an_error() -> None:
    async def main() -> None:
        batcher = MicroBatcher("m", lambda xs: xs[: len(xs) - 1], max_batch=4, max_wait_ms=10)
        results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) and "returned" in str(r) for r in results)
        await batcher.drain()

    _run(main())


def test_a_lone_request_does_not_wait_but_company_does() -> None:
    async def main() -> tuple[float, float]:
        batcher = MicroBatcher("m", lambda xs: xs, max_batch=8, max_wait_ms=300)
        started = time.perf_counter()
        await batcher.submit(1)
        await batcher.submit(2)  # the previous batch was alone: no waiting
        lone = time.perf_counter() - started
        await asyncio.gather(batcher.submit(3), batcher.submit(4))  # company: the next batch waits for more
        started = time.perf_counter()
        await batcher.submit(5)
        waited = time.perf_counter() - started
        await batcher.drain()
        return lone, waited

    lone, waited = _run(main())  # type: ignore[misc]
    assert lone < 0.25 and waited >= 0.25


def test_parallel_batches_run_side_by_side_and_share_out_the_queue() -> None:
    import threading

    calls: list[tuple[str, list[int]]] = []
    inside = [0, 0]  # now, most at once
    lock = threading.Lock()

    def slow(items: list[int]) -> list[int]:
        with lock:
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
            calls.append((threading.current_thread().name, list(items)))
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return [x + 1 for x in items]

    async def main() -> list[int]:
        batcher = MicroBatcher("m", slow, max_batch=32, max_wait_ms=1, parallel=2)
        first = await asyncio.gather(*(batcher.submit(i) for i in range(32)))
        again = await asyncio.gather(*(batcher.submit(i) for i in range(32)))  # after company: gathered, shared
        assert not batcher.busy
        await batcher.drain()
        return [*first, *again]

    assert _run(main()) == [i + 1 for i in range(32)] * 2
    assert inside[1] == 2  # two calls overlapped, never more
    assert len({name for name, _ in calls}) == 2  # in two threads
    assert max(len(items) for _, items in calls) <= 16  # 32 waiting items were split between the two free threads
    with pytest.raises(ValueError, match="parallel"):
        MicroBatcher("m", slow, parallel=0)


def test_a_failing_metrics_callback_fails_the_batch_instead_of_hanging_it() -> None:
    def broken(size: int, depth: int) -> None:
        raise RuntimeError("metrics down")

    async def main() -> list[object]:
        batcher = MicroBatcher("m", lambda xs: xs, max_batch=4, on_batch=broken, parallel=2)
        got = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True), timeout=5
        )
        await batcher.drain()
        return list(got)

    assert [str(r) for r in _run(main())] == ["metrics down"] * 3  # type: ignore[union-attr]
