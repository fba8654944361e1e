"""Pattern detectors for structured PII, each a small class: a compiled pattern, a validator and context rules.

A `Detector` finds candidates with its `pattern`, keeps those its `validate` accepts (checksums, real dates,
`ipaddress`), then applies its context rules to the few characters around the match:

- `reject_after`: text right after the match that makes it a look-alike (`13800138000元` is an amount);
- `negative`: words before it that make it a look-alike (`金额`, `订单号`, `version`), unless a `positive` word
  (`手机`, `电话`, `IP`) is closer to the match;
- `positive` words before or after the match raise its score; `require_context=True` keeps only matches with one
  (generic passport numbers, digit-only landlines).

The built-in detectors live in `yulian.privacy.patterns`. Register your own with `register_detector`: the
registry is what `analyze` and `Analyzer()` use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from yulian.privacy.entities import Entity

__all__ = [
    "AMOUNT_AFTER",
    "NUMBER_NEGATIVE",
    "Detector",
    "available_entities",
    "builtin_detectors",
    "get_detector",
    "register_detector",
    "registered_detectors",
    "unregister_detector",
]

_CLAUSE = re.compile(r"[，,。；;！!？?\n、|]")

AMOUNT_AFTER = (
    r"\s*(?:元|块|圆|角|万|亿|千|百|美元|美金|欧元|英镑|日元|港币|港元|人民币|rmb|cny|usd|eur|dollars?|yuan|"
    r"%|‰|円|件|个|次|台|份|股|人|分钟|秒|[.,]\d)"
)
"""What, right after a number, makes it an amount or a count rather than an identifier."""

NUMBER_NEGATIVE = (
    r"金额|价格|价钱|总价|单价|总计|合计|共计|小计|余额|收入|支出|工资|薪资|报价|售价|费用|转账|汇款|付款|支付|"
    r"订单|单号|流水|编号|批号|序列号|序号|快递|运单|物流|发票|工号|学号|货号|型号|条码|验证码|"
    r"amount|price|total|balance|order|invoice|tracking|serial|sku|ref(?:erence)?|receipt|"
    r"[¥￥$€£#]"
)
"""Words before a number that make it an amount, an order or a reference number."""


class Detector:
    """Finds one kind of PII with a regular expression, a validator and context rules.

    Subclass it and set the class attributes (or pass them to the constructor) and, when the pattern alone is
    not enough, override `validate`. `find(text)` yields the accepted `Entity`s.

    Attributes:
        name: a unique name for the registry (`cn_mobile`).
        entity: the entity type it reports (`phone`).
        pattern: the compiled pattern; group `pii`, when present, is the reported span.
        score: the base score of a valid match.
        positive: a regex of context words (searched case-insensitively around the match) that confirm it.
        negative: a regex of words before the match that make it a look-alike (unless a positive word is closer).
        reject_after: a regex matched right after the match that makes it a look-alike.
        require_context: keep only matches with a positive word nearby.
        window: how many characters before (and after) the match the context rules look at.
    """

    name: str = ""
    entity: str = ""
    pattern: re.Pattern[str] = re.compile(r"(?!x)x")
    score: float = 0.8
    positive: str = ""
    negative: str = ""
    reject_after: str = ""
    require_context: bool = False
    window: int = 12
    hint: str = ""
    """A string that any text containing a match must contain (a cheap pre-check, e.g. `@` for emails)."""
    needs_digit: bool = False
    """Whether every match contains an ASCII digit: the analyzer then skips texts without one."""
    hint_pattern: str = ""
    """A regex (case-insensitive) that any text containing a match must match (e.g. the cue words of a
    context-gated detector): texts without it are skipped."""

    def __init__(
        self,
        name: str | None = None,
        entity: str | None = None,
        pattern: str | re.Pattern[str] | None = None,
        *,
        score: float | None = None,
        positive: str | None = None,
        negative: str | None = None,
        reject_after: str | None = None,
        require_context: bool | None = None,
        window: int | None = None,
    ) -> None:
        self.name = name or self.name
        self.entity = entity or self.entity
        if not self.name or not self.entity:
            raise ValueError(f"{type(self).__name__} needs a name and an entity type")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.entity):
            raise ValueError(f"entity type must be lowercase letters, digits and _, got {self.entity!r}")
        if pattern is not None:
            self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        if score is not None:
            self.score = score
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"detector {self.name}: score must be in [0, 1], got {self.score}")
        self.positive = self.positive if positive is None else positive
        self.negative = self.negative if negative is None else negative
        self.reject_after = self.reject_after if reject_after is None else reject_after
        self.require_context = self.require_context if require_context is None else require_context
        self.window = self.window if window is None else window
        flags = re.IGNORECASE
        self._positive = re.compile(self.positive, flags) if self.positive else None
        self._negative = re.compile(self.negative, flags) if self.negative else None
        self._after = re.compile(self.reject_after, flags) if self.reject_after else None
        self._has_group = "pii" in self.pattern.groupindex
        self._hint = re.compile(self.hint_pattern, flags) if self.hint_pattern else None

    @property
    def entity_types(self) -> tuple[str, ...]:
        """The entity types this detector can report (one, `entity`, for pattern detectors)."""
        return (self.entity,)

    def validate(self, value: str) -> bool:
        """Whether the matched `value` really is this kind of PII (checksums, dates...). Default: yes."""
        return True

    def span(self, match: re.Match[str]) -> tuple[int, int] | None:
        """The reported span of a pattern match (group `pii` when the pattern has one); None rejects it."""
        return match.span("pii") if self._has_group else match.span()

    def find(self, text: str) -> Iterator[Entity]:
        """Yield the valid, context-approved matches in `text`."""
        if (self.hint and self.hint not in text) or (self._hint is not None and not self._hint.search(text)):
            return
        for match in self.pattern.finditer(text):
            span = self.span(match)
            if span is None:
                continue
            start, end = span
            value = text[start:end]
            if not self.validate(value):
                continue
            score = self.context_score(text, start, end)
            if score is not None:
                yield Entity(self.entity, start, end, value, score, self.name)

    def context_score(self, text: str, start: int, end: int) -> float | None:
        """The score of a valid match at `text[start:end]` after the context rules (None: a look-alike)."""
        if self._after is not None and self._after.match(text, end):
            return None
        before = text[max(0, start - self.window) : start]
        cut = _last(_CLAUSE, before)
        if cut > 0:  # words in an earlier clause say nothing about this match
            before = before[cut:]
        neg = _last(self._negative, before)
        pos = _last(self._positive, before)
        if neg > pos:
            return None
        if pos < 0 and self._positive is not None:
            pos = 0 if self._positive.search(text, end, end + self.window) else -1
        if pos >= 0:
            return min(1.0, self.score + 0.1)
        return None if self.require_context else self.score

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r} -> {self.entity})"


def _last(pattern: re.Pattern[str] | None, text: str) -> int:
    """The end offset of the last match of `pattern` in `text` (-1 when none): the closest cue wins."""
    if pattern is None or not text:
        return -1
    last = -1
    for m in pattern.finditer(text):
        last = m.end()
    return last


# ============================================================================================ registry
_REGISTRY: dict[str, Detector] = {}


def builtin_detectors() -> list[Detector]:
    """Fresh instances of the built-in detectors (`yulian.privacy.patterns`), in registry order."""
    from yulian.privacy.patterns import (
        BankCardDetector,
        CNIDCard15Detector,
        CNIDCardDetector,
        CNLandlineCompactDetector,
        CNLandlineDetector,
        CNMobileDetector,
        CNPassportDetector,
        CNPlateDetector,
        EmailDetector,
        InternationalPhoneDetector,
        IPv4Detector,
        IPv6Detector,
        NANPPhoneDetector,
        PassportDetector,
        QQDetector,
        URLCredentialsDetector,
        WeChatDetector,
    )

    return [
        CNIDCardDetector(),
        CNIDCard15Detector(),
        BankCardDetector(),
        CNMobileDetector(),
        InternationalPhoneDetector(),
        NANPPhoneDetector(),
        CNLandlineDetector(),
        CNLandlineCompactDetector(),
        EmailDetector(),
        IPv4Detector(),
        IPv6Detector(),
        URLCredentialsDetector(),
        CNPassportDetector(),
        PassportDetector(),
        CNPlateDetector(),
        QQDetector(),
        WeChatDetector(),
    ]


def register_detector(detector: Detector, *, replace: bool = False) -> Detector:
    """Add `detector` to the registry used by `analyze` and `Analyzer()` (by its `name`); returns it.

    A name already registered raises a ValueError unless `replace=True`.
    """
    if not isinstance(detector, Detector):
        raise TypeError(f"register_detector() needs a Detector, got {type(detector).__name__}")
    if detector.name in _REGISTRY and not replace:
        raise ValueError(f"a detector named {detector.name!r} is registered already (pass replace=True)")
    _REGISTRY[detector.name] = detector
    return detector


def unregister_detector(name: str) -> None:
    """Remove the detector `name` from the registry (a KeyError lists the registered names)."""
    if name not in _REGISTRY:
        raise KeyError(f"no detector named {name!r}; registered: {', '.join(_REGISTRY)}")
    del _REGISTRY[name]


def get_detector(name: str) -> Detector:
    """The registered detector `name` (a KeyError lists the registered names)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no detector named {name!r}; registered: {', '.join(_REGISTRY)}") from None


def registered_detectors() -> list[Detector]:
    """The registered detectors, in registration order."""
    return list(_REGISTRY.values())


def available_entities() -> list[str]:
    """The entity types the registered detectors report, plus `person` (name detection), sorted."""
    return sorted({t for d in _REGISTRY.values() for t in d.entity_types} | {"person"})


# last, so that yulian.privacy.patterns can import this module's Detector while the registry fills
for _detector in builtin_detectors():
    register_detector(_detector)
