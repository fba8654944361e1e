"""Score a support bot's routing on labelled utterances: intent accuracy, in-scope accuracy and out-of-scope recall
at the bot's threshold, and FAQ retrieval MRR@k.

Definitions (as in CLINC150, Larson et al. 2019): an utterance is *rejected* (handed off as out of scope) when the
classifier predicts an `oos_labels` intent or its probability is below the threshold. *In-scope accuracy* counts
an in-scope utterance correct when its intent is predicted and it is not rejected; *out-of-scope recall* is the
share of out-of-scope utterances rejected; *intent accuracy* is plain top-1 accuracy on in-scope utterances.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from yulian.apps.support.config import IntentExample

__all__ = ["evaluate_bot", "intent_metrics", "mrr_at_k"]


def intent_metrics(
    gold: Sequence[str],
    predicted: Sequence[tuple[str, float]],
    *,
    threshold: float,
    oos_labels: Iterable[str] = ("oos",),
) -> dict[str, Any]:
    """Routing metrics from gold intents and (label, probability) predictions (see the module docstring)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    oos = set(oos_labels)
    n_in = n_oos = top1 = in_ok = oos_ok = 0
    for g, (label, score) in zip(gold, predicted, strict=True):
        rejected = label in oos or score < threshold
        if g in oos:
            n_oos += 1
            oos_ok += rejected
        else:
            n_in += 1
            top1 += label == g
            in_ok += label == g and not rejected
    return {
        "n_in_scope": n_in,
        "n_out_of_scope": n_oos,
        "threshold": threshold,
        "intent_accuracy": top1 / n_in if n_in else None,
        "in_scope_accuracy": in_ok / n_in if n_in else None,
        "oos_recall": oos_ok / n_oos if n_oos else None,
    }


def mrr_at_k(rankings: Sequence[Sequence[str]], relevant: Sequence[str | set[str]], k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant id within the top `k` of each ranking (0 when absent)."""
    if len(rankings) != len(relevant):
        raise ValueError(f"{len(rankings)} rankings but {len(relevant)} relevance sets")
    total = 0.0
    for ranked, wanted in zip(rankings, relevant, strict=True):
        targets = {wanted} if isinstance(wanted, str) else wanted
        for rank, doc_id in enumerate(ranked[:k], 1):
            if doc_id in targets:
                total += 1.0 / rank
                break
    return total / len(rankings) if rankings else 0.0


def evaluate_bot(bot: Any, examples: Sequence[IntentExample], *, threshold: float | None = None) -> dict[str, Any]:
    """Routing metrics of `bot` (a `SupportBot`) on labelled utterances, overall and per language.

    Classifies in batches (no generation, nothing written to memory); `threshold` defaults to the bot's
    `intent_threshold`. Gold labels in `handoff_intents` count as in scope (the bot must recognise them)."""
    cfg = bot.config
    cut = cfg.intent_threshold if threshold is None else threshold
    by_lang: dict[str, list[IntentExample]] = defaultdict(list)
    for e in examples:
        by_lang[e.lang].append(e)
    gold: list[str] = []
    predicted: list[tuple[str, float]] = []
    out: dict[str, Any] = {"languages": {}}
    for lang, items in sorted(by_lang.items()):
        _, classifier = bot._pick(bot.classifiers, lang)
        preds = [(str(p.label), float(p.score)) for p in classifier.batch([e.text for e in items])]
        golds = [e.intent for e in items]
        out["languages"][lang] = intent_metrics(golds, preds, threshold=cut, oos_labels=cfg.oos_labels)
        gold += golds
        predicted += preds
    out.update(intent_metrics(gold, predicted, threshold=cut, oos_labels=cfg.oos_labels))
    return out
