"""The search-index contract shared by every backend: FAISS, BM25, and later pgvector or Qdrant.

A `SearchIndex` holds `Document`s under their ids and answers text queries:

```
index.add(docs)                                    # upsert: a doc whose id is already there replaces it
index.search("how do I reset my card?", k=4)       # -> list[Document], best first, each with `score` set
index.search(q, k=4, filter={"lang": "zh", "topic": ["card", "loan"]})
index.delete(["id1", "id2"]); len(index)
index.save("faq.index"); FaissIndex.load("faq.index", embedder)
```

A `VectorIndex` is a `SearchIndex` that embeds text with an `Embedder` and searches by vector. Queries are
embedded as queries when the embedder tells them apart from passages (e5-style "query: " / "passage: "
prefixes: `embed_numpy(texts, query=True)` or `embed_queries(texts)`), documents as passages. A backend
implements four methods (`add_vectors`, `search_vectors`, `delete`, `documents`) plus `__len__`; embedding, batched
queries and text search come from the base. A server-backed store (pgvector, Qdrant) persists on its own and
leaves `save`/`load` to the defaults, which say so.

Filters are a dict of metadata conditions, all of which must hold (`{"lang": "zh"}` is equality, `{"topic":
["card", "loan"]}` is membership; a metadata value that is a list matches when any element matches), or a
callable `metadata -> bool`. A server-backed store translates the dict form into its own query language.
"""

from __future__ import annotations

import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from os import PathLike
from typing import TYPE_CHECKING, Any, Self, TypeAlias

from yulian.retrieval.documents import Document

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from yulian.models.base import Embedder
    from yulian.retrieval.retriever import Retriever

__all__ = [
    "IndexCorruptError",
    "MetadataFilter",
    "SearchIndex",
    "VectorIndex",
    "compile_filter",
    "embedder_name",
]

MetadataFilter: TypeAlias = Mapping[str, Any] | Callable[[Mapping[str, Any]], bool]
"""A dict of metadata conditions (equality, or membership for a list/tuple/set value), or `metadata -> bool`."""

StrPath: TypeAlias = str | PathLike[str]


class IndexCorruptError(ValueError):
    """A saved index directory is missing a file, has a damaged one, or disagrees with its manifest.

    The message names the file and what is wrong. An index never answers with silently empty results instead.
    """


# ============================================================================================ filters
_COLLECTIONS = (list, tuple, set, frozenset)


def compile_filter(filter: MetadataFilter | None) -> Callable[[Mapping[str, Any]], bool] | None:
    """A predicate on metadata from a filter (None for no filter); a bad filter raises a clear TypeError."""
    if filter is None:
        return None
    if isinstance(filter, Mapping):
        conditions: list[tuple[str, Any, bool]] = []
        for key, wanted in filter.items():
            if not isinstance(key, str):
                raise TypeError(f"filter keys must be metadata field names (str), got {key!r}")
            if isinstance(wanted, _COLLECTIONS):
                conditions.append((key, frozenset(_hashable(v, key) for v in wanted), True))
            else:
                conditions.append((key, wanted, False))
        if not conditions:
            return None
        return lambda metadata: all(_matches(metadata.get(k), v, many) for k, v, many in conditions)
    if callable(filter):
        return filter
    raise TypeError(
        f"filter must be a dict of metadata conditions or a callable(metadata) -> bool, got {type(filter).__name__}"
    )


def _hashable(value: Any, key: str) -> Any:
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"filter {key!r}: the allowed values must be hashable, got {value!r}") from None
    return value


def _matches(actual: Any, wanted: Any, many: bool) -> bool:
    if isinstance(actual, list | tuple):  # a multi-valued field (tags): any element may match
        return any(_matches(a, wanted, many) for a in actual)
    if many:
        try:
            return bool(actual in wanted)
        except TypeError:  # an unhashable metadata value is in no set
            return False
    return bool(actual == wanted)


# ============================================================================================ locking
class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers. The writer may re-enter `write()`
    (and `read()`); a reader must not ask for `write()`."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._waiting_writers = 0
        self._owner: int | None = None
        self._depth = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        if self._owner == threading.get_ident():  # the writer reading its own state
            yield
            return
        with self._cond:
            while self._owner is not None or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._cond:
            self._waiting_writers += 1
            try:
                while self._owner is not None or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._owner = me
        try:
            yield
        finally:
            with self._cond:
                self._owner = None
                self._cond.notify_all()


