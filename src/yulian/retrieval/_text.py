"""Text rules shared by the splitters: separators per language, unbreakable spans, Markdown sections.

Standard library only. A *cut* is a position between two characters; the splitter cuts after a separator (the
separator stays with the text before it). Unbreakable spans (URLs, emails, numbers like 3.14 or 1,000, English
words) are never cut inside, unless one is longer than a whole chunk.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "CHAR",
    "CLAUSE",
    "LINE",
    "PARA",
    "SENTENCE",
    "WORD",
    "Rules",
    "Unbreakable",
    "detect_lang",
    "markdown_sections",
    "rules_for",
]

# CJK ideographs, kana and hangul: text written without spaces between words
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """A compiled pattern, compiled on first use: big character classes take milliseconds to compile."""
    return re.compile(pattern)


_CJK_CLASS = f"[{CJK}]"

# Boundary strengths: lower is a better place to end a chunk.
PARA, SENTENCE, LINE, CLAUSE, WORD, CHAR = 0, 1, 2, 3, 4, 5

# closing quotes and brackets that stay with the sentence they end: 他说：“好。”|然后
_CLOSE = "\"'”’」』】）》)\\]"

_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e cf al fig figs no nos vol pp ed eds inc ltd co corp dept est approx "  # noqa: SIM905
    "jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.m p.m".split()
)
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")


@dataclass(frozen=True, slots=True)
class Rules:
    """The separators of one language: where sentences and clauses end.

    `sentence` matches a sentence end with the closing marks and spaces after it; `breaks` matches a sentence
    end (with the line breaks after it) or a bare line break, in one pass.
    """

    lang: str
    sentence: re.Pattern[str]
    clause: re.Pattern[str]
    breaks: re.Pattern[str]


def _rules(lang: str, sentence: str, clause: str, clause_starts: str) -> Rules:
    # a leading lookahead on the possible first characters lets the regex engine skip ahead: 3x faster scans
    ends = "(?=[。！？；….!?;])"
    return Rules(
        lang,
        re.compile(ends + sentence),
        re.compile(f"(?=[{clause_starts}]){clause}"),
        re.compile(rf"(?=[。！？；….!?;\n])(?:(?:{sentence})[\r\n]*|\n)"),
    )


@functools.cache
def rules_for(lang: str) -> Rules:
    """The rules of `lang` ("zh" or "en"), compiled on first use (importing stays cheap)."""
    if lang == "zh":
        return _rules(
            "zh",
            # full-width ends anywhere; ASCII ends (and the ellipsis) before a space, a CJK character or the end,
            # but not a full stop after a digit and before a CJK character: 1.审核 is a list item
            rf"(?:[。！？；]+|…+|\.{{3,}}|[!?;]+(?=[{_CLOSE}]*(?:\s|$|[{CJK}]))|(?<!\d)\.+(?=[{_CLOSE}]*(?:[{CJK}]))"
            rf"|\.+(?=[{_CLOSE}]*(?:\s|$)))[{_CLOSE}]*[ \t\u3000]*",
            rf"(?:[，、：,:]+|—+)[{_CLOSE}]*[ \t\u3000]*",
            "，、：,:—",
        )
    return _rules(
        "en",
        rf"(?:[。！？；]+|(?:…+|[.!?;]+)(?=[{_CLOSE}]*(?:\s|$)))[{_CLOSE}]*[ \t\u3000]*",
        rf"(?:[,:](?=[{_CLOSE}]*\s)|[，、：]|(?<=\s)[-–—]+(?=\s))[{_CLOSE}]*[ \t\u3000]*",
        ",:，、：\\-–—",
    )


PARAGRAPH = re.compile(r"\n[ \t\r\f\v\u3000]*\n\s*")
SPACES = re.compile(r"\s+")


def detect_lang(text: str, sample: int = 2000) -> str:
    """ "zh" when at least 5% of the first `sample` non-space characters are CJK, else "en"."""
    head = text[:sample]
    nonspace = len("".join(head.split()))
    if nonspace == 0:
        return "en"
    return "zh" if _pattern(_CJK_CLASS).subn("", head)[1] * 20 >= nonspace else "en"


def is_abbreviation(text: str, dot: int) -> bool:
    """Whether the "." at `dot` ends an abbreviation (Mr. e.g. J. K.) rather than a sentence."""
    match = _WORD_BEFORE.search(text, max(0, dot - 12), dot)
    if match is None:
        return False
    word = match.group(1)
    if len(word) > 1:
        return word.lower() in _ABBREVIATIONS
    if word.islower():  # p. 5, C. e. furvus
        return True
    # a capital letter is an initial (George W. Bush, by J. K. Rowling) unless a word that typically opens a
    # sentence follows (... is not in P. Because ...)
    following = _NEXT_WORD.match(text, dot + 1)
    return following is None or following.group(1) not in _SENTENCE_OPENERS


_NEXT_WORD = re.compile(r"[\"'”’)\]]*\s+([A-Za-z]+)")
_SENTENCE_OPENERS = frozenset(
    "A An The This That These Those It Its In On At For From By With Without To Of As If When While Since After "  # noqa: SIM905
    "Before Although Though But And Or So Thus Hence However Therefore Moreover Because Then There Here We You "
    "He She They I His Her Their Our My Some Many Most All Each Every No One Other Such What Which Who How Why "
    "Where Yet Also Still Later Today".split()
)


# ============================================================================================ unbreakable spans
_NOT_URL = f"\\s<>\"'`{CJK}\u3000-\u303f\uff00-\uffef"


@functools.cache
def _link_pattern() -> re.Pattern[str]:
    return re.compile(
        # URLs: the last character is not punctuation, so "see https://x.org/a." keeps its full stop
        rf"(?:https?|ftp)://[^{_NOT_URL}]*[^{_NOT_URL}.,;:!?)\]}}]"
        rf"|www\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?:/[^{_NOT_URL}]*[^{_NOT_URL}.,;:!?)\]}}])?"
        # emails (ASCII only: a \w class would swallow neighbouring Chinese characters)
        r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
    )


_LINK_ANCHOR = re.compile(r"://|www\.|@")
_ALNUM = "A-Za-z0-9\uff10-\uff19\u00c0-\u024f"
_IS_ALNUM = re.compile(f"[{_ALNUM}]")
_INNER = frozenset(".,:'’/_&-")  # joins two runs of letters or digits: 3.14 1,000 12:30 don't e-mail v1.2.3
_CURRENCY = frozenset("$¥￥€£")
# characters that may sit inside an unbreakable span: anything but spaces, CJK and full-width punctuation
_SPAN_CHAR = r"[^\s\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uff0f\uff1a-\uffdf\uffe7-\uffef]"


class Unbreakable:
    """What must not be cut inside: URLs, emails, and numbers and words (letters or digits joined by inner
    punctuation: 3.14, 1,000, 2024-01-01, don't), with a fast `allows(pos)` check.

    Checks are local: a word or number is recognised around the position asked about, and URLs and emails are
    found around their "://", "www." and "@" only, on first need. So a text is never scanned word by word, and
    a cut between a CJK character or a space and anything else costs nothing. `fits(start, end)` says whether a
    span fits in a chunk; one that does not may be cut (it has to be); spans longer than `limit` never fit.
    """

    __slots__ = ("_link_ends", "_link_starts", "_span_char", "fits", "limit", "text")

    def __init__(self, text: str, fits: Callable[[int, int], bool] | None = None, limit: int | None = None) -> None:
        self.text = text
        self.fits = fits
        self.limit = limit
        self._link_starts: list[int] | None = None
        self._link_ends: list[int] = []
        self._span_char = _pattern(_SPAN_CHAR).match

    def _scan_links(self) -> list[int]:
        text, found = self.text, set()
        for anchor in _LINK_ANCHOR.finditer(text):
            at = anchor.start()
            end = SPACES.search(text, at)
            stop = min(end.start() if end else len(text), at + 4000)
            for m in _link_pattern().finditer(text, max(0, at - 80), stop):
                if m.start() <= at < m.end() and (self.fits is None or self.fits(*m.span())):
                    found.add(m.span())
        spans = sorted(found)
        self._link_starts = [s for s, _ in spans]
        self._link_ends = [e for _, e in spans]
        return self._link_starts

    def links(self) -> list[tuple[int, int]]:
        """The `(start, end)` of every URL and email."""
        starts = self._link_starts if self._link_starts is not None else self._scan_links()
        return list(zip(starts, self._link_ends, strict=True))

    def _in_word(self, pos: int) -> bool:
        """Whether `pos` is inside a word or number (that fits in a chunk)."""
        text, alnum = self.text, _IS_ALNUM.match
        before, after = text[pos - 1], text[pos]
        if alnum(text, pos - 1):
            inside = alnum(text, pos) is not None or (
                after in _INNER and pos + 1 < len(text) and alnum(text, pos + 1) is not None
            )
            inside = inside or after == "%"
        elif before in _INNER:
            inside = pos >= 2 and alnum(text, pos - 2) is not None and alnum(text, pos) is not None
        else:
            inside = before in _CURRENCY and alnum(text, pos) is not None
        if not inside:
            return False
        return self._word_fits(pos)

    def _word_fits(self, pos: int) -> bool:
        """Whether the word or number around `pos` fits in a chunk (measured only up to `limit` characters)."""
        text, alnum, n = self.text, _IS_ALNUM.match, len(self.text)
        limit = self.limit if self.limit is not None else n
        start = pos
        while start > 0 and pos - start <= limit:
            prev = text[start - 1]
            if alnum(text, start - 1) or (
                prev in _INNER and start >= 2 and alnum(text, start - 2) and alnum(text, start)
            ):
                start -= 1
            else:
                break
        end = pos
        while end < n and end - start <= limit:
            ch = text[end]
            if alnum(text, end) or (ch in _INNER and end + 1 < n and alnum(text, end - 1) and alnum(text, end + 1)):
                end += 1
            else:
                break
        if end - start > limit:
            return False
        return self.fits is None or self.fits(start, end)

    def allows(self, pos: int) -> bool:
        """Whether a cut at `pos` (between text[pos-1] and text[pos]) keeps every span and character whole."""
        text = self.text
        if not 0 < pos < len(text):
            return True
        span_char = self._span_char
        if span_char(text, pos - 1) and span_char(text, pos):
            if self._in_word(pos):
                return False
            starts = self._link_starts if self._link_starts is not None else self._scan_links()
            if starts:
                i = bisect.bisect_right(starts, pos) - 1
                if i >= 0 and starts[i] < pos < self._link_ends[i]:
                    return False
        after = text[pos]
        if after >= "\u0300":
            if after in "\u200d\ufe0e\ufe0f" or text[pos - 1] == "\u200d":
                return False
            if unicodedata.category(after)[0] == "M":  # a combining mark belongs to the character before it
                return False
        return not (after == "\n" and text[pos - 1] == "\r")


# ============================================================================================ markdown
_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_HEADING_LINE = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)


def looks_like_markdown(text: str) -> bool:
    """Whether `text` has at least one ATX heading line (`# Title`)."""
    return _HEADING_LINE.search(text) is not None


def markdown_sections(text: str) -> list[tuple[int, int, tuple[str, ...]]]:
    """Split Markdown at its headings: `(start, end, heading path)` per section, covering the whole text.

    A section starts at its heading line; text before the first heading has an empty path. Headings inside
    fenced code blocks do not count. A section holding only its heading is merged into the next one, so no
    chunk is a lone title (the next section keeps its own, deeper, path).
    """
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    heads: list[tuple[int, int, str, int]] = []  # (first line of the section, level, title, heading lines)
    fence: str | None = None
    for i, raw in enumerate(lines):
        line = raw.rstrip("\r\n")
        fm = _FENCE.match(line)
        if fence is not None:
            if fm and fm.group(1)[0] == fence[0] and len(fm.group(1)) >= len(fence) and not line[fm.end() :].strip():
                fence = None
            continue
        if fm:
            fence = fm.group(1)
            continue
        am = _ATX.match(line)
        if am:
            heads.append((i, len(am.group(1)), (am.group(2) or "").strip(), 1))
            continue
        sm = _SETEXT.match(line)
        if sm and i > 0 and lines[i - 1].strip() and (i == 1 or not lines[i - 2].strip()):
            prev = lines[i - 1].strip()
            if not (heads and heads[-1][0] == i - 1) and not prev.startswith(("-", "*", "+", ">", "|", "#")):
                heads.append((i - 1, 1 if sm.group(1)[0] == "=" else 2, prev, 2))
    sections: list[tuple[int, int, tuple[str, ...], bool]] = []  # (start, end, path, only a heading)
    stack: list[tuple[int, str]] = []
    first = heads[0][0] if heads else len(lines)
    if offsets[first] > 0:
        sections.append((0, offsets[first], (), False))
    for k, (line_no, level, title, n_lines) in enumerate(heads):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        end_line = heads[k + 1][0] if k + 1 < len(heads) else len(lines)
        body = text[offsets[min(line_no + n_lines, end_line)] : offsets[end_line]]
        sections.append((offsets[line_no], offsets[end_line], tuple(t for _, t in stack), not body.strip()))
    # a section that is only its heading joins the next section
    merged: list[tuple[int, int, tuple[str, ...]]] = []
    pending: int | None = None
    for k, (start, end, path, heading_only) in enumerate(sections):
        if heading_only and k + 1 < len(sections):
            pending = start if pending is None else pending
            continue
        merged.append((pending if pending is not None else start, end, path))
        pending = None
    return merged
