"""Operators (redact, mask, hash, placeholder), the vault and its round trip, and streamed restoring."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from privacy_helpers import CARD19, ID18

from yulian.privacy import Entity, Hash, Mask, Redact, StreamRestorer, Vault, get_operator, mask, mask_text

TEXT = f"身份证{ID18}，手机138 1234 5678，邮箱wang@x.com，IP 10.2.3.4，卡号{CARD19}"


def test_redact() -> None:
    out = mask(TEXT, "redact").text
    assert out == "身份证[ID_CARD]，手机[PHONE]，邮箱[EMAIL]，IP [IPV4]，卡号[BANK_CARD]"
    assert mask("手机13812345678", Redact("***")).text == "手机***"


def test_mask_keeps_a_few_characters_and_the_separators() -> None:
    out = mask(TEXT, "mask").text
    assert f"身份证{ID18[:6]}********{ID18[-4:]}" in out
    assert "手机138 **** 5678" in out
    assert "邮箱w***@x.com" in out
    assert "IP 10.2.*.*" in out
    assert f"卡号{CARD19[:6]}*********{CARD19[-4:]}" in out


def test_mask_is_configurable() -> None:
    op = Mask(char="#", keep={"phone": (0, 2)})
    assert mask("手机13812345678", op).text == "手机#########78"
    with pytest.raises(ValueError, match="one character"):
        Mask(char="**")


def test_mask_never_keeps_everything_of_a_short_value() -> None:
    entity = Entity("plate", 0, 3, "A12", 1.0)
    assert Mask(keep={"plate": (2, 2)}).replace(entity, None) == "A**"


def test_hash_is_salted_and_format_independent() -> None:
    a = mask("手机13812345678", Hash(salt="s1")).text
    b = mask("手机138-1234-5678", Hash(salt="s1")).text
    c = mask("手机13812345678", "hash", salt="s2").text
    digest = hashlib.sha256(b"s1" + b"13812345678").hexdigest()[:12]
    assert a == b == f"手机[PHONE:{digest}]"
    assert c != a
    assert get_operator("hash", salt="s1").replace(Entity("phone", 0, 11, "13812345678"), None) == f"[PHONE:{digest}]"
    with pytest.raises(ValueError, match="length"):
        Hash(length=2)


def test_unknown_operator_lists_the_names() -> None:
    with pytest.raises(ValueError, match="unknown operator 'blur'; operators: hash, mask, placeholder, redact"):
        mask("x", "blur")


def test_placeholders_round_trip_and_reuse() -> None:
    text = "手机13812345678，备用138-1234-5678，另一个13900001111，邮箱wang@x.com"
    result = mask(text)
    assert result.text == "手机<PHONE_1>，备用<PHONE_1>，另一个<PHONE_2>，邮箱<EMAIL_1>"
    assert result.vault is not None
    assert [e.type for e in result.entities] == ["phone", "phone", "phone", "email"]
    assert result.vault.restore("call <PHONE_2> or <PHONE_1>, not <PHONE_9>") == (
        "call 13900001111 or 13812345678, not <PHONE_9>"
    )
    assert result.vault.restore(result.text) == "手机13812345678，备用13812345678，另一个13900001111，邮箱wang@x.com"


def test_restore_forgives_what_small_models_write() -> None:
    vault = Vault()
    vault.placeholder("email", "wang@x.com")
    vault.placeholder("phone", "13812345678")
    assert vault.restore("Echo: <EMAIL_1\n[PHONE_1], <PHONE_1] ok") == "Echo: wang@x.com\n13812345678, 13812345678 ok"
    assert vault.restore("<PHONE_12> <PHONE_2> [EMAIL_1x") == "<PHONE_12> <PHONE_2> [EMAIL_1x"


def test_a_session_vault_keeps_placeholders_across_calls() -> None:
    vault = Vault()
    assert mask("电话13812345678", vault=vault).text == "电话<PHONE_1>"
    assert mask("another: 13900001111 and 13812345678", vault=vault).text == "another: <PHONE_2> and <PHONE_1>"
    assert len(vault) == 2
    assert "<PHONE_2>" in vault
    assert vault.value("<PHONE_2>") == "13900001111"
    assert vault.mapping == {"<PHONE_1>": "13812345678", "<PHONE_2>": "13900001111"}


def test_vault_saves_and_loads(tmp_path: Path) -> None:
    vault = Vault()
    masked = mask("邮箱wang@x.com 手机13812345678", vault=vault).text
    vault.save(tmp_path / "v.json")
    loaded = Vault.load(tmp_path / "v.json")
    assert loaded.restore(masked) == "邮箱wang@x.com 手机13812345678"
    assert loaded.placeholder("phone", "13900001111") == "<PHONE_2>"  # numbering continues
    assert loaded.placeholder("email", "WANG@x.com") == "<EMAIL_1>"  # emails compare case-insensitively
    (tmp_path / "bad.json").write_text("{nope", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json: not a saved vault"):
        Vault.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="entry 0"):
        Vault.from_dict({"version": 1, "entries": [["phone", "1", "PHONE1"]]})


def test_stream_restorer_buffers_split_placeholders() -> None:
    vault = Vault()
    masked = mask("手机13812345678", vault=vault).text
    assert masked == "手机<PHONE_1>"
    restorer = StreamRestorer(vault)
    pieces = ["答：<", "PHO", "NE_", "1", "> 好的 <", "b>", " <PHONE_9>", " [PHONE", "_1", "]", " <PHONE_1"]
    out = [restorer.feed(p) for p in pieces]
    assert out == ["答：", "", "", "", "13812345678 好的 ", "<b>", " <PHONE_9>", " ", "", "13812345678", " "]
    assert restorer.finish() == "13812345678"  # a placeholder cut short at the end of the stream
    joined = "".join(StreamRestorer(vault).restore_all(pieces))
    assert joined == "答：13812345678 好的 <b> <PHONE_9> 13812345678 13812345678"


def test_mask_text_is_the_audit_masker() -> None:
    assert mask_text("user 13812345678 from 10.1.2.3") == "user [PHONE] from [IPV4]"
