"""`SupportBot`: one customer-service turn = intent -> FAQ retrieval -> hand-off decision -> cited answer -> memory.

```python
bot = SupportBot.load("runs/apps/support/bot")             # written by `yulian app support train`
reply = bot.chat("u42", "My card was stolen, my phone is 13812345678")
reply.answer, reply.intent, reply.confidence, reply.handoff, reply.sources
bot.invoke({"session": "u42", "message": "我的卡丢了"})      # the same turn as a Runnable (batch, async work too)
```

A turn:
1. the language is detected (CJK share) and picks that language's intent classifier and FAQ index;
2. the classifier gives the intent and its probability;
3. the FAQ is searched dense + BM25, fused by reciprocal rank fusion (`Retriever.sources()` + `rrf`), keeping the
   cosine similarity of the best dense hit as the retrieval confidence;
4. the bot hands off to a human when the intent is out of scope (`oos_labels`), asks for a person
   (`handoff_intents`), has a probability below `intent_threshold`, or the best FAQ similarity is below
   `retrieval_threshold[lang]`;
5. otherwise the generator answers from the numbered FAQ entries (citing them as [n]) with the session's recent
   messages, behind `mask_around` (PII masked before the model, restored in the answer); languages outside
   `generate_langs` (or no generator) get the best FAQ answer verbatim, cited [1];
6. both messages are appended to the session's history in SQLite (`SQLiteChatStore`, WAL), so a new bot on the
   same file continues the conversation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yulian.apps.support.config import LANGS, SupportConfig, SupportDataError, detect_lang
from yulian.core.messages import Message
from yulian.core.runnable import ConfigLike, Runnable, coerce
from yulian.retrieval.documents import Document
from yulian.retrieval.index import VectorIndex
from yulian.retrieval.memory import SQLiteChatStore
from yulian.retrieval.rag import cited_sources
from yulian.retrieval.retriever import Retriever, rrf

__all__ = ["BOT_FILE", "SupportBot", "SupportReply", "format_faq"]

BOT_FILE = "bot.json"
"""The manifest of a trained bot folder: the config and, per language, the classifier and FAQ index folders."""

_SYSTEM = {
    "en": (
        "You are a helpful customer-service assistant. Answer the customer's last message in one or two short "
        "sentences, using only the numbered FAQ entries below, and cite the entry you used like [1].\n\n"
        "FAQ:\n{context}"
    ),
    "zh": (
        "你是客服助手。请只根据下面编号的常见问题，用一两句话回答客户的最后一条消息，"
        "并用 [1] 这样的编号注明依据。\n\n常见问题：\n{context}"
    ),
}


@dataclass
class SupportReply:
    """The bot's answer to one message.

    Attributes:
        answer: the text shown to the user (PII restored).
        intent / confidence: the predicted intent and its probability.
        lang: "en" or "zh", as detected.
        handoff / reason: whether a human takes over, and why: "out_of_scope", "asked_for_human",
            "low_intent_confidence", "low_retrieval_score" or "no_faq" ("" when the bot answers).
        sources: the FAQ entries given as context, best first: id, question, answer, source (file:line), score
            (fused rank score), similarity (cosine of the question, dense), cited (the answer cites it).
        retrieval_score: the best dense similarity (None without a vector index).
        session: the session id. timings: milliseconds per stage (classify, retrieve, generate, memory, total).
        generated: the answer was written by the generator (False: hand-off message or a verbatim FAQ answer,
            also when `require_citation` rejected a generated answer that cited no FAQ entry).
    """

    answer: str
    intent: str
    confidence: float
    lang: str
    handoff: bool
    reason: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)
    retrieval_score: float | None = None
    session: str = "default"
    timings: dict[str, float] = field(default_factory=dict)
    generated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the HTTP API's response body)."""
        return {
            "answer": self.answer,
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "lang": self.lang,
            "handoff": self.handoff,
            "reason": self.reason,
            "sources": self.sources,
            "retrieval_score": None if self.retrieval_score is None else round(self.retrieval_score, 4),
            "session": self.session,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
            "generated": self.generated,
        }


def format_faq(docs: Sequence[Document]) -> str:
    """FAQ documents as numbered context: `[1] Q: ... / A: ...`, one entry per paragraph."""
    parts = []
    for n, doc in enumerate(docs, 1):
        question = doc.metadata.get("question", doc.text)
        parts.append(f"[{n}] Q: {question}\nA: {doc.metadata.get('answer', '')}")
    return "\n\n".join(parts) if parts else "(none)"


