"""Prompt templates: `Prompt` (text), `ChatPrompt` (messages) and `FewShotChatPrompt` (messages with examples).

Templates use `str.format` syntax: `{name}` is a variable, `{{` and `}}` are literal braces (write JSON examples
that way), `{user.name}` and `{items[0]}` read attributes and items. Variables are found once, when the template
is built, so filling it is one `format_map` call.

A template is a Runnable. Its input is a dict of variables, or, when it needs exactly one variable, the value
itself (a str, or a Message whose content is used). Extra keys are ignored, so a dict flowing through a chain can
carry more than the template needs. Every failure raises `PromptError`, a `ValueError` whose message names the
missing variables, where they are used and the keys that were given.
"""

from __future__ import annotations

import copy
import difflib
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeAlias, TypeVar, cast

from yulian.core.messages import Message, Role, to_messages
from yulian.core.runnable import ConfigLike, Runnable

__all__ = [
    "ChatPrompt",
    "FewShotChatPrompt",
    "Placeholder",
    "Prompt",
    "PromptError",
    "PromptInput",
    "placeholder",
]

PromptInput: TypeAlias = Mapping[str, Any] | str | Message
"""A dict of variables, or the value of the only variable (a str, or a Message whose content is used)."""

In = TypeVar("In")
Out = TypeVar("Out")

_FORMATTER = string.Formatter()


class PromptError(ValueError):
    """A template could not be built or filled: bad syntax, a missing variable or an input of the wrong shape.

    A `ValueError` (not a `KeyError`, whose message Python prints quoted): catch it as either.
    """


def _short(text: str, limit: int = 60) -> str:
    text = text.replace("\n", "\\n")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def parse_variables(template: str) -> tuple[str, ...]:
    """The variable names of a `str.format` template, in order of first use (`{a.b}` and `{a[0]}` count as `a`)."""
    names: list[str] = []
    try:
        fields = list(_FORMATTER.parse(template))
    except ValueError as e:
        raise PromptError(f"invalid template {_short(template)}: {e}; write {{{{ and }}}} for literal braces") from None
    for _, field_name, spec, _ in fields:
        if field_name is None:
            continue
        root = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        if root == "" or root.isdigit():
            raise PromptError(
                f"template {_short(template)} has a positional field {{{field_name}}}: name it, e.g. {{text}}"
            )
        if not root.isidentifier():
            raise PromptError(
                f"template {_short(template)} has {{{field_name}}}, which is not a variable name; "
                "to write literal braces (e.g. JSON), double them: {{ and }}"
            )
        names.append(root)
        if spec:
            names.extend(parse_variables(spec))
    return tuple(dict.fromkeys(names))


# ============================================================================================ shared base
class _Template(Runnable[In, Out]):
    """Variables, partial values and input checking shared by all templates; subclasses implement `_fill`."""

    blocking = False

    variables: tuple[str, ...]
    """The variables still to fill (not bound by `partial`), in order of first use."""

    def _set_variables(self, where: Mapping[str, str], optional: Iterable[str] = ()) -> None:
        self._where = dict(where)  # variable -> where it is first used, for error messages
        self._optional = frozenset(optional)
        self._partials: dict[str, Any] = {}
        self._refresh()

    def _refresh(self) -> None:
        self.variables = tuple(v for v in self._where if v not in self._partials)
        self._required = tuple(v for v in self.variables if v not in self._optional)

    def _fill(self, values: Mapping[str, Any]) -> Out:
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- public API
    def invoke(self, input: In, config: ConfigLike = None) -> Out:
        """Fill the template from a dict of variables (or the value of its only variable)."""
        return self._fill(self._values(input))

    def format(self, **values: Any) -> Out:
        """Fill the template from keyword arguments: `prompt.format(name="Ada")`."""
        return self._fill(self._values(values))

    def partial(self, **values: Any) -> Self:
        """A copy with some variables bound. A value may be a no-argument callable, called at each fill."""
        unknown = [k for k in values if k not in self._where]
        if unknown:
            raise PromptError(
                f"partial(): {', '.join(map(repr, unknown))} is not a variable of {self._label()} "
                f"(variables: {', '.join(self._where) or 'none'})"
            )
        bound = copy.copy(self)
        bound._partials = {**self._partials, **values}
        bound._refresh()
        return bound

    # ----------------------------------------------------------------------------------------- internals
    def _label(self) -> str:
        return type(self).__name__

    def _values(self, input: object) -> Mapping[str, Any]:
        given: Mapping[str, Any]
        if isinstance(input, Mapping):
            given = input
        elif isinstance(input, str | Message) and len(self._required) == 1:
            given = {self._required[0]: input.content if isinstance(input, Message) else input}
        else:
            needs = ", ".join(self._required) or "none"
            raise PromptError(
                f"{self._label()} takes a dict of variables ({needs}), got {type(input).__name__}: {input!r:.60}"
            )
        missing = [v for v in self._required if v not in given]
        if missing:
            raise PromptError(self._missing_message(missing, given))
        return given

    def _with_partials(self, values: Mapping[str, Any]) -> Mapping[str, Any]:
        """`values` over the partial values (callables called now)."""
        if not self._partials:
            return values
        return {**{k: v() if callable(v) else v for k, v in self._partials.items()}, **values}

    def _missing_message(self, missing: list[str], given: Mapping[str, Any]) -> str:
        groups: dict[str, list[str]] = {}
        for name in missing:
            groups.setdefault(self._where[name], []).append(repr(name))
        places = "; ".join(f"{', '.join(names)} {where}" for where, names in groups.items())
        keys = ", ".join(map(str, given)) or "none"
        message = f"missing variable{'s' if len(missing) > 1 else ''} {places} (given keys: {keys})"
        unused = [k for k in given if k not in self._where]
        for name in missing:
            close = difflib.get_close_matches(name, unused, n=1)
            if close:
                message += f"; did you mean {name!r} instead of {close[0]!r}?"
        return message


