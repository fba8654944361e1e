"""The end-to-end demo behind `make demo` / `yulian demo`: a chain shown through invoke, batch, stream and async.

For now the model is the deterministic offline `FakeChatModel`; later parts of yulian swap in the packaged
local models without changing the chain.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from yulian import JsonlTracer, MemoryTracer, RunConfig, Runnable, assign, error_path, passthrough, runnable
from yulian.prompts import ChatPrompt, JsonParser, TextParser
from yulian.testing import FakeChatModel

__all__ = ["run"]

ANSWERS = [
    "A language chain links a prompt, a model and a parser so each step feeds the next.",
    "语链把提示词、模型和解析器串在一起，每一步的输出就是下一步的输入。",
]


def _title(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 66 - len(text)))


FAQ = [
    (
        "How do I reset my card PIN?",
        "Open the app, go to Cards > Security > Reset PIN, and confirm with your password.",
    ),
    (
        "My card was lost or stolen.",
        "Freeze the card at once in the app under Cards > Freeze, then order a replacement.",
    ),
    ("How long does a transfer take?", "Transfers between our accounts are instant; other banks take one working day."),
    ("How do I close my account?", "Withdraw your balance, then choose Settings > Close account in the app."),
    ("信用卡丢了怎么办？", "请立即在 App 中冻结卡片（卡片 > 冻结），然后申请补卡。"),
    ("转账多久到账？", "本行账户之间实时到账，跨行转账一个工作日内到账。"),
]


def run_real_models(question: str = "How do I reset my PIN?") -> None:
    """RAG on the embedded defaults: MiniLM retrieval over a small FAQ, SmolLM2 writes the answer, streamed."""
    from transformers.utils import logging as hf_logging

    from yulian.models import load
    from yulian.retrieval import Document, FaissIndex, Retriever, rag_chain

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers' own weight-loading bars: noise at this size

    _title("real packaged models: MiniLM retrieval + SmolLM2 answer")
    print("(the first run converts the packaged SmolLM2 GGUF once, 20-150 s; later runs load it in ~1 s)")
    docs = [Document(f"Q: {q}\nA: {a}", {"source": f"faq#{i}"}) for i, (q, a) in enumerate(FAQ, 1)]
    index = FaissIndex.build(docs, embedder=load("minilm-l6"))
    llm = load("smollm2-135m-instruct", max_tokens=60, extra={"repetition_penalty": 1.15})
    rag = rag_chain(Retriever(index, k=2), llm, lang="en")
    print(f"question: {question}")
    sources: list[Document] = []
    print("answer:   ", end="", flush=True)
    for piece in rag.stream(question):
        sources = piece.get("sources", sources)
        print(piece.get("answer", ""), end="", flush=True)
    print()
    for i, doc in enumerate(sources, 1):
        print(f"  [{i}] {doc.metadata['source']} (score {doc.score:.3f}): {doc.text.splitlines()[0]}")


def run(question: str = "What is a language chain?", stream: bool = True, real: bool = True) -> None:
    """Build a small chain and show every way of calling it; then RAG with the real packaged models."""
    prompt = ChatPrompt([("system", "Answer in one sentence."), ("user", "{question}")])

    def make_chain() -> Runnable[Any, Any]:  # a fresh fake model answers ANSWERS in order
        return prompt | FakeChatModel(responses=ANSWERS) | TextParser()

    chain = make_chain()

    _title("the chain")
    print(chain.describe())

    _title("invoke")
    print(chain.invoke({"question": question}))

    _title("batch (max_concurrency=4)")
    questions = ["What is a language chain?", "什么是语链？"]
    answers = make_chain().batch([{"question": q} for q in questions], max_concurrency=4)
    for q, answer in zip(questions, answers, strict=True):
        print(f"{q} -> {answer}")

    if stream:
        _title("stream (pieces separated by |)")
        for piece in make_chain().stream({"question": question}):
            print(piece, end="|", flush=True)
            time.sleep(0.01)
        print()

    _title("async: ainvoke and astream")

    async def use_async() -> None:
        print(await chain.ainvoke({"question": question}))
        pieces = [p async for p in chain.astream({"question": "中文？"})]
        print(f"{len(pieces)} pieces: {''.join(pieces)}")

    asyncio.run(use_async())

    _title("parallel branches, assign and a JSON parser")
    json_model = FakeChatModel(responses=['Sure! ```json\n{"sentiment": "positive", "score": 0.93,}\n```'])
    analyse = {"text": passthrough(), "length": len} | assign(
        analysis=runnable(lambda d: d["text"]) | json_model | JsonParser()
    )
    print(analyse.invoke("这家银行的服务很好"))

    _title("retry, fallback and an error that names its step")
    flaky_calls = {"n": 0}

    def flaky(text: str) -> str:
        flaky_calls["n"] += 1
        if flaky_calls["n"] < 3:
            raise ConnectionError("endpoint busy")
        return text.upper()

    print(
        runnable(flaky).with_retry(attempts=3, backoff=0.01).invoke("third time lucky"), f"({flaky_calls['n']} tries)"
    )

    def endpoint_down(text: str) -> str:
        raise TimeoutError("primary endpoint timed out")

    print(runnable(endpoint_down).with_fallbacks([str.title]).invoke("answered by the fallback"))
    broken = make_chain() | JsonParser()
    try:
        broken.invoke({"question": question})
    except ValueError as e:
        print(f"error at {error_path(e)}: {str(e).splitlines()[0]}")

    _title("tracing")
    memory = MemoryTracer()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.jsonl"
        with JsonlTracer(path) as jsonl:
            chain.invoke({"question": question}, RunConfig(callbacks=[memory, jsonl], tags=("demo",)))
        lines = path.read_text(encoding="utf-8").splitlines()
    print(memory.tree())
    print(f"({len(lines)} JSONL spans written)")

    if real:
        run_real_models()


if __name__ == "__main__":
    run(question=" ".join(sys.argv[1:]) or "What is a language chain?")
