"""Retrieval: documents, splitters, loaders, vector and keyword indexes, retrievers and chat memory."""

from yulian.retrieval.documents import Document

__all__ = ["Document"]
