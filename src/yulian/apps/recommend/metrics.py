"""HR@k and NDCG@k for leave-one-out evaluation with full ranking.

Each user has one held-out item. Its rank is computed among every item the user has not rated in the history
given to the model (the "full ranking" protocol: no sampled negatives). Ties are broken at random, in expectation:
with `g` items scored strictly higher and `t` others scored equal, the rank is uniform over g..g+t, so a model
that scores everything equally gets exactly the random-guess HR, not a lucky or unlucky one.

    ranks = held_out_ranks(scores, seen, held_items)     # (rank_low, n_ties) per user
    hit_rate(ranks, 10), ndcg(ranks, 10)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from yulian._optional import require

if TYPE_CHECKING:
    import numpy as np

__all__ = ["evaluate_scores", "held_out_ranks", "hit_rate", "ndcg"]


def held_out_ranks(scores: np.ndarray, seen: np.ndarray, held_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row: how many unseen items score strictly above the held item, and how many others tie with it.

    Args:
        scores: float (n, n_items), higher is better.
        seen: bool (n, n_items), items to exclude (the user's history); the held item must not be seen.
        held_items: int (n,), the held item per row.
    """
    np = require("numpy", extra="hf")
    rows = np.arange(len(held_items))
    target = scores[rows, held_items][:, None]
    if seen[rows, held_items].any():
        raise ValueError("a held-out item is also in the user's history: the split leaks")
    candidates = ~seen
    higher = ((scores > target) & candidates).sum(axis=1)
    ties = ((scores == target) & candidates).sum(axis=1) - 1  # minus the held item itself
    return higher.astype(np.int64), ties.astype(np.int64)


def _expected(ranks: tuple[np.ndarray, np.ndarray], k: int, gain: Callable[[int], float]) -> float:
    higher, ties = ranks
    if len(higher) == 0:
        raise ValueError("no held-out users to evaluate")
    total = 0.0
    for g, t in zip(higher.tolist(), ties.tolist(), strict=False):
        if g >= k:
            continue
        total += sum(gain(r) for r in range(g, min(g + t, k - 1) + 1)) / (t + 1)
    return total / len(higher)


def hit_rate(ranks: tuple[np.ndarray, np.ndarray], k: int = 10) -> float:
    """HR@k: the share of users whose held item is in the top k (expected value over random tie-breaking)."""
    return _expected(ranks, k, lambda r: 1.0)


def ndcg(ranks: tuple[np.ndarray, np.ndarray], k: int = 10) -> float:
    """NDCG@k with one relevant item: 1/log2(rank + 2) when the 0-based rank is below k, else 0 (averaged)."""
    return _expected(ranks, k, lambda r: 1.0 / math.log2(r + 2))


def evaluate_scores(
    score_users: Callable[[np.ndarray], np.ndarray],
    seen: np.ndarray,
    held_items: np.ndarray,
    k: int = 10,
    batch: int = 256,
) -> dict[str, Any]:
    """HR@k and NDCG@k of a scorer `score_users(user_indexes) -> (n, n_items)` over the users with a held item."""
    np = require("numpy", extra="hf")
    users = np.flatnonzero(held_items >= 0)
    highs, ties = [], []
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        h, t = held_out_ranks(np.asarray(score_users(chunk), dtype=np.float64), seen[chunk], held_items[chunk])
        highs.append(h)
        ties.append(t)
    ranks = (np.concatenate(highs), np.concatenate(ties))
    return {f"hr@{k}": hit_rate(ranks, k), f"ndcg@{k}": ndcg(ranks, k), "users": len(users)}
