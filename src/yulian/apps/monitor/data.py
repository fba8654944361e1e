"""The monitor's labelled data: Financial PhraseBank (English) and FinFE (Chinese), with fixed, stated splits.

    train, dev = load_split("en")          # FPB Sentences_50Agree, deduplicated, stratified 80/20 (seed 0)
    train, dev = load_split("zh")          # FinFE train (deduplicated, conflicts dropped) / eval minus train texts

Labels are always the strings `negative`, `neutral`, `positive`. The data sets live in `../shared/datasets` (or
`$YULIAN_DATASETS`); nothing is copied into the project.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LABELS", "LabelledText", "datasets_dir", "load_finfe", "load_fpb", "load_split"]

LABELS = ("negative", "neutral", "positive")
_FINFE_LABELS = {0: "negative", 1: "neutral", 2: "positive"}


@dataclass(frozen=True, slots=True)
class LabelledText:
    """A text with its sentiment label (`negative`, `neutral` or `positive`)."""

    text: str
    label: str


def datasets_dir() -> Path:
    """`$YULIAN_DATASETS`, else `../shared/datasets` next to the project (found from this file or the cwd)."""
    env = os.environ.get("YULIAN_DATASETS")
    if env:
        return Path(env)
    for base in (Path(__file__).resolve().parents[4], Path.cwd()):
        candidate = base.parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("data sets not found: set YULIAN_DATASETS to the folder holding financial_phrasebank/")


def load_fpb(agree: str = "50Agree", root: Path | None = None) -> list[LabelledText]:
    """Financial PhraseBank `Sentences_<agree>.txt` ("sentence@label" lines; Latin-1 except AllAgree), deduped."""
    path = (root or datasets_dir()) / "financial_phrasebank" / f"Sentences_{agree}.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (agree must be 50Agree, 66Agree, 75Agree or AllAgree)")
    encoding = "utf-8" if agree == "AllAgree" else "latin-1"
    seen: set[str] = set()
    rows: list[LabelledText] = []
    for n, line in enumerate(path.read_text(encoding=encoding).splitlines(), 1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition("@")
        label = label.strip()
        if not sep or label not in LABELS:
            raise ValueError(f"{path}:{n}: expected 'sentence@label' with label in {LABELS}, got {line[-40:]!r}")
        text = text.strip()
        if text not in seen:
            seen.add(text)
            rows.append(LabelledText(text, label))
    return rows


def _read_finfe(path: Path) -> list[LabelledText]:
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for i, item in enumerate(data):
        if not (isinstance(item, list) and len(item) == 2 and item[1] in _FINFE_LABELS):
            raise ValueError(f"{path}: item {i} is not [text, 0|1|2]: {str(item)[:60]}")
        rows.append(LabelledText(str(item[0]).strip(), _FINFE_LABELS[item[1]]))
    return rows


def load_finfe(root: Path | None = None) -> tuple[list[LabelledText], list[LabelledText]]:
    """FinFE (train, eval): train deduplicated with conflicting texts dropped; eval deduplicated (conflicts
    dropped) and without any text that occurs in train (the published files leak 1,096 eval texts)."""
    folder = (root or datasets_dir()) / "fincuge_finfe"

    def clean(rows: list[LabelledText], exclude: set[str]) -> list[LabelledText]:
        labels: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            labels[row.text].add(row.label)
        out, seen = [], set()
        for row in rows:
            if row.text and row.text not in seen and len(labels[row.text]) == 1 and row.text not in exclude:
                seen.add(row.text)
                out.append(row)
        return out

    train_raw = _read_finfe(folder / "train_list.json")
    train = clean(train_raw, set())
    evals = clean(_read_finfe(folder / "eval_list.json"), {r.text for r in train_raw})
    return train, evals


def load_split(lang: str, root: Path | None = None) -> tuple[list[LabelledText], list[LabelledText]]:
    """The (train, dev) split the monitor trains and reports on.

    en: FPB Sentences_50Agree, deduplicated, stratified 80% train / 20% dev with seed 0.
    zh: FinFE train_list (deduplicated, conflicting labels dropped) / eval_list (deduplicated, minus train texts).
    """
    if lang == "zh":
        return load_finfe(root)
    if lang != "en":
        raise ValueError(f"lang must be en or zh, got {lang!r}")
    rows = load_fpb("50Agree", root)
    by_label: dict[str, list[LabelledText]] = defaultdict(list)
    for row in rows:
        by_label[row.label].append(row)
    rng = random.Random(0)
    train: list[LabelledText] = []
    dev: list[LabelledText] = []
    for label in LABELS:
        group = by_label[label][:]
        rng.shuffle(group)
        cut = round(len(group) * 0.2)
        dev += group[:cut]
        train += group[cut:]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev
