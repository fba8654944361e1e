"""Models: the chat model and embedder contracts every backend implements.

Backends (local transformers, OpenAI-compatible servers) subclass `ChatModel` and `Embedder`; offline fakes for
tests live in `yulian.testing`.
"""

from yulian.models.base import ChatInput, ChatModel, Embedder, GenerationConfig

__all__ = ["ChatInput", "ChatModel", "Embedder", "GenerationConfig"]
