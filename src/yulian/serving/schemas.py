"""Request bodies of the HTTP routes (pydantic models: they validate requests and document the OpenAPI spec).

Field names and shapes follow the OpenAI API where a route mirrors it. Unknown fields are ignored, as OpenAI's
clients send optional fields a server may not know.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChainBatchRequest",
    "ChainInvokeRequest",
    "ChatCompletionRequest",
    "ChatMessageIn",
    "ClassifyRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "NERRequest",
    "QAItem",
    "QARequest",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    """One part of a message's content; only text parts are served."""

    type: str
    text: str | None = None


class ChatMessageIn(_Body):
    """One message of a chat request."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)


class ChatCompletionRequest(_Body):
    """`POST /v1/chat/completions`."""

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    user: str | None = None


class CompletionRequest(_Body):
    """`POST /v1/completions` (served by a chat model: the prompt is one user message)."""

    model: str = Field(min_length=1, max_length=256)
    prompt: str | list[str]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None
    user: str | None = None


class EmbeddingRequest(_Body):
    """`POST /v1/embeddings`; token-id inputs are not served."""

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class ClassifyRequest(_Body):
    """`POST /v1/classify`: one text, a (text, text) pair, or a list of either."""

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str | list[str]]


class NERRequest(_Body):
    """`POST /v1/ner`: one text or a list of texts."""

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str]


class QAItem(_Body):
    """One question about one context."""

    question: str
    context: str


class QARequest(_Body):
    """`POST /v1/qa`: `question` + `context`, or `input`, a list of them."""

    model: str = Field(min_length=1, max_length=256)
    question: str | None = None
    context: str | None = None
    input: list[QAItem] | None = None


class ChainInvokeRequest(_Body):
    """`POST /v1/chains/{name}/invoke` and `/stream`: the chain's input, any JSON value."""

    input: Any = None


class ChainBatchRequest(_Body):
    """`POST /v1/chains/{name}/batch`: a list of inputs."""

    inputs: list[Any]
