"""OpenAIChatModel / OpenAIEmbedder against a real OpenAI-compatible server, when one is configured.

Set `YULIAN_OPENAI_BASE_URL` (e.g. `http://127.0.0.1:8000/v1` for `yulian serve`, vLLM, llama.cpp or Ollama),
optionally `YULIAN_OPENAI_API_KEY`, `YULIAN_OPENAI_CHAT_MODEL` and `YULIAN_OPENAI_EMBED_MODEL`. Without a base URL
these tests are skipped: the unit tests cover the protocol offline against a fake server.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from yulian.core.runnable import aggregate
from yulian.models.openai_models import OpenAIChatModel, OpenAIEmbedder

BASE_URL = os.environ.get("YULIAN_OPENAI_BASE_URL")
API_KEY = os.environ.get("YULIAN_OPENAI_API_KEY")
CHAT_MODEL = os.environ.get("YULIAN_OPENAI_CHAT_MODEL", "smollm2-135m-instruct")
EMBED_MODEL = os.environ.get("YULIAN_OPENAI_EMBED_MODEL")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(60),
    pytest.mark.skipif(not BASE_URL, reason="set YULIAN_OPENAI_BASE_URL to run against a real server"),
]


def chat() -> OpenAIChatModel:
    return OpenAIChatModel(CHAT_MODEL, base_url=BASE_URL, api_key=API_KEY, temperature=0, max_tokens=24, timeout=30)


def test_live_chat_invoke_stream_and_async() -> None:
    model = chat()
    reply = model.invoke("What is the capital of France? Answer in one word.")
    assert reply.role == "assistant" and reply.content.strip()
    chunks = list(model.stream("Count from 1 to 5."))
    assert aggregate(chunks).content.strip() and aggregate(chunks).metadata.get("finish_reason")
    assert asyncio.run(model.ainvoke("Say hi.")).content.strip()


@pytest.mark.skipif(not EMBED_MODEL, reason="set YULIAN_OPENAI_EMBED_MODEL to test embeddings")
def test_live_embeddings_keep_order() -> None:
    embedder = OpenAIEmbedder(str(EMBED_MODEL), base_url=BASE_URL, api_key=API_KEY, batch_size=2)
    texts = ["银行卡丢了怎么办", "How do I reset my password?", "我的卡丢了"]
    vectors = embedder.batch(texts)  # two requests: [0, 1] and [2]
    assert len(vectors) == 3 and len({len(v) for v in vectors}) == 1
    for text, vector in zip(texts, vectors, strict=True):  # each vector is its own text's, in order
        alone = embedder.invoke(text)
        assert max(abs(a - b) for a, b in zip(vector, alone, strict=True)) < 1e-3
