"""`yulian mask`: mask PII in text read from stdin (or a file), line by line.

    $ yulian mask < chats.txt > chats.masked.txt                     # 身份证/手机号/银行卡/email -> [ID_CARD] ...
    $ yulian mask --operator mask < chats.txt                        # 138****5678
    $ yulian mask --operator placeholder --vault chats.vault.json    # <PHONE_1>, mapping saved for restoring
    $ echo "电话13812345678" | yulian mask --json                     # entities with offsets, one JSON line per line
    $ yulian mask --entities phone,email --names --input chats.txt
    $ yulian mask --restore --vault chats.vault.json < answers.txt    # put the values back

Plain function: the signature is the command line, the docstring its help (see `yulian.cli`).
"""

from __future__ import annotations

import json as _json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO, cast

__all__ = ["mask_command"]


def mask_command(
    input: Path | None = None,
    json: bool = False,
    operator: str = "redact",
    entities: str | None = None,
    names: bool = False,
    lang: str = "auto",
    salt: str | None = None,
    vault: Path | None = None,
    backend: str = "patterns",
    restore: bool = False,
) -> int:
    """Mask PII (ID numbers, phones, bank cards, emails, IPs, passports, plates, URL credentials) in text.

    Reads stdin (or --input) line by line and writes the masked lines to stdout. ID numbers and bank cards are
    checksum-verified; amounts and order numbers shaped like phone numbers are left alone.

    Args:
        input: read this file instead of stdin.
        json: write one JSON object per input line: the masked text and the entities found, with offsets
            into the original line (the entities' text is the raw PII).
        operator: redact ([PHONE]), mask (138****5678), hash (salted SHA-256 prefix) or placeholder (<PHONE_1>).
        entities: comma-separated entity types to mask (default: all structured types).
        names: also mask person names (Chinese with LAC or jieba, English only after cues like Mr./name:).
        lang: auto, zh or en (Chinese name tagging is skipped for en).
        salt: the salt for --operator hash (default: the YULIAN_PII_SALT environment variable, else none).
        vault: with --operator placeholder, write the placeholder -> value mapping to this JSON file.
        backend: patterns (yulian's detectors), presidio (needs presidio-analyzer and a spaCy model) or both.
        restore: the other way: replace the placeholders in the input with the values saved in --vault.
    """
    if restore:
        return _restore(input, vault)
    from yulian.privacy.analyzer import Analyzer, Lang
    from yulian.privacy.operators import get_operator
    from yulian.privacy.vault import Vault

    if lang not in ("auto", "zh", "en"):
        raise ValueError(f"--lang must be auto, zh or en, got {lang!r}")
    analyzer = Analyzer(entities, names=names, lang=cast(Lang, lang), backend=backend)
    op = get_operator(operator, salt=salt if salt is not None else os.environ.get("YULIAN_PII_SALT", ""))
    if vault is not None and not op.reversible:
        raise ValueError("--vault only makes sense with --operator placeholder")
    store = Vault() if op.reversible else None
    from yulian.privacy.operators import apply_operator

    out = sys.stdout
    count = 0
    for number, line in enumerate(_lines(input), 1):
        text = line.rstrip("\r\n")
        ending = line[len(text) :]
        found = analyzer.analyze(text)
        count += len(found)
        masked = apply_operator(text, found, op, store)
        if json:
            record = {"line": number, "text": masked, "entities": [e.to_dict() for e in found]}
            out.write(_json.dumps(record, ensure_ascii=False) + "\n")
        else:
            out.write(masked + ending)
    out.flush()
    if vault is not None and store is not None:
        store.save(vault)
        print(f"wrote {len(store)} placeholder mappings to {vault}", file=sys.stderr)
    return 0


def _restore(input: Path | None, vault: Path | None) -> int:
    from yulian.privacy.vault import Vault

    if vault is None:
        raise ValueError("--restore needs --vault FILE (written by yulian mask --operator placeholder --vault FILE)")
    if not Path(vault).is_file():
        raise FileNotFoundError(f"--vault {vault}: no such file")
    store = Vault.load(vault)
    for line in _lines(input):
        sys.stdout.write(store.restore(line))
    sys.stdout.flush()
    return 0


def _lines(path: Path | None) -> Iterator[str]:
    if path is None:
        yield from cast(TextIO, sys.stdin)
        return
    if not Path(path).is_file():
        raise FileNotFoundError(f"--input {path}: no such file")
    with Path(path).open(encoding="utf-8", newline="") as f:
        yield from f
