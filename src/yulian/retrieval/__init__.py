"""Retrieval: documents, splitters, loaders, vector and keyword indexes, retrievers, RAG and chat memory.

Importing this package is light: faiss, numpy and jieba load on first use.
"""

from yulian.retrieval.bm25 import BM25Config, BM25Index
from yulian.retrieval.documents import Document
from yulian.retrieval.faiss_index import FaissConfig, FaissIndex
from yulian.retrieval.index import (
    IndexCorruptError,
    MetadataFilter,
    SearchIndex,
    VectorIndex,
)
from yulian.retrieval.loaders import (
    LoaderError,
    iter_docs,
    load_docs,
    register_loader,
)
from yulian.retrieval.memory import (
    ChatHistory,
    InMemoryChatHistory,
    SQLiteChatHistory,
    SQLiteChatStore,
    WithHistory,
    trim_messages,
    with_history,
)
from yulian.retrieval.rag import (
    answer_prompt,
    cited_sources,
    format_docs,
    rag_chain,
)
from yulian.retrieval.retriever import Retriever, rrf
from yulian.retrieval.splitters import TextSplitter, split

__all__ = [
    "BM25Config",
    "BM25Index",
    "ChatHistory",
    "Document",
    "FaissConfig",
    "FaissIndex",
    "InMemoryChatHistory",
    "IndexCorruptError",
    "LoaderError",
    "MetadataFilter",
    "Retriever",
    "SQLiteChatHistory",
    "SQLiteChatStore",
    "SearchIndex",
    "TextSplitter",
    "VectorIndex",
    "WithHistory",
    "answer_prompt",
    "cited_sources",
    "format_docs",
    "iter_docs",
    "load_docs",
    "rag_chain",
    "register_loader",
    "rrf",
    "split",
    "trim_messages",
    "with_history",
]
