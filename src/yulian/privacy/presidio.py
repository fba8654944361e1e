"""Microsoft Presidio as an optional detector backend (`PresidioDetector`, or `Analyzer(backend="presidio")`).

Presidio is not a yulian dependency. Its default `AnalyzerEngine` needs a spaCy language model
(`en_core_web_lg`) that is **not on PyPI**: Presidio downloads it from GitHub on first use, which fails offline,
and there is no Chinese spaCy model for it to use on Chinese text. To use it offline:

1. on a machine with network: `pip download https://github.com/explosion/spacy-models/releases/download/`
   `en_core_web_sm-3.8.0/en_core_web_sm-3.8.0-py3-none-any.whl`, copy the wheel over, `pip install` the file;
2. build the engine yourself and pass it in:

       from presidio_analyzer import AnalyzerEngine
       from presidio_analyzer.nlp_engine import NlpEngineProvider
       nlp = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy",
             "models": [{"lang_code": "en", "model_name": "en_core_web_sm"}]}).create_engine()
       detector = PresidioDetector(AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"]))

Presidio's own email pattern uses `\\b`, which in Python's Unicode regexes swallows adjacent Chinese characters
(`邮箱wang@x.com`): keep yulian's pattern detectors on for Chinese text (`backend="both"`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from yulian.privacy.detectors import Detector
from yulian.privacy.entities import Entity

__all__ = ["PRESIDIO_TYPES", "PresidioDetector", "PresidioUnavailableError"]

PRESIDIO_TYPES = {
    "PHONE_NUMBER": "phone",
    "EMAIL_ADDRESS": "email",
    "CREDIT_CARD": "bank_card",
    "IP_ADDRESS": "ipv4",
    "PERSON": "person",
    "US_PASSPORT": "passport",
    "UK_PASSPORT": "passport",
    "IBAN_CODE": "bank_account",
    "URL": "url",
    "LOCATION": "location",
    "DATE_TIME": "date_time",
    "NRP": "nrp",
    "US_SSN": "ssn",
    "US_BANK_NUMBER": "bank_account",
    "US_DRIVER_LICENSE": "driver_license",
    "CRYPTO": "crypto",
    "MEDICAL_LICENSE": "medical_license",
}
"""Presidio entity names mapped to yulian's entity types (others are lowercased)."""

_HOW = (
    "Presidio's default analyzer needs a spaCy model (en_core_web_lg) that is not on PyPI and is downloaded from "
    "GitHub on first use, so it fails offline. Install a spaCy model wheel from a file (pip install "
    "./en_core_web_sm-3.8.0-py3-none-any.whl) and pass PresidioDetector(AnalyzerEngine(nlp_engine=...)) built "
    "with NlpEngineProvider for that model; see yulian.privacy.presidio's docstring."
)


class PresidioUnavailableError(ImportError):
    """Presidio is not installed, or its analyzer could not start (usually: no spaCy model offline)."""


class PresidioDetector(Detector):
    """Entities from a Presidio `AnalyzerEngine`, mapped to yulian's types (`PHONE_NUMBER` -> `phone`, ...).

    Args:
        engine: a ready `presidio_analyzer.AnalyzerEngine` (recommended offline, see the module docstring);
            default: Presidio's default engine, built on first use.
        language: the language passed to Presidio (`en`; Presidio has no Chinese model).
        presidio_entities: Presidio entity names to ask for (default: all it supports).
        score_threshold: Presidio's minimum score.
    """

    name = "presidio"
    entity = "presidio"

    def __init__(
        self,
        engine: Any = None,
        *,
        language: str = "en",
        presidio_entities: Sequence[str] | None = None,
        score_threshold: float = 0.4,
    ) -> None:
        super().__init__()
        self._engine = engine
        self.language = language
        self.presidio_entities = list(presidio_entities) if presidio_entities is not None else None
        self.score_threshold = score_threshold
        self._lock = threading.Lock()

    @property
    def entity_types(self) -> tuple[str, ...]:
        return tuple(sorted(set(PRESIDIO_TYPES.values()) | {"ipv6"}))

    def warm_up(self) -> PresidioDetector:
        """Build the engine now (raises `PresidioUnavailableError` with instructions if it cannot); returns self."""
        self.engine()
        return self

    def engine(self) -> Any:
        """The Presidio `AnalyzerEngine` (the default one is built on first use)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = _default_engine()
        return self._engine

    def find(self, text: str) -> Iterator[Entity]:
        results = self.engine().analyze(
            text=text, language=self.language, entities=self.presidio_entities, score_threshold=self.score_threshold
        )
        for r in results:
            etype = PRESIDIO_TYPES.get(r.entity_type, str(r.entity_type).lower())
            value = text[r.start : r.end]
            if etype == "ipv4" and ":" in value:
                etype = "ipv6"
            yield Entity(etype, int(r.start), int(r.end), value, float(r.score), self.name)


def _default_engine() -> Any:
    try:
        from presidio_analyzer import AnalyzerEngine  # type: ignore[import-not-found, unused-ignore]
    except ImportError as e:
        raise PresidioUnavailableError(
            f"presidio-analyzer is not installed (pip install presidio-analyzer; yulian does not depend on it). {_HOW}"
        ) from e
    try:
        return AnalyzerEngine()
    except (Exception, SystemExit) as e:  # spaCy's downloader calls sys.exit when pip cannot reach the network
        raise PresidioUnavailableError(f"Presidio's analyzer could not start ({type(e).__name__}: {e}). {_HOW}") from e
