"""Models: the registry, local transformers models, OpenAI-compatible remote models and their contracts.

`load(name_or_path, task=None)` resolves a packaged default (`minilm-l6`, `smollm2-135m-instruct`), a local
folder, a GGUF file, a hub id or `openai:MODEL` to a Runnable. Importing this package is light: torch,
transformers and openai load on first use. Offline fakes for tests live in `yulian.testing`.
"""

from yulian.models.base import ChatInput, ChatModel, Embedder, GenerationConfig
from yulian.models.hf_chat import HFChatConfig, HFChatModel
from yulian.models.hf_tasks import HFClassifier, HFEmbedder, HFQuestionAnswerer, HFTokenClassifier
from yulian.models.openai_models import OpenAIChatModel, OpenAIEmbedder, RemoteModelError
from yulian.models.predictions import Answer, Entity, Prediction
from yulian.models.registry import (
    ModelInfo,
    ModelNotFoundError,
    ModelSpec,
    ResolvedModel,
    available_models,
    cache_dir,
    load,
    register,
    resolve,
)

__all__ = [
    "Answer",
    "ChatInput",
    "ChatModel",
    "Embedder",
    "Entity",
    "GenerationConfig",
    "HFChatConfig",
    "HFChatModel",
    "HFClassifier",
    "HFEmbedder",
    "HFQuestionAnswerer",
    "HFTokenClassifier",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelSpec",
    "OpenAIChatModel",
    "OpenAIEmbedder",
    "Prediction",
    "RemoteModelError",
    "ResolvedModel",
    "available_models",
    "cache_dir",
    "load",
    "register",
    "resolve",
]
