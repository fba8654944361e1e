"""Prompt, ChatPrompt and FewShotChatPrompt: variables, errors, partials, placeholders, examples."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from yulian.core.messages import Message, assistant, system, user
from yulian.prompts import ChatPrompt, FewShotChatPrompt, Prompt, PromptError, placeholder


# ============================================================================================ Prompt
def test_prompt_fills_variables_and_keeps_escaped_braces() -> None:
    p = Prompt('Reply as JSON like {{"city": "{city}"}} about {city} and {topic.title}')
    assert p.variables == ("city", "topic")

    class Topic:
        title = "food"

    assert p.invoke({"city": "成都", "topic": Topic()}) == 'Reply as JSON like {"city": "成都"} about 成都 and food'


def test_prompt_takes_a_plain_value_when_it_has_one_variable() -> None:
    p = Prompt("Summarise: {text}")
    assert p.invoke("long text") == "Summarise: long text"
    assert p.invoke(assistant("model output")) == "Summarise: model output"
    assert p.format(text="x") == "Summarise: x"


def test_extra_keys_are_ignored() -> None:
    assert Prompt("{a}").invoke({"a": 1, "b": 2}) == "1"


def test_missing_variable_error_names_variable_template_and_given_keys() -> None:
    p = Prompt("Hello {name}, welcome to {place}")
    with pytest.raises(PromptError) as info:
        p.invoke({"place": "Beijing", "nmae": "Ada"})
    message = str(info.value)
    assert "missing variable 'name'" in message
    assert "'Hello {name}, welcome to {place}'" in message
    assert "(given keys: place, nmae)" in message
    assert "did you mean 'name' instead of 'nmae'?" in message
    assert isinstance(info.value, ValueError)


def test_all_missing_variables_are_listed() -> None:
    with pytest.raises(PromptError, match=r"missing variables 'a', 'b' for prompt '\{a\}\{b\}' \(given keys: none\)"):
        Prompt("{a}{b}").invoke({})


def test_a_plain_value_for_several_variables_is_an_error() -> None:
    with pytest.raises(PromptError, match=r"takes a dict of variables \(a, b\), got str"):
        Prompt("{a} {b}").invoke("x")


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{}", "positional field"),
        ("{0}", "positional field"),
        ('{"a": 1}', "double them"),
        ("{open", "invalid template"),
        ("close}", "invalid template"),
    ],
)
def test_bad_templates_fail_at_construction(template: str, fragment: str) -> None:
    with pytest.raises(PromptError, match=fragment):
        Prompt(template)


def test_fill_errors_are_prompt_errors() -> None:
    with pytest.raises(PromptError, match=r"cannot fill prompt '\{n:d\}'"):
        Prompt("{n:d}").invoke("not a number")


def test_nested_format_spec_variables_are_found() -> None:
    p = Prompt("{value:>{width}}")
    assert p.variables == ("value", "width")
    assert p.invoke({"value": "x", "width": 3}) == "  x"


def test_chinese_variable_names() -> None:
    assert Prompt("问题：{问题}").invoke("今天天气如何？") == "问题：今天天气如何？"


def test_partial_binds_values_and_callables() -> None:
    calls = []

    def today() -> str:
        calls.append(1)
        return "2024-01-01"

    p = Prompt("{date}: {text}").partial(date=today)
    assert p.variables == ("text",)
    assert p.invoke("hi") == "2024-01-01: hi"  # one variable left: a plain value works
    assert p.invoke({"text": "x", "date": "override"}) == "override: x"
    assert len(calls) == 2  # called at each fill
    with pytest.raises(PromptError, match=r"partial\(\): 'nope' is not a variable"):
        p.partial(nope=1)


def test_partial_returns_a_copy() -> None:
    base = Prompt("{a}{b}")
    base.partial(a=1)
    assert base.variables == ("a", "b")


def test_prompt_is_cheap_and_async() -> None:
    p = Prompt("{x}!")
    assert p.blocking is False
    assert asyncio.run(p.ainvoke("hi")) == "hi!"
    assert p.batch(["a", "b"]) == ["a!", "b!"]


# ============================================================================================ ChatPrompt
def test_chat_prompt_builds_messages() -> None:
    p = ChatPrompt([("system", "You speak {lang}."), ("user", "{question}"), assistant("literal {not_a_var}")])
    assert p.variables == ("lang", "question")
    assert p.invoke({"lang": "中文", "question": "Hi?"}) == [
        system("You speak 中文."),
        user("Hi?"),
        assistant("literal {not_a_var}"),
    ]


def test_chat_prompt_missing_variable_names_the_message() -> None:
    p = ChatPrompt([("system", "Be brief."), ("user", "{question}")])
    with pytest.raises(PromptError, match=r"missing variable 'question' in message 2 \(user: '\{question\}'\)"):
        p.invoke({"q": "hi"})


def test_placeholder_inserts_messages_in_any_shape() -> None:
    p = ChatPrompt([("system", "s"), placeholder("history"), ("user", "{q}")])
    history: list[Any] = [("user", "hi"), {"role": "assistant", "content": "hello"}]
    assert p.invoke({"history": history, "q": "again"}) == [
        system("s"),
        user("hi"),
        assistant("hello"),
        user("again"),
    ]
    with pytest.raises(PromptError, match=r"missing variable 'history' for placeholder\('history'\)"):
        p.invoke({"q": "x"})
    with pytest.raises(PromptError, match=r"placeholder\('history'\): message 0: expected a Message"):
        p.invoke({"q": "x", "history": [1]})


def test_optional_placeholder_may_be_missing_or_none() -> None:
    p = ChatPrompt([placeholder("history", optional=True), ("user", "{q}")])
    assert p.variables == ("history", "q")
    assert p.invoke("hi") == [user("hi")]  # one required variable: a plain str fills it
    assert p.invoke({"q": "hi", "history": None}) == [user("hi")]
    assert p.invoke({"q": "hi", "history": [user("before")]}) == [user("before"), user("hi")]


def test_chat_prompt_accepts_prompt_objects_with_partials() -> None:
    inner = Prompt("{greeting}, {name}").partial(greeting="你好")
    p = ChatPrompt([("user", inner)])
    assert p.variables == ("name",)
    assert p.invoke("Ada") == [user("你好, Ada")]


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ([("tool", "x")], "role must be system, user or assistant, got 'tool'"),
        ([("narrator", "x")], "got 'narrator'"),
        (["just text"], "message 1: expected a \\(role, template\\) tuple"),
        (("user", "{q}"), "takes a list of messages"),
        ("{q}", "takes a list of messages"),
    ],
)
def test_chat_prompt_rejects_bad_items(items: Any, fragment: str) -> None:
    with pytest.raises((PromptError, TypeError), match=fragment):
        ChatPrompt(items)


def test_chat_prompt_partial() -> None:
    p = ChatPrompt([("system", "Reply in {lang}."), ("user", "{q}")]).partial(lang="French")
    assert p.invoke("hi") == [system("Reply in French."), user("hi")]


# ============================================================================================ few-shot
EXAMPLES = [{"text": "好极了", "label": "正面"}, {"text": "太差了", "label": "负面"}]
EXAMPLE = ChatPrompt([("user", "{text}"), ("assistant", "{label}")])


def test_few_shot_puts_examples_between_prefix_and_suffix() -> None:
    p = FewShotChatPrompt(EXAMPLES, EXAMPLE, prefix=[("system", "Classify as {labels}.")], suffix=[("user", "{text}")])
    assert p.variables == ("labels", "text")
    assert p.invoke({"labels": "正面/负面", "text": "还行"}) == [
        system("Classify as 正面/负面."),
        user("好极了"),
        assistant("正面"),
        user("太差了"),
        assistant("负面"),
        user("还行"),
    ]


def test_few_shot_checks_examples_at_construction() -> None:
    with pytest.raises(PromptError, match=r"example 2 lacks 'label' \(example keys: text\)"):
        FewShotChatPrompt([EXAMPLES[0], {"text": "x"}], EXAMPLE)


def test_few_shot_missing_variable_names_prefix_or_suffix() -> None:
    p = FewShotChatPrompt(EXAMPLES, EXAMPLE, prefix=[("system", "{rules}")], suffix=[("user", "{text}")])
    with pytest.raises(
        PromptError, match=r"missing variable 'rules' in message 1 \(system: '\{rules\}'\) of the prefix"
    ):
        p.invoke({"text": "x"})


def test_few_shot_with_an_example_selector() -> None:
    seen: list[Mapping[str, Any]] = []

    def select(values: Mapping[str, Any]) -> list[dict[str, str]]:
        seen.append(values)
        return [e for e in EXAMPLES if e["label"] == values["hint"]]

    p = FewShotChatPrompt(select, EXAMPLE, suffix=[("user", "{text}")])
    assert p.invoke({"text": "x", "hint": "负面"}) == [user("太差了"), assistant("负面"), user("x")]
    assert seen[0]["hint"] == "负面"  # the selector sees the whole input, extra keys included


def test_few_shot_without_prefix_or_suffix_and_single_variable_input() -> None:
    p = FewShotChatPrompt(EXAMPLES[:1], EXAMPLE, suffix=[("user", "{text}")])
    messages = p.invoke("新的")
    assert messages[-1] == user("新的")
    assert all(isinstance(m, Message) for m in messages)