# ============================================================================================ the contract
class RowStore:
    """Documents kept in row order with an id -> row map; deleted rows hold None (shared by in-process indexes)."""

    _docs: list[Document | None]
    _rows: dict[str, int]

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, id: object) -> bool:
        return id in self._rows

    def documents(self) -> Iterator[Document]:
        """Every live document, in insertion order."""
        return (d for d in list(self._docs) if d is not None)

    def get(self, ids: Iterable[str]) -> list[Document]:
        """The documents with these ids, in the order given; unknown ids are skipped."""
        rows = [self._rows.get(i) for i in ids]
        return [d for r in rows if r is not None and (d := self._docs[r]) is not None]


class SearchIndex(ABC):
    """Documents under their ids, searchable by text. See the module docstring for the whole contract.

    `version` grows with every change, so a consumer (a hybrid `Retriever` keeping a BM25 twin) can tell when
    what it derived from the index is stale. `_lock` is a readers-writer lock: mutations take `write()`, searches
    that touch shared state take `read()`, so searches run concurrently with each other but never with a change.
    """

    version: int = 0
    """Incremented by every `add` and `delete` that changes the index."""

    def __init__(self) -> None:
        self._lock = ReadWriteLock()
        self.version = 0

    # ----------------------------------------------------------------------------------------- to implement
    @abstractmethod
    def add(self, docs: Iterable[Document]) -> list[str]:
        """Add documents (a doc whose id is already present replaces it); returns their ids, in order."""

    @abstractmethod
    def delete(self, ids: Iterable[str]) -> int:
        """Remove the documents with these ids; unknown ids are ignored. Returns how many were removed."""

    @abstractmethod
    def search(self, query: str, k: int = 4, filter: MetadataFilter | None = None) -> list[Document]:
        """The `k` best documents for `query` (fewer if fewer match), best first, with `score` set."""

    @abstractmethod
    def documents(self) -> Iterator[Document]:
        """Every document in the index, in insertion order (without scores)."""

    @abstractmethod
    def __len__(self) -> int:
        """How many documents the index holds."""

    # ----------------------------------------------------------------------------------------- defaults
    def search_many(
        self, queries: Sequence[str], k: int = 4, filter: MetadataFilter | None = None
    ) -> list[list[Document]]:
        """`search` for each query, in order. Backends that can batch (one embedding call) override it."""
        return [self.search(q, k, filter) for q in queries]

    def get(self, ids: Iterable[str]) -> list[Document]:
        """The documents with these ids, in the order given; unknown ids are skipped."""
        wanted = list(ids)
        keep = set(wanted)
        by_id = {d.id: d for d in self.documents() if d.id in keep}
        return [by_id[i] for i in wanted if i in by_id]

    def __contains__(self, id: object) -> bool:
        return any(d.id == id for d in self.documents())

    def save(self, path: StrPath) -> Self:
        """Persist to directory `path` (atomically) and return self, so `Index.build(...).save(p)` is the index."""
        raise NotImplementedError(f"{type(self).__name__} persists on its own (it has no save to a directory)")

    @classmethod
    def load(cls, path: StrPath, **options: Any) -> Self:
        """Load an index saved with `save`; a damaged directory raises `IndexCorruptError`."""
        raise NotImplementedError(f"{cls.__name__} persists on its own (it has no load from a directory)")

    def as_retriever(self, k: int = 4, **options: Any) -> Retriever:
        """A `Retriever` runnable over this index: `index.as_retriever(k=4, hybrid=True)`."""
        from yulian.retrieval.retriever import Retriever

        return Retriever(self, k=k, **options)

    def _touch(self) -> None:
        self.version += 1


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    return k


def _check_query(query: object, index: int | None = None) -> str:
    if isinstance(query, str):
        return query
    where = f" at position {index}" if index is not None else ""
    raise TypeError(f"a search query must be a str, got {type(query).__name__}{where}: {query!r:.80}")


def _check_docs(docs: Iterable[Document]) -> list[Document]:
    if isinstance(docs, Document | str):
        raise TypeError("add() takes a list of Documents, e.g. index.add([Document('text')])")
    out = list(docs)
    for i, d in enumerate(out):
        if not isinstance(d, Document):
            raise TypeError(f"add() takes Documents, got {type(d).__name__} at position {i}: {d!r:.80}")
    return out


def embedder_name(embedder: object) -> str:
    """A name identifying an embedder's model (recorded in saved indexes): its model name/path, else its class."""
    options = getattr(embedder, "options", None)
    for owner, attr in ((embedder, "model_name"), (embedder, "model_id"), (embedder, "path"), (options, "path")):
        value = getattr(owner, attr, None)
        if isinstance(value, str | PathLike) and str(value):
            return str(value)
    return getattr(embedder, "name", None) or type(embedder).__name__


