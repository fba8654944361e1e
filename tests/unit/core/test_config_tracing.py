"""Run config through contextvars, tracing spans and their parents, timeouts."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from yulian import Callback, JsonlTracer, MemoryTracer, RunConfig, Span, current_config, runnable


def test_spans_for_chain_and_steps_with_parents() -> None:
    tracer = MemoryTracer()
    chain = runnable(lambda x: x + 1, name="inc") | runnable(lambda x: x * 2, name="dbl")
    assert chain.invoke(1, RunConfig(callbacks=[tracer], tags=("t",), metadata={"user": "u1"})) == 4
    spans = {s.name: s for s in tracer.spans}
    root = spans["inc | dbl"]
    assert root.parent_id is None and root.kind == "chain"
    assert spans["inc"].parent_id == root.run_id and spans["dbl"].parent_id == root.run_id
    assert spans["inc"].trace_id == root.run_id
    assert spans["dbl"].inputs == 2 and spans["dbl"].outputs == 4
    assert spans["inc"].tags == ("t",) and spans["inc"].metadata == {"user": "u1"}
    assert all(s.end is not None and s.end >= s.start for s in tracer.spans)


def test_nested_chain_called_inside_a_function_keeps_trace_parent() -> None:
    tracer = MemoryTracer()
    inner = runnable(lambda x: x + 1, name="inner_step") | runnable(lambda x: x, name="inner_tail")

    def outer_step(x: int) -> int:
        return inner.invoke(x)  # no config passed: it is inherited from the context

    chain = runnable(outer_step) | runnable(lambda x: x, name="last")
    chain.invoke(1, RunConfig(callbacks=[tracer]))
    by_name = {s.name: s for s in tracer.spans}
    nested_root = by_name["inner_step | inner_tail"]
    assert nested_root.parent_id == by_name["outer_step"].run_id
    assert by_name["inner_step"].parent_id == nested_root.run_id
    assert len({s.trace_id for s in tracer.spans}) == 1


def test_async_tasks_keep_trace_parent() -> None:
    tracer = MemoryTracer()

    async def a(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    chain = runnable(a, name="a") | {"l": runnable(a, name="left"), "r": runnable(a, name="right")}
    out = asyncio.run(chain.ainvoke(1, RunConfig(callbacks=[tracer])))
    assert out == {"l": 3, "r": 3}
    by_name = {s.name: s for s in tracer.spans}
    par = by_name["{l, r}"]
    assert by_name["left"].parent_id == par.run_id and by_name["right"].parent_id == par.run_id
    assert par.parent_id == by_name["a | {l, r}"].run_id


def test_error_span_recorded() -> None:
    tracer = MemoryTracer()

    def bad(x: int) -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        (runnable(lambda x: x) | bad).invoke(1, RunConfig(callbacks=[tracer]))
    errors = {s.name: s.error for s in tracer.spans}
    assert errors["bad"] == "ValueError: boom"
    assert errors["lambda | bad"] == "ValueError: boom"


def test_broken_callback_never_breaks_the_chain(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Callback):
        def on_start(self, span: Span) -> None:
            raise RuntimeError("observer bug")

    assert (runnable(lambda x: x) | (lambda x: x + 1)).invoke(1, RunConfig(callbacks=[Broken()])) == 2
    assert "observer bug" in caplog.text


def test_jsonl_tracer_writes_one_line_per_span(tmp_path: Path) -> None:
    path = tmp_path / "trace" / "spans.jsonl"
    with JsonlTracer(path, max_chars=20) as tracer:
        (runnable(lambda x: x * 100, name="grow") | (lambda x: x)).invoke("abc", RunConfig(callbacks=[tracer]))
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3
    grow = next(r for r in lines if r["name"] == "grow")
    assert len(grow["outputs"]) == 20 and grow["outputs"].endswith("…")
    assert {"run_id", "parent_id", "trace_id", "duration_ms", "error", "tags"} <= grow.keys()


def test_stream_is_traced_with_aggregated_output() -> None:
    tracer = MemoryTracer()

    def gen(x: str):  # type: ignore[no-untyped-def]
        yield from x

    assert list((runnable(gen) | (lambda s: s.upper())).stream("ab", RunConfig(callbacks=[tracer]))) == ["AB"]
    by_name = {s.name: s for s in tracer.spans}
    assert by_name["gen"].outputs == "ab"
    assert by_name["gen"].parent_id == by_name["gen | lambda"].run_id


def test_current_config_visible_in_steps_and_reset_after() -> None:
    seen: list[tuple[str, ...]] = []
    chain = runnable(lambda x: seen.append(current_config().tags) or x) | (lambda x: x)
    chain.invoke(1, RunConfig(tags=("outer",)))
    assert seen == [("outer",)]
    assert current_config().tags == ()


def test_sync_timeout_checked_between_steps() -> None:
    def slow(x: int) -> int:
        time.sleep(0.15)
        return x

    chain = runnable(slow) | runnable(lambda x: x, name="after")
    with pytest.raises(TimeoutError, match=r"step 2 \(after\) did not start"):
        chain.invoke(1, RunConfig(timeout=0.05))
    assert chain.invoke(1, RunConfig(timeout=5)) == 1


def test_async_timeout_cancels() -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(5)
        return x

    chain = runnable(slow) | (lambda x: x)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="ran past its timeout"):
        asyncio.run(chain.ainvoke(1, RunConfig(timeout=0.05)))
    assert time.monotonic() - start < 1.0


def test_bound_timeout_starts_at_call_time() -> None:
    chain = (runnable(lambda x: x) | (lambda x: x)).with_config(timeout=0.1)
    time.sleep(0.15)  # building the config long before the call must not eat the budget
    assert chain.invoke(1) == 1


def test_config_validation_and_merge() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        RunConfig(max_concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        RunConfig(timeout=0)
    merged = RunConfig(tags=("a",), metadata={"x": 1}).merge({"tags": ("b", "a"), "metadata": {"y": 2}})
    assert merged.tags == ("a", "b") and merged.metadata == {"x": 1, "y": 2}
    assert RunConfig(tags=["l"]).tags == ("l",)  # type: ignore[arg-type]


def test_batch_with_callbacks_traces_each_step_batch() -> None:
    tracer = MemoryTracer()
    chain = runnable(lambda x: x + 1, name="inc") | runnable(lambda x: x * 2, name="dbl")
    assert chain.batch([1, 2], RunConfig(callbacks=[tracer])) == [4, 6]
    kinds = sorted((s.name, s.kind) for s in tracer.spans)
    assert kinds == [("dbl", "batch"), ("inc", "batch"), ("inc | dbl", "batch")]


def test_use_config_makes_a_config_current_inside_a_component() -> None:
    from yulian import use_config
    from yulian.core import Runnable

    class Leaf(Runnable[int, tuple[str, ...]]):
        def invoke(self, input: int, config: object = None) -> tuple[str, ...]:
            with use_config(config):  # type: ignore[arg-type]
                return tuple(current_config().tags)

    assert Leaf().invoke(1, RunConfig(tags=("x",))) == ("x",)
    assert Leaf().invoke(1) == ()
    assert current_config().tags == ()
