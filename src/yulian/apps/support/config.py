"""The support bot's configuration (one dataclass, validated once) and its data files (FAQ and intents).

A config file is YAML or JSON; relative paths in it are relative to the file:

```yaml
faq: faq.jsonl                    # CSV or JSONL: question, answer [, id, intent, lang]
intents: intents.csv              # CSV or JSONL: text, intent [, lang]   (also accepted: label, category)
encoders: {en: minilm-l6, zh: multilingual-e5-small}   # intent classifier base + FAQ embedder, per language
generator: smollm2-135m-instruct  # a registered chat model, openai:MODEL, a folder, or "none" (FAQ answers)
generate_langs: [en]              # languages answered by the generator; others get the best FAQ answer
intent_threshold: 0.3             # hand off below this intent probability
retrieval_threshold: {en: 0.35, zh: 0.8}   # hand off below this cosine of the best FAQ question
oos_labels: [oos]                 # intents meaning "out of scope": always hand off
handoff_intents: [human_agent]    # intents meaning "let me talk to a person"
```
"""

from __future__ import annotations

import csv
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "LANGS",
    "FAQEntry",
    "IntentExample",
    "SupportConfig",
    "SupportDataError",
    "detect_lang",
    "load_config",
    "read_faq",
    "read_intents",
]

LANGS = ("en", "zh")
"""The languages the bot tells apart: Chinese ("zh", by the share of CJK characters) and everything else ("en")."""

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LETTER = re.compile(r"[A-Za-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

_DEFAULT_HANDOFF = {
    "en": "I'm not sure I can answer that well, so I'm passing you to a human agent. Someone will be with you shortly.",
    "zh": "这个问题我可能答不好，正在为您转接人工客服，请稍候。",
}


class SupportDataError(ValueError):
    """A config or data file is wrong; the message names the file, the line and the field."""


def detect_lang(text: str, threshold: float = 0.2) -> str:
    """ "zh" when at least `threshold` of the letters in `text` are Chinese characters, else "en"."""
    letters = _LETTER.findall(text)
    if not letters:
        return "en"
    return "zh" if sum(1 for c in letters if _HAN.match(c)) / len(letters) >= threshold else "en"


@dataclass
class SupportConfig:
    """What the support bot uses and how it decides. Every field is checked in `__post_init__`.

    Attributes:
        faq: the FAQ file (CSV or JSONL with `question` and `answer`; optional `id`, `intent`, `lang`).
        intents: the labelled utterances (CSV or JSONL with `text` and `intent`, or `label` / `category`).
        encoders: per language, the base encoder of the intent classifier and the FAQ embedder (a registered
            name or a folder): minilm-l6 for English, multilingual-e5-small for Chinese.
        generator: the chat model writing answers: a registered name, `openai:MODEL`, a folder, or "none".
        generate_langs: languages the generator answers; the others get the best FAQ answer verbatim, cited.
        k: FAQ entries retrieved (and put in the prompt as numbered, citable context).
        hybrid: fuse dense retrieval with BM25 (reciprocal rank fusion); False: dense only.
        bm25_weight: BM25's weight in the fusion (dense has 1).
        intent_threshold: hand off to a human when the intent probability is below this.
        retrieval_threshold: per language, hand off when the best FAQ question's cosine similarity is below this
            (multilingual-e5 similarities run high, so its threshold is higher). A language not listed: no check.
        oos_labels: intent labels that mean out of scope (hand off).
        handoff_intents: intent labels that mean the user asks for a person (hand off).
        handoff_message: per language, what the bot says when it hands off.
        require_citation: a generated answer that cites no FAQ entry ([n]) is replaced by the best FAQ answer
            verbatim (small local generators drift off the context; a cited answer is a grounded one).
        window: past messages of the session given to the generator.
        max_tokens: the most tokens the generator writes per answer.
        mask_pii: mask personal data (phone, ID, card numbers, e-mail...) before the generator; restore after.
        memory: the SQLite file of chat histories (relative to the bot folder unless absolute).
        epochs, batch_size, lr, max_length, max_per_intent, seed: fine-tuning of the intent classifiers.
        train_layers: fine-tune only the top this-many transformer layers and the head (embeddings and lower
            layers frozen: several times faster on a CPU and steadier on a few dozen utterances per intent);
            None: full fine-tuning.
        dropout: dropout while fine-tuning (0: off, faster on a CPU and steadier on small data; None: the model's).
    """

    faq: str = ""
    intents: str = ""
    encoders: dict[str, str] = field(default_factory=lambda: {"en": "minilm-l6", "zh": "multilingual-e5-small"})
    generator: str = "smollm2-135m-instruct"
    generate_langs: list[str] = field(default_factory=lambda: ["en"])
    k: int = 3
    hybrid: bool = True
    bm25_weight: float = 1.0
    intent_threshold: float = 0.3
    retrieval_threshold: dict[str, float] = field(default_factory=lambda: {"en": 0.35, "zh": 0.8})
    oos_labels: list[str] = field(default_factory=lambda: ["oos", "out_of_scope"])
    handoff_intents: list[str] = field(default_factory=lambda: ["human_agent"])
    handoff_message: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_HANDOFF))
    require_citation: bool = True
    window: int = 6
    max_tokens: int = 96
    mask_pii: bool = True
    memory: str = "support.db"
    epochs: int = 8
    batch_size: int = 16
    lr: float = 3e-4
    train_layers: int | None = 2
    dropout: float | None = 0.0
    max_length: int = 64
    max_per_intent: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in ("faq", "intents", "generator", "memory"):
            if not isinstance(getattr(self, key), str):
                raise SupportDataError(f"{name}.{key} must be a string, got {getattr(self, key)!r}")
        self.encoders = _lang_map(name, "encoders", self.encoders, str)
        if not self.encoders:
            raise SupportDataError(f"{name}.encoders needs at least one language ({', '.join(LANGS)})")
        self.retrieval_threshold = _lang_map(name, "retrieval_threshold", self.retrieval_threshold, float)
        self.handoff_message = {**_DEFAULT_HANDOFF, **_lang_map(name, "handoff_message", self.handoff_message, str)}
        for key in ("generate_langs", "oos_labels", "handoff_intents"):
            value = getattr(self, key)
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise SupportDataError(f"{name}.{key} must be a list of strings, got {value!r}")
            setattr(self, key, list(value))
        for lang in self.generate_langs:
            _check_lang(name, "generate_langs", lang)
        for key, low in (("k", 1), ("window", 0), ("max_tokens", 1), ("epochs", 1), ("batch_size", 1)):
            _check_int(name, key, getattr(self, key), low)
        _check_int(name, "max_length", self.max_length, 8)
        if self.max_per_intent is not None:
            _check_int(name, "max_per_intent", self.max_per_intent, 1)
        if self.dropout is not None and (not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1):
            raise SupportDataError(f"{name}.dropout must be in [0, 1) or None, got {self.dropout!r}")
        if self.train_layers is not None:
            _check_int(name, "train_layers", self.train_layers, 0)
        if not isinstance(self.intent_threshold, int | float) or not 0 <= self.intent_threshold <= 1:
            raise SupportDataError(f"{name}.intent_threshold must be in [0, 1], got {self.intent_threshold!r}")
        if not isinstance(self.bm25_weight, int | float) or isinstance(self.bm25_weight, bool) or self.bm25_weight < 0:
            raise SupportDataError(f"{name}.bm25_weight must be >= 0, got {self.bm25_weight!r}")
        if not isinstance(self.lr, int | float) or isinstance(self.lr, bool) or self.lr <= 0:
            raise SupportDataError(f"{name}.lr must be > 0, got {self.lr!r}")
        for key in ("hybrid", "mask_pii", "require_citation"):
            if not isinstance(getattr(self, key), bool):
                raise SupportDataError(f"{name}.{key} must be true or false, got {getattr(self, key)!r}")

    @property
    def generates(self) -> bool:
        """Whether a generator is configured (not "none")."""
        return self.generator.strip().lower() not in ("", "none", "faq")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "config", base: Path | None = None) -> SupportConfig:
        """A config from a mapping; unknown keys are errors naming the closest known key. Relative `faq`,
        `intents` (and an absolute-looking `memory`) are resolved against `base` when given."""
        known = [f.name for f in fields(cls)]
        values: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = str(raw_key).replace("-", "_")
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else f" Known keys: {', '.join(known)}."
                raise SupportDataError(f"{where}: unknown key {raw_key!r}.{hint}")
            values[key] = value
        if base is not None:
            for key in ("faq", "intents"):
                if values.get(key) and not Path(values[key]).expanduser().is_absolute():
                    values[key] = str(base / values[key])
        try:
            return cls(**values)
        except SupportDataError as e:
            raise SupportDataError(f"{where}: {e}") from None


def _check_lang(name: str, key: str, lang: object) -> str:
    if lang not in LANGS:
        raise SupportDataError(f"{name}.{key}: unknown language {lang!r} (languages: {', '.join(LANGS)})")
    return str(lang)


def _check_int(name: str, key: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SupportDataError(f"{name}.{key} must be a whole number >= {low}, got {value!r}")


def _lang_map(name: str, key: str, value: object, kind: type) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SupportDataError(f"{name}.{key} must map languages ({', '.join(LANGS)}) to values, got {value!r}")
    out: dict[str, Any] = {}
    for lang, item in value.items():
        _check_lang(name, key, lang)
        if kind is float and isinstance(item, int | float) and not isinstance(item, bool):
            out[str(lang)] = float(item)
        elif isinstance(item, kind) and not isinstance(item, bool):
            out[str(lang)] = item
        else:
            raise SupportDataError(f"{name}.{key}[{lang!r}] must be a {kind.__name__}, got {item!r}")
    return out


def load_config(path: str | Path) -> SupportConfig:
    """A `SupportConfig` from a YAML or JSON file; relative data paths are relative to the file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SupportDataError(f"config file {file} does not exist")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            from yulian._optional import require

            data = require("yaml", extra="tune", purpose="YAML config files").safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml.YAMLError / json.JSONDecodeError: say where
        raise SupportDataError(
            f"{file}: not valid {'YAML' if file.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: {e}"
        ) from None
    if not isinstance(data, Mapping):
        raise SupportDataError(f"{file}: expected a mapping of keys to values, got {type(data).__name__}")
    return SupportConfig.from_dict(data, where=str(file), base=file.parent)


# ============================================================================================ data files
@dataclass(frozen=True)
class FAQEntry:
    """One FAQ question with its answer; `source` is `file:line` for citations."""

    id: str
    question: str
    answer: str
    lang: str
    intent: str = ""
    source: str = ""


@dataclass(frozen=True)
class IntentExample:
    """One labelled utterance."""

    text: str
    intent: str
    lang: str
    line: int = 0


def _records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs of a CSV (header row) or JSONL file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SupportDataError(f"data file {file} does not exist")
    suffix = file.suffix.lower()
    out: list[tuple[int, dict[str, Any]]] = []
    if suffix in (".csv", ".tsv"):
        with file.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            for row in reader:
                out.append((reader.line_num, {k.strip(): v for k, v in row.items() if k is not None}))
        return out
    if suffix in (".jsonl", ".ndjson", ".json"):
        text = file.read_text(encoding="utf-8-sig")
        if suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise SupportDataError(f"{file}: expected a JSON list of records")
            return [(n, r) for n, r in enumerate(data, 1)]
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise SupportDataError(f"{file} line {n}: not valid JSON ({e.msg}: column {e.colno})") from None
            if not isinstance(record, dict):
                raise SupportDataError(f"{file} line {n}: expected a JSON object, got {type(record).__name__}")
            out.append((n, record))
        return out
    raise SupportDataError(f"{file}: unsupported data format {suffix or '(none)'} (use .csv, .tsv, .jsonl or .json)")


def _field(file: Path, records: Sequence[tuple[int, dict[str, Any]]], wanted: Sequence[str]) -> str:
    """The first of `wanted` that the records have, else an error listing the columns found."""
    columns: list[str] = list(records[0][1]) if records else []
    for name in wanted:
        if name in columns:
            return name
    close = difflib.get_close_matches(wanted[0], columns, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise SupportDataError(
        f"{file} has no field {wanted[0]!r}"
        + (f" (or {', '.join(repr(w) for w in wanted[1:])})" if len(wanted) > 1 else "")
        + f" (fields: {', '.join(columns) or 'none'}).{hint}"
    )


def _text(file: Path, line: int, record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SupportDataError(f"{file} line {line}: field {key!r} is empty or not text ({value!r:.40})")
    return value.strip()


def _lang_of(file: Path, line: int, record: Mapping[str, Any], text: str) -> str:
    lang = record.get("lang")
    if lang in (None, ""):
        return detect_lang(text)
    if lang not in LANGS:
        raise SupportDataError(f"{file} line {line}: field 'lang' must be one of {', '.join(LANGS)}, got {lang!r}")
    return str(lang)


def read_faq(path: str | Path) -> list[FAQEntry]:
    """FAQ entries from a CSV or JSONL file with `question` and `answer` (optional `id`, `intent`, `lang`)."""
    file = Path(path).expanduser()
    records = _records(file)
    if not records:
        raise SupportDataError(f"{file}: no FAQ entries")
    q_key = _field(file, records, ["question", "q"])
    a_key = _field(file, records, ["answer", "a"])
    out: list[FAQEntry] = []
    seen: dict[str, int] = {}
    for line, record in records:
        question, answer = _text(file, line, record, q_key), _text(file, line, record, a_key)
        entry_id = str(record.get("id") or f"faq-{len(out) + 1}")
        if entry_id in seen:
            raise SupportDataError(f"{file} line {line}: id {entry_id!r} repeats the one on line {seen[entry_id]}")
        seen[entry_id] = line
        lang = _lang_of(file, line, record, question)
        out.append(FAQEntry(entry_id, question, answer, lang, str(record.get("intent") or ""), f"{file.name}:{line}"))
    return out


def read_intents(path: str | Path) -> list[IntentExample]:
    """Labelled utterances from a CSV or JSONL file with `text` and `intent` (or `label` / `category`)."""
    file = Path(path).expanduser()
    records = _records(file)
    if not records:
        raise SupportDataError(f"{file}: no labelled utterances")
    t_key = _field(file, records, ["text", "utterance", "question"])
    i_key = _field(file, records, ["intent", "label", "category"])
    out = []
    for line, record in records:
        text = _text(file, line, record, t_key)
        out.append(IntentExample(text, _text(file, line, record, i_key), _lang_of(file, line, record, text), line))
    return out