# ============================================================================================ text prompts
class Prompt(_Template[PromptInput, str]):
    """A text template: `Prompt("Translate to {lang}: {text}").invoke({"lang": "fr", "text": "hi"})`."""

    def __init__(self, template: str) -> None:
        if not isinstance(template, str):
            raise TypeError(f"Prompt takes a template string, got {type(template).__name__}")
        self.template = template
        where = f"for prompt {_short(template)}"
        self._set_variables(dict.fromkeys(parse_variables(template), where))

    def _fill(self, values: Mapping[str, Any]) -> str:
        values = self._with_partials(values)
        try:
            return self.template.format_map(values)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
            raise PromptError(f"cannot fill prompt {_short(self.template)}: {type(e).__name__}: {e}") from e

    def _label(self) -> str:
        return f"prompt {_short(self.template)}"

    def __repr__(self) -> str:
        return f"Prompt({self.template!r})"


# ============================================================================================ chat prompts
@dataclass(frozen=True, slots=True)
class Placeholder:
    """A slot in a chat prompt filled with a list of messages from the variable `name` (e.g. chat history)."""

    name: str
    optional: bool = False


def placeholder(name: str, *, optional: bool = False) -> Placeholder:
    """A slot for a list of messages: `ChatPrompt([("system", "..."), placeholder("history"), ("user", "{q}")])`.

    The value may be anything `to_messages` accepts. With `optional=True` a missing or None value inserts nothing.
    """
    if not name.isidentifier():
        raise PromptError(f"placeholder name must be a variable name, got {name!r}")
    return Placeholder(name, optional)


ChatItem: TypeAlias = tuple[str, "str | Prompt"] | Message | Placeholder
"""One entry of a chat prompt: a `(role, template)` tuple, a literal `Message` or a `Placeholder`."""

_Part: TypeAlias = tuple[Role, Prompt] | Message | Placeholder


