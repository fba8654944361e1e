"""`KeywordSentiment`: a tiny word-list sentiment classifier (en + zh), the monitor's `--model lexicon`.

No training and no model files: useful for trying the pipeline, for tests, and as a floor the fine-tuned model must
beat. Negative words outnumbering positive ones give `negative`, the reverse `positive`, else `neutral`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from yulian.core.runnable import ConfigLike, Runnable
from yulian.models.predictions import Prediction

__all__ = ["KeywordSentiment"]

NEGATIVE = """
loss losses lost fall fell falls drop dropped drops decline declined declines down plunge plunged slump weak weaker
warning warns warned cut cuts layoff layoffs lawsuit fraud probe bankrupt bankruptcy default downgrade downgraded
miss missed negative decrease decreased lower worse crisis scandal fine fined recall halt
""".split()  # noqa: SIM905 - a paragraph of words reads better than a long list literal
POSITIVE = """
profit profits gain gains rise rose rises grow grew growth up increase increased increases higher record strong
stronger beat beats upgrade upgraded positive improve improved improvement win won surge surged rally
""".split()  # noqa: SIM905
NEGATIVE_ZH = (
    "下跌",
    "亏损",
    "跌",
    "暴跌",
    "利空",
    "风险",
    "违约",
    "处罚",
    "下滑",
    "减持",
    "爆雷",
    "跌停",
    "割肉",
    "套牢",
    "退市",
)
POSITIVE_ZH = ("上涨", "盈利", "涨", "大涨", "利好", "增长", "增持", "涨停", "突破", "新高", "看好")
_WORD = re.compile(r"[a-z]+")


class KeywordSentiment(Runnable[str, Prediction]):
    """Counts negative and positive keywords; returns a `Prediction` with labels negative/neutral/positive."""

    labels = ("negative", "neutral", "positive")
    blocking = False

    def __init__(self, negative: Sequence[str] = (), positive: Sequence[str] = ()) -> None:
        """Extra negative / positive words (added to the built-in lists)."""
        self.negative = set(NEGATIVE) | {w.lower() for w in negative if w.isascii()}
        self.positive = set(POSITIVE) | {w.lower() for w in positive if w.isascii()}
        self.negative_zh = tuple(NEGATIVE_ZH) + tuple(w for w in negative if not w.isascii())
        self.positive_zh = tuple(POSITIVE_ZH) + tuple(w for w in positive if not w.isascii())

    def invoke(self, input: str, config: ConfigLike = None) -> Prediction:
        """Classify one text."""
        words = _WORD.findall(input.lower())
        neg = sum(w in self.negative for w in words) + sum(input.count(w) for w in self.negative_zh)
        pos = sum(w in self.positive for w in words) + sum(input.count(w) for w in self.positive_zh)
        label = "negative" if neg > pos else "positive" if pos > neg else "neutral"
        total = neg + pos
        score = max(neg, pos) / total if total else 1.0
        return Prediction(label=label, score=score, scores={label: score}, labels=(label,))
