"""Checksum and date validators for structured identifiers (standard library only).

- `id_card_valid`: Chinese mainland resident ID numbers: 18 digits with the ISO 7064 MOD 11-2 check character
  (`X` for 10) and a real birth date, or the legacy 15-digit form (a real 19yy date, no check character).
  Both need a valid province code in the first two digits.
- `luhn_valid`: the Luhn (mod 10) check of bank card numbers.
"""

from __future__ import annotations

import datetime as _dt

__all__ = ["PROVINCE_CODES", "id_card_check_char", "id_card_valid", "luhn_valid", "valid_date"]

PROVINCE_CODES = frozenset(
    {"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43"}
    | {"44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82", "83"}
)
"""The two-digit province codes that start a mainland ID number (GB/T 2260; 71 Taiwan, 81/82 HK/Macau, 83 the
code used on residence permits)."""

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def valid_date(year: int, month: int, day: int, *, earliest: int = 1900) -> bool:
    """Whether year-month-day is a real calendar date between `earliest`-01-01 and today."""
    if year < earliest:
        return False
    try:
        date = _dt.date(year, month, day)
    except ValueError:
        return False
    return date <= _dt.date.today()


def id_card_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character (`0`-`9` or `X`) of the first 17 digits of an ID number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"expected 17 ASCII digits, got {first17!r}")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def id_card_valid(number: str) -> bool:
    """Whether `number` (separators removed) is a valid mainland ID: 18 digits with checksum, or legacy 15."""
    n = number.upper()
    if len(n) == 18:
        if not (n[:17].isascii() and n[:17].isdigit()) or n[:2] not in PROVINCE_CODES:
            return False
        if not valid_date(int(n[6:10]), int(n[10:12]), int(n[12:14])):
            return False
        return id_card_check_char(n[:17]) == n[17]
    if len(n) == 15:
        if not (n.isascii() and n.isdigit()) or n[:2] not in PROVINCE_CODES:
            return False
        return valid_date(1900 + int(n[6:8]), int(n[8:10]), int(n[10:12]))
    return False


def luhn_valid(number: str) -> bool:
    """Whether the ASCII digit string `number` passes the Luhn check (empty or non-digit strings fail)."""
    if not number or not number.isascii() or not number.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
