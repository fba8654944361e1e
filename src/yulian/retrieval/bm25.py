"""`BM25Index`: Okapi BM25 keyword search, with jieba word segmentation for Chinese.

```
index = BM25Index.build(docs)                      # or BM25Index(k1=1.2, b=0.75).add(docs)
index.search("花呗怎么还款", k=4)                    # -> documents with score = BM25 score
```

Text is tokenised by `tokenize`: NFKC-normalised and case-folded; other scripts split into words of letters and
digits (no stemming), punctuation is dropped, and runs of Chinese characters become, by `chinese` mode:
- "words+chars" (default): jieba words, plus the single characters of words longer than one character;
- "words": jieba words only;
- "chars": single characters only (no jieba needed).
jieba is imported only when Chinese text appears (extra "zh"). Why words+chars (`bench/retrieval.py`, MRR@10): on
short, colloquial customer questions (AFQMC) characters catch what segmentation splits differently in query and
document (words alone: 0.057 vs 0.066 on train, 0.205 vs 0.230 on dev); on passages (CMRC 2018) words keep
precision (characters alone: 0.890 vs 0.924); words+chars is within 0.003 of the best on both. Any
`callable(text) -> list[str]` can replace `tokenize`.

Scoring is eager, as in the `bm25s` package: each (term, document) pair gets its BM25 weight once, when the
postings are compiled, so a query is one `numpy.bincount` over the postings of its terms. The postings are
recompiled lazily on the first search after an `add`/`delete` (document statistics change with every add);
term counts are kept per document, so a recompilation is a few vector operations, not a re-tokenisation.

Weights: idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)) (Lucene's, never negative);
w(t, d) = idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl)). A query sums the weights of its
distinct terms. Documents sharing no term with the query are not returned.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any, Literal, Self, TypeAlias

from yulian.retrieval._persist import DOCS, field, read_docs, read_manifest, write_docs, write_index_dir
from yulian.retrieval.documents import Document
from yulian.retrieval.index import (
    IndexCorruptError,
    MetadataFilter,
    RowStore,
    SearchIndex,
    StrPath,
    _check_docs,
    _check_k,
    _check_query,
    _numpy,
    compile_filter,
)

__all__ = ["BM25Config", "BM25Index", "ChineseMode", "tokenize"]

ChineseMode: TypeAlias = Literal["words+chars", "words", "chars"]
"""How `tokenize` turns Chinese text into tokens: jieba words plus characters, jieba words, or characters."""
_MODES = ("words+chars", "words", "chars")

_Terms: TypeAlias = tuple[list[int], list[int], int]
"""A document's distinct term ids, their counts in it, and its length in tokens."""

# Han ideographs (incl. extensions and compatibility forms)
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Han runs, or runs of other letters/digits that stop at the first Han character (so "iPhone手机" is two runs)
_RUNS = re.compile(rf"([{_HAN}]+)|((?:(?![{_HAN}])[^\W_])+)")
_jieba: Any = None


def _segmenter() -> Any:
    global _jieba
    if _jieba is None:
        from yulian._optional import require

        module = require("jieba", extra="zh", purpose="Chinese tokenisation in BM25")
        module.setLogLevel(logging.WARNING)  # no "Building prefix dict..." chatter on first use
        _jieba = module
    return _jieba