def _embed_function(embedder: Any, query: bool) -> Callable[[list[str]], Any]:
    """How to embed a batch: queries through `embed_numpy(texts, query=True)` or `embed_queries` when the embedder
    distinguishes them (e5-style "query: " prefixes), passages through `embed_numpy` or `embed`."""
    fast = getattr(embedder, "embed_numpy", None)
    if query:
        if callable(fast) and _accepts(type(embedder), "embed_numpy", "query"):  # type: ignore[arg-type]
            return lambda texts: fast(texts, query=True)
        queries = getattr(embedder, "embed_queries", None)
        if callable(queries):
            return queries  # type: ignore[no-any-return]
    if callable(fast):
        return fast  # type: ignore[no-any-return]
    return embedder.embed  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=256)
def _accepts(cls: type, method: str, name: str) -> bool:
    """Whether `cls.method` takes a parameter `name` (read once per class, not per search)."""
    import inspect

    try:
        params = inspect.signature(getattr(cls, method)).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


# ============================================================================================ vector indexes
class VectorIndex(SearchIndex):
    """A `SearchIndex` over embeddings: text goes through `embedder`, search is by vector.

    A backend implements `add_vectors`, `search_vectors`, `delete`, `documents` and `__len__`. Vectors are
    float32 numpy arrays of shape (n, dim). `add`/`search`/`search_many` embed text in batches (using an
    embedder's `embed_numpy(texts)` when it has one, else `embed(texts)`).
    """

    embed_batch_size: int = 1024
    """The most texts passed to the embedder at once when adding documents."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        super().__init__()
        self.embedder = embedder

    @abstractmethod
    def add_vectors(self, docs: Sequence[Document], vectors: npt.ArrayLike) -> list[str]:
        """Add documents with their precomputed vectors (row i belongs to docs[i]); upserts by id."""

    @abstractmethod
    def search_vectors(
        self, vectors: npt.ArrayLike, k: int = 4, filter: MetadataFilter | None = None
    ) -> list[list[Document]]:
        """For each query vector (rows of a 2-D array), the `k` nearest documents, best first, with scores."""

    def add(self, docs: Iterable[Document], vectors: npt.ArrayLike | None = None) -> list[str]:
        """Embed the documents' text (unless `vectors` are given) and add them; returns their ids."""
        items = _check_docs(docs)
        if vectors is None:
            if not items:
                return []
            vectors = self.embed_texts([d.text for d in items])
        return self.add_vectors(items, vectors)

    def search(self, query: str, k: int = 4, filter: MetadataFilter | None = None) -> list[Document]:
        """The `k` documents nearest to the query's embedding."""
        return self.search_many([_check_query(query)], k, filter)[0]

    def search_many(
        self, queries: Sequence[str], k: int = 4, filter: MetadataFilter | None = None
    ) -> list[list[Document]]:
        """`search` for many queries with one embedding call and one batched vector search."""
        texts = [_check_query(q, i) for i, q in enumerate(queries)]
        _check_k(k)
        if not texts:
            return []
        if len(self) == 0:  # nothing to find: do not load an embedding model for it
            return [[] for _ in texts]
        return self.search_vectors(self.embed_texts(texts, query=True), k, filter)

    def embed_texts(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Embed `texts` (as queries with `query=True`) as a float32 array of shape (len(texts), dim)."""
        numpy = _numpy()
        if self.embedder is None:
            raise ValueError(
                f"{type(self).__name__} has no embedder: pass embedder= when building or loading it "
                "(or use add_vectors/search_vectors with your own vectors)"
            )
        embed = _embed_function(self.embedder, query)
        parts = []
        for start in range(0, len(texts), self.embed_batch_size):
            chunk = list(texts[start : start + self.embed_batch_size])
            array = numpy.asarray(embed(chunk), dtype=numpy.float32)
            if array.ndim != 2 or array.shape[0] != len(chunk):
                raise ValueError(
                    f"embedder {embedder_name(self.embedder)} returned shape {array.shape} for {len(chunk)} texts "
                    "(expected one vector per text)"
                )
            parts.append(array)
        out: np.ndarray[Any, np.dtype[np.float32]]
        if not parts:
            out = numpy.zeros((0, self.embedder.dim or 0), dtype=numpy.float32)
        else:
            out = parts[0] if len(parts) == 1 else numpy.concatenate(parts)
        return out


_np: Any = None


def _numpy() -> Any:
    """numpy, imported on first use (extra "faiss"); cached, since searches ask for it on every call."""
    global _np
    if _np is None:
        from yulian._optional import require

        _np = require("numpy", extra="faiss", purpose="vector indexes")
    return _np
