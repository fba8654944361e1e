"""The packaged SmolLM2-135M-Instruct, end to end: registry -> GGUF conversion cache -> HFChatModel.

The first run converts the GGUF file once (20-150 s, into `~/.cache/yulian` or `$YULIAN_CACHE`); the tests
below then take a few seconds each.
"""

from __future__ import annotations

import time

import pytest

from yulian.models.hf_chat import HFChatModel
from yulian.models.registry import load, resolve

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def llm() -> HFChatModel:
    pytest.importorskip("transformers")
    try:
        resolve("smollm2-135m-instruct")
    except LookupError as e:
        pytest.skip(str(e))
    model = load("smollm2-135m-instruct", max_tokens=24)
    assert isinstance(model, HFChatModel)
    return model.warm_up()


def test_answers_a_simple_question(llm: HFChatModel) -> None:
    started = time.perf_counter()
    reply = llm.invoke(QUESTION)
    assert "Paris" in reply.content
    assert reply.metadata["finish_reason"] == "stop"  # it ended by itself, well before the budget
    assert time.perf_counter() - started < 60


def test_streams_token_by_token(llm: HFChatModel) -> None:
    pieces = [c.content for c in llm.stream(QUESTION) if c.content]
    assert len(pieces) >= 4
    assert "".join(pieces) == llm.invoke(QUESTION).content


def test_the_converted_copy_is_cached_and_reloads_fast(llm: HFChatModel) -> None:
    info = llm.runtime_info()
    assert info["folder"] != resolve("smollm2-135m-instruct").path  # loaded from the cache, not the GGUF
    started = time.perf_counter()
    HFChatModel("smollm2-135m-instruct", dtype="float32").warm_up()
    assert time.perf_counter() - started < 30  # no reconversion (that takes 20-150 s)


def test_batch_matches_single_answers_in_float32(llm: HFChatModel) -> None:
    # float32: padding changes nothing. (In bf16 a padded row's rounding differs, and where two next tokens
    # nearly tie - "The" 25.33 vs "L" 25.24 for this question's first token - the batched reply can differ,
    # exactly as with plain transformers `generate`.)
    exact = HFChatModel("smollm2-135m-instruct", dtype="float32", max_tokens=24)
    questions = [QUESTION, "What is 2 + 2? Answer with the number."]
    replies = exact.batch(questions)
    assert "Paris" in replies[0].content and "4" in replies[1].content
    assert [r.content for r in replies] == [exact.invoke(q).content for q in questions]
