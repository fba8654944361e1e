"""Each detector finds its PII (exact spans) and rejects look-alikes; overlaps resolve deterministically."""

from __future__ import annotations

import re

import pytest
from privacy_helpers import CARD16, CARD19, ID18, id18

from yulian.privacy import (
    Analyzer,
    Detector,
    Entity,
    analyze,
    available_entities,
    get_detector,
    register_detector,
    registered_detectors,
    resolve_overlaps,
    unregister_detector,
)


def found(text: str, **kwargs: object) -> list[tuple[str, str]]:
    return [(e.type, e.text) for e in analyze(text, **kwargs)]  # type: ignore[arg-type]


# ============================================================================================ positives
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"我的身份证号是{ID18}，请核对", [("id_card", ID18)]),
        (f"身份证 {ID18[:6]} {ID18[6:14]} {ID18[14:]}", [("id_card", f"{ID18[:6]} {ID18[6:14]} {ID18[14:]}")]),
        ("老身份证号110105491231002", [("id_card", "110105491231002")]),
        (f"卡号{CARD19}", [("bank_card", CARD19)]),
        (
            f"card {CARD16[:4]} {CARD16[4:8]} {CARD16[8:12]} {CARD16[12:]} please",
            [("bank_card", " ".join([CARD16[:4], CARD16[4:8], CARD16[8:12], CARD16[12:]]))],
        ),
        ("手机13812345678", [("phone", "13812345678")]),
        ("电话：138 1234 5678。", [("phone", "138 1234 5678")]),
        ("call 138-1234-5678", [("phone", "138-1234-5678")]),
        ("+86 13812345678", [("phone", "+86 13812345678")]),
        ("0086-13812345678", [("phone", "0086-13812345678")]),
        ("(+86)13812345678", [("phone", "(+86)13812345678")]),
        ("call +44 20 7946 0958 now", [("phone", "+44 20 7946 0958")]),
        ("tel +1 (415) 555-2671", [("phone", "+1 (415) 555-2671")]),
        ("call (415) 555-2671 today", [("phone", "(415) 555-2671")]),
        ("cell: 415-555-2671", [("phone", "415-555-2671")]),
        ("座机010-62345678", [("landline", "010-62345678")]),
        ("办公电话(0755) 8601 3388", [("landline", "(0755) 8601 3388")]),
        ("传真（0571）88886666", [("landline", "（0571）88886666")]),
        ("分机0571-8888888-123", [("landline", "0571-8888888-123")]),
        ("座机02188886666", [("landline", "02188886666")]),
        ("邮箱wang@x.com，谢谢", [("email", "wang@x.com")]),
        ("发到li.si+news@mail.example.co.uk谢谢", [("email", "li.si+news@mail.example.co.uk")]),
        ("服务器IP是192.168.1.10。", [("ipv4", "192.168.1.10")]),
        ("from 10.0.0.255:8080", [("ipv4", "10.0.0.255")]),
        ("地址 2001:db8::8a2e:370:7334", [("ipv6", "2001:db8::8a2e:370:7334")]),
        ("link fe80::1 ok", [("ipv6", "fe80::1")]),
        ("mapped ::ffff:192.0.2.128 here", [("ipv6", "::ffff:192.0.2.128")]),
        ("护照E12345678", [("passport", "E12345678")]),
        ("护照号码EA1234567", [("passport", "EA1234567")]),
        ("passport no. K1234567", [("passport", "K1234567")]),
        ("车牌京A·12345", [("plate", "京A·12345")]),
        ("沪AD12345违章了", [("plate", "沪AD12345")]),
        ("粤B12345D的车", [("plate", "粤B12345D")]),
        ("connect postgres://admin:s3cr3t@db.example.com/app", [("url_credentials", "admin:s3cr3t")]),
        ("加我QQ：282369262", [("qq", "282369262")]),
        ("qq号 12345678", [("qq", "12345678")]),
        ("我的微信号：wang_xiao88，谢谢", [("wechat", "wang_xiao88")]),
        ("wechat: John-Doe_1", [("wechat", "John-Doe_1")]),
        ("加微信 zhang_san88", [("wechat", "zhang_san88")]),
        ("微信号 zhangsan", [("wechat", "zhangsan")]),
        ("我微信zhangsan", [("wechat", "zhangsan")]),
    ],
)
def test_detector_finds_exact_span(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


def test_offsets_point_into_the_text() -> None:
    text = f"身份证{ID18}，手机13812345678，邮箱wang@x.com"
    for e in analyze(text):
        assert text[e.start : e.end] == e.text


def test_scores_rank_checksums_and_context() -> None:
    [ident] = analyze(f"身份证{ID18}")
    [bare_phone] = analyze("13812345678")
    [phone] = analyze("手机13812345678")
    assert ident.score == 1.0
    assert phone.score > bare_phone.score


def test_url_credentials_can_report_the_whole_url() -> None:
    from yulian.privacy.patterns import URLCredentialsDetector

    whole = Analyzer(detectors=[URLCredentialsDetector(whole_url=True)])
    [e] = whole.analyze("see https://u:p@host.example.com/x?y=1 now")
    assert e.text == "https://u:p@host.example.com/x?y=1"


# ============================================================================================ look-alikes
@pytest.mark.parametrize(
    "text",
    [
        "金额13800138000元",
        "金额13800138000",
        "总价￥13800138000",
        "13800138000元已到账",
        "转账13800138000.50元",
        "收入13800138000 RMB",
        "订单号13812345678",
        "order #13812345678",
        "编号1381234567812",  # phone inside a longer digit run
        "13812345678901234567890123",  # a long digit run
        "abc13812345678",  # glued to an ASCII word
        "SF1381234567890",
        f"身份证{ID18[:17]}{'0' if ID18[17] != '0' else '1'}",  # wrong check character
        "110105194902300021",  # February 30th
        "卡号4111111111111112无效",  # fails Luhn
        f"卡号{CARD16[:-1]}{(int(CARD16[-1]) + 1) % 10}",
        "流水号202311051234567890123",
        "版本1.2.3.4",
        "version 10.0.0.1 released",
        "v2.10.0.1",
        "999.1.1.1",
        "1.2.3.4.5",
        "at 12:30:45",
        "MAC 00:1A:2B:3C:4D:5E",
        "ratio 1::2",
        "2023-11-05 14:30:00",
        "20231105",
        "train G1234 at 8:00",
        "ISBN 978-1-4028-9462-6",
        "QQ群123456789",
        "code 282369262",
        "我在玩微信游戏abcdef",
        "还用微信 WeChat",
        "登录微信\tnews_tech",
        "上颚1-3.1.4.2；下颚3.1.4.2-3",
        "wang_xiao88",
        "part 415-555.2671",
        "serial 415-555-2671-22",
        "合计 (415) 555-2671",
    ],
)
def test_look_alikes_are_not_pii(text: str) -> None:
    assert found(text) == []


def test_a_positive_word_closer_than_a_negative_one_wins() -> None:
    assert found("订单联系电话13812345678") == [("phone", "13812345678")]
    assert found("电话订单号13812345678") == []


def test_context_in_an_earlier_clause_does_not_count() -> None:
    assert found("是到余额里面吗，13812345678是我的手机") == [("phone", "13812345678")]


def test_grouped_numbers_are_not_split_into_landlines() -> None:
    assert found("卡号4577 0309 2757 2453无效") == []  # fails Luhn; its groups are not a landline either


def test_generic_passports_need_the_word_passport() -> None:
    assert found("code K1234567") == []
    assert found("护照K1234567") == [("passport", "K1234567")]


def test_id_shaped_18_digit_number_is_not_a_card() -> None:
    fake = id18("44030419850315123")
    assert [e.type for e in analyze(f"号码{fake}")] == ["id_card"]


# ============================================================================================ overlaps
def test_phone_inside_an_email_is_the_email() -> None:
    assert found("tel:13812345678@163.com") == [("email", "13812345678@163.com")]


def test_credentials_win_over_the_email_shape_inside_a_url() -> None:
    assert found("https://admin:pw@db.example.com") == [("url_credentials", "admin:pw")]


def test_resolve_overlaps_is_deterministic() -> None:
    a = Entity("phone", 0, 11, "x" * 11, 0.8, "a")
    b = Entity("bank_card", 0, 16, "x" * 16, 0.8, "b")  # same score, longer
    c = Entity("email", 5, 20, "x" * 15, 0.95, "c")  # higher score
    d = Entity("ipv4", 30, 37, "x" * 7, 0.5, "d")
    assert resolve_overlaps([a, b, c, d]) == [c, d]
    assert resolve_overlaps([a, b]) == [b]
    assert resolve_overlaps([b, a]) == [b]


# ============================================================================================ selection, registry
def test_entities_selects_types() -> None:
    text = "手机13812345678，邮箱wang@x.com"
    assert found(text, entities=["email"]) == [("email", "wang@x.com")]
    assert found(text, entities="phone,email") == [("phone", "13812345678"), ("email", "wang@x.com")]


def test_unknown_entity_names_list_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown entity type 'phnoe' \(did you mean 'phone'\?\); available: .*email"):
        Analyzer(["phnoe"])


def test_person_needs_names_on() -> None:
    with pytest.raises(ValueError, match="names=True"):
        Analyzer(["person"])


def test_bad_lang_is_named() -> None:
    with pytest.raises(ValueError, match="lang must be one of auto, zh, en"):
        analyze("x", lang="fr")  # type: ignore[arg-type]


def test_register_a_custom_detector() -> None:
    class EmployeeId(Detector):
        name = "employee_id"
        entity = "employee_id"
        pattern = re.compile(r"(?<![A-Z0-9])YL-\d{6}(?![0-9])")

        def validate(self, value: str) -> bool:
            return value[-1] != "0"

    register_detector(EmployeeId())
    try:
        assert "employee_id" in available_entities()
        assert found("工号YL-123456, YL-123450") == [("employee_id", "YL-123456")]
        with pytest.raises(ValueError, match="registered already"):
            register_detector(EmployeeId())
    finally:
        unregister_detector("employee_id")
    assert "employee_id" not in available_entities()
    assert all(d.name != "employee_id" for d in registered_detectors())
    with pytest.raises(KeyError, match="no detector named 'employee_id'; registered: cn_id_card"):
        get_detector("employee_id")


def test_detector_configuration_is_validated() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        Detector()
    with pytest.raises(ValueError, match="lowercase"):
        Detector("x", "Phone", r"\d")
    with pytest.raises(ValueError, match=r"score must be in \[0, 1\]"):
        Detector("x", "x", r"\d", score=2)


def test_empty_and_non_str_input() -> None:
    assert analyze("") == []
    with pytest.raises(TypeError, match="needs a str"):
        Analyzer().analyze(123)  # type: ignore[arg-type]
