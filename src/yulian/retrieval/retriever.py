"""`Retriever`: the runnable that turns a query into documents, over one index or several fused by RRF.

```
retriever = Retriever(index, k=4)                  # dense only
retriever = Retriever(index, k=4, hybrid=True)     # dense + a BM25 twin over the same documents, fused
retriever = Retriever([faq_index, manual_index])   # several indexes, fused
docs = retriever.invoke("我的卡丢了怎么办")            # -> list[Document], best first, with scores
retriever.batch(questions)                         # one embedding call for all questions
```

With more than one source, each is searched `fetch_k` deep and the rankings are fused with reciprocal rank
fusion: score(d) = sum over sources of weight / (rrf_k + rank of d in that source), ranks counted from 1; a
document found by several sources (same id) appears once. RRF needs no score calibration between BM25 and
cosine similarity, which is why it is the default way to combine them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from yulian.core.config import use_config
from yulian.core.runnable import ConfigLike, Runnable
from yulian.retrieval.documents import Document
from yulian.retrieval.index import MetadataFilter, SearchIndex, _check_k, compile_filter

if TYPE_CHECKING:
    from yulian.retrieval.bm25 import BM25Index

__all__ = ["Retriever", "rrf"]


def rrf(
    rankings: Sequence[Sequence[Document]],
    *,
    k: int = 60,
    weights: Sequence[float] | None = None,
    limit: int | None = None,
) -> list[Document]:
    """Fuse rankings with reciprocal rank fusion; documents are matched by id and scored by their fused score.

    `score(d) = sum_i weights[i] / (k + rank_i(d))`, with rank_i counted from 1 in ranking i (a repeated id within
    one ranking counts once, at its best rank). Ties go to the document with the better single rank, then to
    the one seen first. Each result is the first copy seen of the document, with `score` set to the fused score.
    """
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    if weights is not None and len(weights) != len(rankings):
        raise ValueError(f"rrf got {len(weights)} weights for {len(rankings)} rankings")
    scores: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    first: dict[str, Document] = {}
    for i, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else float(weights[i])
        rank = 0
        seen: set[str] = set()
        for doc in ranking:
            if doc.id in seen:
                continue
            seen.add(doc.id)
            rank += 1
            scores[doc.id] = scores.get(doc.id, 0.0) + weight / (k + rank)
            if doc.id not in first:
                first[doc.id] = doc
                best_rank[doc.id] = rank
            elif rank < best_rank[doc.id]:
                best_rank[doc.id] = rank
    order = {doc_id: n for n, doc_id in enumerate(first)}
    ranked = sorted(scores, key=lambda d: (-scores[d], best_rank[d], order[d]))
    if limit is not None:
        ranked = ranked[:limit]
    return [first[d].with_score(scores[d]) for d in ranked]


class Retriever(Runnable[str, list[Document]]):
    """Query -> the `k` best documents, from one index or several fused with reciprocal rank fusion.

    Args:
        index: a `SearchIndex`, or a list of them (fused).
        k: how many documents to return.
        hybrid: add BM25 keyword search to the dense index, fused with RRF. Unless `bm25` is given, a BM25 twin is
            built over the first index's documents on first use, and rebuilt when that index changes.
        bm25: a BM25 index to fuse with (implies hybrid).
        rrf_k: the RRF constant; larger values flatten the difference between top and lower ranks.
        filter: a metadata filter applied by every source (see `yulian.retrieval.index`).
        fetch_k: how deep each source is searched before fusion (default max(k, 20)).
        weights: one RRF weight per source (the indexes in order, then BM25); default all 1.
    """

    def __init__(
        self,
        index: SearchIndex | Sequence[SearchIndex],
        k: int = 4,
        *,
        hybrid: bool = False,
        bm25: BM25Index | None = None,
        rrf_k: int = 60,
        filter: MetadataFilter | None = None,
        fetch_k: int | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        from yulian.retrieval.bm25 import BM25Index

        indexes = [index] if isinstance(index, SearchIndex) else list(index)
        if not indexes:
            raise ValueError("Retriever needs at least one index")
        for i, ix in enumerate(indexes):
            if not isinstance(ix, SearchIndex):
                raise TypeError(f"Retriever takes SearchIndex objects, got {type(ix).__name__} at position {i}")
        if bm25 is not None and not isinstance(bm25, BM25Index):
            raise TypeError(f"bm25 must be a BM25Index, got {type(bm25).__name__}")
        self.indexes = indexes
        self.k = _check_k(k)
        self.hybrid = hybrid or bm25 is not None
        self._bm25 = bm25
        if self.hybrid and bm25 is None and all(isinstance(ix, BM25Index) for ix in indexes):
            raise ValueError("hybrid=True adds BM25 to a dense index, but every index given is already a BM25Index")
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
            raise ValueError(f"rrf_k must be an int >= 0, got {rrf_k!r}")
        self.rrf_k = rrf_k
        compile_filter(filter)  # a bad filter fails here, not on the first query
        self.filter = filter
        self.fetch_k = _check_k(fetch_k) if fetch_k is not None else max(self.k, 20)
        if self.fetch_k < self.k:
            raise ValueError(f"fetch_k ({self.fetch_k}) must be >= k ({self.k})")
        n_sources = len(indexes) + (1 if self.hybrid else 0)
        if weights is not None and len(weights) != n_sources:
            raise ValueError(f"weights has {len(weights)} values, but the retriever has {n_sources} sources")
        self.weights = None if weights is None else [float(w) for w in weights]
        self._twin: BM25Index | None = None
        self._twin_of: tuple[int, int] | None = None  # (id of the dense index, its version) the twin was built from
        self._twin_lock = threading.Lock()

    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or ("HybridRetriever" if self.hybrid else "Retriever")

    def __repr__(self) -> str:
        return f"Retriever({', '.join(repr(ix) for ix in self.indexes)}, k={self.k}, hybrid={self.hybrid})"

    # ----------------------------------------------------------------------------------------- sources
    def sources(self) -> list[SearchIndex]:
        """The indexes searched, in fusion order (a hybrid retriever's BM25 last)."""
        if not self.hybrid:
            return self.indexes
        if self._bm25 is not None:
            return [*self.indexes, self._bm25]
        return [*self.indexes, self._bm25_twin()]

    def _bm25_twin(self) -> BM25Index:
        from yulian.retrieval.bm25 import BM25Index

        dense = next(ix for ix in self.indexes if not isinstance(ix, BM25Index))
        with self._twin_lock:
            state = (id(dense), dense.version)
            if self._twin is None or self._twin_of is None or self._twin_of[0] != state[0]:
                self._twin = BM25Index.build(dense.documents())
            elif self._twin_of != state:  # the dense index changed: re-tokenise only what changed
                _sync(self._twin, dense)
            self._twin_of = state
            return self._twin

    # ----------------------------------------------------------------------------------------- runnable
    def invoke(self, input: str, config: ConfigLike = None) -> list[Document]:
        """The `k` best documents for the query `input`."""
        query = _query(input, None)
        with use_config(config):
            return self._retrieve([query])[0]

    def batch(
        self,
        inputs: Sequence[str],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[list[Document]]:
        """Documents for many queries: each source answers all of them at once (one embedding call)."""
        queries = [_query(q, i) for i, q in enumerate(inputs)]
        if not queries:
            return []
        try:
            with use_config(config):
                return self._retrieve(queries)
        except Exception as e:
            if not return_exceptions:
                raise
            return [e for _ in queries]  # type: ignore[misc]

    async def abatch(
        self,
        inputs: Sequence[str],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[list[Document]]:
        """Async `batch`, in a worker thread."""
        import asyncio

        return await asyncio.to_thread(
            self.batch, inputs, config, max_concurrency=max_concurrency, return_exceptions=return_exceptions
        )

    def _retrieve(self, queries: list[str]) -> list[list[Document]]:
        sources = self.sources()
        if len(sources) == 1:
            return sources[0].search_many(queries, self.k, self.filter)
        lists = [s.search_many(queries, self.fetch_k, self.filter) for s in sources]
        return [
            rrf([found[i] for found in lists], k=self.rrf_k, weights=self.weights, limit=self.k)
            for i in range(len(queries))
        ]


def _sync(twin: BM25Index, source: SearchIndex) -> None:
    """Make `twin` hold the same documents as `source`, touching only the added, changed and deleted ones."""
    current = {d.id: d for d in source.documents()}
    held = {d.id: (d.text, d.metadata) for d in twin.documents()}
    gone = [i for i in held if i not in current]
    changed = [d for i, d in current.items() if held.get(i) != (d.text, d.metadata)]
    if gone:
        twin.delete(gone)
    if changed:
        twin.add(changed)


def _query(value: Any, index: int | None) -> str:
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)  # a Message: its text
    if isinstance(content, str):
        return content
    where = f" at position {index}" if index is not None else ""
    hint = " (to retrieve for one key of a dict, chain pick('question') | retriever)" if isinstance(value, dict) else ""
    raise TypeError(f"Retriever takes a query string, got {type(value).__name__}{where}{hint}")
