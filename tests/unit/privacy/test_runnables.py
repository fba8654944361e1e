"""Masking runnables in chains: the model never sees raw PII and the user gets it back (invoke/batch/stream/async)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from yulian.core.messages import Message, MessageChunk, ToolCall, to_messages
from yulian.core.runnable import Runnable, runnable
from yulian.privacy import PIIGuard, PIIMasker, PIIRestorer, Vault, mask_around
from yulian.prompts import ChatPrompt
from yulian.testing import FakeChatModel

Q = "我的手机13812345678，邮箱wang@x.com，请回复"
RAW = ("13812345678", "wang@x.com")


def seen_by(model: FakeChatModel) -> str:
    return "\n".join(m.content for call in model.calls for m in call)


class PieceEcho(Runnable[Any, MessageChunk]):
    """Echoes the last user message as 3-character chunks, so placeholders arrive split (`<PH` `ONE` `_1>`)."""

    blocking = False

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _text(self, input: Any) -> str:
        text = to_messages(input)[-1].content
        self.seen.append(text)
        return text

    def invoke(self, input: Any, config: Any = None) -> MessageChunk:
        return MessageChunk("assistant", self._text(input))

    def stream(self, input: Any, config: Any = None) -> Iterator[MessageChunk]:
        text = self._text(input)
        for i in range(0, len(text), 3):
            yield MessageChunk("assistant", text[i : i + 3])

    async def astream(self, input: Any, config: Any = None) -> AsyncIterator[MessageChunk]:
        for chunk in self.stream(input, config):
            await asyncio.sleep(0)
            yield chunk


# ============================================================================================ masker shapes
def test_masker_keeps_the_input_shape() -> None:
    masker = PIIMasker()
    assert masker.invoke("电话13812345678") == "电话<PHONE_1>"
    assert masker.invoke(Message("user", "电话13812345678")) == Message("user", "电话<PHONE_1>")
    msgs = masker.invoke(
        [("system", "be brief"), ("user", "mail wang@x.com"), {"role": "user", "content": "13812345678"}]
    )
    assert msgs == [("system", "be brief"), ("user", "mail <EMAIL_1>"), {"role": "user", "content": "<PHONE_1>"}]
    assert masker.invoke({"question": "电话13812345678?", "k": 3}) == {"question": "电话<PHONE_1>?", "k": 3}
    assert masker.vault.mapping == {"<PHONE_1>": "13812345678", "<EMAIL_1>": "wang@x.com"}


def test_masker_with_an_irreversible_operator() -> None:
    assert PIIMasker(operator="mask").invoke("电话13812345678") == "电话138****5678"


def test_restorer_restores_tool_call_arguments() -> None:
    vault = Vault()
    ph = vault.placeholder("phone", "13812345678")
    call = ToolCall("c1", "send_sms", {"to": ph, "nested": {"list": [ph]}})
    out = PIIRestorer(vault).invoke(Message("assistant", f"texting {ph}", tool_calls=(call,)))
    assert out.content == "texting 13812345678"
    assert out.tool_calls[0].arguments == {"to": "13812345678", "nested": {"list": ["13812345678"]}}


# ============================================================================================ chains
def test_masker_model_restorer_chain() -> None:
    model = FakeChatModel()
    masker = PIIMasker()
    chain = ChatPrompt([("user", "{q}")]) | masker | model | masker.restorer()
    out = chain.invoke({"q": Q})
    assert out.content == Q
    assert not any(raw in seen_by(model) for raw in RAW)
    assert "<PHONE_1>" in seen_by(model)


def test_guard_invoke_batch_and_parser() -> None:
    model = FakeChatModel()
    chain = ChatPrompt([("user", "{q}")]) | mask_around(model) | (lambda m: m.content)
    assert chain.invoke({"q": Q}) == Q
    outs = chain.batch([{"q": Q}, {"q": "call 13900001111"}, {"q": "no pii"}])
    assert outs == [Q, "call 13900001111", "no pii"]
    assert not any(raw in seen_by(model) for raw in (*RAW, "13900001111"))


def test_guard_uses_a_fresh_vault_per_call() -> None:
    model = FakeChatModel()
    guard = PIIGuard(model)
    guard.batch(["phone 13812345678", "phone 13900001111"])
    # each call numbered its own phone 1: per-call vaults, so nothing leaks between calls
    assert [call[-1].content for call in model.calls] == ["phone <PHONE_1>", "phone <PHONE_1>"]


def test_guard_with_a_session_vault() -> None:
    vault = Vault()
    model = FakeChatModel(["noted <PHONE_1>"])
    guard = mask_around(model, vault=vault)
    assert guard.invoke("phone 13812345678").content == "noted 13812345678"
    assert guard.invoke("and 13900001111").content == "noted 13812345678"
    assert model.calls[1][-1].content == "and <PHONE_2>"


def test_guard_refuses_irreversible_operators() -> None:
    with pytest.raises(ValueError, match="reversible operator"):
        PIIGuard(FakeChatModel(), PIIMasker(operator="redact"))


def test_guard_streams_with_split_placeholders() -> None:
    echo = PieceEcho()
    chunks = list(PIIGuard(echo).stream(Q))
    assert "".join(c.content for c in chunks) == Q
    assert len(chunks) > 3  # still a stream, not one joined piece
    assert all(isinstance(c, MessageChunk) for c in chunks)
    assert echo.seen == ["我的手机<PHONE_1>，邮箱<EMAIL_1>，请回复"]


def test_restorer_streams_inside_a_chain() -> None:
    echo = PieceEcho()
    masker = PIIMasker()
    chain = masker | echo | masker.restorer()
    pieces = [c.content for c in chain.stream(Q)]
    assert "".join(pieces) == Q
    assert any(p == "13812345678" or "13812345678" in p for p in pieces)

    @runnable
    def text_pieces(x: str) -> Iterator[str]:
        for i in range(0, len(x), 2):
            yield x[i : i + 2]

    text_chain = masker | text_pieces | masker.restorer()
    assert "".join(text_chain.stream("邮箱wang@x.com")) == "邮箱wang@x.com"


def test_guard_async() -> None:
    model = FakeChatModel(delay=0.001)
    guard = mask_around(model)
    chain = ChatPrompt([("user", "{q}")]) | guard

    async def main() -> tuple[Any, list[Any], str]:
        one = await chain.ainvoke({"q": Q})
        many = await chain.abatch([{"q": f"phone 1391234567{i}"} for i in range(4)])
        streamed = "".join([c.content async for c in PIIGuard(PieceEcho()).astream(Q)])
        return one, many, streamed

    one, many, streamed = asyncio.run(main())
    assert one.content == Q
    assert [m.content for m in many] == [f"phone 1391234567{i}" for i in range(4)]
    assert streamed == Q
    assert not any(raw in seen_by(model) for raw in RAW)


def test_restorer_atransform() -> None:
    masker = PIIMasker()
    chain = masker | PieceEcho() | masker.restorer()

    async def main() -> str:
        return "".join([c.content async for c in chain.astream(Q)])

    assert asyncio.run(main()) == Q


def test_guard_describes_itself() -> None:
    guard = mask_around(FakeChatModel())
    assert guard.name == "PIIGuard(FakeChatModel)"
    assert "FakeChatModel" in guard.describe()
