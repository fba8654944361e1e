"""Batches, parallel maps, branches, routers and dict helpers."""

from __future__ import annotations

import threading
import time

import pytest

from yulian import assign, branch, error_path, parallel, passthrough, pick, route, runnable


def test_batch_keeps_order_and_runs_step_by_step() -> None:
    calls: list[list[int]] = []

    class Batched(runnable(lambda x: x).__class__):  # a Lambda that records its batch calls
        def batch(self, inputs, config=None, *, max_concurrency=None, return_exceptions=False):  # type: ignore[no-untyped-def]
            calls.append(list(inputs))
            return [x * 10 for x in inputs]

    model = Batched(lambda x: x * 10, name="model")
    chain = runnable(lambda x: x + 1) | model | (lambda x: x - 1)
    assert chain.batch([1, 2, 3]) == [19, 29, 39]
    assert calls == [[2, 3, 4]]  # the model saw the whole batch at once


def test_batch_return_exceptions_keeps_positions() -> None:
    def maybe(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x

    chain = runnable(maybe) | (lambda x: x * 100)
    out = chain.batch([1, 2, 3], return_exceptions=True)
    assert out[0] == 100 and out[2] == 300
    assert isinstance(out[1], ValueError)
    assert error_path(out[1]) == "step 1 (maybe)"
    with pytest.raises(ValueError, match="two"):
        chain.batch([1, 2, 3])


def test_blocking_batch_uses_threads_up_to_max_concurrency() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    @runnable(blocking=True)
    def io(x: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return x

    assert io.batch(list(range(8)), max_concurrency=2) == list(range(8))
    assert peak == 2
    peak = 0
    io.batch(list(range(4)), max_concurrency=1)
    assert peak == 1


def test_parallel_runs_named_branches_on_same_input() -> None:
    p = parallel(a=lambda x: x + 1, b=lambda x: x * 2)
    assert p.invoke(3) == {"a": 4, "b": 6}
    assert list(p.stream(3)) == [{"a": 4}, {"b": 6}]
    with pytest.raises(ValueError, match="at least one branch"):
        parallel()


def test_parallel_blocking_branches_run_concurrently() -> None:
    def slow(x: int) -> int:
        time.sleep(0.2)
        return x

    p = parallel(a=runnable(slow, blocking=True), b=runnable(slow, blocking=True))
    start = time.monotonic()
    assert p.invoke(1) == {"a": 1, "b": 1}
    assert time.monotonic() - start < 0.35


def test_parallel_error_names_branch() -> None:
    def bad(x: int) -> int:
        raise ValueError("x")

    with pytest.raises(ValueError, match="x") as info:
        (runnable(lambda x: x) | {"ok": lambda x: x, "bad": bad}).invoke(1)
    assert error_path(info.value) == "step 2 ({ok, bad}) > branch 'bad'"


def test_branch_first_match_else_default() -> None:
    b = branch(
        (lambda x: x < 0, lambda x: "negative"),
        (lambda x: x == 0, lambda x: "zero"),
        default=lambda x: "positive",
    )
    assert [b.invoke(v) for v in (-1, 0, 5)] == ["negative", "zero", "positive"]
    with pytest.raises(ValueError, match="default"):
        branch((lambda x: True, lambda x: x), default=None)


def test_route_by_key_and_missing_route() -> None:
    r = route("intent", {"refund": lambda d: "refund flow", "faq": lambda d: "faq flow"})
    assert r.invoke({"intent": "refund"}) == "refund flow"
    with pytest.raises(ValueError, match=r"no route for 'other'"):
        r.invoke({"intent": "other"})
    with pytest.raises(KeyError, match="input has no key 'intent'"):
        r.invoke({"label": "x"})
    with_default = route(lambda d: d["n"] % 2, {0: lambda d: "even"}, default=lambda d: "odd")
    assert with_default.invoke({"n": 3}) == "odd"


def test_passthrough_assign_pick() -> None:
    chain = {"question": passthrough(), "context": lambda q: f"docs for {q}"} | assign(
        prompt=lambda d: f"{d['context']} / {d['question']}"
    )
    out = chain.invoke("q1")
    assert out == {"question": "q1", "context": "docs for q1", "prompt": "docs for q1 / q1"}
    assert (chain | pick("prompt")).invoke("q") == "docs for q / q"
    assert (chain | pick("question", "context")).invoke("q") == {"question": "q", "context": "docs for q"}
    with pytest.raises(KeyError, match="no key 'nope'"):
        pick("nope").invoke({"a": 1})
    with pytest.raises(TypeError, match="expects a dict input, got str"):
        assign(x=lambda d: 1).invoke("text")  # type: ignore[arg-type]


def test_passthrough_streams_pieces() -> None:
    def gen(x: str):  # type: ignore[no-untyped-def]
        yield from x

    assert list((runnable(gen) | passthrough()).stream("abc")) == ["a", "b", "c"]