class ChatPrompt(_Template[PromptInput, list[Message]]):
    """A chat template: a list of `(role, template)` pairs, literal `Message`s and `placeholder`s -> messages.

    `ChatPrompt([("system", "Answer briefly."), ("user", "{question}")]).invoke({"question": "Why?"})` gives a
    system and a user message. Templated roles are `system`, `user` and `assistant`.
    """

    def __init__(self, messages: Sequence[ChatItem]) -> None:
        given: object = messages  # checked at run time: a lone string or (role, text) pair is a common slip
        if isinstance(given, str) or (isinstance(given, tuple) and given and isinstance(given[0], str)):
            raise TypeError("ChatPrompt takes a list of messages, e.g. ChatPrompt([('user', '{question}')])")
        parts: list[_Part] = []
        where: dict[str, str] = {}
        optional: set[str] = set()
        for i, item in enumerate(messages, 1):
            if isinstance(item, Placeholder):
                parts.append(item)
                where.setdefault(item.name, f"for placeholder({item.name!r})")
                if item.optional:
                    optional.add(item.name)
            elif isinstance(item, Message):
                parts.append(item)
            elif isinstance(item, tuple) and len(item) == 2:
                role, text = item
                if role not in ("system", "user", "assistant"):
                    hint = " (build tool messages with yulian.core.messages.tool)" if role == "tool" else ""
                    raise PromptError(
                        f"ChatPrompt message {i}: role must be system, user or assistant, got {role!r}{hint}"
                    )
                prompt = text if isinstance(text, Prompt) else Prompt(text)
                parts.append((cast(Role, role), prompt))
                for name in prompt.variables:
                    where.setdefault(name, f"in message {i} ({role}: {_short(prompt.template, 40)})")
            else:
                raise PromptError(
                    f"ChatPrompt message {i}: expected a (role, template) tuple, a Message or a placeholder(), "
                    f"got {type(item).__name__}: {item!r:.60}"
                )
        self.messages: tuple[_Part, ...] = tuple(parts)
        # a variable used both by a placeholder and a template is required
        optional -= {v for part in parts if isinstance(part, tuple) for v in part[1].variables}
        self._set_variables(where, optional)

    def _fill(self, values: Mapping[str, Any]) -> list[Message]:
        values = self._with_partials(values)
        out: list[Message] = []
        for part in self.messages:
            if isinstance(part, tuple):
                out.append(Message(part[0], part[1]._fill(values)))
            elif isinstance(part, Message):
                out.append(part)
            else:
                value = values.get(part.name)
                if value is None:
                    if part.optional:
                        continue
                    raise PromptError(f"placeholder({part.name!r}) needs a list of messages, got None")
                try:
                    out.extend(to_messages(value))
                except (TypeError, ValueError) as e:
                    raise PromptError(f"placeholder({part.name!r}): {e}") from None
        return out

    def _label(self) -> str:
        return "ChatPrompt"

    def __repr__(self) -> str:
        return f"ChatPrompt(variables={list(self.variables)})"


class FewShotChatPrompt(_Template[PromptInput, list[Message]]):
    """Chat messages with worked examples: prefix messages, each example as messages, then suffix messages.

    ```
    examples = [{"text": "好极了", "label": "正面"}, {"text": "太差了", "label": "负面"}]
    example = ChatPrompt([("user", "{text}"), ("assistant", "{label}")])
    prompt = FewShotChatPrompt(examples, example, prefix=[("system", "Classify.")], suffix=[("user", "{text}")])
    ```
    `examples` may also be a function of the input variables returning the examples to use (an example
    selector, e.g. the most similar ones). The prompt's variables are those of the prefix and suffix.
    """

    def __init__(
        self,
        examples: Sequence[Mapping[str, Any]] | Callable[[Mapping[str, Any]], Sequence[Mapping[str, Any]]],
        example_prompt: ChatPrompt,
        *,
        prefix: Sequence[ChatItem] = (),
        suffix: Sequence[ChatItem] = (),
    ) -> None:
        if not isinstance(example_prompt, ChatPrompt):
            raise TypeError(f"example_prompt must be a ChatPrompt, got {type(example_prompt).__name__}")
        self.example_prompt = example_prompt
        self.prefix = ChatPrompt(prefix)
        self.suffix = ChatPrompt(suffix)
        self.examples = examples
        self._fixed = None if callable(examples) else self._render_examples(examples)
        where = {k: f"{v} of the prefix" for k, v in self.prefix._where.items()}
        for k, v in self.suffix._where.items():
            where.setdefault(k, f"{v} of the suffix")
        optional = (self.prefix._optional | self.suffix._optional) - set(self.prefix._required + self.suffix._required)
        self._set_variables(where, optional)

    def _render_examples(self, examples: Sequence[Mapping[str, Any]]) -> list[Message]:
        out: list[Message] = []
        for i, example in enumerate(examples, 1):
            if not isinstance(example, Mapping):
                raise PromptError(f"example {i} must be a dict, got {type(example).__name__}: {example!r:.60}")
            missing = [v for v in self.example_prompt._required if v not in example]
            if missing:
                raise PromptError(
                    f"example {i} lacks {', '.join(map(repr, missing))} "
                    f"(example keys: {', '.join(map(str, example)) or 'none'})"
                )
            out.extend(self.example_prompt.invoke(example))
        return out

    def _fill(self, values: Mapping[str, Any]) -> list[Message]:
        values = self._with_partials(values)
        if self._fixed is not None:
            shots = self._fixed
        else:
            assert callable(self.examples)
            shots = self._render_examples(self.examples(values))
        return self.prefix._fill(values) + shots + self.suffix._fill(values)

    def _label(self) -> str:
        return "FewShotChatPrompt"