def tokenize(text: str, chinese: ChineseMode = "words+chars") -> list[str]:
    """Search tokens of `text`: lower-case letter/digit words; Chinese runs as `chinese` says (see the module).

    `tokenize("My bill 怎么还款?", chinese="words") == ["my", "bill", "怎么", "还款"]`; the default mode adds
    "怎", "么", "还", "款".
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    tokens: list[str] = []
    for han, word in _RUNS.findall(folded):
        if word:
            tokens.append(word)
        elif len(han) == 1 or chinese == "chars":
            tokens.extend(han)
        else:
            words = [t for t in _segmenter().lcut(han) if not t.isspace()]
            tokens.extend(words)
            if chinese == "words+chars":
                tokens.extend(c for w in words if len(w) > 1 for c in w)
    return tokens


@dataclass(frozen=True, slots=True)
class BM25Config:
    """BM25 parameters, validated once.

    Attributes:
        k1: term-frequency saturation (0: presence only; 1.2-2.0 is usual).
        b: length normalisation, from 0 (none) to 1 (full).
        chinese: how the default tokenizer splits Chinese: "words+chars", "words" (jieba) or "chars".
    """

    k1: float = 1.5
    b: float = 0.75
    chinese: ChineseMode = "words+chars"

    def __post_init__(self) -> None:
        if self.chinese not in _MODES:
            raise ValueError(f"chinese must be one of {', '.join(_MODES)}; got {self.chinese!r}")
        if isinstance(self.k1, bool) or not isinstance(self.k1, int | float) or self.k1 < 0:
            raise ValueError(f"k1 must be a number >= 0, got {self.k1!r}")
        if isinstance(self.b, bool) or not isinstance(self.b, int | float) or not 0 <= self.b <= 1:
            raise ValueError(f"b must be a number in [0, 1], got {self.b!r}")


class BM25Index(RowStore, SearchIndex):
    """Okapi BM25 over documents, with the `SearchIndex` interface (add, delete, filter, save/load).

    `tokenizer` defaults to `tokenize` in the `chinese` mode (jieba words plus characters). An index saved with a
    custom tokenizer must be loaded with the same one: `BM25Index.load(path, tokenizer=my_tokenizer)`.
    """

    FORMAT = "yulian.bm25_index"
    FORMAT_VERSION = 1

    def __init__(
        self,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        chinese: ChineseMode = "words+chars",
        tokenizer: Callable[[str], list[str]] | None = None,
        config: BM25Config | None = None,
    ) -> None:
        super().__init__()
        self.config = config or BM25Config(k1, b, chinese)
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(f"tokenizer must be a callable(text) -> list[str], got {type(tokenizer).__name__}")
        self.custom_tokenizer = tokenizer
        mode = self.config.chinese
        self.tokenizer: Callable[[str], list[str]] = tokenizer or (lambda text: tokenize(text, mode))
        self._docs: list[Document | None] = []
        self._terms: list[_Terms | None] = []  # per row: term ids, their frequencies, the document length
        self._rows: dict[str, int] = {}
        self._vocab: dict[str, int] = {}  # grows only; a term of deleted documents keeps its id
        self._compiled: _Postings | None = None

    @classmethod
    def build(cls, docs: Iterable[Document], **options: Any) -> BM25Index:
        """An index over `docs`; `options` are the constructor's (k1, b, chinese, tokenizer)."""
        index = cls(**options)
        index.add(docs)
        return index

    def __repr__(self) -> str:
        return f"BM25Index(count={len(self)}, k1={self.config.k1}, b={self.config.b}, chinese={self.config.chinese!r})"

    # ----------------------------------------------------------------------------------------- mutation
    def add(self, docs: Iterable[Document]) -> list[str]:
        """Tokenise and add documents (a known id replaces the old document); returns their ids."""
        items = _check_docs(docs)
        counts: list[Mapping[str, int]] = [Counter(self._tokenize(d.text)) for d in items]
        self._add_counted(items, counts)
        return [d.id for d in items]

    def _add_counted(self, items: list[Document], counts: list[Mapping[str, int]]) -> None:
        if not items:
            return
        with self._lock.write():
            vocab = self._vocab
            for d, tf in zip(items, counts, strict=True):
                old = self._rows.get(d.id)
                if old is not None:
                    self._docs[old] = None
                    self._terms[old] = None
                self._rows[d.id] = len(self._docs)
                self._docs.append(d if d.score is None else replace(d, score=None))
                ids = [vocab.setdefault(t, len(vocab)) for t in tf]
                self._terms.append((ids, list(tf.values()), sum(tf.values())))
            self._compiled = None
            self._touch()

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id (unknown ids are ignored); returns how many were removed."""
        if isinstance(ids, str):
            ids = [ids]
        removed = 0
        with self._lock.write():
            for i in ids:
                row = self._rows.pop(i, None)
                if row is not None:
                    self._docs[row] = None
                    self._terms[row] = None
                    removed += 1
            if removed:
                self._compiled = None
                self._touch()
                if len(self._docs) - len(self._rows) > max(256, len(self._rows)):
                    self._compact()
        return removed

    def _compact(self) -> None:
        keep = [r for r, d in enumerate(self._docs) if d is not None]
        self._docs = [self._docs[r] for r in keep]
        self._terms = [self._terms[r] for r in keep]
        self._rows = {d.id: r for r, d in enumerate(self._docs) if d is not None}

    def _tokenize(self, text: str) -> list[str]:
        tokens: Any = self.tokenizer(text)  # a custom tokenizer may return any iterable of strings
        return tokens if isinstance(tokens, list) else list(tokens)

    # ----------------------------------------------------------------------------------------- search
    def search(self, query: str, k: int = 4, filter: MetadataFilter | None = None) -> list[Document]:
        """The `k` best-scoring documents sharing at least one term with `query`, best first."""
        _check_k(k)
        return self._search_tokens(self._tokenize(_check_query(query)), k, compile_filter(filter))

    def search_many(
        self, queries: Sequence[str], k: int = 4, filter: MetadataFilter | None = None
    ) -> list[list[Document]]:
        """`search` for each query (postings are compiled once)."""
        _check_k(k)
        pred = compile_filter(filter)
        texts = [_check_query(q, i) for i, q in enumerate(queries)]
        return [self._search_tokens(self._tokenize(q), k, pred) for q in texts]

    def scores(self, query: str) -> dict[str, float]:
        """The BM25 score of every document sharing a term with `query`, by id (for inspection and tests)."""
        np = _numpy()
        post = self._postings()
        totals = post.score(self._term_ids(self._tokenize(query), post), len(post.docs))
        return {d.id: float(totals[r]) for r in np.flatnonzero(totals) if (d := post.docs[int(r)]) is not None}

    def _search_tokens(
        self, tokens: list[str], k: int, pred: Callable[[Mapping[str, Any]], bool] | None
    ) -> list[Document]:
        np = _numpy()
        post = self._postings()
        docs = post.docs  # the rows the postings were compiled from: consistent even if the index changes now
        totals = post.score(self._term_ids(tokens, post), len(docs))
        candidates = np.flatnonzero(totals > 0)
        if candidates.size == 0:
            return []
        cand_scores = totals[candidates]
        if pred is None and candidates.size > k:
            top = np.argpartition(-cand_scores, k - 1)[:k]
            candidates, cand_scores = candidates[top], cand_scores[top]
        order = np.lexsort((candidates, -cand_scores))  # best first; ties: insertion order
        hits: list[Document] = []
        for i in order.tolist():
            doc = docs[int(candidates[i])]
            if doc is None or (pred is not None and not pred(doc.metadata)):
                continue
            hits.append(doc.with_score(float(cand_scores[i])))
            if len(hits) == k:
                break
        return hits

    def _term_ids(self, tokens: list[str], post: _Postings) -> list[int]:
        vocab = post.vocab
        return [vocab[t] for t in dict.fromkeys(tokens) if t in vocab]

    def _postings(self) -> _Postings:
        compiled = self._compiled
        if compiled is None:
            with self._lock.write():
                compiled = self._compiled
                if compiled is None:
                    compiled = _Postings.compile(self._terms, self._vocab, self.config)
                    compiled.docs = self._docs  # compaction replaces the list, so this one keeps its rows
                    self._compiled = compiled
        return compiled

    # ----------------------------------------------------------------------------------------- persistence
    def save(self, path: StrPath) -> Self:
        """Save to directory `path` atomically: `docs.jsonl` (documents with their term counts), `manifest.json`."""
        with self._lock.read():
            docs, terms = list(self._docs), list(self._terms)
            words = list(self._vocab)

            def term_counts(row: int) -> dict[str, Any]:
                entry = terms[row]
                assert entry is not None
                return {"terms": {words[t]: n for t, n in zip(entry[0], entry[1], strict=True)}}

            manifest = {
                "format": self.FORMAT,
                "version": self.FORMAT_VERSION,
                "k1": self.config.k1,
                "b": self.config.b,
                "chinese": self.config.chinese,
                "tokenizer": _tokenizer_name(self.custom_tokenizer),
                "count": len(self._rows),
                "rows": len(docs),
            }
            write_index_dir(path, {DOCS: lambda p: write_docs(p, docs, term_counts)}, manifest)
        return self

    @classmethod
    def load(
        cls,
        path: StrPath,
        *,
        tokenizer: Callable[[str], list[str]] | None = None,
        verify: bool = True,
        **options: Any,
    ) -> Self:
        """Load an index saved with `save`; a damaged directory raises `IndexCorruptError` naming the file."""
        if options:
            raise TypeError(f"BM25Index.load() got unexpected options {sorted(options)} (allowed: tokenizer, verify)")
        root, m = read_manifest(path, cls.FORMAT, cls.FORMAT_VERSION, verify=verify)
        if DOCS not in m["files"]:
            raise IndexCorruptError(f"{root / 'manifest.json'} does not list {DOCS}")
        try:
            config = BM25Config(
                field(m, "k1", (int, float), root), field(m, "b", (int, float), root), field(m, "chinese", str, root)
            )
        except ValueError as e:
            raise IndexCorruptError(f"{root / 'manifest.json'}: {e}") from None
        saved_tok = field(m, "tokenizer", str, root)
        if tokenizer is None and saved_tok != "default":
            raise ValueError(
                f"{root} was built with tokenizer {saved_tok!r}: pass it as BM25Index.load(..., tokenizer=)"
            )
        count, rows = field(m, "count", int, root), field(m, "rows", int, root)
        out = cls(config=config, tokenizer=tokenizer)
        items: list[Document] = []
        counts: list[Mapping[str, int]] = []
        seen: set[str] = set()
        n_rows = 0
        for number, record in read_docs(root / DOCS):
            n_rows += 1
            if record is None:
                continue
            tf = record.get("terms")
            if not isinstance(tf, dict) or not all(isinstance(n, int) and n > 0 for n in tf.values()):
                raise IndexCorruptError(f"{root / DOCS} line {number}: 'terms' must map terms to counts >= 1")
            if record["id"] in seen:
                raise IndexCorruptError(f"{root / DOCS} line {number}: id {record['id']!r} appears twice")
            seen.add(record["id"])
            items.append(Document(record["text"], record["metadata"], record["id"]))
            counts.append(tf)
        if n_rows != rows or len(items) != count:
            raise IndexCorruptError(
                f"{root / DOCS} has {n_rows} rows ({len(items)} live), but the manifest records {rows} ({count} live)"
            )
        out._add_counted(items, counts)
        out.version = 0
        return out


def _tokenizer_name(tokenizer: Callable[[str], list[str]] | None) -> str:
    if tokenizer is None:
        return "default"
    return f"{getattr(tokenizer, '__module__', '?')}.{getattr(tokenizer, '__qualname__', type(tokenizer).__name__)}"


class _Postings:
    """Compiled BM25 postings: for each term, the rows containing it and their precomputed weights."""

    __slots__ = ("docs", "offsets", "rows", "vocab", "weights")

    def __init__(self, vocab: dict[str, int], offsets: Any, rows: Any, weights: Any) -> None:
        self.docs: list[Document | None] = []
        self.vocab = vocab
        self.offsets = offsets
        self.rows = rows
        self.weights = weights

    @classmethod
    def compile(cls, terms: list[_Terms | None], vocab: dict[str, int], config: BM25Config) -> _Postings:
        np = _numpy()
        live = [(row, entry) for row, entry in enumerate(terms) if entry is not None]
        n_docs = len(live)
        sizes = np.fromiter((len(e[0]) for _, e in live), dtype=np.int64, count=n_docs)
        rows = np.repeat(np.fromiter((r for r, _ in live), dtype=np.int64, count=n_docs), sizes)
        total = int(sizes.sum())
        tids = np.fromiter(chain.from_iterable(e[0] for _, e in live), dtype=np.int64, count=total)
        tf = np.fromiter(chain.from_iterable(e[1] for _, e in live), dtype=np.float32, count=total)
        lengths = np.zeros(len(terms), dtype=np.float32)
        lengths[[r for r, _ in live]] = [e[2] for _, e in live]
        df = np.bincount(tids, minlength=len(vocab)).astype(np.float64)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        avgdl = float(lengths.sum()) / n_docs if n_docs else 1.0
        k1, b = config.k1, config.b
        norm = k1 * (1.0 - b + b * lengths[rows] / max(avgdl, 1e-9))
        weights = (idf[tids] * tf * (k1 + 1.0) / (tf + norm)).astype(np.float32)
        order = np.argsort(tids, kind="stable")
        offsets = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(tids, minlength=len(vocab)), out=offsets[1:])
        return cls(dict(vocab), offsets, rows[order], weights[order])

    def score(self, term_ids: list[int], n_rows: int) -> Any:
        """Total BM25 score per row for a query of these (distinct) terms."""
        np = _numpy()
        if not term_ids or n_rows == 0:
            return np.zeros(n_rows, dtype=np.float32)
        if len(term_ids) == 1:
            t = term_ids[0]
            rows = self.rows[self.offsets[t] : self.offsets[t + 1]]
            weights = self.weights[self.offsets[t] : self.offsets[t + 1]]
        else:
            rows = np.concatenate([self.rows[self.offsets[t] : self.offsets[t + 1]] for t in term_ids])
            weights = np.concatenate([self.weights[self.offsets[t] : self.offsets[t + 1]] for t in term_ids])
        return np.bincount(rows, weights=weights, minlength=n_rows)
