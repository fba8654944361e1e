"""Output guardrails: block, rewrite and flag; types kept; streaming with split secrets; classifier rules."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from yulian.core.messages import Message, MessageChunk
from yulian.core.runnable import runnable
from yulian.guardrails import (
    ClassifierRule,
    Guardrail,
    GuardrailError,
    KeywordRule,
    PIIRule,
    RegexRule,
    SecretRule,
    guard,
    guard_command,
    rules_from_config,
)
from yulian.models.predictions import Prediction

KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2"


def test_keywords_block_whole_words_and_chinese_substrings() -> None:
    g = Guardrail([KeywordRule(["bomb recipe", "制作炸弹"], name="weapons")])
    assert g.invoke("Here is a bomb recipe: ...") == "I can't help with that."
    assert g.invoke("下面教你制作炸弹的方法") == "抱歉，这个问题我无法回答。"
    assert g.invoke("a bombrecipes blog") == "a bombrecipes blog"  # not a whole word
    [v] = g.check("Bomb Recipe")
    assert (v.rule, v.action, v.start, v.end) == ("weapons", "block", 0, 11)
    with pytest.raises(GuardrailError, match="weapons: matched 'bomb recipe'"):
        Guardrail([KeywordRule(["bomb recipe"], name="weapons")], raise_on_block=True).invoke("bomb recipe")


def test_secrets_and_pii_are_rewritten_and_messages_keep_their_type() -> None:
    g = Guardrail([SecretRule(), PIIRule()])
    out = g.invoke(f"use {KEY} and call 13812345678, password: hunter22")
    assert KEY not in out and "hunter22" not in out and "13812345678" not in out
    assert out == "use [secret] and call 138****5678, password: [secret]"
    message = g.invoke(Message("assistant", f"key {KEY}", metadata={"model": "m"}))
    assert isinstance(message, Message) and message.content == "key [secret]"
    assert message.metadata["model"] == "m"
    assert message.metadata["guardrail"]["violations"][0]["message"].startswith("OpenAI-style API key")
    assert KEY not in str(message.metadata)  # the violation never carries the secret itself
    assert g.invoke("nothing to see") == "nothing to see"


def test_flag_passes_the_text_and_records_the_violation() -> None:
    g = Guardrail([RegexRule(r"\bguarantee[ds]?\b", name="promises", action="flag")])
    out = g.invoke(Message("assistant", "Returns are guaranteed."))
    assert out.content == "Returns are guaranteed."
    assert out.metadata["guardrail"] == {
        "blocked": False,
        "violations": [
            {"rule": "promises", "action": "flag", "message": "matched 'guaranteed'", "start": 12, "end": 22}
        ],
    }


def test_streaming_catches_a_secret_split_across_pieces() -> None:
    g = Guardrail([SecretRule()], holdback=40)
    text = f"Your key is {KEY}. Keep it safe, it grants access to everything in the account."
    pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
    out = list(g.transform(iter(pieces)))
    assert len(out) > 1  # released progressively, not all at the end
    assert "".join(out) == text.replace(KEY, "[secret]")
    assert all("sk-proj" not in piece for piece in out)


def test_streaming_stops_with_the_refusal_on_a_block() -> None:
    g = Guardrail([KeywordRule(["forbidden"])], holdback=10)
    pieces = ["This answer is long enough to release some text ", "before the forb", "idden word and more"]
    out = list(g.transform(iter(pieces)))
    joined = "".join(out)
    assert "forbidden" not in joined and "forb" not in joined
    assert joined.endswith("\nI can't help with that.")
    chunks = list(g.transform(iter([MessageChunk("assistant", "all fine "), MessageChunk("assistant", "here")])))
    assert all(isinstance(c, MessageChunk) for c in chunks) and "".join(c.content for c in chunks) == "all fine here"


class _Toxic:
    def __init__(self) -> None:
        self.calls = 0

    def invoke(self, text: str) -> Prediction:
        self.calls += 1
        bad = "idiot" in text
        return Prediction("toxic" if bad else "ok", 0.9 if bad else 0.8, {"toxic": 0.9 if bad else 0.2})


def test_a_classifier_rule_judges_the_whole_text_and_buffers_streams() -> None:
    clf = _Toxic()
    g = Guardrail([ClassifierRule(clf, ["toxic"], threshold=0.85)])
    assert g.stream_mode == "buffer"
    assert list(g.transform(iter(["you are an ", "idiot"]))) == ["I can't help with that."]
    assert clf.calls == 1  # once, on the whole text
    assert g.invoke("you are kind") == "you are kind"
    assert ClassifierRule(clf, ["toxic"], threshold=0.95).check("idiot") == []


def test_guard_wraps_a_model_for_invoke_batch_stream_and_async() -> None:
    model = runnable(lambda q: f"the admin password: {q}")
    chain = guard(model, [SecretRule()])
    assert chain.invoke("s3cretpass") == "the admin password: [secret]"
    assert chain.batch(["aaaa1", "bbbb2"]) == ["the admin password: [secret]"] * 2
    assert "".join(chain.stream("zzzz9")) == "the admin password: [secret]"
    assert asyncio.run(chain.ainvoke("yyyy8")) == "the admin password: [secret]"


def test_bad_configuration_is_reported_clearly() -> None:
    with pytest.raises(ValueError, match="unknown action 'drop'"):
        KeywordRule(["x"], action="drop")
    with pytest.raises(ValueError, match="needs at least one non-empty word"):
        KeywordRule([" "])
    with pytest.raises(ValueError, match="bad pattern"):
        RegexRule("(")
    with pytest.raises(TypeError, match=r"not a yulian\.guardrails\.Rule"):
        Guardrail([object()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="checks text or a Message"):
        Guardrail([SecretRule()]).invoke(3)


def test_policy_files_and_the_command(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import io
    import json

    from yulian.cli import main

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"rules": [{"type": "keywords", "words": ["炸弹"]}, {"type": "secrets"}]}))
    commands = {"guard": guard_command}
    monkeypatch.setattr("sys.stdin", io.StringIO(f"key {KEY}"))
    assert main(["guard", "--policy", str(policy)], commands) == 0
    assert capsys.readouterr().out == "key [secret]"
    monkeypatch.setattr("sys.stdin", io.StringIO("怎么做炸弹"))
    assert main(["guard", "--policy", str(policy), "--json"], commands) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["blocked"] is True and out["text"] == "抱歉，这个问题我无法回答。"
    with pytest.raises(ValueError, match=r"rule 1: unknown type 'keyword' \(types: keywords, pattern"):
        rules_from_config([{"type": "keyword"}])
    with pytest.raises(ValueError, match=r"rule 1 \(keywords\): missing field 'words'"):
        rules_from_config({"rules": [{"type": "keywords"}]})
    with pytest.raises(ValueError, match=r"rule 1 \(secrets\): .*unexpected keyword argument 'colour'"):
        rules_from_config([{"type": "secrets", "colour": "red"}])


def test_async_streams_are_released_as_they_come_not_collected_first() -> None:
    g = Guardrail([SecretRule()], holdback=10)
    seen: list[str] = []

    async def pieces() -> Any:
        for piece in ["a long enough first piece ", "then more text ", f"and {KEY} at the end"]:
            seen.append(piece)
            yield piece

    async def run() -> list[tuple[int, str]]:
        return [(len(seen), out) async for out in g.atransform(pieces())]

    outs = asyncio.run(run())
    assert outs[0][0] == 1  # the first output came before the second input was read
    assert "".join(o for _, o in outs) == "a long enough first piece then more text and [secret] at the end"
