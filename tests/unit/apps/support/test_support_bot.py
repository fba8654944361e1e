"""The support bot's routing, citations, PII masking and memory, on fakes (keyword classifier, hashing embedder,
recording chat model)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support_fakes import make_bot

from yulian.testing import FakeChatModel

PHONE, EMAIL, ID_CARD = "13812345678", "bob@example.com", "11010519491231002X"


def test_answers_with_a_cited_faq_entry(tmp_path: Path) -> None:
    model = FakeChatModel(["Freeze your card in the app [1]."])
    bot = make_bot(tmp_path, model)
    reply = bot.chat("u1", "I lost my card yesterday")
    assert not reply.handoff and reply.reason == ""
    assert (reply.intent, reply.confidence, reply.lang) == ("card_lost", 0.92, "en")
    assert reply.answer == "Freeze your card in the app [1]." and reply.generated
    assert reply.sources[0]["cited"] is True
    assert [s["cited"] for s in reply.sources[1:]] == [False] * (len(reply.sources) - 1)
    assert reply.sources[0]["source"].startswith("faq.jsonl:")
    # the prompt held the retrieved FAQ entries, numbered, question and answer
    system = model.calls[0][0].content
    assert "[1] Q: " in system and "A: " in system
    assert reply.sources[0]["question"] in system and reply.sources[0]["answer"] in system
    assert set(reply.timings) == {"classify", "retrieve", "generate", "memory", "total"}


def test_low_intent_confidence_hands_off_without_calling_the_model(tmp_path: Path) -> None:
    model = FakeChatModel(["never said"])
    bot = make_bot(tmp_path, model, intent_threshold=0.5)
    reply = bot.chat("u1", "maybe something about money")
    assert reply.handoff and reply.reason == "low_intent_confidence"
    assert reply.answer == bot.config.handoff_message["en"]
    assert reply.sources == [] and model.calls == []
    # the same message passes with a lower threshold
    assert not make_bot(tmp_path, model, intent_threshold=0.2).chat("u1", "maybe something about money").handoff


@pytest.mark.parametrize(
    ("message", "reason", "lang"),
    [
        ("what's the weather tomorrow", "out_of_scope", "en"),
        ("明天天气怎么样", "out_of_scope", "zh"),
        ("let me talk to a human", "asked_for_human", "en"),
    ],
)
def test_out_of_scope_and_asking_for_a_person_hand_off(tmp_path: Path, message: str, reason: str, lang: str) -> None:
    model = FakeChatModel(["never said"])
    reply = make_bot(tmp_path, model).chat("u1", message)
    assert (reply.handoff, reply.reason, reply.lang) == (True, reason, lang)
    assert reply.answer == make_bot(tmp_path).config.handoff_message[lang]
    assert model.calls == []


def test_low_retrieval_score_hands_off(tmp_path: Path) -> None:
    bot = make_bot(tmp_path, FakeChatModel(["x"]), retrieval_threshold={"en": 0.999})
    reply = bot.chat("u1", "my card thing")
    assert reply.handoff and reply.reason == "low_retrieval_score"
    assert reply.retrieval_score is not None and reply.retrieval_score < 0.999
    relaxed = make_bot(tmp_path, FakeChatModel(["x"]), retrieval_threshold={"en": reply.retrieval_score - 1e-3})
    assert not relaxed.chat("u1", "my card thing").handoff


def test_pii_never_reaches_the_model_and_is_restored_in_the_answer(tmp_path: Path) -> None:
    model = FakeChatModel(["We will call you at <PHONE_1> about your card [1]."])
    bot = make_bot(tmp_path, model)
    reply = bot.chat("u1", f"I lost my card. Call me on {PHONE} or mail {EMAIL}, my ID is {ID_CARD}")
    seen = "\n".join(m.content for m in model.calls[0])
    assert "<PHONE_1>" in seen and "<EMAIL_1>" in seen
    for secret in (PHONE, EMAIL, ID_CARD):
        assert secret not in seen
    assert reply.answer == f"We will call you at {PHONE} about your card [1]."
    # the next turn sends the history through the mask too
    bot.chat("u1", "and my card again?")
    second = "\n".join(m.content for m in model.calls[1])
    assert "I lost my card" in second  # the earlier turn is in the prompt...
    for secret in (PHONE, EMAIL, ID_CARD):
        assert secret not in second  # ...masked


def test_without_masking_the_model_sees_the_data(tmp_path: Path) -> None:
    model = FakeChatModel(["ok [1]"])
    make_bot(tmp_path, model, mask_pii=False).chat("u1", f"my card, phone {PHONE}")
    assert PHONE in "\n".join(m.content for m in model.calls[0])


def test_memory_persists_across_bots_on_the_same_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    first = make_bot(tmp_path, FakeChatModel(["Freeze it [1]."]), memory=db)
    first.chat("alice", "I lost my card")
    first.chat("bob", "refund please")
    first.memory.close()
    model = FakeChatModel(["Yes [1]."])
    second = make_bot(tmp_path, model, memory=db)
    history = second.history("alice")
    assert [(m.role, m.content) for m in history] == [("user", "I lost my card"), ("assistant", "Freeze it [1].")]
    assert history[1].metadata["intent"] == "card_lost" and history[1].metadata["handoff"] is False
    second.chat("alice", "is my card frozen now?")
    contents = [m.content for m in model.calls[0]]
    assert "I lost my card" in contents and "Freeze it [1]." in contents  # alice's past turn reached the model
    assert "refund please" not in contents  # bob's did not
    assert len(second.history("alice")) == 4


def test_languages_outside_generate_langs_get_the_faq_answer_verbatim(tmp_path: Path) -> None:
    model = FakeChatModel(["never said"])
    reply = make_bot(tmp_path, model).chat("u1", "我的银行卡丢了")
    assert reply.lang == "zh" and not reply.handoff
    assert reply.answer == reply.sources[0]["answer"] + " [1]"
    assert reply.sources[0]["cited"] and model.calls == []


def test_no_generator_answers_from_the_faq(tmp_path: Path) -> None:
    reply = make_bot(tmp_path, None).chat("u1", "refund please")
    assert reply.answer.endswith(" [1]") and reply.sources[0]["cited"]


def test_invoke_takes_a_dict_or_a_string_and_rejects_empty_messages(tmp_path: Path) -> None:
    bot = make_bot(tmp_path, FakeChatModel(["ok [1]"]))
    assert bot.invoke({"session": "s", "message": "my card"}).session == "s"
    assert bot.invoke("my card").session == "default"
    with pytest.raises(ValueError, match="non-empty"):
        bot.chat("s", "  ")
    with pytest.raises(TypeError, match="session"):
        bot.invoke(42)


def test_an_uncited_generated_answer_is_replaced_by_the_faq_answer(tmp_path: Path) -> None:
    model = FakeChatModel(["Visit www.example-scam.com for details"])
    reply = make_bot(tmp_path, model).chat("u1", "I lost my card")
    assert len(model.calls) == 1 and not reply.generated
    assert reply.answer == reply.sources[0]["answer"] + " [1]" and reply.sources[0]["cited"]
    kept = make_bot(tmp_path, FakeChatModel(["Visit our site"]), require_citation=False).chat("u1", "I lost my card")
    assert kept.answer == "Visit our site" and kept.generated and not any(s["cited"] for s in kept.sources)
