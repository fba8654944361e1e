"""Streaming through chains and real async."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from yulian import runnable, transform


def tokens(text: str) -> Iterator[str]:
    for word in text.split():
        yield word + " "


def upper_each(pieces: Iterator[str]) -> Iterator[str]:
    for piece in pieces:
        yield piece.upper()


def test_stream_flows_through_transform_steps() -> None:
    seen: list[str] = []

    def spy(pieces: Iterator[str]) -> Iterator[str]:
        for p in pieces:
            seen.append(p)
            yield p

    chain = runnable(tokens) | transform(upper_each) | transform(spy)
    out = []
    for piece in chain.stream("a b c"):
        out.append(piece)
        # the spy has seen exactly as many pieces as we have: no buffering
        assert len(seen) == len(out)
    assert out == ["A ", "B ", "C "]


def test_non_streaming_step_buffers_but_later_steps_still_stream() -> None:
    chain = runnable(tokens) | runnable(lambda text: text.strip() + "!") | runnable(tokens)
    assert list(chain.stream("a b")) == ["a ", "b! "]
    assert chain.invoke("a b") == "a b! "


def test_generator_step_invoke_joins_pieces() -> None:
    assert runnable(tokens).invoke("x y") == "x y "
    assert transform(upper_each).invoke("x") == "X"


def test_dict_pieces_merge_key_by_key() -> None:
    def parts(x: str) -> Iterator[dict[str, str]]:
        yield {"a": "he"}
        yield {"a": "llo", "b": "!"}

    assert runnable(parts).invoke("") == {"a": "hello", "b": "!"}


def test_async_function_runs_natively_without_thread_hop() -> None:
    main = threading.get_ident()
    where: list[int] = []

    async def fetch(x: int) -> int:
        where.append(threading.get_ident())
        await asyncio.sleep(0)
        return x + 1

    chain = runnable(fetch) | (lambda x: x * 2)
    assert asyncio.run(chain.ainvoke(1)) == 4
    assert where == [main]
    # a sync call runs the coroutine in a private loop
    assert chain.invoke(1) == 4


def test_async_function_called_sync_inside_running_loop_errors_clearly() -> None:
    async def f(x: int) -> int:
        return x

    async def main() -> None:
        with pytest.raises(RuntimeError, match="use ainvoke"):
            runnable(f).invoke(1)

    asyncio.run(main())


def test_blocking_step_goes_to_a_thread_in_async() -> None:
    main = threading.get_ident()
    where: list[int] = []

    @runnable(blocking=True)
    def io(x: int) -> int:
        where.append(threading.get_ident())
        return x

    asyncio.run(io.ainvoke(1))
    assert where and where[0] != main


def test_astream_flows_through_async_generators() -> None:
    async def atokens(text: str) -> AsyncIterator[str]:
        for w in text.split():
            await asyncio.sleep(0)
            yield w

    async def aupper(pieces: AsyncIterator[str]) -> AsyncIterator[str]:
        async for p in pieces:
            yield p.upper()

    chain = runnable(atokens) | transform(aupper)

    async def collect() -> list[str]:
        return [p async for p in chain.astream("a b c")]

    assert asyncio.run(collect()) == ["A", "B", "C"]
    assert asyncio.run(chain.ainvoke("a b")) == "AB"


def test_astream_of_sync_streaming_steps() -> None:
    chain = runnable(tokens) | transform(upper_each)

    async def collect() -> list[str]:
        return [p async for p in chain.astream("a b")]

    assert asyncio.run(collect()) == ["A ", "B "]


def test_abatch_respects_max_concurrency() -> None:
    running = 0
    peak = 0

    async def slow(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return x * 2

    chain = runnable(slow) | (lambda x: x + 1)
    out = asyncio.run(chain.abatch(list(range(10)), max_concurrency=3))
    assert out == [x * 2 + 1 for x in range(10)]
    assert peak == 3


def test_stream_error_names_step() -> None:
    from yulian import error_path

    def bad(pieces: Iterator[str]) -> Iterator[str]:
        for _ in pieces:
            raise ValueError("nope")
        yield ""

    chain = runnable(tokens) | transform(bad)
    with pytest.raises(ValueError, match="nope") as info:
        list(chain.stream("a"))
    assert error_path(info.value) == "step 2 (bad)"


def test_stream_error_in_middle_step_names_only_that_step() -> None:
    from yulian import error_path

    def bad(pieces: Iterator[str]) -> Iterator[str]:
        for _ in pieces:
            raise ValueError("mid")
        yield ""

    chain = runnable(tokens) | transform(bad) | transform(upper_each)
    with pytest.raises(ValueError, match="mid") as info:
        list(chain.stream("a"))
    assert error_path(info.value) == "step 2 (bad)"

    async def collect() -> None:
        [p async for p in chain.astream("a")]

    with pytest.raises(ValueError, match="mid") as ainfo:
        asyncio.run(collect())
    assert error_path(ainfo.value) == "step 2 (bad)"


def test_snapshot_streams_hand_the_last_piece_to_a_joining_step() -> None:
    from yulian.core import Runnable

    class Snapshots(Runnable[str, dict[str, str]]):
        stream_snapshots = True
        blocking = False

        def invoke(self, input: str, config: object = None) -> dict[str, str]:
            return {"a": input}

        def stream(self, input: str, config: object = None) -> Iterator[dict[str, str]]:
            for i in range(1, len(input) + 1):
                yield {"a": input[:i]}

    chain = Snapshots() | (lambda d: d["a"].upper())
    assert list(chain.stream("abc")) == ["ABC"]  # not "AABABC"

    async def collect() -> list[str]:
        return [p async for p in chain.astream("abc")]

    assert asyncio.run(collect()) == ["ABC"]


def test_unjoinable_pieces_raise_a_clear_error() -> None:
    class Box:
        pass

    def boxes(x: int) -> Iterator[Box]:
        yield Box()
        yield Box()

    with pytest.raises(TypeError, match="cannot join stream pieces Box \\+ Box"):
        runnable(boxes).invoke(1)
