"""Sequences: composition, coercion, flattening, error paths, description."""

from __future__ import annotations

import pytest

from yulian import error_path, runnable
from yulian.core import Lambda, Parallel, Runnable, Sequence


def add1(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return x * 2


def test_pipe_builds_flat_sequence_and_runs_in_order() -> None:
    chain = runnable(add1) | double | (lambda x: x - 3)
    assert isinstance(chain, Sequence)
    assert len(chain.steps) == 3
    assert chain.invoke(1) == 1  # (1 + 1) * 2 - 3
    nested = (runnable(add1) | double) | (runnable(add1) | double)
    assert len(nested.steps) == 4
    assert nested.invoke(1) == 10


def test_callable_on_the_left_and_dict_coercion() -> None:
    chain = add1 | runnable(double)
    assert chain.invoke(2) == 6
    fan = runnable(add1) | {"a": double, "b": lambda x: -x}
    assert isinstance(fan.steps[1], Parallel)
    assert fan.invoke(1) == {"a": 4, "b": -2}
    from_dict = {"x": add1} | runnable(lambda d: d["x"] * 10)
    assert from_dict.invoke(1) == 20


def test_composing_a_non_callable_raises_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"cannot compose int object 42"):
        runnable(add1) | 42
    with pytest.raises(TypeError, match=r"cannot compose str object 'oops'"):
        "oops" | runnable(add1)  # type: ignore[operator]


def test_error_names_the_failing_step_and_keeps_its_type() -> None:
    def parse_json(x: int) -> int:
        raise ValueError("bad json")

    chain = runnable(add1) | parse_json | double
    with pytest.raises(ValueError, match="bad json") as info:
        chain.invoke(1)
    assert error_path(info.value) == "step 2 (parse_json)"
    assert "yulian: step 2 (parse_json) failed" in info.value.__notes__


def test_nested_error_path_lists_outer_then_inner_steps() -> None:
    def boom(x: int) -> int:
        raise KeyError("k")

    inner = Sequence(add1, boom, name="inner")
    outer = runnable(double) | inner
    with pytest.raises(KeyError) as info:
        outer.invoke(1)
    assert error_path(info.value) == "step 2 (inner) > step 2 (boom)"
    assert len([n for n in info.value.__notes__ if n.startswith("yulian:")]) == 1


def test_error_path_in_traced_path_too() -> None:
    from yulian import RunConfig

    def fails(x: int) -> int:
        raise RuntimeError("x")

    with pytest.raises(RuntimeError) as info:
        (runnable(add1) | fails).invoke(1, RunConfig(tags=("t",)))
    assert error_path(info.value) == "step 2 (fails)"


def test_runnable_decorator_and_names() -> None:
    @runnable
    def shout(text: str) -> str:
        return text.upper()

    assert isinstance(shout, Lambda)
    assert shout.name == "shout"
    assert shout.invoke("hi") == "HI"

    @runnable(name="custom", blocking=True)
    def io_step(x: int) -> int:
        return x

    assert io_step.name == "custom" and io_step.blocking
    assert runnable(lambda x: x).name == "lambda"
    with pytest.raises(TypeError, match="already a Runnable"):
        runnable(shout)
    with pytest.raises(TypeError, match="needs a callable"):
        Lambda(3)  # type: ignore[arg-type]


def test_function_with_config_parameter_receives_run_config() -> None:
    from yulian import RunConfig

    seen = []

    def step(x: int, config: RunConfig) -> int:
        seen.append(config.tags)
        return x

    chain = runnable(add1) | step
    chain.invoke(1, RunConfig(tags=("a", "b")))
    chain.invoke(1)
    assert seen == [("a", "b"), ()]


def test_types_repr_and_describe() -> None:
    def to_text(x: int) -> str:
        return str(x)

    chain = runnable(add1) | to_text
    assert chain.input_type is int
    assert chain.output_type is str
    assert repr(chain) == "Sequence(add1 | to_text)"
    text = chain.describe()
    assert "1. add1: int -> int" in text
    assert "2. to_text: int -> str" in text


def test_custom_component_implements_only_invoke() -> None:
    class Shout(Runnable[str, str]):
        def invoke(self, input: str, config: object = None) -> str:
            return input.upper() + "!"

    shout = Shout()
    assert shout.input_type is str and shout.output_type is str
    chain = shout | (lambda s: s * 2)
    assert chain.invoke("a") == "A!A!"
    assert chain.batch(["a", "b"]) == ["A!A!", "B!B!"]
    assert list(chain.stream("a")) == ["A!A!"]
    import asyncio

    assert asyncio.run(chain.ainvoke("a")) == "A!A!"


def test_pipe_method_and_map() -> None:
    chain = runnable(add1).pipe(double, add1)
    assert chain.invoke(1) == 5
    each = runnable(add1).map()
    assert each.invoke([1, 2, 3]) == [2, 3, 4]


def test_named_sequence_is_not_flattened() -> None:
    inner = Sequence(add1, double, name="prep")
    outer = inner | add1
    assert len(outer.steps) == 2
    assert outer.steps[0].name == "prep"


def test_types_resolve_through_generic_intermediate_bases() -> None:
    from typing import Generic, TypeVar

    T = TypeVar("T")

    class Parser(Runnable[str, T], Generic[T]):
        def invoke(self, input: str, config: object = None) -> T:
            raise NotImplementedError

    class IntParser(Parser[int]):
        pass

    class Concrete(IntParser):
        pass

    assert Concrete().input_type is str
    assert Concrete().output_type is int
    assert "Concrete: str -> int" in Concrete().describe()
