"""`Analyzer`: runs the detectors over a text and resolves overlaps; `analyze`, `mask` and `mask_text` use one.

    >>> from yulian.privacy import analyze, mask
    >>> [e.type for e in analyze("手机13812345678，邮箱wang@x.com")]
    ['phone', 'email']
    >>> mask("手机13812345678", operator="mask").text
    '手机138****5678'

Overlapping candidates are resolved deterministically: the higher score wins, then the longer span, then the
earlier start, then the entity type's name. Name detection is off unless asked for (`names=True`): it needs a
tagger and is much slower than the patterns.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from yulian.privacy.detectors import Detector, registered_detectors
from yulian.privacy.entities import Entity, MaskResult
from yulian.privacy.operators import Operator, apply_operator, get_operator
from yulian.privacy.vault import Vault

if TYPE_CHECKING:
    from yulian.privacy.names import ChineseNameDetector

__all__ = ["Analyzer", "Lang", "analyze", "mask", "mask_text", "resolve_overlaps"]

Lang = Literal["auto", "zh", "en"]
_DIGIT = re.compile(r"[0-9]")
_LANGS = ("auto", "zh", "en")


class Analyzer:
    """Finds PII with a set of detectors.

    Args:
        entities: the entity types to report (default: every structured type; `person` only with `names`).
        names: also detect person names (Chinese with a tagger, English after cues like `Mr.`, and `known_names`).
        name_backend: the Chinese tagger: `auto` (LAC if installed, else jieba), `lac` or `jieba`.
        known_names: names to find exactly, in any language (e.g. your customer list); enables `person` without
            the taggers.
        detectors: use exactly these detectors instead of the registry's.
        extra_detectors: add these to the registry's detectors (e.g. `PresidioDetector()`).
        lang: `auto` (Chinese name tagging only when the text has Chinese characters), `zh` or `en`.
        score_threshold: drop entities scoring below this.
        backend: `patterns` (yulian's detectors, the default), `presidio` (Presidio only, see `PresidioDetector`:
            it needs a spaCy model) or `both`.
    """

    def __init__(
        self,
        entities: Iterable[str] | str | None = None,
        *,
        names: bool = False,
        name_backend: str = "auto",
        known_names: Iterable[str] = (),
        detectors: Sequence[Detector] | None = None,
        extra_detectors: Sequence[Detector] = (),
        lang: Lang = "auto",
        score_threshold: float = 0.0,
        backend: str = "patterns",
    ) -> None:
        _check_lang(lang)
        if backend not in ("patterns", "presidio", "both"):
            raise ValueError(f"backend must be patterns, presidio or both, got {backend!r}")
        base = list(detectors) if detectors is not None else registered_detectors()
        if backend != "patterns":
            from yulian.privacy.presidio import PresidioDetector

            base = [PresidioDetector()] if backend == "presidio" else [*base, PresidioDetector()]
        base += list(extra_detectors)
        known = list(known_names)
        self.names = names or bool(known)
        self._zh_names: ChineseNameDetector | None = None
        if names:
            from yulian.privacy.names import ChineseNameDetector, EnglishNameDetector

            self._zh_names = ChineseNameDetector(name_backend)
            base.append(EnglishNameDetector())
        if known:
            from yulian.privacy.names import NameListDetector

            base.append(NameListDetector(known))
        available = sorted({t for d in base for t in d.entity_types} | {"person"})
        if isinstance(entities, str):
            entities = [e.strip() for e in entities.split(",") if e.strip()]
        if entities is None:
            wanted = set(available) if self.names else set(available) - {"person"}
        else:
            wanted = set(entities)
            unknown = sorted(wanted - set(available))
            if unknown:
                raise ValueError(_unknown_message(unknown, available))
            if "person" in wanted and not self.names:
                raise ValueError("entity 'person' needs name detection: pass names=True (CLI: --names)")
        self.entities = frozenset(wanted)
        self.detectors = [d for d in base if not self.entities.isdisjoint(d.entity_types)]
        self._filter = any(len(d.entity_types) > 1 for d in self.detectors)
        if self._zh_names is not None and "person" not in self.entities:
            self._zh_names = None
        self.lang = lang
        self.score_threshold = score_threshold

    def analyze(self, text: str, lang: Lang | None = None) -> list[Entity]:
        """The PII entities in `text`, sorted by start, without overlaps."""
        if not isinstance(text, str):
            raise TypeError(f"analyze() needs a str, got {type(text).__name__}")
        if not text:
            return []
        found: list[Entity] = []
        digits = _DIGIT.search(text) is not None
        for detector in self.detectors:
            if digits or not detector.needs_digit:
                found.extend(detector.find(text))
        lang = lang or self.lang
        if self._zh_names is not None and lang != "en":
            found.extend(self._zh_names.find(text))
        if self._filter:
            found = [e for e in found if e.type in self.entities]
        if self.score_threshold:
            found = [e for e in found if e.score >= self.score_threshold]
        return resolve_overlaps(found)

    def warm_up(self) -> Analyzer:
        """Load what loads lazily (the name tagger, a Presidio engine) now instead of on the first text."""
        if self._zh_names is not None:
            self._zh_names.warm_up()
        for detector in self.detectors:
            warm = getattr(detector, "warm_up", None)
            if callable(warm):
                warm()
        return self

    def mask(self, text: str, operator: str | Operator = "placeholder", vault: Vault | None = None) -> MaskResult:
        """`text` with its entities replaced by `operator` (placeholders go into `vault`, a new one if None)."""
        op = get_operator(operator)
        if vault is None and op.reversible:
            vault = Vault()
        entities = self.analyze(text)
        return MaskResult(apply_operator(text, entities, op, vault), entities, vault)

    def __repr__(self) -> str:
        return f"Analyzer(entities={sorted(self.entities)}, names={self.names})"


def resolve_overlaps(entities: Iterable[Entity]) -> list[Entity]:
    """Keep non-overlapping entities: higher score, then longer span, then earlier start, then type name wins."""
    ranked = sorted(entities, key=lambda e: (-e.score, -(e.end - e.start), e.start, e.type, e.detector))
    if len(ranked) <= 1:
        return ranked
    kept: list[Entity] = []
    for e in ranked:
        if all(e.end <= k.start or e.start >= k.end for k in kept):
            kept.append(e)
    kept.sort(key=lambda e: e.start)
    return kept


# ============================================================================================ functions
_DEFAULTS: dict[tuple[object, ...], Analyzer] = {}
_DEFAULTS_LOCK = threading.Lock()


def _default(entities: Iterable[str] | str | None, names: bool, lang: Lang) -> Analyzer:
    key_entities = None if entities is None else (entities if isinstance(entities, str) else tuple(entities))
    key = (key_entities, names, lang, tuple(id(d) for d in registered_detectors()))
    analyzer = _DEFAULTS.get(key)
    if analyzer is None:
        analyzer = Analyzer(entities, names=names, lang=lang)
        with _DEFAULTS_LOCK:
            if len(_DEFAULTS) > 64:
                _DEFAULTS.clear()
            _DEFAULTS[key] = analyzer
    return analyzer


def analyze(
    text: str, lang: Lang = "auto", entities: Iterable[str] | str | None = None, *, names: bool = False
) -> list[Entity]:
    """The PII entities in `text` (see `Analyzer`): `analyze("电话13812345678")[0].type == "phone"`."""
    _check_lang(lang)
    return _default(entities, names, lang).analyze(text)


def mask(
    text: str,
    operator: str | Operator = "placeholder",
    *,
    entities: Iterable[str] | str | None = None,
    names: bool = False,
    lang: Lang = "auto",
    vault: Vault | None = None,
    analyzer: Analyzer | None = None,
    salt: str | bytes | None = None,
) -> MaskResult:
    """Mask the PII in `text` with `operator` (`redact`, `mask`, `hash`, `placeholder` or an `Operator`).

    Returns a `MaskResult(text, entities, vault)`; with placeholders, `result.vault.restore(...)` undoes it.
    Pass the same `vault` across calls to keep placeholders consistent within a session, and a secret `salt`
    with `operator="hash"`.
    """
    _check_lang(lang)
    chosen = analyzer if analyzer is not None else _default(entities, names, lang)
    return chosen.mask(text, get_operator(operator, salt=salt), vault)


def mask_text(text: str) -> str:
    """`text` with structured PII redacted (`[PHONE]`, `[EMAIL]` ...): a masker for logs (`yulian.serving.audit`)."""
    return _default(None, False, "auto").mask(text, "redact").text


def _check_lang(lang: str) -> None:
    if lang not in _LANGS:
        raise ValueError(f"lang must be one of {', '.join(_LANGS)}, got {lang!r}")


def _unknown_message(unknown: list[str], available: list[str]) -> str:
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, available, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"unknown entity type {', '.join(hints)}; available: {', '.join(available)}"
