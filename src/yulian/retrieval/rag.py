"""Retrieval-augmented generation: retrieve -> a prompt with numbered, citable context -> the model.

```
rag = rag_chain(Retriever(index, k=4, hybrid=True), llm)
out = rag.invoke("花呗怎么还款？")       # {"answer": "... [1] ...", "sources": [Document, ...]}
cited_sources(out)                       # the sources the answer cites as [n]
for piece in rag.stream(question):       # {"sources": [...]} first, then {"answer": "tok"} pieces
    ...
```

The chain is built from ordinary steps, so it traces, streams, batches and runs async like any other:
`{"question", "sources"} -> assign(context=format_docs(sources)) -> {"sources", "answer": prompt | model | text}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from yulian.core.flow import assign, branch, pick
from yulian.core.runnable import Lambda, Runnable, coerce
from yulian.retrieval.documents import Document

__all__ = ["answer_prompt", "cited_sources", "format_docs", "rag_chain"]

Lang = Literal["auto", "en", "zh"]

_EN_SYSTEM = (
    "Answer the question using only the numbered context passages below. Cite the passages you use by their "
    "numbers in square brackets, like [1] or [2][3]. If the context does not contain the answer, say that you "
    "do not know.\n\nContext:\n{context}"
)
_ZH_SYSTEM = (
    "请只根据下面编号的资料回答问题，并在句末用方括号标注所依据资料的编号，例如 [1] 或 [2][3]。"
    "如果资料中没有答案，请直接说不知道。\n\n资料：\n{context}"
)
_NO_DOCS = "(no documents found / 未找到相关资料)"
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_CITATION = re.compile(r"\[(\d+(?:\s*[,，、]\s*\d+)*)\]")


def format_docs(docs: Sequence[Document]) -> str:
    """Documents as numbered context for a prompt: `[1] text (source: faq.md, page 3)`, blank-line separated."""
    if not docs:
        return _NO_DOCS
    parts = []
    for n, doc in enumerate(docs, 1):
        where = _source(doc.metadata)
        parts.append(f"[{n}] {doc.text.strip()}" + (f" (source: {where})" if where else ""))
    return "\n\n".join(parts)


def _source(metadata: Mapping[str, Any]) -> str:
    bits = []
    for key in ("source", "title"):
        if metadata.get(key):
            bits.append(str(metadata[key]))
            break
    for key, label in (("page", "page"), ("line", "line")):
        if metadata.get(key) is not None:
            bits.append(f"{label} {metadata[key]}")
    return ", ".join(bits)


def cited_sources(result: Mapping[str, Any]) -> list[Document]:
    """The sources an answer cites as `[n]` (also `[1, 2]`), in order of first citation; out-of-range n ignored."""
    answer = str(result.get("answer", ""))
    sources = list(result.get("sources", []))
    cited: dict[int, None] = {}
    for group in _CITATION.findall(answer):
        for number in re.split(r"\s*[,，、]\s*", group):
            n = int(number)
            if 1 <= n <= len(sources):
                cited[n] = None
    return [sources[n - 1] for n in cited]


def _is_chinese(variables: Any) -> bool:
    question = variables.get("question", "") if isinstance(variables, Mapping) else str(variables)
    return bool(_HAN.search(str(question)))


def answer_prompt(lang: Lang = "auto") -> Runnable[Any, Any]:
    """The default RAG prompt (variables `context`, `question`), asking for [n] citations.

    `lang="auto"` picks the Chinese prompt when the question contains Chinese characters, else the English one.
    """
    from yulian.prompts import ChatPrompt

    en = ChatPrompt([("system", _EN_SYSTEM), ("user", "{question}")])
    zh = ChatPrompt([("system", _ZH_SYSTEM), ("user", "{question}")])
    if lang == "en":
        return en
    if lang == "zh":
        return zh
    if lang != "auto":
        raise ValueError(f"lang must be 'auto', 'en' or 'zh', got {lang!r}")
    return branch((Lambda(_is_chinese, name="is_chinese"), zh), default=en).named("answer_prompt")


def _question_dict(question: Any) -> dict[str, Any]:
    if isinstance(question, Mapping):
        if "question" not in question:
            raise KeyError(f"rag chain input has no 'question' key (keys: {', '.join(map(str, question))})")
        return dict(question)
    if not isinstance(question, str):
        raise TypeError(f"rag chain takes a question string (or a dict with 'question'), got {type(question).__name__}")
    return {"question": question}


def rag_chain(retriever: Any, model: Any, prompt: Any = None, lang: Lang = "auto") -> Runnable[Any, dict[str, Any]]:
    """question -> {"answer": str, "sources": list[Document]}: retrieve, prompt with numbered context, generate.

    Args:
        retriever: a `Retriever` (or any runnable: query str -> list[Document]).
        model: a chat model (or any runnable taking the prompt's output); a `Message` reply becomes its text.
        prompt: a template with variables `context` and `question` (default: `answer_prompt(lang)`).
        lang: the default prompt's language: "auto" (from the question), "en" or "zh".

    The input is the question string (or a dict with a "question" key, passed to the prompt as variables).
    `sources[n - 1]` is the passage numbered [n] in the prompt; `cited_sources(result)` keeps the cited ones.
    """
    from yulian.prompts import TextParser

    template = coerce(prompt if prompt is not None else answer_prompt(lang), side="prompt")
    generate = template | coerce(model, side="model") | TextParser()
    chain: Runnable[Any, dict[str, Any]] = (
        Lambda(_question_dict, name="question")
        | assign(sources=pick("question") | coerce(retriever, side="retriever"))
        | assign(context=pick("sources") | Lambda(format_docs, name="format_docs"))
        | {"sources": pick("sources"), "answer": generate}
    )
    return chain.named("rag")
