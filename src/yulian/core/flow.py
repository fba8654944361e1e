"""Control flow and dict helpers: branches, routers, passthrough/assign/pick, and mapping over lists."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, TypeVar, cast

from yulian.core.compose import Composite, Parallel, _aannotated, _annotated, acall_step, call_step
from yulian.core.config import RunConfig, _ambient
from yulian.core.runnable import ConfigLike, Runnable, annotate, coerce

__all__ = [
    "Assign",
    "Branch",
    "Each",
    "Passthrough",
    "Pick",
    "Router",
    "assign",
    "branch",
    "passthrough",
    "pick",
    "route",
]

In = TypeVar("In")
Out = TypeVar("Out")


# ============================================================================================ branching
class Branch(Composite[In, Out]):
    """Runs the first case whose condition holds on the input, else the default. Built by `branch(...)`."""

    def __init__(self, cases: Iterable[tuple[Any, Any]], default: Any) -> None:
        self.cases = tuple(
            (coerce(cond, side=f"condition {i}"), coerce(r, side=f"case {i}")) for i, (cond, r) in enumerate(cases, 1)
        )
        if default is None:
            raise ValueError("branch() needs a default= runnable for inputs no condition matches")
        self.default = coerce(default, side="default")
        self._fast_conds = tuple(c._fast_call() for c, _ in self.cases)
        self.blocking = any(r.blocking for _, r in self.cases) or self.default.blocking

    def _describe_lines(self, depth: int) -> list[str]:
        lines = [f"{'  ' * depth}Branch"]
        for i, (cond, r) in enumerate(self.cases, 1):
            sub = r._describe_lines(depth + 1)
            sub[0] = f"{'  ' * (depth + 1)}if {cond.name}: {sub[0].lstrip()}"
            lines.extend(sub)
            del i
        sub = self.default._describe_lines(depth + 1)
        sub[0] = f"{'  ' * (depth + 1)}else: {sub[0].lstrip()}"
        return lines + sub

    def _choose(self, x: Any) -> tuple[Runnable[Any, Any], str]:
        for i, (cond_fn, (cond, r)) in enumerate(zip(self._fast_conds, self.cases, strict=True), 1):
            try:
                hit = cond_fn(x)
            except Exception as e:
                annotate(e, f"condition {i} ({cond.name})")
                raise
            if hit:
                return r, f"case {i} ({r.name})"
        return self.default, f"default ({self.default.name})"

    async def _achoose(self, x: Any) -> tuple[Runnable[Any, Any], str]:
        for i, (cond, r) in enumerate(self.cases, 1):
            try:
                hit = await cond.ainvoke(x)
            except Exception as e:
                annotate(e, f"condition {i} ({cond.name})")
                raise
            if hit:
                return r, f"case {i} ({r.name})"
        return self.default, f"default ({self.default.name})"

    def invoke(self, input: In, config: ConfigLike = None) -> Out:
        if config is None and _ambient() is None:
            chosen, label = self._choose(input)
            try:
                return cast(Out, chosen.invoke(input))
            except Exception as e:
                annotate(e, label)
                raise
        return cast(Out, self._run(input, config, self._invoke_chosen))

    def _invoke_chosen(self, x: Any, cfg: RunConfig) -> Any:
        chosen, label = self._choose(x)
        return call_step(chosen, x, cfg, label)

    async def ainvoke(self, input: In, config: ConfigLike = None) -> Out:
        async def body(x: Any, cfg: RunConfig) -> Any:
            chosen, label = await self._achoose(x)
            return await acall_step(chosen, x, cfg, label)

        if config is None and _ambient() is None:
            return cast(Out, await body(input, RunConfig()))
        return cast(Out, await self._arun(input, config, body))

    def stream(self, input: In, config: ConfigLike = None) -> Iterator[Out]:
        def pieces() -> Iterator[Any]:
            chosen, label = self._choose(input)
            return _annotated(chosen.stream(input), label)

        if config is None and _ambient() is None:
            return pieces()
        return self._stream_run(input, config, pieces)

    async def astream(self, input: In, config: ConfigLike = None) -> AsyncIterator[Out]:
        async def pieces() -> AsyncIterator[Any]:
            chosen, label = await self._achoose(input)
            async for item in _aannotated(chosen.astream(input), label):
                yield item

        if config is None and _ambient() is None:
            async for item in pieces():
                yield item
            return
        async for item in self._astream_run(input, config, pieces):
            yield item


class Router(Branch[In, Out]):
    """Picks a route by key: `route("intent", {"refund": refund_chain}, default=faq_chain)`.

    `key` is a callable on the input, or the name of a dict key / attribute of the input.
    """

    def __init__(
        self, key: str | Callable[[Any], Hashable], routes: Mapping[Hashable, Any], default: Any = None
    ) -> None:
        if not routes:
            raise ValueError("route() needs at least one route")
        self.key = key
        self.routes = {k: coerce(r, side=f"route {k!r}") for k, r in routes.items()}
        self.default_route = coerce(default, side="default") if default is not None else None
        self.cases = ()
        self.default = self.default_route or next(iter(self.routes.values()))
        self._fast_conds = ()
        self.blocking = any(r.blocking for r in self.routes.values())
        self._key_name = key if isinstance(key, str) else getattr(key, "__name__", "key")

    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or f"route({self._key_name})"

    def _describe_lines(self, depth: int) -> list[str]:
        lines = [f"{'  ' * depth}Router on {self._key_name}"]
        for k, r in self.routes.items():
            sub = r._describe_lines(depth + 1)
            sub[0] = f"{'  ' * (depth + 1)}{k!r}: {sub[0].lstrip()}"
            lines.extend(sub)
        if self.default_route is not None:
            sub = self.default_route._describe_lines(depth + 1)
            sub[0] = f"{'  ' * (depth + 1)}default: {sub[0].lstrip()}"
            lines.extend(sub)
        return lines

    def _key_of(self, x: Any) -> Any:
        if callable(self.key):
            return self.key(x)
        if isinstance(x, Mapping):
            if self.key not in x:
                raise KeyError(f"route({self.key!r}): input has no key {self.key!r} (keys: {', '.join(map(str, x))})")
            return x[self.key]
        if not hasattr(x, self.key):
            raise AttributeError(f"route({self.key!r}): {type(x).__name__} input has no attribute {self.key!r}")
        return getattr(x, self.key)

    def _choose(self, x: Any) -> tuple[Runnable[Any, Any], str]:
        try:
            k = self._key_of(x)
        except Exception as e:
            annotate(e, f"route key ({self._key_name})")
            raise
        r = self.routes.get(k)
        if r is not None:
            return r, f"route {k!r} ({r.name})"
        if self.default_route is None:
            raise ValueError(f"no route for {k!r} and no default (routes: {', '.join(map(repr, self.routes))})")
        return self.default_route, f"default ({self.default_route.name})"

    async def _achoose(self, x: Any) -> tuple[Runnable[Any, Any], str]:
        return self._choose(x)


# ============================================================================================ dict helpers
class Passthrough(Runnable[In, In]):
    """Returns its input unchanged (streams pass through piece by piece). Built by `passthrough()`."""

    blocking = False

    def invoke(self, input: In, config: ConfigLike = None) -> In:
        return input

    def transform(self, inputs: Iterable[In], config: ConfigLike = None) -> Iterator[In]:
        yield from inputs

    def _fast_call(self) -> Callable[[Any], Any]:
        return _identity


def _identity(x: Any) -> Any:
    return x


class Assign(Composite[Mapping[str, Any], dict[str, Any]]):
    """Adds keys to a dict input, each computed from the whole input. Built by `assign(key=runnable, ...)`."""

    def __init__(self, branches: Mapping[str, Any]) -> None:
        self.parallel: Parallel[Any] = Parallel(branches)
        self.blocking = self.parallel.blocking

    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or f"assign({', '.join(self.parallel.branches)})"

    def _describe_lines(self, depth: int) -> list[str]:
        lines = self.parallel._describe_lines(depth)
        lines[0] = f"{'  ' * depth}{self.name}"
        return lines

    def _check(self, x: Any) -> Mapping[str, Any]:
        if not isinstance(x, Mapping):
            raise TypeError(f"{self.name} expects a dict input, got {type(x).__name__}")
        return x

    def invoke(self, input: Mapping[str, Any], config: ConfigLike = None) -> dict[str, Any]:
        x = self._check(input)
        return {**x, **self.parallel.invoke(x, config)}

    async def ainvoke(self, input: Mapping[str, Any], config: ConfigLike = None) -> dict[str, Any]:
        x = self._check(input)
        return {**x, **await self.parallel.ainvoke(x, config)}

    def stream(self, input: Mapping[str, Any], config: ConfigLike = None) -> Iterator[dict[str, Any]]:
        x = self._check(input)
        yield dict(x)
        yield from self.parallel.stream(x, config)


class Pick(Runnable[Mapping[str, Any], Any]):
    """Picks one key (its value) or several keys (a smaller dict) from a dict input. Built by `pick(...)`."""

    blocking = False

    def __init__(self, *keys: str) -> None:
        if not keys:
            raise ValueError("pick() needs at least one key")
        self.keys = keys
        self._name = f"pick({', '.join(map(repr, keys))})"

    def invoke(self, input: Mapping[str, Any], config: ConfigLike = None) -> Any:
        if not isinstance(input, Mapping):
            raise TypeError(f"{self.name} expects a dict input, got {type(input).__name__}")
        missing = [k for k in self.keys if k not in input]
        if missing:
            raise KeyError(f"{self.name}: input has no key {missing[0]!r} (keys: {', '.join(map(str, input))})")
        if len(self.keys) == 1:
            return input[self.keys[0]]
        return {k: input[k] for k in self.keys}

    def __repr__(self) -> str:
        return self.name


class Each(Composite[list[Any], list[Any]]):
    """Runs a runnable on every element of a list input (with its `batch`). Built by `runnable.map()`."""

    def __init__(self, bound: Runnable[Any, Any]) -> None:
        self.bound = bound
        self.blocking = bound.blocking

    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or f"each({self.bound.name})"

    def invoke(self, input: list[Any], config: ConfigLike = None) -> list[Any]:
        return self.bound.batch(list(input), config)

    async def ainvoke(self, input: list[Any], config: ConfigLike = None) -> list[Any]:
        return await self.bound.abatch(list(input), config)


# ============================================================================================ constructors
def branch(*cases: tuple[Any, Any], default: Any) -> Branch[Any, Any]:
    """`branch((is_refund, refund_chain), (is_greeting, hello), default=faq_chain)`: first match wins."""
    return Branch(cases, default)


def route(
    key: str | Callable[[Any], Hashable], routes: Mapping[Hashable, Any], default: Any = None
) -> Router[Any, Any]:
    """Choose a runnable by a key of the input: `route("intent", {"refund": refund_chain}, default=faq)`."""
    return Router(key, routes, default)


def passthrough() -> Passthrough[Any]:
    """The identity step, e.g. to carry the question alongside retrieved context in a parallel map."""
    return Passthrough()


def assign(**branches: Any) -> Assign:
    """Add keys to a dict input: `assign(context=pick("question") | retriever)`."""
    return Assign(branches)


def pick(*keys: str) -> Pick:
    """Keep one key's value (`pick("answer")`) or several keys as a dict (`pick("answer", "sources")`)."""
    return Pick(*keys)
