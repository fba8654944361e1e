"""Metrics of the fine-tuning tasks, as pure functions: SQuAD exact match / F1 (English and Chinese), entity-level
precision / recall / F1 for tagging (seqeval), and perplexity.

Scores are fractions in [0, 1] (the official SQuAD script prints them x 100).

English answers follow the official SQuAD v1.1 evaluation script: `normalize_answer` lower-cases, removes
punctuation, the articles a/an/the and extra whitespace; F1 is the bag-of-tokens overlap; both take the maximum
over the gold answers. An unanswerable question (no gold answer) scores 1 only for the empty prediction (SQuAD
v2.0's rule). A gold answer holding a CJK ideograph is scored as the CMRC 2018 script does: lower case, the
script's (mostly Chinese) punctuation dropped, each hanzi one segment and the runs between split on whitespace
(English words, numbers); F1 from the longest common substring of the two segment lists; exact match on the
punctuation-free strings. The language is decided per gold answer, so a CJK prediction against an English gold
is scored the English way, exactly as the SQuAD script would; `language="zh"` scores every answer the CMRC way
(what the CMRC script does to the English answers of its data set), and `qa_language` picks it for a data set.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "LANGUAGES",
    "cjk",
    "entity_report",
    "entity_scores",
    "exact_match",
    "normalize_answer",
    "perplexity",
    "qa_f1",
    "qa_language",
    "squad_em_f1",
    "zh_segments",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_ZH_PUNCT = set("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
"""The punctuation the CMRC 2018 script removes (its list, which also holds "……", a pair never met alone)."""
_HANZI = re.compile(r"[\u4e00-\u9fa5]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def cjk(text: str) -> bool:
    """Whether `text` holds a CJK ideograph (then a gold answer is scored the Chinese way)."""
    return _CJK.search(text) is not None


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no articles (a/an/the), single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def zh_segments(text: str) -> list[str]:
    """CMRC 2018's `mixed_segmentation(text, rm_punc=True)`: lower case, its punctuation dropped first, then each
    hanzi one segment and the runs between split on whitespace (the script uses nltk.word_tokenize there)."""
    out: list[str] = []
    run = ""
    for ch in text.lower().strip():
        if ch in _ZH_PUNCT:
            continue
        if _HANZI.match(ch):
            out.extend(run.split())
            run = ""
            out.append(ch)
        else:
            run += ch
    out.extend(run.split())
    return out


def _zh_plain(text: str) -> str:
    """CMRC 2018's `remove_punctuation`: lower case, stripped, its punctuation removed (inner spaces kept)."""
    return "".join(ch for ch in text.lower().strip() if ch not in _ZH_PUNCT)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common contiguous run of `a` and `b`."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def _f1_one(prediction: str, gold: str, chinese: bool) -> float:
    if chinese:
        pred_tokens, gold_tokens = zh_segments(prediction), zh_segments(gold)
        same = _lcs_length(gold_tokens, pred_tokens)
    else:
        pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
        if not pred_tokens or not gold_tokens:
            return float(pred_tokens == gold_tokens)
        same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _em_one(prediction: str, gold: str, chinese: bool) -> float:
    if chinese:
        return float(_zh_plain(prediction) == _zh_plain(gold))
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _golds(golds: Sequence[str]) -> list[str]:
    return list(golds) or [""]  # unanswerable: only the empty answer is right


LANGUAGES = ("auto", "en", "zh")
"""`language` of the QA metrics: "en" scores every answer the SQuAD way, "zh" the CMRC 2018 way, "auto" decides
per gold answer (Chinese when it holds a CJK ideograph)."""


def _is_zh(gold: str, language: str) -> bool:
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    return language == "zh" or (language == "auto" and cjk(gold))


def exact_match(prediction: str, golds: Sequence[str], language: str = "auto") -> float:
    """1.0 if `prediction` equals one of `golds` after normalisation, else 0.0 (`golds` empty: unanswerable)."""
    return max(_em_one(prediction, g, _is_zh(g, language)) for g in _golds(golds))


