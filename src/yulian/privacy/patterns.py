"""The built-in PII detectors: identifiers, phones, internet addresses, documents and chat accounts.

Digits glued to other digits or ASCII letters are never a match: a phone number inside a longer digit run, a
digit group of a longer grouped number, or an order code is not a phone number. Each class documents the formats
it accepts; `yulian.privacy.detectors` explains the context rules they share.
"""

from __future__ import annotations

import ipaddress
import re

from yulian.privacy.checksums import PROVINCE_CODES, id_card_valid, luhn_valid, valid_date
from yulian.privacy.detectors import AMOUNT_AFTER, NUMBER_NEGATIVE, Detector

__all__ = [
    "BankCardDetector",
    "CNIDCard15Detector",
    "CNIDCardDetector",
    "CNLandlineCompactDetector",
    "CNLandlineDetector",
    "CNMobileDetector",
    "CNPassportDetector",
    "CNPlateDetector",
    "EmailDetector",
    "IPv4Detector",
    "IPv6Detector",
    "InternationalPhoneDetector",
    "NANPPhoneDetector",
    "PassportDetector",
    "QQDetector",
    "URLCredentialsDetector",
    "WeChatDetector",
]

_B = r"(?<![0-9A-Za-z])(?<!\d[ -])"  # not glued to a longer digit run, a digit group or an ASCII word
_E = r"(?![0-9A-Za-z])"

_PHONE_WORDS = (
    r"手机|电话|致电|拨打|来电|联系|热线|座机|传真|短信|微信|号码|账号|帐号|tel|phone|mobile|cell|call|contact|fax|"
    r"whatsapp|sms|text me|reach me"
)


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


# ============================================================================================ identifiers
class CNIDCardDetector(Detector):
    """Mainland resident ID numbers: 18 digits with the MOD 11-2 check character and a real birth date.

    Spaced forms (`110105 19491231 002X`) are found too. The legacy 15-digit form is `CNIDCard15Detector`.
    """

    name = "cn_id_card"
    entity = "id_card"
    pattern = re.compile(
        _B + r"[1-9]\d{5}([ -]?)(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\1\d{3}[\dXx]" + _E
    )
    score = 1.0
    needs_digit = True
    positive = r"身份证|证件|公民身份|id\s*(?:card|no|number)?|identity"
    negative = NUMBER_NEGATIVE
    reject_after = AMOUNT_AFTER

    def validate(self, value: str) -> bool:
        return id_card_valid(value.replace(" ", "").replace("-", ""))


class CNIDCard15Detector(Detector):
    """Legacy 15-digit mainland ID numbers (issued before 1999): province code and a real 19yy birth date.

    There is no check digit, so the score is lower and order-number context rejects it.
    """

    name = "cn_id_card_15"
    entity = "id_card"
    pattern = re.compile(_B + r"[1-9]\d{7}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}" + _E)
    score = 0.6
    needs_digit = True
    positive = CNIDCardDetector.positive
    negative = NUMBER_NEGATIVE + r"|银行卡|信用卡|卡号|card|visa|amex"
    reject_after = AMOUNT_AFTER

    def validate(self, value: str) -> bool:
        return id_card_valid(value)


_CARD_PREFIX = re.compile(r"(?:3[0-9]|4|5[1-5]|2[2-7]|6|9)")


class BankCardDetector(Detector):
    """Bank card numbers: 13-19 digits (plain or in groups of 4, or 4-6-5), a known network prefix, Luhn-valid.

    A group of digits glued to the card by a separator is trimmed off (`6222 0212 3456 7890 12元`). An 18-digit
    number laid out like an ID number (province code + birth date) is not taken for a card.
    """

    name = "bank_card"
    entity = "bank_card"
    pattern = re.compile(_B + r"\d(?:[ -]?\d){12,22}" + _E)
    score = 0.95
    needs_digit = True
    positive = r"银行卡|信用卡|借记卡|储蓄卡|卡号|账号|帐号|账户|card|visa|mastercard|amex|unionpay|银联"
    negative = NUMBER_NEGATIVE.replace("转账|汇款|付款|支付|", "") + "|身份证|证件号"
    reject_after = AMOUNT_AFTER

    def span(self, match: re.Match[str]) -> tuple[int, int] | None:
        start = match.start()
        raw = match.group()
        groups = re.split(r"[ -]", raw)
        # a plain digit run followed by a short separate number (`6222021234567890 100元`) is tried without it;
        # a grouped number (`6228 4856 3085 0879 872`) must be valid whole
        tries = (len(groups), 1) if len(groups[0]) >= 13 else (len(groups),)
        for n in tries:
            head = groups[:n]
            digits = "".join(head)
            if not 13 <= len(digits) <= 19 or not _card_groups_ok(head):
                continue
            if _CARD_PREFIX.match(digits) and luhn_valid(digits) and not _id_shaped(digits):
                return start, start + len(digits) + len(head) - 1
        return None


def _id_shaped(digits: str) -> bool:
    """An 18-digit number laid out like an ID number (province code, real birth date): not taken for a card."""
    if len(digits) != 18 or digits[:2] not in PROVINCE_CODES:
        return False
    return valid_date(int(digits[6:10]), int(digits[10:12]), int(digits[12:14]))


def _card_groups_ok(groups: list[str]) -> bool:
    if len(groups) == 1:
        return True
    sizes = [len(g) for g in groups]
    if sizes in ([4, 6, 5], [4, 6, 4], [6, 13], [6, 12]):
        return True
    return all(s == 4 for s in sizes[:-1]) and 1 <= sizes[-1] <= 4


# ============================================================================================ phones
class CNMobileDetector(Detector):
    """Mainland mobile numbers `1[3-9]x xxxx xxxx`, with optional `+86` / `0086` / `(+86)` and space or dash groups."""

    name = "cn_mobile"
    entity = "phone"
    pattern = re.compile(
        r"(?<![0-9A-Za-z+])(?<!\d[ -])(?:(?:\+|00)86[ -]?|[(（]\+?86[)）][ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _E
    )
    score = 0.85
    needs_digit = True
    positive = _PHONE_WORDS
    negative = NUMBER_NEGATIVE
    reject_after = AMOUNT_AFTER


class InternationalPhoneDetector(Detector):
    """International numbers in E.164 style: `+44 20 7946 0958`, `+1 (415) 555-2671` (8-15 digits after `+`)."""

    name = "intl_phone"
    entity = "phone"
    pattern = re.compile(r"(?<![0-9A-Za-z+])\+[1-9]\d{0,2}(?:[ -]?\(\d{1,4}\))?(?:[ .-]?\d++){1,6}+" + _E)
    score = 0.8
    needs_digit = True
    positive = _PHONE_WORDS
    negative = NUMBER_NEGATIVE
    reject_after = AMOUNT_AFTER
    hint = "+"

    def validate(self, value: str) -> bool:
        return 8 <= len(_digits(value)) <= 15 and max(map(len, re.findall(r"\d+", value))) <= 12


class NANPPhoneDetector(Detector):
    """North American numbers without `+1`: `(415) 555-2671`, `415-555-2671`, `415.555.2671` (area and exchange
    codes start with 2-9)."""

    name = "nanp_phone"
    entity = "phone"
    pattern = re.compile(_B + r"(?:\([2-9]\d\d\)\s?|[2-9]\d\d([-.]))[2-9]\d\d[-.]\d{4}" + _E + r"(?![-.]\d)")
    score = 0.75
    needs_digit = True
    positive = _PHONE_WORDS
    negative = NUMBER_NEGATIVE
    reject_after = AMOUNT_AFTER

    def validate(self, value: str) -> bool:
        seps = [ch for ch in value if ch in "-."]
        return len(set(seps)) <= 1  # 415-555.2671 is not a way anyone writes a phone number


_AREA = r"(?:010|02\d|0[3-9]\d\d)"


class CNLandlineDetector(Detector):
    """Mainland landlines with an area code: `010-12345678`, `(0755) 8601 3388`, `0571-8888888-123`."""

    name = "cn_landline"
    entity = "landline"
    pattern = re.compile(
        _B
        + r"(?:[(（]"
        + _AREA
        + r"[)）][ -]?|"
        + _AREA
        + r"[ -])[1-9]\d{2,3}[ -]?\d{4}(?:-\d{1,5})?"
        + _E
        + r"(?![ -]\d)"
    )
    score = 0.8
    needs_digit = True
    positive = _PHONE_WORDS
    negative = NUMBER_NEGATIVE
    reject_after = AMOUNT_AFTER

    def validate(self, value: str) -> bool:
        m = _LANDLINE_PARTS.match(value)
        if m is None:
            return False
        local = _digits(m.group(2))
        return len(local) == 8 if m.group(1) in ("010",) or m.group(1).startswith("02") else len(local) in (7, 8)


_LANDLINE_PARTS = re.compile(r"[(（]?(" + _AREA + r")[)）]?[ -]?([1-9]\d{2,3}[ -]?\d{4})")


class CNLandlineCompactDetector(Detector):
    """Landlines written without a separator (`02188886666`): only next to a phone word."""

    name = "cn_landline_compact"
    entity = "landline"
    pattern = re.compile(_B + _AREA + r"[2-9]\d{6,7}" + _E)
    score = 0.7
    needs_digit = True
    positive = _PHONE_WORDS
    negative = NUMBER_NEGATIVE
    reject_after = AMOUNT_AFTER
    require_context = True


# ============================================================================================ internet
class EmailDetector(Detector):
    """Email addresses, bounded by ASCII: `邮箱wang@x.com，谢谢` yields `wang@x.com`."""

    name = "email"
    entity = "email"
    pattern = re.compile(
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@"
        r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
        r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
    )
    score = 0.95
    hint = "@"

    def validate(self, value: str) -> bool:
        return ".." not in value


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


class IPv4Detector(Detector):
    """IPv4 addresses with 0-255 octets; version strings (`v1.2.3.4`, `版本 1.2.3.4`) are rejected by context."""

    name = "ipv4"
    entity = "ipv4"
    pattern = re.compile(
        r"(?<![0-9A-Za-z.])(?<!\d[-–~])(?:" + _OCTET + r"\.){3}" + _OCTET + r"(?!\.?\d)(?![A-Za-z])(?![-–~]\d)"
    )
    score = 0.85
    needs_digit = True
    positive = r"ip|地址|address|host|server|服务器|主机|网关|gateway|登录|login|访问|from|来自"
    negative = r"版本|version|ver\.?|release|build|固件|firmware|sdk|(?<![a-z])v\s*$|python|java|node|chrome|ios"
    hint = "."


class IPv6Detector(Detector):
    """IPv6 addresses, including `::` compression and an IPv4 tail; validated with `ipaddress`."""

    name = "ipv6"
    entity = "ipv6"
    pattern = re.compile(
        r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![0-9A-Za-z:.])"
    )
    score = 0.9
    needs_digit = True
    hint = ":"

    def span(self, match: re.Match[str]) -> tuple[int, int] | None:
        start, end = match.span()
        value = match.group()
        if value.startswith(":") and not value.startswith("::"):
            start += 1
            value = value[1:]
        parts = [part for part in value.split(":") if part]
        # "::", "::1", "1::2" (a ratio) are not worth reporting: a real address has a group of 3+ hex digits
        if not parts or max(len(p) for p in parts) < 3 or (len(parts) < 2 and "::" not in value):
            return None
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return None
        return start, end


class URLCredentialsDetector(Detector):
    """Credentials in URLs: `https://user:secret@host/` reports `user:secret` (or the whole URL, `whole_url=True`)."""

    name = "url_credentials"
    entity = "url_credentials"
    pattern = re.compile(
        r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{1,15}://)"
        r"(?P<pii>[A-Za-z0-9._~%!$&'()*+,;=-]+:[A-Za-z0-9._~%!$&'()*+,;=:-]+)@"
        r"(?P<host>[A-Za-z0-9._~%-]+(?::\d+)?(?:[/?#][A-Za-z0-9._~%!$&'()*+,;=:@/?#-]*)?)"
    )
    score = 0.98
    hint = "://"

    def __init__(self, *, whole_url: bool = False, score: float | None = None) -> None:
        super().__init__(score=score)
        self.whole_url = whole_url

    def span(self, match: re.Match[str]) -> tuple[int, int] | None:
        return match.span() if self.whole_url else match.span("pii")


# ============================================================================================ documents
class CNPassportDetector(Detector):
    """Chinese passports: `E` or `G` + 8 digits, and the newer `E` + letter + 7 digits."""

    name = "cn_passport"
    entity = "passport"
    pattern = re.compile(_B + r"(?:[EG]\d{8}|E[A-HJ-NP-Z]\d{7})" + _E)
    score = 0.8
    needs_digit = True
    positive = r"护照|passport|证件|travel document"
    negative = NUMBER_NEGATIVE


class PassportDetector(Detector):
    """Other passport numbers (1-2 letters + 6-9 digits, or 9 digits): only next to the word passport/护照."""

    name = "passport"
    entity = "passport"
    pattern = re.compile(_B + r"(?:[A-Z]{1,2}\d{6,9}|\d{9})" + _E)
    score = 0.75
    needs_digit = True
    positive = r"护照|passport"
    negative = NUMBER_NEGATIVE
    hint_pattern = r"护照|passport"
    require_context = True
    window = 20


class CNPlateDetector(Detector):
    """Mainland licence plates: `京A·12345`, `粤B D12345` and 8-character new-energy plates (`沪AD12345`)."""

    name = "cn_plate"
    entity = "plate"
    pattern = re.compile(
        r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Z][·・•\- ]?"
        r"(?:[A-HJ-NP-Z0-9]{5,6}|[A-HJ-NP-Z0-9]{4}[挂学警港澳领])" + _E
    )
    score = 0.85
    needs_digit = True
    positive = r"车牌|牌照|车辆|号牌|plate|车号"

    def validate(self, value: str) -> bool:
        tail = value[2:].lstrip("·・•- ")
        if len(tail) == 6:  # new energy: D/F + letter-or-digit + 4 digits, or 5 digits + D/F
            return bool(re.fullmatch(r"[DF][A-HJ-NP-Z0-9]\d{4}|\d{5}[DF]", tail))
        digits = sum(ch.isdigit() for ch in tail)
        return digits >= 2 and len(tail) - digits <= 3


# ============================================================================================ chat accounts
class QQDetector(Detector):
    """QQ numbers (5-11 digits): only right after the word QQ (`QQ 282369262`, `扣扣：12345678`); group numbers
    (`QQ群123456789`) are not personal and are left alone."""

    name = "qq"
    entity = "qq"
    pattern = re.compile(_B + r"[1-9]\d{4,10}" + _E)
    score = 0.8
    needs_digit = True
    positive = r"(?:qq|扣扣|企鹅)\s*(?:号码?|群)?\s*[:：]?\s*$"
    hint_pattern = r"qq|扣扣|企鹅"
    require_context = True
    window = 10

    def context_score(self, text: str, start: int, end: int) -> float | None:
        before = text[max(0, start - self.window) : start]
        if self._positive is not None and self._positive.search(before) and not before.rstrip(" :：").endswith("群"):
            return self.score
        return None


class WeChatDetector(Detector):
    """WeChat IDs (a letter, then 5-19 letters, digits, `_` or `-`): only right after 微信号/WeChat ID/vx/wx or
    微信 glued to the ID; after `微信 ` with a space only when the ID has a digit, `_` or `-` (`用微信 WeChat`)."""

    name = "wechat"
    entity = "wechat"
    pattern = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z][-_A-Za-z0-9]{5,19}(?![A-Za-z0-9_-])")
    score = 0.8
    positive = r"(?:微信|威信|wechat|weixin|vx|wx)(?P<strong> ?(?:号|id)| ?[:：])? ?[:：]? ?$"
    hint_pattern = r"微信|威信|wechat|weixin|vx|wx"
    require_context = True
    window = 10

    def context_score(self, text: str, start: int, end: int) -> float | None:
        before = text[max(0, start - self.window) : start]
        cue = self._positive.search(before) if self._positive is not None else None
        if cue is None:
            return None
        strong = cue.group("strong") or cue.group().lower().startswith(("vx", "wx")) or not before.endswith(" ")
        if strong or any(ch.isdigit() or ch in "_-" for ch in text[start:end]):
            return self.score
        return None
