"""Privacy: PII detection and reversible masking for Chinese and English text, and audit-safe logging.

    from yulian.privacy import analyze, mask, mask_around

    analyze("身份证11010519491231002X，手机13812345678")     # [Entity(type='id_card', ...), Entity(type='phone', ...)]
    mask("手机13812345678", operator="mask").text             # '手机138****5678'
    chain = prompt | mask_around(llm) | parser                # the model sees <PHONE_1>; the answer has the number

Structured PII is found by pattern detectors with checksums (ID numbers, bank cards) and context rules that
reject look-alikes (`13800138000元` is an amount). Person names are optional (`names=True`: LAC or jieba for
Chinese, cue-based for English). Standard library only at import; the name taggers load on first use.

| entity | finds | checked by |
|---|---|---|
| id_card | 18-digit mainland IDs (also spaced), legacy 15-digit | MOD 11-2 check, birth date, province |
| bank_card | 13-19 digits, plain or grouped | Luhn, network prefix |
| phone | CN mobiles (+86/0086), E.164 (`+44 20 ...`), `(415) 555-2671` | context words |
| landline | `010-62345678`, `(0755) 8601 3388`, extensions | area code, length |
| email | ASCII-bounded (`邮箱wang@x.com` -> `wang@x.com`) | |
| ipv4 / ipv6 | dotted quads 0-255; IPv6 with `::` | `ipaddress`, version-string context |
| passport | CN `E`/`G` + 8 digits; others next to "passport/护照" | context |
| plate | CN plates incl. 8-character new-energy plates | letters/digits layout |
| url_credentials | `user:pass` in `scheme://user:pass@host` | |
| qq / wechat | QQ numbers and WeChat IDs after QQ/微信号 | required context |
| person | optional: Chinese (LAC/jieba), English after `Mr./name:`, known names | |

Operators: `redact` (`[PHONE]`), `mask` (`138****5678`), `hash` (salted), `placeholder` (`<PHONE_1>`, reversible
through a `Vault`). Runnables: `PIIMasker`, `PIIRestorer`, `PIIGuard` / `mask_around`. Logs: `PIILogFilter`.
CLI: `yulian mask` (`yulian.privacy.commands.mask_command`).
"""

from yulian.privacy.analyzer import Analyzer, Lang, analyze, mask, mask_text, resolve_overlaps
from yulian.privacy.checksums import id_card_check_char, id_card_valid, luhn_valid
from yulian.privacy.detectors import (
    Detector,
    available_entities,
    builtin_detectors,
    get_detector,
    register_detector,
    registered_detectors,
    unregister_detector,
)
from yulian.privacy.entities import Entity, MaskResult
from yulian.privacy.log_filter import PIILogFilter
from yulian.privacy.names import ChineseNameDetector, EnglishNameDetector, NameListDetector
from yulian.privacy.operators import Hash, Mask, Operator, Placeholder, Redact, get_operator
from yulian.privacy.presidio import PresidioDetector, PresidioUnavailableError
from yulian.privacy.runnables import PIIGuard, PIIMasker, PIIRestorer, mask_around
from yulian.privacy.vault import StreamRestorer, Vault

__all__ = [
    "Analyzer",
    "ChineseNameDetector",
    "Detector",
    "EnglishNameDetector",
    "Entity",
    "Hash",
    "Lang",
    "Mask",
    "MaskResult",
    "NameListDetector",
    "Operator",
    "PIIGuard",
    "PIILogFilter",
    "PIIMasker",
    "PIIRestorer",
    "Placeholder",
    "PresidioDetector",
    "PresidioUnavailableError",
    "Redact",
    "StreamRestorer",
    "Vault",
    "analyze",
    "available_entities",
    "builtin_detectors",
    "get_detector",
    "get_operator",
    "id_card_check_char",
    "id_card_valid",
    "luhn_valid",
    "mask",
    "mask_around",
    "mask_text",
    "register_detector",
    "registered_detectors",
    "resolve_overlaps",
    "unregister_detector",
]
