"""Masking as chain steps: `PIIMasker`, `PIIRestorer`, and `PIIGuard` / `mask_around(model)` around a model.

    guard = mask_around(llm)                          # per-call vaults: concurrent calls never mix
    chain = prompt | guard | parser                   # the model sees <PHONE_1>, the user gets the number back

    masker = PIIMasker()                              # or explicit steps sharing one (session) vault
    chain = prompt | masker | llm | masker.restorer() | parser

Inputs keep their shape: a str, a `Message`, a list of messages (`Message`s, `(role, text)` tuples or
`{"role", "content"}` dicts), or a dict of prompt variables (its string values are masked). Restoring also
works on streams, where a placeholder may arrive split across chunks (`<PHO` + `NE_1>`), and inside the
arguments of tool calls the model asks for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from yulian.core.messages import Message, MessageChunk, ToolCall
from yulian.core.runnable import ConfigLike, Runnable, coerce
from yulian.privacy.analyzer import Analyzer, Lang
from yulian.privacy.operators import Operator, apply_operator, get_operator
from yulian.privacy.vault import StreamRestorer, Vault

__all__ = ["PIIGuard", "PIIMasker", "PIIRestorer", "arestore_stream", "map_text", "mask_around", "restore_stream"]


def map_text(value: Any, fn: Callable[[str], str]) -> Any:
    """`value` with `fn` applied to its text: a str, a Message's content (and tool-call arguments), and the strings
    inside lists, tuples and dicts (an OpenAI-style message dict's `content` included). Other values pass as is."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, Message):  # MessageChunk too: `replace` keeps the class
        calls = tuple(_map_call(c, fn) for c in value.tool_calls) if value.tool_calls else value.tool_calls
        return replace(value, content=fn(value.content), tool_calls=calls)
    if isinstance(value, Mapping):
        return {k: map_text(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_text(v, fn) for v in value]
    if isinstance(value, tuple):
        return tuple(map_text(v, fn) for v in value)
    return value


def _map_call(call: ToolCall, fn: Callable[[str], str]) -> ToolCall:
    return replace(call, arguments=map_text(dict(call.arguments), fn))


class PIIMasker(Runnable[Any, Any]):
    """Masks PII in its input, keeping the input's shape; placeholders are recorded in `vault`.

    Args:
        analyzer: the `Analyzer` to use (default: one built from `entities`, `names` and `lang`).
        operator: `placeholder` (reversible; the default), `redact`, `mask`, `hash`, or an `Operator`.
        vault: the vault for placeholders (default: a new one, shared with `restorer()`). One vault serves one
            session; for per-call isolation wrap the model with `PIIGuard` instead.
        entities, names, lang: passed to a new `Analyzer` when `analyzer` is None.
    """

    blocking = False

    def __init__(
        self,
        analyzer: Analyzer | None = None,
        *,
        operator: str | Operator = "placeholder",
        vault: Vault | None = None,
        entities: Iterable[str] | str | None = None,
        names: bool = False,
        lang: Lang = "auto",
    ) -> None:
        self.analyzer = analyzer if analyzer is not None else Analyzer(entities, names=names, lang=lang)
        self.operator = get_operator(operator)
        self.vault = vault if vault is not None else Vault()

    def mask_value(self, value: Any, vault: Vault | None = None) -> Any:
        """`value` (any accepted shape) with its PII masked, placeholders going into `vault` (default: own)."""
        target = self.vault if vault is None else vault
        analyzer, operator = self.analyzer, self.operator

        def one(text: str) -> str:
            return apply_operator(text, analyzer.analyze(text), operator, target)

        return map_text(value, one)

    def invoke(self, input: Any, config: ConfigLike = None) -> Any:
        """The input with its PII masked, in the same shape."""
        return self.mask_value(input)

    def restorer(self) -> PIIRestorer:
        """A `PIIRestorer` sharing this masker's vault."""
        return PIIRestorer(self.vault)


class PIIRestorer(Runnable[Any, Any]):
    """Puts the values behind placeholders back into its input: text, messages, tool-call arguments, streams."""

    blocking = False

    def __init__(self, vault: Vault) -> None:
        if not isinstance(vault, Vault):
            raise TypeError(f"PIIRestorer needs a Vault, got {type(vault).__name__}")
        self.vault = vault

    def invoke(self, input: Any, config: ConfigLike = None) -> Any:
        """The input with placeholders restored, in the same shape."""
        return map_text(input, self.vault.restore)

    def stream(self, input: Any, config: ConfigLike = None) -> Iterator[Any]:
        yield self.invoke(input, config)

    def transform(self, inputs: Iterable[Any], config: ConfigLike = None) -> Iterator[Any]:
        """Restore a stream of text pieces or message chunks; a placeholder split across pieces is buffered."""
        return restore_stream(inputs, self.vault)

    async def atransform(self, inputs: AsyncIterator[Any], config: ConfigLike = None) -> AsyncIterator[Any]:
        """Async `transform`."""
        async for item in arestore_stream(inputs, self.vault):
            yield item


class PIIGuard(Runnable[Any, Any]):
    """Wraps a runnable (usually a chat model): masks its input, calls it, restores the placeholders in its output.

    Every call gets a fresh `Vault` (unless `vault` is given, e.g. to keep one per chat session), so concurrent
    calls and batches never see each other's values. invoke, batch, stream and the async twins all work; a
    streamed answer is restored chunk by chunk. A per-call mapping lives only as long as the call.

    Args:
        runnable: the model or chain to protect.
        masker: the masking step (default: `PIIMasker()`, placeholders, structured PII only).
        vault: a vault to share across calls (default: a new one per call).
    """

    def __init__(self, runnable: Any, masker: PIIMasker | None = None, *, vault: Vault | None = None) -> None:
        self.runnable = coerce(runnable, side="PIIGuard")
        self.masker = masker if masker is not None else PIIMasker()
        if not self.masker.operator.reversible:
            raise ValueError(
                f"PIIGuard needs a reversible operator (placeholder), got {self.masker.operator.name or 'custom'}: "
                "use PIIMasker alone to mask without restoring"
            )
        self.vault = vault
        self.blocking = self.runnable.blocking
        self._name = f"PIIGuard({self.runnable.name})"

    def _vault(self) -> Vault:
        return self.vault if self.vault is not None else Vault()

    def invoke(self, input: Any, config: ConfigLike = None) -> Any:
        vault = self._vault()
        output = self.runnable.invoke(self.masker.mask_value(input, vault), config)
        return map_text(output, vault.restore)

    async def ainvoke(self, input: Any, config: ConfigLike = None) -> Any:
        vault = self._vault()
        output = await self.runnable.ainvoke(self.masker.mask_value(input, vault), config)
        return map_text(output, vault.restore)

    def stream(self, input: Any, config: ConfigLike = None) -> Iterator[Any]:
        vault = self._vault()
        yield from restore_stream(self.runnable.stream(self.masker.mask_value(input, vault), config), vault)

    async def astream(self, input: Any, config: ConfigLike = None) -> AsyncIterator[Any]:
        vault = self._vault()
        async for item in arestore_stream(self.runnable.astream(self.masker.mask_value(input, vault), config), vault):
            yield item

    def _describe_lines(self, depth: int) -> list[str]:
        return [f"{'  ' * depth}PIIGuard:", *self.runnable._describe_lines(depth + 1)]


def mask_around(runnable: Any, **masker_options: Any) -> PIIGuard:
    """`PIIGuard(runnable, PIIMasker(**masker_options))`: mask before, restore after, per-call vaults."""
    vault = masker_options.pop("vault", None)
    return PIIGuard(runnable, PIIMasker(**masker_options), vault=vault)


# ============================================================================================ streams
class _ChunkRestorer:
    """Restores one stream's pieces; text pieces and message chunks (their content) both work."""

    def __init__(self, vault: Vault) -> None:
        self.text = StreamRestorer(vault)
        self.vault = vault
        self.last: Any = None

    def feed(self, piece: Any) -> Any | None:
        if isinstance(piece, str):
            self.last = ""
            return self.text.feed(piece) or None
        if isinstance(piece, Message):
            self.last = piece
            content = self.text.feed(piece.content)
            restored = map_text(replace(piece, content=""), self.vault.restore)
            out = replace(restored, content=content)
            if content or out.tool_calls or out.metadata:
                return out
            return None
        return map_text(piece, self.vault.restore)  # dicts and others: restore whole

    def finish(self) -> Any | None:
        tail = self.text.finish()
        if not tail:
            return None
        if isinstance(self.last, Message):
            return MessageChunk(self.last.role, tail)
        return tail


def restore_stream(pieces: Iterable[Any], vault: Vault) -> Iterator[Any]:
    """Restore placeholders in a stream of text pieces or message chunks (split placeholders are buffered)."""
    state = _ChunkRestorer(vault)
    for piece in pieces:
        out = state.feed(piece)
        if out is not None:
            yield out
    tail = state.finish()
    if tail is not None:
        yield tail


async def arestore_stream(pieces: AsyncIterator[Any], vault: Vault) -> AsyncIterator[Any]:
    """Async `restore_stream`."""
    state = _ChunkRestorer(vault)
    async for piece in pieces:
        out = state.feed(piece)
        if out is not None:
            yield out
    tail = state.finish()
    if tail is not None:
        yield tail