def qa_f1(prediction: str, golds: Sequence[str], language: str = "auto") -> float:
    """The best F1 of `prediction` against any of `golds` (tokens for English, characters for Chinese)."""
    return max(_f1_one(prediction, g, _is_zh(g, language)) for g in _golds(golds))


def squad_em_f1(predictions: Sequence[str], golds: Sequence[Sequence[str]], language: str = "auto") -> dict[str, float]:
    """Mean exact match and F1 of `predictions` against the gold answer lists: `{"exact_match": .., "f1": ..}`.

    `squad_em_f1(["the Eiffel Tower"], [["Eiffel tower", "tower"]]) == {"exact_match": 1.0, "f1": 1.0}`.
    `language`: see `LANGUAGES` ("zh" for a Chinese data set reproduces the CMRC 2018 script, English answers
    in it included).
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} gold answer lists")
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    em = sum(exact_match(p, g, language) for p, g in zip(predictions, golds, strict=True))
    f1 = sum(qa_f1(p, g, language) for p, g in zip(predictions, golds, strict=True))
    return {"exact_match": em / len(predictions), "f1": f1 / len(predictions)}


def qa_language(contexts: Sequence[str]) -> str:
    """ "zh" if most contexts hold CJK ideographs (a Chinese data set such as CMRC 2018), else "en"."""
    contexts = list(contexts)
    return "zh" if contexts and sum(1 for c in contexts if cjk(c)) > len(contexts) / 2 else "en"


# ---------------------------------------------------------------------------------------------------- tagging
def _seqeval_args(scheme: str) -> dict[str, object]:
    """Strict IOBES matching for BIOES/BMES, conlleval-style (lenient) matching for BIO."""
    if scheme in ("bioes", "bmes"):
        from seqeval.scheme import IOBES  # type: ignore[import-untyped]

        return {"mode": "strict", "scheme": IOBES}
    if scheme != "bio":
        raise ValueError(f"unknown tag scheme {scheme!r} (schemes: bio, bioes, bmes)")
    return {}


def _seqeval_tags(tags: Sequence[Sequence[str]], scheme: str) -> list[list[str]]:
    """seqeval reads `M-` as nothing it knows: write BMES's middles as `I-`; bare tags get a placeholder type."""

    def one(tag: str) -> str:
        if tag == "O":
            return tag
        head, sep, kind = tag.partition("-")
        if not sep:
            head, kind = tag, "_"
        if scheme == "bmes" and head == "M":
            head = "I"
        return f"{head}-{kind}"

    return [[one(t) for t in seq] for seq in tags]


def entity_scores(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str = "bio"
) -> dict[str, float]:
    """Entity-level micro `{"f1", "precision", "recall"}` of tag sequences, with seqeval (the `tune` extra).

    BIO is scored conlleval-style (an `I-` after `O` starts an entity); BIOES and BMES strictly (IOBES: an
    entity counts only if its tags are well formed and match exactly).
    """
    from yulian._optional import require

    require("seqeval", extra="tune", purpose="entity-level tagging metrics")
    from seqeval.metrics import f1_score, precision_score, recall_score  # type: ignore[import-untyped]

    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold tag sequences but {len(predicted)} predicted")
    args = _seqeval_args(scheme)
    y_true, y_pred = _seqeval_tags(gold, scheme), _seqeval_tags(predicted, scheme)
    return {
        "f1": float(f1_score(y_true, y_pred, zero_division=0, **args)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0, **args)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0, **args)),
    }


def entity_report(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str = "bio") -> str:
    """seqeval's per-type classification report (precision, recall, F1, support) of tag sequences."""
    from yulian._optional import require

    require("seqeval", extra="tune", purpose="entity-level tagging metrics")
    from seqeval.metrics import classification_report

    args = _seqeval_args(scheme)
    report: str = classification_report(
        _seqeval_tags(gold, scheme), _seqeval_tags(predicted, scheme), digits=4, zero_division=0, **args
    )
    return report


# ---------------------------------------------------------------------------------------------------- language models
def perplexity(mean_loss: float) -> float:
    """`exp(mean token cross-entropy)` in nats; `inf` when it overflows."""
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf
