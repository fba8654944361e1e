"""Checksum validators: mainland ID numbers (MOD 11-2, birth date, province) and Luhn."""

from __future__ import annotations

import datetime as dt

import pytest
from privacy_helpers import CARD16, CARD19

from yulian.privacy import id_card_check_char, id_card_valid, luhn_valid

VALID_18 = "11010519491231002X"  # the GB 11643 example: check character X


def test_known_id_number_and_its_check_character() -> None:
    assert id_card_check_char(VALID_18[:17]) == "X"
    assert id_card_valid(VALID_18)
    assert id_card_valid(VALID_18.lower())  # a lowercase x is accepted


@pytest.mark.parametrize("wrong", "0123456789")
def test_every_wrong_check_character_is_rejected(wrong: str) -> None:
    assert not id_card_valid(VALID_18[:17] + wrong)


@pytest.mark.parametrize(
    "number",
    [
        "110105194902300021",  # February 30th
        "110105194913310021",  # month 13
        "990105194912310021",  # no province 99
        "110105" + (dt.date.today() + dt.timedelta(days=400)).strftime("%Y%m%d") + "0021",  # born in the future
        "110105189912310021",  # before 1900
        "11010519491231002",  # 17 digits
    ],
)
def test_impossible_id_numbers_are_rejected_even_with_a_matching_check_character(number: str) -> None:
    fixed = number[:17] + id_card_check_char(number[:17]) if len(number) == 18 else number
    assert not id_card_valid(fixed)


def test_legacy_15_digit_ids_need_a_real_date_and_province() -> None:
    assert id_card_valid("110105491231002")  # 1949-12-31
    assert not id_card_valid("110105490231002")  # February 31st
    assert not id_card_valid("000105491231002")


def test_check_char_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="17 ASCII digits"):
        id_card_check_char("1234")


@pytest.mark.parametrize("number", ["4111111111111111", "5500005555555559", "378282246310005", CARD16, CARD19])
def test_luhn_valid_cards(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4111111111111112", "5500005555555550", "", "4111-1111", "４１１１"])
def test_luhn_invalid(number: str) -> None:
    assert not luhn_valid(number)
