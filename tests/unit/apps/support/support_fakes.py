"""Fakes for the support bot tests: a keyword intent classifier, FAQ indexes over a hashing embedder, FAQ data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from yulian.apps.support import SupportBot, SupportConfig
from yulian.apps.support.build import faq_documents
from yulian.apps.support.config import read_faq
from yulian.core.runnable import Lambda
from yulian.models.predictions import Prediction
from yulian.retrieval import FaissIndex
from yulian.testing import FakeEmbedder

FAQ = [
    {"id": "card", "question": "What should I do if my card is lost or stolen?", "answer": "Freeze it in the app."},
    {"id": "refund", "question": "How do I get a refund?", "answer": "Use Orders > Refund; 3-7 days."},
    {"id": "hours", "question": "What are your opening hours?", "answer": "9:00 to 17:00, Monday to Saturday."},
    {"id": "zh-card", "question": "银行卡丢了怎么办？", "answer": "请在App中冻结银行卡。"},
    {"id": "zh-refund", "question": "怎么申请退款？", "answer": "在订单页申请退款。"},
]

RULES = [  # (keyword, intent, probability): first match wins
    ("maybe", "refund", 0.3),
    ("weather", "oos", 0.95),
    ("天气", "oos", 0.95),
    ("human", "human_agent", 0.97),
    ("refund", "refund", 0.9),
    ("退款", "refund", 0.9),
    ("card", "card_lost", 0.92),
    ("卡", "card_lost", 0.92),
]


def keyword_intent(text: str) -> Prediction:
    """A deterministic intent classifier: the first keyword of RULES found in the text decides."""
    for word, intent, p in RULES:
        if word in text.lower():
            return Prediction(intent, p, {intent: p})
    return Prediction("opening_hours", 0.8, {"opening_hours": 0.8})


def write_faq(folder: Path) -> Path:
    path = folder / "faq.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in FAQ), encoding="utf-8")
    return path


def make_bot(tmp_path: Path, generator: Any = None, memory: Any = ":memory:", **config: Any) -> SupportBot:
    """A bot over the keyword classifier and FAQ indexes embedded by `FakeEmbedder` (no thresholds on retrieval
    unless given)."""
    entries = read_faq(write_faq(tmp_path))
    settings: dict[str, Any] = {"retrieval_threshold": {}, "generate_langs": ["en"], "k": 2}
    settings.update(config)
    cfg = SupportConfig(**settings)
    indexes = {
        lang: FaissIndex.build(faq_documents([e for e in entries if e.lang == lang]), FakeEmbedder())
        for lang in ("en", "zh")
    }
    classify: Lambda[str, Prediction] = Lambda(keyword_intent, name="keyword_intent")
    return SupportBot(cfg, {"en": classify, "zh": classify}, indexes, generator, memory)
