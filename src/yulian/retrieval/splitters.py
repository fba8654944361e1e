"""Text splitters: documents -> chunks of at most `size` characters or tokens, cut where the text allows it.

```
docs = split(load_docs("faq/"), size=300, lang="zh")     # cuts at 。！？ not inside numbers or URLs
splitter = TextSplitter(size=256, overlap=32, unit="tokens", tokenizer=tok)   # a Runnable: loader | splitter
```

How a text is cut, recursively: a span longer than `size` is split at paragraph breaks; a piece still too long
at sentence ends (。！？；… and English `. ` rules, abbreviation-aware) and line breaks; then at clause marks
(，、：, only when a sentence is too long); then at spaces between words; then between characters. Nothing is
ever cut inside a URL, an email, a number like 3.14 or 1,000, or an English word (unless one of them is longer
than a whole chunk). The pieces are then packed greedily into chunks; when a chunk is full it ends at its
strongest boundary (paragraph > sentence > line > clause > word > character) among those that leave it at least
`min_fill * size` long (a sentence end may leave it half that), so chunks end at sentence ends whenever the text
has them, and a sentence too long for one chunk starts a new one. With `overlap`, a chunk starts with the end of
the previous one: whole pieces when they fit, else from a sentence or clause start, else a word start.

Markdown (`markdown=True`, or auto-detected from a `.md` source or `# ` headings) is first split at its
headings; a chunk never spans two sections and carries its heading path in `metadata["headings"]`.

Every chunk is a `Document` whose text is exactly `original[start:end]` (leading and trailing whitespace
dropped), with metadata: the parent's metadata (so `source` is kept), `chunk` (index within the parent),
`start`, `end` (character offsets into the parent's text), `parent_id`, and `headings` for Markdown.
Standard library only; a tokenizer is only used when `unit="tokens"`.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from yulian.core.runnable import ConfigLike, Runnable
from yulian.retrieval import _text
from yulian.retrieval._text import CHAR, CLAUSE, LINE, PARA, SENTENCE, WORD, Rules, Unbreakable
from yulian.retrieval.documents import Document

__all__ = ["SplitInput", "TextSplitter", "length_function", "split"]

Unit: TypeAlias = Literal["chars", "tokens"]
Lang: TypeAlias = Literal["auto", "zh", "en"]
SplitInput: TypeAlias = str | Document | Iterable[str | Document]
"""What a splitter accepts: a text, a Document, or a list of texts and Documents."""

_LEVELS = 5  # paragraph, sentence/line, clause, word, character
_MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdx")


# ============================================================================================ lengths
def length_function(tokenizer: Any) -> Callable[[str], int]:
    """A function counting the tokens of a text (special tokens excluded).

    `tokenizer` may be a Hugging Face tokenizer (anything with `encode`), a path or name that
    `transformers.AutoTokenizer.from_pretrained` loads, an object with a `tokenizer` attribute (a loaded model),
    or already a function `str -> int`.
    """
    return _TokenCounter.of(tokenizer).one


@dataclass(frozen=True, slots=True)
class _TokenCounter:
    """Token counts for one tokenizer: one text, many texts at once, and (fast tokenizers only) the character
    offset where each token of a text starts, so any span of a text tokenized once can be counted by bisection."""

    one: Callable[[str], int]
    many: Callable[[list[str]], list[int]]
    token_starts: Callable[[str], list[int]] | None = None

    @classmethod
    def of(cls, tokenizer: Any) -> _TokenCounter:
        if isinstance(tokenizer, str):
            from yulian._optional import require

            transformers = require("transformers", extra="hf", purpose="a tokenizer given by name")
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer)
            except OSError as e:
                raise ValueError(f"cannot load tokenizer {tokenizer!r}: {e}") from None
        if not hasattr(tokenizer, "encode") and hasattr(tokenizer, "tokenizer"):
            tokenizer = tokenizer.tokenizer
        encode = getattr(tokenizer, "encode", None)
        if encode is None:
            if not callable(tokenizer):
                raise TypeError(
                    f"tokenizer must be a Hugging Face tokenizer, a tokenizer path or a function str -> int, "
                    f"got {type(tokenizer).__name__}"
                )
            count: Callable[[str], int] = tokenizer
            return cls(count, lambda texts: [count(t) for t in texts])
        kwargs: dict[str, Any] = {"add_special_tokens": False, "verbose": False}
        try:
            encode("a", **kwargs)
        except TypeError:  # not a transformers tokenizer (e.g. tiktoken): plain encode(text)
            kwargs = {}

        def one(text: str) -> int:
            return len(encode(text, **kwargs)) if text else 0

        if not (kwargs and callable(tokenizer)):
            return cls(one, lambda texts: [one(t) for t in texts])

        def many(texts: list[str]) -> list[int]:
            if not texts:
                return []
            ids = tokenizer(texts, **kwargs, return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            return [len(x) for x in ids]

        if not getattr(tokenizer, "is_fast", False):
            return cls(one, many)

        def token_starts(text: str) -> list[int]:
            offsets = tokenizer(text, **kwargs, return_offsets_mapping=True)["offset_mapping"]
            return [int(start) for start, _ in offsets]

        return cls(one, many, token_starts)


# ============================================================================================ the splitter
@dataclass(eq=False)
class TextSplitter(Runnable[SplitInput, list[Document]]):
    """Splits texts and documents into chunks; a Runnable, so `loader | TextSplitter(size=300)` composes.

    Attributes:
        size: the most characters (or tokens) in a chunk. Only a single character (or a token that no cut
            can shorten) may exceed it.
        overlap: characters (or tokens) of the end of a chunk repeated at the start of the next, starting at
            a piece boundary or a word start; 0 for none. Must be smaller than `size`.
        unit: "chars" or "tokens" (then `tokenizer` counts them).
        lang: "zh", "en" or "auto" (per document: "zh" when at least 5% of its characters are CJK). Chinese
            rules also end sentences at ASCII `!?;.` followed by a Chinese character and take `,` as a
            clause mark; English rules need a space after ASCII punctuation.
        tokenizer: for `unit="tokens"`: a Hugging Face tokenizer, a path to one, or a function str -> int.
        markdown: split at Markdown headings first; None detects it (a `.md` source or a `# ` heading line).
        min_fill: a full chunk ends at its strongest boundary that leaves it at least `min_fill * size` long;
            when that is only a clause mark or weaker, a sentence end leaving it at least half as long wins, so
            a sentence too long for one chunk starts a new one.
    """

    size: int = 500
    overlap: int = 50
    unit: Unit = "chars"
    lang: Lang = "auto"
    tokenizer: Any = None
    markdown: bool | None = None
    min_fill: float = 0.5
    _counter: _TokenCounter | None = field(default=None, init=False, repr=False)

    blocking = False  # pure Python compute: threads would not help

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"TextSplitter: size must be an int >= 1, got {self.size!r}")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, int) or self.overlap < 0:
            raise ValueError(f"TextSplitter: overlap must be an int >= 0, got {self.overlap!r}")
        if self.overlap >= self.size:
            raise ValueError(
                f"TextSplitter: overlap ({self.overlap}) must be smaller than size ({self.size}); "
                f"pass overlap=0 for none, or e.g. overlap={self.size // 10}"
            )
        if self.unit not in ("chars", "tokens"):
            raise ValueError(f"TextSplitter: unit must be 'chars' or 'tokens', got {self.unit!r}")
        if self.lang not in ("auto", "zh", "en"):
            raise ValueError(f"TextSplitter: lang must be 'auto', 'zh' or 'en', got {self.lang!r}")
        if self.unit == "tokens" and self.tokenizer is None:
            raise ValueError(
                "TextSplitter: unit='tokens' needs a tokenizer (a Hugging Face tokenizer, a path to one, "
                "or a function str -> int)"
            )
        if self.unit == "chars" and self.tokenizer is not None:
            raise ValueError("TextSplitter: a tokenizer was given with unit='chars'; pass unit='tokens' to use it")
        if not 0.0 <= self.min_fill <= 1.0:
            raise ValueError(f"TextSplitter: min_fill must be between 0 and 1, got {self.min_fill!r}")

    # ----------------------------------------------------------------------------------------- public API
    def invoke(self, input: SplitInput, config: ConfigLike = None) -> list[Document]:
        """Split a text, a Document or a list of them into chunk Documents."""
        return self.split(input)

    def split(self, docs_or_texts: SplitInput) -> list[Document]:
        """Split a text, a Document or a list of them into chunk Documents, in input order."""
        out: list[Document] = []
        for doc in _as_documents(docs_or_texts):
            out.extend(self.split_document(doc))
        return out

    def split_text(self, text: str) -> list[str]:
        """The chunk texts of one text."""
        return [text[s:e] for s, e, _ in self._chunk_spans(text, None)]

    def split_document(self, doc: Document) -> list[Document]:
        """The chunks of one Document, each with the parent's metadata plus chunk, start, end and parent_id."""
        out = []
        for i, (start, end, headings) in enumerate(self._chunk_spans(doc.text, doc.metadata.get("source"))):
            meta = {**doc.metadata, "chunk": i, "start": start, "end": end, "parent_id": doc.id}
            if headings is not None:
                meta["headings"] = list(headings)
            digest = hashlib.sha1(f"{doc.id}:{start}:{end}".encode(), usedforsecurity=False).hexdigest()[:16]
            out.append(Document(doc.text[start:end], meta, id=digest))
        return out

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The `(start, end)` character offsets of the chunks of `text`."""
        return [(s, e) for s, e, _ in self._chunk_spans(text, None)]

    # ----------------------------------------------------------------------------------------- internals
    def _chunk_spans(self, text: str, source: object) -> list[tuple[int, int, tuple[str, ...] | None]]:
        if _NONSPACE.search(text) is None:
            return []
        rules = _text.rules_for(_text.detect_lang(text) if self.lang == "auto" else self.lang)
        guard = self._unbreakable(text)
        markdown = self.markdown
        if markdown is None:
            markdown = (isinstance(source, str) and source.lower().endswith(_MARKDOWN_SUFFIXES)) or (
                _text.looks_like_markdown(text)
            )
        # a fast tokenizer tokenizes the text once; a span's count is then the tokens starting inside it
        counter = self._tokens() if self.unit == "tokens" else None
        token_starts = counter.token_starts(text) if counter is not None and counter.token_starts else None
        if not markdown:
            return [(s, e, None) for s, e in _Pass(self, text, rules, guard, token_starts).run(0, len(text))]
        out: list[tuple[int, int, tuple[str, ...] | None]] = []
        for a, b, path in _text.markdown_sections(text):
            out.extend((s, e, path) for s, e in _Pass(self, text, rules, guard, token_starts).run(a, b))
        return out

    def _unbreakable(self, text: str) -> Unbreakable:
        size = self.size
        if self.unit == "chars":
            return Unbreakable(text, lambda s, e: e - s <= size, limit=size)
        count = self._tokens().one
        # a token covers at least one character of a word: only words longer than a chunk need counting
        return Unbreakable(text, lambda s, e: e - s <= size or count(text[s:e]) <= size, limit=20 * size)

    def _tokens(self) -> _TokenCounter:
        if self._counter is None:
            self._counter = _TokenCounter.of(self.tokenizer)
        return self._counter

    def __repr__(self) -> str:
        extra = f", tokenizer={type(self.tokenizer).__name__}" if self.tokenizer is not None else ""
        return f"TextSplitter(size={self.size}, overlap={self.overlap}, unit={self.unit!r}, lang={self.lang!r}{extra})"


class _Pass:
    """One split of `text[a:b]`: cut into pieces recursively, then pack the pieces into chunks."""

    def __init__(
        self, splitter: TextSplitter, text: str, rules: Rules, guard: Unbreakable, token_starts: list[int] | None
    ) -> None:
        self.s = splitter
        self.text = text
        self.rules = rules
        self.guard = guard
        self.size = splitter.size
        self.tokens = splitter.unit == "tokens"
        self.counter = splitter._tokens() if self.tokens else None
        self.token_starts = token_starts  # where each token of the text starts, from a fast tokenizer
        self.starts: list[int] = []  # piece starts
        self.strength: list[int] = []  # strength of the boundary before each piece
        self.lengths: list[int] = []  # piece lengths

    def length(self, a: int, b: int) -> int:
        """The length of `text[a:b]` (its exact token count, when counting tokens)."""
        return self.counter.one(self.text[a:b]) if self.counter is not None else b - a

    def estimate(self, a: int, b: int) -> int:
        """`length`, from the text's token offsets when there are (exact but at a piece's edges)."""
        if self.token_starts is not None:
            return bisect.bisect_left(self.token_starts, b) - bisect.bisect_left(self.token_starts, a)
        return self.length(a, b)

    def lengths_of(self, bounds: list[int]) -> list[int]:
        """The lengths of the pieces between consecutive `bounds` (one tokenizer call for all of them)."""
        if self.counter is None:
            return [y - x for x, y in itertools.pairwise(bounds)]
        if self.token_starts is not None:
            starts = self.token_starts
            index = [bisect.bisect_left(starts, x) for x in bounds]
            return [y - x for x, y in itertools.pairwise(index)]
        text = self.text
        return self.counter.many([text[x:y] for x, y in itertools.pairwise(bounds)])

    # ----------------------------------------------------------------------------------------- cutting
    def cut(self, a: int, b: int, level: int, strength: int, n: int) -> None:
        """Add the pieces of `text[a:b]` (`n` long), cutting at `level` and finer while a piece is too long."""
        if n <= self.size or level >= _LEVELS:
            self.starts.append(a)
            self.strength.append(strength)
            self.lengths.append(n)
            return
        cuts = self.cuts(a, b, level)
        if not cuts:
            self.cut(a, b, level + 1, strength, n)
            return
        bounds = [a, *(p for p, _ in cuts), b]
        strengths = [strength, *(st for _, st in cuts)]
        for k, piece in enumerate(self.lengths_of(bounds)):
            self.cut(bounds[k], bounds[k + 1], level + 1, strengths[k], piece)

    def cuts(self, a: int, b: int, level: int) -> list[tuple[int, int]]:
        """Allowed cut positions strictly inside (a, b) at `level`, with their strengths, in order."""
        text, allows = self.text, self.guard.allows
        if level == 0:
            return [(p, PARA) for m in _text.PARAGRAPH.finditer(text, a, b) if (p := m.end()) < b and allows(p)]
        if level == 1:
            out = []
            for m in self.rules.breaks.finditer(text, a, b):
                p = m.end()
                if p >= b:
                    continue
                first = text[m.start()]
                if (
                    first == "."
                    and text[m.start() + 1 : m.start() + 2] != "."
                    and _text.is_abbreviation(text, m.start())
                ):
                    continue  # Mr. e.g. J.
                if allows(p):
                    out.append((p, LINE if first == "\n" else SENTENCE))
            return out
        if level == 2:
            return [(p, CLAUSE) for m in self.rules.clause.finditer(text, a, b) if (p := m.end()) < b and allows(p)]
        if level == 3:
            return [(p, WORD) for m in _text.SPACES.finditer(text, a, b) if a < (p := m.end()) < b and allows(p)]
        return [(p, CHAR) for p in range(a + 1, b) if allows(p)]

    def starts_word(self, pos: int) -> bool:
        """Whether a chunk may start at `pos`: a letter, digit or opening mark, not inside a word, number or URL."""
        text = self.text
        if text[pos].isspace() or unicodedata.category(text[pos]) in _NO_START:
            return False
        if pos > 0 and _LATIN.match(text, pos - 1) is not None:  # not between two letters of a (long) word
            return False
        return self.guard.allows(pos)

    # ----------------------------------------------------------------------------------------- packing
    def run(self, a: int, b: int) -> list[tuple[int, int]]:
        """The stripped `(start, end)` spans of the chunks of `text[a:b]`."""
        if _NONSPACE.search(self.text, a, b) is None:
            return []
        self.cut(a, b, 0, PARA, self.estimate(a, b))
        starts, lengths = self.starts, self.lengths
        ends = [*starts[1:], b]
        prefix = [0]
        for x in lengths:
            prefix.append(prefix[-1] + x)
        return list(self.pack(starts, ends, lengths, prefix, b))

    def pack(
        self, starts: list[int], ends: list[int], lengths: list[int], prefix: list[int], b: int
    ) -> Iterator[tuple[int, int]]:
        size, n = self.size, len(starts)
        need = self.s.min_fill * size
        i = 0  # first piece not yet in a chunk
        ov_start: int | None = None  # where the overlap carried into the next chunk starts
        ov_len = 0
        while i < n:
            j, total = i, ov_len
            while j < n and total + lengths[j] <= size:
                total += lengths[j]
                j += 1
            if j == i:
                if ov_len:  # the overlap leaves no room for the next piece: drop it
                    ov_start, ov_len = None, 0
                    continue
                j = i + 1  # a piece no cut can shorten
            elif j < n:
                best, best_strength = j, self.strength[j]
                for k in range(j - 1, i, -1):
                    filled = ov_len + prefix[k] - prefix[i]
                    if filled < need / 2 or (filled < need and best_strength <= SENTENCE):
                        break  # below min_fill only a sentence end (or stronger) may end the chunk
                    if self.strength[k] < best_strength and (filled >= need or self.strength[k] <= SENTENCE):
                        best, best_strength = k, self.strength[k]
                j = best
            start = starts[i] if ov_start is None else ov_start
            end = ends[j - 1]
            if self.tokens and self.length(start, end) > size:  # piece counts add up only approximately
                start = starts[i]  # drop the overlap first, then pieces, until the real count fits
                while j - i > 1 and self.length(start, end) > size:
                    j -= 1
                    end = ends[j - 1]
            span = _strip(self.text, start, end)
            if span is not None:
                yield span
            if j >= n:
                return
            budget = min(self.s.overlap, size - lengths[j])
            ov_start, ov_len = self.overlap(starts, lengths, prefix, i, j, end, budget)
            i = j

    def overlap(
        self, starts: list[int], lengths: list[int], prefix: list[int], i: int, j: int, end: int, budget: int
    ) -> tuple[int | None, int]:
        """Where the overlap before piece j starts (None: no overlap) and its length, at most `budget`."""
        if budget <= 0:
            return None, 0
        for m in range(i + 1, j):  # whole pieces first: the earliest whose tail fits
            tail = prefix[j] - prefix[m]
            if tail <= budget:
                if tail * 2 >= budget:
                    return starts[m], tail
                break
        # else a word start (or a character, in CJK text) inside the last pieces
        lo = starts[i] + 1
        if self.token_starts is not None:  # where the last `budget` tokens before `end` start
            last = bisect.bisect_left(self.token_starts, end)
            pos = max(lo, self.token_starts[max(0, last - budget)])
        elif self.counter is not None:
            hi = end
            while lo < hi:  # the earliest position whose tail fits in the budget
                mid = (lo + hi) // 2
                if self.length(mid, end) <= budget:
                    hi = mid
                else:
                    lo = mid + 1
            pos = lo
        else:
            pos = max(lo, end - budget)
        # prefer starting right after a sentence end or a clause mark inside the window
        for pattern in (self.rules.sentence, self.rules.clause):
            for found in pattern.finditer(self.text, pos, end):
                after = found.end()
                if after < end and self.starts_word(after):
                    return after, self.estimate(after, end)
        while pos < end and not self.starts_word(pos):
            pos += 1
        if pos >= end:
            return None, 0
        return pos, self.estimate(pos, end)


_NONSPACE = re.compile(r"\S")
_NO_START = frozenset({"Pc", "Pd", "Pe", "Pf", "Po"})  # connector, dash, closing, final-quote and other punctuation
_LATIN = re.compile(r"[A-Za-z0-9\u00c0-\u024f]{2}")


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _as_documents(value: SplitInput) -> Iterator[Document]:
    if isinstance(value, str):
        yield Document(value)
        return
    if isinstance(value, Document):
        yield value
        return
    if not isinstance(value, Iterable):
        raise TypeError(f"split() takes a str, a Document or a list of them, got {type(value).__name__}")
    for i, item in enumerate(value):
        if isinstance(item, Document):
            yield item
        elif isinstance(item, str):
            yield Document(item)
        else:
            raise TypeError(f"split(): item {i} must be a str or a Document, got {type(item).__name__}: {item!r:.60}")


# ============================================================================================ one call
def split(
    docs_or_texts: SplitInput,
    *,
    size: int = 500,
    overlap: int = 50,
    unit: Unit = "chars",
    lang: Lang = "auto",
    tokenizer: Any = None,
    markdown: bool | None = None,
) -> list[Document]:
    """Split texts or Documents into chunks of at most `size` characters (or tokens); see `TextSplitter`.

    `split(load_docs("faq/"), size=300, lang="zh")` cuts at 。！？ (at ，only when a sentence is too long), never
    inside a number, a URL, an email or an English word.
    """
    splitter = TextSplitter(size=size, overlap=overlap, unit=unit, lang=lang, tokenizer=tokenizer, markdown=markdown)
    return splitter.split(docs_or_texts)
