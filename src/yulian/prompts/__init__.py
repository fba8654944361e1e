"""Prompts and output parsers: build what goes into a model and read what comes out.

Templates (`Prompt`, `ChatPrompt`, `FewShotChatPrompt`) turn a dict of variables into text or messages; parsers
(`TextParser`, `JsonParser`, `PydanticParser`, `LabelParser`, `RegexParser`) turn a model's reply into values.
The message types are re-exported here for convenience (they live in `yulian.core.messages`).
"""

from yulian.core.messages import Message, MessageChunk, ToolCall, assistant, system, to_messages, tool, user
from yulian.prompts.parsers import (
    JsonParser,
    LabelParser,
    OutputParser,
    OutputParserError,
    PydanticParser,
    RegexParser,
    TextParser,
)
from yulian.prompts.templates import (
    ChatPrompt,
    FewShotChatPrompt,
    Placeholder,
    Prompt,
    PromptError,
    placeholder,
)

__all__ = [
    "ChatPrompt",
    "FewShotChatPrompt",
    "JsonParser",
    "LabelParser",
    "Message",
    "MessageChunk",
    "OutputParser",
    "OutputParserError",
    "Placeholder",
    "Prompt",
    "PromptError",
    "PydanticParser",
    "RegexParser",
    "TextParser",
    "ToolCall",
    "assistant",
    "placeholder",
    "system",
    "to_messages",
    "tool",
    "user",
]
