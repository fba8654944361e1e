"""Builders of valid identifiers for the privacy tests (checksums computed, never copied from real people)."""

from __future__ import annotations

from yulian.privacy import id_card_check_char


def with_luhn(body: str) -> str:
    """`body` plus the Luhn check digit that makes it valid."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def id18(first17: str) -> str:
    """An 18-digit ID number with its correct check character."""
    return first17 + id_card_check_char(first17)


CARD19 = with_luhn("621226220100661111")  # UnionPay, 19 digits
CARD16 = with_luhn("622202123456789")  # 16 digits
ID18 = id18("44030419850315123")  # Shenzhen, 1985-03-15
