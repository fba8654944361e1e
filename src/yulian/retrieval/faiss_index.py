"""`FaissIndex`: the embedded default vector index, exact (flat) or approximate (HNSW), saved to a directory.

```
index = FaissIndex.build(docs, embedder=load("multilingual-e5-small"), kind="hnsw").save("faq.index")
index = FaissIndex.load("faq.index", embedder)              # checks every file; IndexCorruptError if damaged
index.search("我的卡丢了", k=4, filter={"lang": "zh"})
```

Vectors live in a FAISS index under row numbers; documents, metadata and ids live alongside in a Python list
(row -> document) and are saved as JSON lines. Deleting marks the row dead (searches skip it through a FAISS
`IDSelectorBitmap`); when dead rows outnumber live ones the index is rebuilt from its own vectors (`compact`).

Scores: cosine similarity for `metric="cosine"` (vectors are L2-normalised on the way in), the inner product for
`"ip"`, and minus the squared L2 distance for `"l2"`, so higher is always better.

Filters are applied to an over-fetched candidate list (8 x k, at least 64; then 4x and 16x that for queries
left short of k results); queries still short fall back to a search restricted to the rows that pass the filter
(one metadata scan; exact when few pass), so a selective filter still returns its k best matches.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from yulian.retrieval._persist import DOCS, field, read_docs, read_manifest, write_docs, write_index_dir
from yulian.retrieval.documents import Document
from yulian.retrieval.index import (
    IndexCorruptError,
    MetadataFilter,
    RowStore,
    StrPath,
    VectorIndex,
    _check_docs,
    _check_k,
    _numpy,
    compile_filter,
    embedder_name,
)

if TYPE_CHECKING:
    import numpy.typing as npt

    from yulian.models.base import Embedder

__all__ = ["FaissConfig", "FaissIndex"]

Metric = Literal["cosine", "ip", "l2"]
Kind = Literal["flat", "hnsw"]

_METRICS = ("cosine", "ip", "l2")
_KINDS = ("flat", "hnsw")
VECTORS = "vectors.faiss"
EXACT_LIMIT = 4096
"""A filtered search restricted to at most this many rows is computed exactly, whatever the index kind."""


@dataclass(frozen=True, slots=True)
class FaissConfig:
    """How a `FaissIndex` stores and searches vectors; validated here, once.

    Attributes:
        metric: "cosine" (normalised inner product), "ip" (raw inner product) or "l2" (Euclidean).
        kind: "flat" (exact, brute force) or "hnsw" (approximate graph search, much faster on large indexes).
        hnsw_m: HNSW links per node (more: better recall, more memory and build time).
        ef_construction: HNSW candidate-list size while building (more: a better graph, slower builds).
        ef_search: HNSW candidate-list size while searching (more: better recall, slower queries); at least k.
    """

    metric: Metric = "cosine"
    kind: Kind = "flat"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64

    def __post_init__(self) -> None:
        if self.metric not in _METRICS:
            raise ValueError(f"metric must be one of {', '.join(_METRICS)}; got {self.metric!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {', '.join(_KINDS)}; got {self.kind!r}")
        for name in ("hnsw_m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.hnsw_m < 2:
            raise ValueError(f"hnsw_m must be >= 2, got {self.hnsw_m}")


class FaissIndex(RowStore, VectorIndex):
    """A FAISS vector index with documents, metadata filters, deletes and atomic directory persistence.

    Build with `FaissIndex.build(docs, embedder, metric=..., kind=...)`, or construct empty and `add` later.
    The constructor is cheap: nothing is imported or allocated until the first vectors arrive.
    """

    FORMAT = "yulian.faiss_index"
    FORMAT_VERSION = 1

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        metric: Metric = "cosine",
        kind: Kind = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        dim: int | None = None,
        config: FaissConfig | None = None,
    ) -> None:
        super().__init__(embedder)
        self.config = config or FaissConfig(metric, kind, hnsw_m, ef_construction, ef_search)
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be an int >= 1, got {dim!r}")
        self._dim = dim
        self._index: Any = None
        self._docs: list[Document | None] = []
        self._rows: dict[str, int] = {}
        self._live_sel: tuple[Any, Any] | None = None  # (bitmap, selector) of live rows; None when none are dead

    @classmethod
    def build(
        cls,
        docs: Iterable[Document],
        embedder: Embedder | None = None,
        *,
        vectors: npt.ArrayLike | None = None,
        metric: Metric = "cosine",
        kind: Kind = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
    ) -> FaissIndex:
        """An index over `docs`, embedded with `embedder` (or given as precomputed `vectors`)."""
        index = cls(
            embedder, metric=metric, kind=kind, hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search
        )
        index.add(_check_docs(docs), vectors)
        return index

    # ----------------------------------------------------------------------------------------- properties
    @property
    def dim(self) -> int | None:
        """The vector size (None until known)."""
        return self._dim

    @property
    def metric(self) -> Metric:
        return self.config.metric

    @property
    def kind(self) -> Kind:
        return self.config.kind

    @property
    def ef_search(self) -> int:
        """HNSW search breadth; set it to trade speed for recall on a built or loaded index."""
        return self.config.ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self.config = replace(self.config, ef_search=value)
        if self._index is not None and self.kind == "hnsw":
            self._index.hnsw.efSearch = value

    def __repr__(self) -> str:
        return f"FaissIndex(count={len(self)}, dim={self._dim}, metric={self.metric!r}, kind={self.kind!r})"

    # ----------------------------------------------------------------------------------------- mutation
    def add_vectors(self, docs: Sequence[Document], vectors: npt.ArrayLike) -> list[str]:
        """Add documents with their vectors (row i belongs to docs[i]); a known id replaces the old document."""
        np = _numpy()
        items = _check_docs(docs)
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != len(items):
            raise ValueError(f"expected vectors of shape ({len(items)}, dim) for {len(items)} documents, got {x.shape}")
        if not items:
            return []
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if bad.size:
            raise ValueError(f"the vector of document {items[int(bad[0])].id!r} has NaN or infinite values")
        with self._lock.write():
            self._check_dim(x.shape[1], "document vectors")
            last = {d.id: i for i, d in enumerate(items)}  # a repeated id in one call: the last one wins
            keep = sorted(last.values())
            unique = [items[i] for i in keep] if len(keep) < len(items) else items
            x = self._prepare(x[keep] if len(keep) < len(items) else x)
            if self._index is None:
                self._index = self._new_index(x.shape[1])
            for d in unique:
                old = self._rows.get(d.id)
                if old is not None:
                    self._docs[old] = None
            start = len(self._docs)
            self._index.add(x)
            for offset, d in enumerate(unique):
                self._docs.append(d if d.score is None else replace(d, score=None))
                self._rows[d.id] = start + offset
            self._changed()
        return [d.id for d in items]

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
                    removed += 1
            if removed:
                self._changed()
        return removed

    def compact(self) -> None:
        """Rebuild the FAISS index from the live rows only, dropping deleted ones (done automatically)."""
        np = _numpy()
        with self._lock.write():
            if self._index is None or len(self._rows) == len(self._docs):
                return
            rows = np.fromiter((r for r, d in enumerate(self._docs) if d is not None), dtype=np.int64)
            vectors = self._index.reconstruct_batch(rows) if rows.size else np.zeros((0, self._dim), np.float32)
            fresh = self._new_index(self._index.d)
            fresh.add(np.ascontiguousarray(vectors, dtype=np.float32))
            self._index = fresh
            self._docs = [self._docs[int(r)] for r in rows]
            self._rows = {d.id: r for r, d in enumerate(self._docs) if d is not None}
            self._live_sel = None
            self._touch()

    def _changed(self) -> None:
        self._live_sel = None
        self._touch()
        dead = len(self._docs) - len(self._rows)
        if dead >= 256 and dead > len(self._rows):
            self.compact()

    # ----------------------------------------------------------------------------------------- search
    def search_vectors(
        self, vectors: npt.ArrayLike, k: int = 4, filter: MetadataFilter | None = None
    ) -> list[list[Document]]:
        """For each query vector, the `k` nearest live documents passing `filter`, best first, with scores."""
        np = _numpy()
        _check_k(k)
        q = np.asarray(vectors, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2:
            raise ValueError(f"query vectors must be a 2-D array (n, dim), got shape {q.shape}")
        pred = compile_filter(filter)
        with self._lock.read():
            return self._search_locked(q, k, pred)

    def _search_locked(self, q: Any, k: int, pred: Callable[[Mapping[str, Any]], bool] | None) -> list[list[Document]]:
        live = len(self._rows)
        if self._index is None or live == 0 or q.shape[0] == 0:
            return [[] for _ in range(q.shape[0])]
        if q.shape[1] != self._index.d:
            raise ValueError(f"query vectors have dimension {q.shape[1]}, but the index holds {self._index.d}")
        q = self._prepare(q)
        live_sel = self._live_selector()
        if pred is None:
            scores, rows = self._search(q, min(k, live), live_sel)
            return [self._hits(scores[i], rows[i], k, None) for i in range(len(q))]
        results: list[list[Document]] = [[] for _ in range(len(q))]
        todo = list(range(len(q)))
        fetch = min(live, max(8 * k, 64))
        for attempt in range(3):  # over-fetch, then over-fetch 4x more, twice
            scores, rows = self._search(q[todo], fetch, live_sel)
            for j, i in enumerate(todo):
                results[i] = self._hits(scores[j], rows[j], k, pred)
            if fetch >= live:  # everything was seen: short lists are complete
                return results
            todo = [i for i in todo if len(results[i]) < k]
            if not todo:
                return results
            if attempt < 2:
                fetch = min(live, fetch * 4)
        for i, hits in zip(todo, self._search_allowed(q[todo], k, pred), strict=True):
            results[i] = hits
        return results

    def _search_allowed(self, q: Any, k: int, pred: Callable[[Mapping[str, Any]], bool]) -> list[list[Document]]:
        """Search restricted to the rows whose metadata passes `pred`: exact when few pass."""
        np = _numpy()
        faiss = _faiss()
        allowed = np.fromiter(
            (d is not None and bool(pred(d.metadata)) for d in self._docs), dtype=bool, count=len(self._docs)
        )
        rows = np.flatnonzero(allowed)
        if rows.size == 0:
            return [[] for _ in range(len(q))]
        n = min(k, int(rows.size))
        if rows.size <= EXACT_LIMIT:
            return self._exact(q, rows, n)
        bits = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(self._docs), faiss.swig_ptr(bits))
        # HNSW meets passing rows in proportion to their share: widen its search by the inverse share
        widen = -(-len(self._rows) // int(rows.size))
        scores, found = self._search(q, n, (bits, selector), ef=min(len(self._rows), self.config.ef_search * widen))
        results = [self._hits(scores[i], found[i], k, None) for i in range(len(q))]
        short = [i for i, hits in enumerate(results) if len(hits) < n]
        if short:  # the graph search still missed some: compute those queries exactly
            for i, hits in zip(short, self._exact(q[short], rows, n), strict=True):
                results[i] = hits
        return results

    def _exact(self, q: Any, rows: Any, n: int) -> list[list[Document]]:
        """Exact search over the given rows only (their vectors copied into a temporary flat index)."""
        np = _numpy()
        sub = self._new_flat(self._index.d)
        sub.add(np.ascontiguousarray(self._index.reconstruct_batch(rows.astype(np.int64)), dtype=np.float32))
        scores, local = sub.search(q, n)
        mapped = np.where(local >= 0, rows[np.maximum(local, 0)], -1)
        return [self._hits(scores[i], mapped[i], n, None) for i in range(len(q))]

    def _search(self, q: Any, k: int, sel: tuple[Any, Any] | None, ef: int = 0) -> tuple[Any, Any]:
        faiss = _faiss()
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.config.ef_search, k, ef)
            if sel is not None:
                params.sel = sel[1]
            return self._index.search(q, k, params=params)  # type: ignore[no-any-return]
        if sel is None:
            return self._index.search(q, k)  # type: ignore[no-any-return]
        params = faiss.SearchParameters()
        params.sel = sel[1]
        return self._index.search(q, k, params=params)  # type: ignore[no-any-return]

    def _hits(self, scores: Any, rows: Any, k: int, pred: Callable[[Mapping[str, Any]], bool] | None) -> list[Document]:
        hits: list[Document] = []
        sign = -1.0 if self.metric == "l2" else 1.0
        for score, row in zip(scores.tolist(), rows.tolist(), strict=True):
            if row < 0:
                break
            doc = self._docs[row]
            if doc is None or (pred is not None and not pred(doc.metadata)):
                continue
            hits.append(doc.with_score(sign * score))
            if len(hits) == k:
                break
        return hits

    def _live_selector(self) -> tuple[Any, Any] | None:
        if len(self._rows) == len(self._docs):
            return None
        cached = self._live_sel
        if cached is None:
            np = _numpy()
            faiss = _faiss()
            mask = np.fromiter((d is not None for d in self._docs), dtype=bool, count=len(self._docs))
            bits = np.packbits(mask, bitorder="little")
            cached = self._live_sel = (bits, faiss.IDSelectorBitmap(len(self._docs), faiss.swig_ptr(bits)))
        return cached

    # ----------------------------------------------------------------------------------------- internals
    def _check_dim(self, dim: int, what: str) -> None:
        if self._dim is None:
            expected = getattr(self.embedder, "dim", None)
            if isinstance(expected, int) and expected != dim:
                raise ValueError(f"{what} have dimension {dim}, but the embedder's vectors have {expected}")
            self._dim = dim
        elif dim != self._dim:
            raise ValueError(f"{what} have dimension {dim}, but this index holds vectors of dimension {self._dim}")

    def _prepare(self, x: Any) -> Any:
        """Contiguous float32 vectors; for cosine, an L2-normalised copy (zero vectors stay zero)."""
        np = _numpy()
        if self.metric != "cosine":
            return np.ascontiguousarray(x, dtype=np.float32)
        x = np.array(x, dtype=np.float32, order="C", copy=True)
        _faiss().normalize_L2(x)
        return x

    def _faiss_metric(self) -> Any:
        faiss = _faiss()
        return faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def _new_flat(self, dim: int) -> Any:
        faiss = _faiss()
        return faiss.IndexFlatL2(dim) if self.metric == "l2" else faiss.IndexFlatIP(dim)

    def _new_index(self, dim: int) -> Any:
        if self.kind == "flat":
            return self._new_flat(dim)
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(dim, self.config.hnsw_m, self._faiss_metric())
        index.hnsw.efConstruction = self.config.ef_construction
        index.hnsw.efSearch = self.config.ef_search
        return index

    # ----------------------------------------------------------------------------------------- persistence
    def save(self, path: StrPath) -> Self:
        """Save to directory `path` atomically (temp dir, then rename) and return self.

        The directory holds `vectors.faiss`, `docs.jsonl` (one line per row; `null` for deleted rows) and
        `manifest.json` (format version, settings, dimension, counts, embedder name, size and sha256 per file).
        """
        faiss = _faiss()
        with self._lock.write():  # write: an empty index gets its FAISS structure here
            if self._index is None:
                if self._dim is None:
                    raise ValueError("cannot save an empty FaissIndex of unknown dimension: add documents or pass dim=")
                self._index = self._new_index(self._dim)
            index, docs = self._index, list(self._docs)
            manifest = {
                "format": self.FORMAT,
                "version": self.FORMAT_VERSION,
                "metric": self.metric,
                "kind": self.kind,
                "hnsw_m": self.config.hnsw_m,
                "ef_construction": self.config.ef_construction,
                "ef_search": self.config.ef_search,
                "dim": int(index.d),
                "count": len(self._rows),
                "rows": len(docs),
                "embedder": None if self.embedder is None else embedder_name(self.embedder),
            }
            write_index_dir(
                path,
                {VECTORS: lambda p: faiss.write_index(index, str(p)), DOCS: lambda p: write_docs(p, docs)},
                manifest,
            )
        return self

    @classmethod
    def load(cls, path: StrPath, embedder: Embedder | None = None, *, verify: bool = True, **options: Any) -> Self:
        """Load an index saved with `save`, checking the manifest, checksums (with `verify`) and counts.

        A missing, damaged or inconsistent file raises `IndexCorruptError` naming it. An embedder whose vector
        size differs from the index's is a ValueError; a different embedder name only warns. `options` may set
        `ef_search`.
        """
        faiss = _faiss()
        unknown = set(options) - {"ef_search"}
        if unknown:
            raise TypeError(f"FaissIndex.load() got unexpected options {sorted(unknown)} (allowed: ef_search)")
        root, m = read_manifest(path, cls.FORMAT, cls.FORMAT_VERSION, verify=verify)
        for name in (VECTORS, DOCS):
            if name not in m["files"]:
                raise IndexCorruptError(f"{root / 'manifest.json'} does not list {name}")
        try:
            config = FaissConfig(
                field(m, "metric", str, root),
                field(m, "kind", str, root),
                field(m, "hnsw_m", int, root),
                field(m, "ef_construction", int, root),
                options.get("ef_search", field(m, "ef_search", int, root)),
            )
        except ValueError as e:
            raise IndexCorruptError(f"{root / 'manifest.json'}: {e}") from None
        dim, count, rows = (field(m, name, int, root) for name in ("dim", "count", "rows"))
        vectors_path = root / VECTORS
        try:
            index = faiss.read_index(str(vectors_path))
        except RuntimeError as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise IndexCorruptError(f"{vectors_path} is not a readable FAISS index ({detail})") from None
        expected_type = faiss.IndexHNSWFlat if config.kind == "hnsw" else faiss.IndexFlat
        if not isinstance(index, expected_type):
            raise IndexCorruptError(
                f"{vectors_path} holds a {type(index).__name__}, but the manifest says {config.kind}"
            )
        if index.d != dim or index.ntotal != rows:
            raise IndexCorruptError(
                f"{vectors_path} holds {index.ntotal} vectors of dimension {index.d}, "
                f"but the manifest records {rows} of dimension {dim}"
            )
        docs, ids = _read_rows(root / DOCS)
        if len(docs) != rows:
            raise IndexCorruptError(f"{root / DOCS} has {len(docs)} rows, but the manifest records {rows}")
        if len(ids) != count:
            raise IndexCorruptError(f"{root / DOCS} has {len(ids)} live documents, but the manifest records {count}")
        _check_embedder(embedder, dim, m.get("embedder"), root)
        out = cls(embedder, config=config, dim=dim)
        if config.kind == "hnsw":
            index.hnsw.efSearch = config.ef_search
        out._index, out._docs, out._rows = index, docs, ids
        return out


def _read_rows(path: Path) -> tuple[list[Document | None], dict[str, int]]:
    docs: list[Document | None] = []
    ids: dict[str, int] = {}
    for number, record in read_docs(path):
        if record is None:
            docs.append(None)
            continue
        if record["id"] in ids:
            raise IndexCorruptError(f"{path} line {number}: id {record['id']!r} appears twice")
        ids[record["id"]] = len(docs)
        docs.append(Document(record["text"], record["metadata"], record["id"]))
    return docs, ids


def _check_embedder(embedder: Embedder | None, dim: int, saved_name: object, root: Path) -> None:
    if embedder is None:
        return
    got = getattr(embedder, "dim", None)
    if isinstance(got, int) and got != dim:
        raise ValueError(
            f"{root} holds vectors of dimension {dim} (embedder {saved_name!r}), but {embedder_name(embedder)} "
            f"makes vectors of dimension {got}: load it with the embedder it was built with"
        )
    name = embedder_name(embedder)
    if isinstance(saved_name, str) and saved_name != name:
        warnings.warn(
            f"{root} was built with embedder {saved_name!r} but is loaded with {name!r}: "
            "search results are only meaningful with the same embedding model",
            UserWarning,
            stacklevel=3,
        )


_faiss_module: Any = None


def _faiss() -> Any:
    """faiss, imported on first use (extra "faiss"); cached, since searches ask for it on every call."""
    global _faiss_module
    if _faiss_module is None:
        from yulian._optional import require

        _faiss_module = require("faiss", extra="faiss", purpose="FaissIndex")
    return _faiss_module
