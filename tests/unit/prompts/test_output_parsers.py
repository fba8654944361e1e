"""Output parsers: text, JSON with repairs and partial streaming, pydantic, labels, regex."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from yulian.core.messages import MessageChunk, assistant
from yulian.prompts import (
    JsonParser,
    LabelParser,
    OutputParserError,
    PydanticParser,
    RegexParser,
    TextParser,
)


def chunks(*pieces: str) -> list[MessageChunk]:
    return [MessageChunk("assistant", p) for p in pieces]


async def agen(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


# ============================================================================================ TextParser
def test_text_parser_reads_str_and_messages() -> None:
    p = TextParser()
    assert p.invoke("hi") == "hi"
    assert p.invoke(assistant("hello")) == "hello"
    assert p.blocking is False


def test_text_parser_passes_stream_pieces_through() -> None:
    assert list(TextParser().transform(chunks("a", "", " b"))) == ["a", " b"]
    assert list(TextParser().transform(chunks(""))) == [""]  # never an empty stream


def test_text_parser_async_transform() -> None:
    async def run() -> list[str]:
        return [x async for x in TextParser().atransform(agen(chunks("你", "好")))]

    assert asyncio.run(run()) == ["你", "好"]


def test_parsers_reject_other_inputs() -> None:
    with pytest.raises(TypeError, match=r"TextParser parses text or a Message, got int"):
        TextParser().invoke(3)  # type: ignore[arg-type]


# ============================================================================================ JsonParser
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("[1, 2]", [1, 2]),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('Here you go:\n```\n{"a": [1, 2]}\n```\nAnything else?', {"a": [1, 2]}),
        ('```python\nx = {1}\n```\n```json\n{"ok": true}\n```', {"ok": True}),
        ('Sure! The answer is {"city": "北京", "n": 3}. Hope this helps.', {"city": "北京", "n": 3}),
        ('Note [1]: see below. {"a": {"b": [1, {"c": "}"}]}} done', {"a": {"b": [1, {"c": "}"}]}}),
        ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}),
        ("{'name': 'Ada', 'quote': 'it\\'s \"fine\"'}", {"name": "Ada", "quote": 'it\'s "fine"'}),
        ('{"flag": True, "none": None, "f": False}', {"flag": True, "none": None, "f": False}),
        ('{"text": "line one\nline two"}', {"text": "line one\nline two"}),
        ('{"s": "keep, ] and \'quotes\' and True"}', {"s": "keep, ] and 'quotes' and True"}),
    ],
)
def test_json_parser_repairs(text: str, expected: Any) -> None:
    assert JsonParser().parse(text) == expected


def test_json_parser_reads_messages_and_streams() -> None:
    assert JsonParser().invoke(assistant('{"a": 1}')) == {"a": 1}
    assert list(JsonParser().transform(chunks('{"a', '": 1}'))) == [{"a": 1}]


def test_json_parser_errors_quote_the_output() -> None:
    with pytest.raises(OutputParserError, match=r"no JSON object or array found; output was: 'I cannot help'") as info:
        JsonParser().parse("I cannot help")
    assert info.value.text == "I cannot help"
    with pytest.raises(OutputParserError, match=r"invalid JSON: Expecting ':' delimiter"):
        JsonParser().parse('{"a" 1}')


def test_json_parser_reports_truncated_output() -> None:
    with pytest.raises(OutputParserError, match=r"incomplete JSON: the '\{' at character 6 is never closed"):
        JsonParser().parse('Here: {"a": [1, 2')


def test_long_outputs_are_excerpted_in_errors() -> None:
    text = "x" * 5000
    with pytest.raises(OutputParserError) as info:
        JsonParser().parse(text)
    assert len(str(info.value)) < 400
    assert "more characters" in str(info.value)
    assert info.value.text == text


def test_json_parser_partial_streams_growing_snapshots() -> None:
    text = '```json\n{"name": "Ada Lovelace", "langs": ["en", "fr"], "n": 12}\n```'
    pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
    snapshots = list(JsonParser(partial=True).transform(chunks(*pieces)))
    assert len(snapshots) > 3
    assert snapshots[-1] == {"name": "Ada Lovelace", "langs": ["en", "fr"], "n": 12}
    assert any(s.get("name", "").startswith("Ada") and s.get("name") != "Ada Lovelace" for s in snapshots)
    assert all(a != b for a, b in itertools.pairwise(snapshots))  # only changes are yielded


def test_json_parser_partial_async_and_final_error() -> None:
    async def run(pieces: list[str]) -> list[Any]:
        return [x async for x in JsonParser(partial=True).atransform(agen(pieces))]

    assert asyncio.run(run(["[1, ", "2]"]))[-1] == [1, 2]
    with pytest.raises(OutputParserError, match="incomplete JSON"):
        asyncio.run(run(['{"a": ', "1"]))


# ============================================================================================ PydanticParser
class Person(BaseModel):
    name: str
    age: int = Field(ge=0, description="years")


def test_pydantic_parser_validates() -> None:
    p = PydanticParser(Person)
    person = p.parse('```json\n{"name": "Ada", "age": 36,}\n```')
    assert person == Person(name="Ada", age=36)
    assert p.output_type is Person
    assert p.name == "PydanticParser(Person)"


def test_pydantic_parser_errors_name_the_fields() -> None:
    with pytest.raises(OutputParserError) as info:
        PydanticParser(Person).parse('{"age": "old"}')
    message = str(info.value)
    assert "output does not match Person" in message
    assert "field 'name': Field required" in message
    assert "field 'age': Input should be a valid integer" in message
    assert "(got 'old')" in message


def test_pydantic_parser_format_instructions_hold_the_schema() -> None:
    text = PydanticParser(Person).format_instructions()
    schema = json.loads(text.split("```json\n")[1].split("\n```")[0])
    assert schema["required"] == ["name", "age"]
    assert schema["properties"]["age"]["description"] == "years"


def test_pydantic_parser_needs_a_model_class() -> None:
    with pytest.raises(TypeError, match="needs a pydantic model class"):
        PydanticParser(dict)  # type: ignore[type-var]


# ============================================================================================ LabelParser
@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("正面", "正面"),
        (" 负面\n", "负面"),
        ("【负面】", "负面"),
        ("负面。", "负面"),
        ("情感倾向：负面", "负面"),
        ("这条评论的情感是正面的。", "正面"),
        ("正面。理由：虽然提到负面体验，但总体满意。", "正面"),  # the answer starts with it
    ],
)
def test_label_parser_chinese(text: str, label: str) -> None:
    assert LabelParser(["正面", "负面"]).parse(text) == label


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Positive.", "positive"),
        ("NEGATIVE", "negative"),
        ("ＰＯＳＩＴＩＶＥ", "positive"),  # full-width
        ("**negative**", "negative"),
        ("The sentiment is negative.", "negative"),
        ("Negative: it is not positive at all", "negative"),
        ("very positive", "very positive"),
        ("Very-Positive!", "very positive"),
    ],
)
def test_label_parser_english(text: str, label: str) -> None:
    assert LabelParser(["positive", "negative", "very positive"]).parse(text) == label


def test_label_parser_matches_whole_words_only() -> None:
    with pytest.raises(OutputParserError, match=r"no label found \(allowed: positive, negative\)"):
        LabelParser(["positive", "negative"]).parse("It went negatively")


def test_label_parser_ambiguity_and_default() -> None:
    p = LabelParser(["positive", "negative"])
    with pytest.raises(OutputParserError, match=r"ambiguous label: the output mentions negative, positive"):
        p.parse("It is hard to say: negative or positive")
    assert LabelParser(["positive", "negative"], default="unknown").parse("no idea") == "unknown"


def test_label_parser_error_lists_chinese_labels() -> None:
    with pytest.raises(OutputParserError, match=r"no label found \(allowed: 正面, 负面\); output was: '中性'"):
        LabelParser(["正面", "负面"]).parse("中性")


def test_label_parser_synonyms() -> None:
    p = LabelParser({"positive": ["好评", "pos"], "negative": ["差评"]})
    assert p.labels == ("positive", "negative")
    assert p.parse("好评") == "positive"
    assert p.parse("这是差评") == "negative"
    assert p.parse("POS") == "positive"


def test_label_parser_rejects_bad_label_sets() -> None:
    with pytest.raises(ValueError, match="unique"):
        LabelParser(["a", "a"])
    with pytest.raises(ValueError, match="would match both"):
        LabelParser(["Yes", "yes!"])
    with pytest.raises(ValueError, match="needs a list of labels"):
        LabelParser("positive")
    with pytest.raises(ValueError, match="non-empty"):
        LabelParser(["ok", " "])


def test_label_parser_format_instructions() -> None:
    assert LabelParser(["正面", "负面"]).format_instructions() == "Answer with exactly one of these labels: 正面, 负面."


# ============================================================================================ RegexParser
def test_regex_parser_named_groups() -> None:
    p = RegexParser(r"score:\s*(?P<score>\d+)(?:\s*reason:\s*(?P<reason>.+))?")
    assert p.parse("Final score: 8 reason: good") == {"score": "8", "reason": "good"}
    assert p.invoke(assistant("score: 3")) == {"score": "3", "reason": None}


def test_regex_parser_keys_for_unnamed_groups_or_a_subset() -> None:
    assert RegexParser(r"(\w+)=(\d+)", keys=["name", "value"]).parse("x=1") == {"name": "x", "value": "1"}
    assert RegexParser(r"(?P<a>\d)(?P<b>\d)", keys=["b"]).parse("12") == {"b": "2"}
    assert RegexParser(r"答案[:：](?P<answer>\S+)").parse("答案：北京") == {"answer": "北京"}


def test_regex_parser_errors() -> None:
    with pytest.raises(OutputParserError, match=r"output does not match the pattern '\(\?P<n>\\\\d\+\)'"):
        RegexParser(r"(?P<n>\d+)").parse("none here")
    with pytest.raises(ValueError, match="no named groups"):
        RegexParser(r"(\d+)")
    with pytest.raises(ValueError, match="1 keys given for a pattern with 2 groups"):
        RegexParser(r"(\d)(\d)", keys=["a"])
    with pytest.raises(ValueError, match=r"keys \['c'\] are not groups"):
        RegexParser(r"(?P<a>\d)", keys=["c"])


def test_output_parser_error_survives_copy_and_pickle() -> None:
    import copy
    import pickle

    error = OutputParserError("bad", "raw output")
    for clone in (copy.copy(error), pickle.loads(pickle.dumps(error))):
        assert str(clone) == str(error) and clone.text == "raw output"
