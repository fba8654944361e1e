"""Entity / topic tagging for the monitor: a dictionary of names and aliases (zh + en) plus ticker patterns.

    tagger = EntityTagger({"Apple": ["AAPL", "Apple Inc", "苹果公司"], "Kweichow Moutai": ["600519", "贵州茅台"]})
    tagger.tag("$AAPL falls; 贵州茅台(600519) flat, Tencent 00700.HK up")  # ['Apple', 'Kweichow Moutai', '00700.HK']

Latin aliases match whole words (case-insensitive; short all-capital aliases such as tickers match case-sensitively,
so "IT" is not "it"); Chinese aliases match as substrings. Ticker patterns: cashtags ($AAPL, $BRK.B), Hong Kong
codes (700.HK, 00700.HK -> 00700.HK) and A-share codes (600519 -> 600519.SH, 000001.SZ), not when the digits are
part of an amount (followed by 元/万/亿/%). A ticker that is also an alias of a dictionary entity is reported under
the entity's name. The dictionary file is JSON (`{"name": ["alias", ...]}`) or CSV/TSV lines `name,alias,alias`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["EntityTagger", "normalize_ticker"]

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CASHTAG = re.compile(r"\$([A-Za-z]{1,5}(?:\.[A-Za-z]{1,2})?)(?![A-Za-z0-9])")
_HK = re.compile(r"(?<![\d.])(\d{3,5})\.HK(?![A-Za-z0-9])", re.IGNORECASE)
_ASHARE = re.compile(r"(?<![\d.])((?:60|68|00|30)\d{4})(?:\.(SH|SZ|SS))?(?![\d.%]|元|万|亿|美元|股|手)", re.IGNORECASE)


def normalize_ticker(text: str) -> str | None:
    """`$aapl` -> `AAPL`, `700.HK` -> `00700.HK`, `600519` -> `600519.SH`, `000001.sz` -> `000001.SZ`; else None."""
    text = text.strip()
    if m := _CASHTAG.fullmatch(text):
        return m.group(1).upper()
    if m := _HK.fullmatch(text):
        return f"{int(m.group(1)):05d}.HK"
    if m := _ASHARE.fullmatch(text):
        return _ashare(m.group(1), m.group(2))
    return None


def _ashare(code: str, exchange: str | None) -> str:
    if exchange:
        suffix = "SH" if exchange.upper() in ("SH", "SS") else "SZ"
    else:
        suffix = "SH" if code.startswith(("60", "68")) else "SZ"
    return f"{code}.{suffix}"


class EntityTagger:
    """Finds the entities a text mentions (see the module docstring). Build once, call `tag` per text."""

    def __init__(self, aliases: Mapping[str, Sequence[str]] | None = None, tickers: bool = True) -> None:
        """`aliases` maps each entity's name to its other names (the name itself always matches)."""
        self.aliases = {str(k): [str(a) for a in v] for k, v in (aliases or {}).items()}
        self.tickers = tickers
        self._exact: dict[str, str] = {}  # case-sensitive aliases (CJK, short capitals)
        self._folded: dict[str, str] = {}  # case-insensitive Latin aliases, lower-cased
        self._ticker_names: dict[str, str] = {}
        for name, others in self.aliases.items():
            for alias in [name, *others]:
                alias = alias.strip()
                if not alias:
                    continue
                code = normalize_ticker(alias)  # 600519, 0700.HK, $AAPL: matched by the ticker patterns
                ticker = code or (normalize_ticker("$" + alias) if alias.isupper() else None)
                if ticker:
                    self._ticker_names[ticker] = name
                if code and tickers:
                    continue
                if _CJK.search(alias) or (alias.isupper() and len(alias) <= 5):
                    self._exact[alias] = name
                else:
                    self._folded[alias.lower()] = name
        self._exact_re = _alternation(self._exact, re.UNICODE)
        self._folded_re = _alternation(self._folded, re.IGNORECASE)

    @classmethod
    def load(cls, path: str | Path, tickers: bool = True) -> EntityTagger:
        """A tagger from a JSON mapping file or CSV/TSV lines `name,alias,...` (errors name the file and line)."""
        file = Path(path)
        if not file.exists():
            raise FileNotFoundError(f"entity dictionary {file} does not exist")
        text = file.read_text(encoding="utf-8")
        if file.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{file} line {e.lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(data, dict) or not all(isinstance(v, list | str) for v in data.values()):
                raise ValueError(f'{file}: expected a JSON object {{"name": ["alias", ...]}}')
            return cls({k: [v] if isinstance(v, str) else v for k, v in data.items()}, tickers=tickers)
        delimiter = "\t" if file.suffix.lower() == ".tsv" else ","
        aliases: dict[str, list[str]] = {}
        for row in csv.reader(text.splitlines(), delimiter=delimiter):
            cells = [c.strip() for c in row if c.strip()]
            if not cells or cells[0].startswith("#"):
                continue
            aliases.setdefault(cells[0], []).extend(cells[1:])
        if not aliases:
            raise ValueError(f"{file}: no entities (expected lines 'name,alias,alias')")
        return cls(aliases, tickers=tickers)

    def tag(self, text: str) -> list[str]:
        """The entities `text` mentions, sorted and without repeats."""
        found: set[str] = set()
        if self._exact_re is not None:
            found.update(self._exact[m.group(0)] for m in self._exact_re.finditer(text))
        if self._folded_re is not None:
            found.update(self._folded[m.group(0).lower()] for m in self._folded_re.finditer(text))
        if self.tickers:
            for m in _CASHTAG.finditer(text):
                found.add(self._ticker(m.group(1).upper()))
            for m in _HK.finditer(text):
                found.add(self._ticker(f"{int(m.group(1)):05d}.HK"))
            for m in _ASHARE.finditer(text):
                found.add(self._ticker(_ashare(m.group(1), m.group(2))))
        return sorted(found)

    def _ticker(self, ticker: str) -> str:
        return self._ticker_names.get(ticker, ticker)


def _alternation(aliases: Mapping[str, str], flags: int) -> re.Pattern[str] | None:
    if not aliases:
        return None
    parts = []
    for alias in sorted(aliases, key=len, reverse=True):
        escaped = re.escape(alias)
        if _CJK.search(alias):
            parts.append(escaped)
        else:  # whole words: no letter or digit right before or after
            parts.append(rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])")
    return re.compile("|".join(parts), flags)
