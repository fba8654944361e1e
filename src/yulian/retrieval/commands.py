"""`yulian index` and `yulian search`: build a saved index from document files, and query it.

    $ yulian index faq.jsonl faq.index --text-field question            # FAISS (dense), MiniLM by default
    $ yulian index docs/ docs.bm25 --kind bm25                           # keyword index, no model needed
    $ yulian search faq.index "How do I reset my PIN?" -k 3 --hybrid
    $ yulian search faq.index "花呗怎么还款" --json

Plain functions: the signature is the command line, the docstring its help (see `yulian.cli`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from yulian.retrieval.index import SearchIndex

__all__ = ["index", "search"]

_KINDS = ("flat", "hnsw", "bm25")


def index(
    docs: str,
    out: Path,
    kind: str = "flat",
    model: str = "minilm-l6",
    metric: str = "cosine",
    text_field: str = "text",
    id_field: str = "",
) -> None:
    """Build an index from document files (txt, md, jsonl, json, csv, html, pdf; a folder or a glob) and save it.

    Args:
        docs: a file, folder or glob of documents.
        out: the index directory to write (replaced atomically if it is an index already).
        kind: flat (exact vector search), hnsw (approximate, for large collections) or bm25 (keywords).
        model: the embedder for flat/hnsw: a model directory or a registered name.
        metric: cosine, ip or l2 (vector indexes).
        text_field: the field holding the text in jsonl/json/csv files.
        id_field: a field to use as the document id (default: a hash of text and source).
    """
    from yulian.retrieval.loaders import load_docs

    if kind not in _KINDS:
        raise ValueError(f"--kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    documents = load_docs(docs, text_field=text_field, id_field=id_field or None)
    if not documents:
        raise ValueError(f"no documents found in {docs}")
    built: SearchIndex
    if kind == "bm25":
        from yulian.retrieval.bm25 import BM25Index

        built = BM25Index.build(documents)
    else:
        from yulian.models.embed_commands import load_embedder
        from yulian.retrieval.faiss_index import FaissIndex

        built = FaissIndex.build(documents, load_embedder(model), kind=kind, metric=metric)  # type: ignore[arg-type]
    built.save(out)
    print(f"indexed {len(built):,} documents from {docs} into {out} ({kind})", file=sys.stderr)


def search(
    index: Path,
    query: str,
    k: int = 4,
    model: str = "minilm-l6",
    hybrid: bool = False,
    json_output: bool = False,
) -> None:
    """Search a saved index (FAISS or BM25) and print the best documents with their scores.

    Args:
        index: the index directory (written by `yulian index` or `.save()`).
        query: the question or keywords.
        k: how many documents to print.
        model: the embedder for a vector index (must be the one it was built with).
        hybrid: fuse a vector index's results with BM25 keyword search (reciprocal rank fusion).
        json_output: print one JSON object per document instead of text.
    """
    from yulian.retrieval.retriever import Retriever

    loaded = load_index(index, model)
    for n, doc in enumerate(Retriever(loaded, k=k, hybrid=hybrid).invoke(query), 1):
        if json_output:
            print(json.dumps(doc.to_dict(), ensure_ascii=False))
        else:
            where = doc.metadata.get("source", "")
            print(f"[{n}] {doc.score:.4f}  {doc.text}" + (f"  ({where})" if where else ""))


def load_index(path: Path, model: str = "minilm-l6") -> SearchIndex:
    """A saved FAISS or BM25 index, whichever `path` holds (read from its manifest)."""
    from yulian.retrieval._persist import MANIFEST
    from yulian.retrieval.bm25 import BM25Index
    from yulian.retrieval.faiss_index import FaissIndex

    try:
        fmt = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None  # let the loader below say precisely what is wrong
    if fmt == BM25Index.FORMAT:
        return BM25Index.load(path)
    from yulian.models.embed_commands import load_embedder

    return FaissIndex.load(path, load_embedder(model))