class SupportBot(Runnable[Any, SupportReply]):
    """A customer-service bot over per-language intent classifiers, FAQ indexes, a generator and SQLite memory.

    Args:
        config: thresholds, labels and options (`SupportConfig`).
        classifiers: language -> a runnable text -> `Prediction` (e.g. `HFClassifier`); a language without one
            uses another's.
        indexes: language -> the FAQ `SearchIndex` (documents: text = question; metadata question, answer,
            source, intent); searched through a `Retriever` (hybrid per `config.hybrid`).
        generator: the chat model (any runnable messages -> Message or str), or None for verbatim FAQ answers.
        memory: a `SQLiteChatStore` or a path to its file (":memory:" for tests).
    """

    def __init__(
        self,
        config: SupportConfig,
        classifiers: Mapping[str, Any],
        indexes: Mapping[str, Any],
        generator: Any = None,
        memory: SQLiteChatStore | str | Path = ":memory:",
    ) -> None:
        if not classifiers:
            raise ValueError("SupportBot needs an intent classifier for at least one language")
        if not indexes:
            raise ValueError("SupportBot needs a FAQ index for at least one language")
        for name, mapping in (("classifiers", classifiers), ("indexes", indexes)):
            for lang in mapping:
                if lang not in LANGS:
                    raise ValueError(f"SupportBot {name}: unknown language {lang!r} (languages: {', '.join(LANGS)})")
        self.config = config
        self.classifiers = {lang: coerce(c, side="classifier") for lang, c in classifiers.items()}
        self.retrievers = {lang: self._retriever(ix) for lang, ix in indexes.items()}
        self.generator = None if generator is None else coerce(generator, side="generator")
        self.model: Any = self.generator
        if self.generator is not None and config.mask_pii:
            from yulian.privacy import mask_around

            self.model = mask_around(self.generator)
        self.memory = memory if isinstance(memory, SQLiteChatStore) else SQLiteChatStore(memory)
        self._prompts: dict[str, Any] = {}

    def _retriever(self, index: Any) -> Retriever:
        hybrid = self.config.hybrid and isinstance(index, VectorIndex)
        weights = [1.0, float(self.config.bm25_weight)] if hybrid else None
        return Retriever(index, k=self.config.k, hybrid=hybrid, weights=weights)

    # ----------------------------------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        generator: Any = None,
        memory: SQLiteChatStore | str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> SupportBot:
        """The bot trained into `folder` (see `yulian.apps.support.build.train_bot`); cheap: models load lazily.

        Args:
            generator: a chat model instance, or a name for `yulian.models.load` (default: the config's).
            memory: the history store or file (default: the config's `memory`, relative to `folder`).
            overrides: config values to change (thresholds, k, generate_langs...).
        """
        root = Path(folder).expanduser()
        manifest_file = root / BOT_FILE
        if not manifest_file.is_file():
            raise SupportDataError(
                f"{root} is not a support bot folder (no {BOT_FILE}); build one with `yulian app support train`"
            )
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
            data = {**manifest["config"], **(overrides or {})}
            langs = manifest["languages"]
        except (ValueError, KeyError, TypeError) as e:
            raise SupportDataError(f"{manifest_file}: not a valid bot manifest ({e})") from None
        config = SupportConfig.from_dict(data, where=str(manifest_file))
        from yulian.models.hf_tasks import HFClassifier
        from yulian.retrieval.commands import load_index

        classifiers: dict[str, Any] = {}
        indexes: dict[str, Any] = {}
        for lang, parts in langs.items():
            if parts.get("classifier"):
                classifiers[lang] = HFClassifier(str(root / parts["classifier"]), max_length=config.max_length)
            if parts.get("index"):
                indexes[lang] = load_index(root / parts["index"], parts["encoder"])
        if generator is None and config.generates:
            generator = config.generator
        if isinstance(generator, str):
            from yulian.models.registry import load

            options: dict[str, Any] = {"max_tokens": config.max_tokens, "temperature": 0.0}
            if not generator.startswith("openai:"):  # local models: curb the loops small models fall into
                options.update(stop=["\n\n"], extra={"repetition_penalty": 1.2})
            generator = load(generator, task="chat", **options)
        where = memory if memory is not None else config.memory
        if isinstance(where, str | Path) and str(where) != ":memory:" and not Path(where).expanduser().is_absolute():
            where = root / where
        return cls(config, classifiers, indexes, generator, where)

    def warm_up(self) -> SupportBot:
        """Load every model now (classifiers, embedders, generator) instead of on the first message."""
        for lang, clf in self.classifiers.items():
            clf.invoke("hello" if lang == "en" else "你好")
        for lang in self.retrievers:
            self._retrieve(lang, "hello" if lang == "en" else "你好")
        if self.generator is not None and hasattr(self.generator, "warm_up"):
            self.generator.warm_up()
        return self

    # ----------------------------------------------------------------------------------------- the turn
    def invoke(self, input: Any, config: ConfigLike = None) -> SupportReply:
        """One turn: `{"session": ..., "message": ...}` (or a message string, session "default") -> a reply."""
        if isinstance(input, str):
            return self.chat("default", input)
        if isinstance(input, Mapping) and isinstance(input.get("message"), str):
            return self.chat(str(input.get("session") or "default"), input["message"])
        raise TypeError(f"SupportBot takes a message or {{'session', 'message'}}, got {type(input).__name__}")

    def chat(self, session: str, message: str) -> SupportReply:
        """Answer `message` in `session`, hand off when unsure, and remember the turn."""
        if not isinstance(message, str) or not message.strip():
            raise ValueError("message must be a non-empty string")
        if not isinstance(session, str) or not session.strip():
            raise ValueError("session must be a non-empty string")
        text = message.strip()
        timings: dict[str, float] = {}
        start = time.perf_counter()
        lang = detect_lang(text)
        intent, confidence = self._classify(lang, text)
        timings["classify"] = _ms(start)
        mark = time.perf_counter()
        docs, similarity, best = self._retrieve(lang, text)
        timings["retrieve"] = _ms(mark)
        reason = self._handoff_reason(lang, intent, confidence, docs, best)
        mark = time.perf_counter()
        generated = False
        if reason:
            answer, used = self.config.handoff_message.get(lang, ""), []
        else:
            (answer, generated), used = self._answer(session, lang, text, docs), docs
        timings["generate"] = _ms(mark)
        cited = {d.id for d in cited_sources({"answer": answer, "sources": used})}
        sources = [
            {
                "id": d.metadata.get("faq_id", d.id),
                "question": d.metadata.get("question", d.text),
                "answer": d.metadata.get("answer", ""),
                "source": d.metadata.get("source", ""),
                "score": None if d.score is None else round(d.score, 4),
                "similarity": None if d.id not in similarity else round(similarity[d.id], 4),
                "cited": d.id in cited,
            }
            for d in used
        ]
        mark = time.perf_counter()
        meta = {"intent": intent, "confidence": round(confidence, 4), "handoff": bool(reason), "reason": reason}
        self.memory.add(session, [Message("user", text), Message("assistant", answer, metadata=meta)])
        timings["memory"] = _ms(mark)
        timings["total"] = _ms(start)
        return SupportReply(
            answer, intent, confidence, lang, bool(reason), reason, sources, best, session, timings, generated
        )

    def history(self, session: str, limit: int | None = None) -> list[Message]:
        """The session's messages, oldest first (the last `limit` when given)."""
        return self.memory.messages(session, limit)

    # ----------------------------------------------------------------------------------------- stages
    def _pick(self, table: Mapping[str, Any], lang: str) -> tuple[str, Any]:
        if lang in table:
            return lang, table[lang]
        other = next(iter(table))
        return other, table[other]

    def _classify(self, lang: str, text: str) -> tuple[str, float]:
        _, classifier = self._pick(self.classifiers, lang)
        prediction = classifier.invoke(text)
        return str(prediction.label), float(prediction.score)

    def _retrieve(self, lang: str, text: str) -> tuple[list[Document], dict[str, float], float | None]:
        """The k best FAQ entries (fused), the dense similarity by document id, and the best dense similarity."""
        _, retriever = self._pick(self.retrievers, lang)
        sources = retriever.sources()
        dense = sources[0] if isinstance(sources[0], VectorIndex) else None
        if len(sources) == 1:
            docs = sources[0].search_many([text], retriever.k)[0]
            ranked = docs
        else:
            lists = [s.search_many([text], retriever.fetch_k)[0] for s in sources]
            docs = rrf(lists, k=retriever.rrf_k, weights=retriever.weights, limit=retriever.k)
            ranked = lists[0]
        if dense is None:
            return docs, {}, None
        similarity = {d.id: float(d.score) for d in ranked if d.score is not None}
        best = max(similarity.values()) if similarity else None
        return docs, similarity, best

    def _handoff_reason(
        self, lang: str, intent: str, confidence: float, docs: Sequence[Document], best: float | None
    ) -> str:
        cfg = self.config
        if intent in cfg.oos_labels:
            return "out_of_scope"
        if intent in cfg.handoff_intents:
            return "asked_for_human"
        if confidence < cfg.intent_threshold:
            return "low_intent_confidence"
        if not docs:
            return "no_faq"
        threshold = cfg.retrieval_threshold.get(lang)
        if threshold is not None and best is not None and best < threshold:
            return "low_retrieval_score"
        return ""

    def _prompt(self, lang: str) -> Any:
        if lang not in self._prompts:
            from yulian.prompts import ChatPrompt, placeholder

            self._prompts[lang] = ChatPrompt(
                [("system", _SYSTEM[lang]), placeholder("history", optional=True), ("user", "{question}")]
            )
        return self._prompts[lang]

    def _answer(self, session: str, lang: str, text: str, docs: Sequence[Document]) -> tuple[str, bool]:
        """(answer, generated): the generator's cited answer, else the best FAQ answer verbatim, cited [1]."""
        fallback = (f"{docs[0].metadata.get('answer', docs[0].text)} [1]", False)
        if self.model is None or lang not in self.config.generate_langs:
            return fallback
        past = self.memory.messages(session, self.config.window) if self.config.window else []
        history = [Message(m.role, m.content) for m in past]
        messages = self._prompt(lang).invoke({"context": format_faq(docs), "history": history, "question": text})
        reply = self.model.invoke(messages)
        answer = (reply.content if isinstance(reply, Message) else str(reply)).strip()
        if not answer or (self.config.require_citation and not cited_sources({"answer": answer, "sources": docs})):
            return fallback
        return answer, True


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
