"""Behaviour features for ranking, and the two baselines the recommender is measured against.

Features (each an (n_users, n_items) array for a block of users, computed from training ratings only):
- `popularity`: log(1 + number of ratings of the item).
- `recent`: log(1 + ratings of the item in the `window_days` before the user's last rating): what is popular
  at the time the user is active (MovieLens 100K spans seven months in which new releases arrive).
- `genre`: the user's affinity for the item's genres, the mean over its genres of log(lift), where lift is the
  user's smoothed share of ratings in that genre over the catalogue's share.

Baselines: `popularity_scores` (most-rated first) and `ALSBaseline` (implicit-feedback matrix factorisation from
the `implicit` library, Hu, Koren & Volinsky 2008).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yulian._optional import require

if TYPE_CHECKING:
    import numpy as np

    from yulian.apps.recommend.data import Ratings

__all__ = ["FEATURES", "ALSBaseline", "Behaviour", "popularity_scores"]

FEATURES = ("popularity", "recent", "genre")
"""Names of the behaviour features, in the order of the blend weights."""

DAY = 86_400


@dataclass
class Behaviour:
    """Behaviour statistics from training ratings; `features(users, ref_ts)` gives per-item feature arrays.

    Attributes:
        counts: ratings per item.
        item_times: per item, the sorted timestamps of its ratings.
        genres: bool (n_items, n_genres).
        user_genre: float (n_users, n_genres), ratings per genre per user.
        window_days: the recency window.
    """

    counts: np.ndarray
    item_times: list[np.ndarray]
    genres: np.ndarray
    user_genre: np.ndarray
    window_days: float = 30.0

    @classmethod
    def fit(cls, ratings: Ratings, genres: np.ndarray, window_days: float = 30.0) -> Behaviour:
        """Count from `ratings` (training rows only)."""
        np = require("numpy", extra="hf")
        counts = np.bincount(ratings.item, minlength=ratings.n_items).astype(np.float64)
        order = np.lexsort((ratings.ts, ratings.item))
        bounds = np.searchsorted(ratings.item[order], np.arange(ratings.n_items + 1))
        times = [ratings.ts[order[bounds[i] : bounds[i + 1]]] for i in range(ratings.n_items)]
        user_genre = np.zeros((ratings.n_users, genres.shape[1]))
        np.add.at(user_genre, ratings.user, genres[ratings.item].astype(np.float64))
        return cls(counts, times, genres.astype(bool), user_genre, window_days)

    def recent_counts(self, ref_ts: np.ndarray) -> np.ndarray:
        """(n, n_items): ratings of each item within the window ending at each reference time (inclusive)."""
        np = require("numpy", extra="hf")
        ref = np.asarray(ref_ts, dtype=np.int64)
        start = ref - int(self.window_days * DAY)
        out = np.zeros((len(ref), len(self.item_times)))
        for i, times in enumerate(self.item_times):
            if len(times):
                out[:, i] = np.searchsorted(times, ref, side="right") - np.searchsorted(times, start, side="right")
        return out  # type: ignore[no-any-return]

    def genre_affinity(self, users: np.ndarray, smoothing: float = 5.0) -> np.ndarray:
        """(n, n_items): mean over each item's genres of log(user share / catalogue share), smoothed."""
        np = require("numpy", extra="hf")
        total = self.user_genre.sum(axis=0)
        prior = (total + 1.0) / (total.sum() + len(total))
        own = self.user_genre[users]
        share = (own + smoothing * prior) / (own.sum(axis=1, keepdims=True) + smoothing)
        lift = np.log(share / prior)  # (n, n_genres)
        g = self.genres.astype(np.float64)
        per_item = g.sum(axis=1)
        return (lift @ g.T) / np.maximum(per_item, 1.0)  # type: ignore[no-any-return]

    def features(self, users: np.ndarray, ref_ts: np.ndarray) -> np.ndarray:
        """(len(FEATURES), n, n_items) feature stack for users at their reference times."""
        np = require("numpy", extra="hf")
        pop = np.broadcast_to(np.log1p(self.counts), (len(users), len(self.counts)))
        return np.stack([pop, np.log1p(self.recent_counts(ref_ts)), self.genre_affinity(users)])  # type: ignore[no-any-return]


def popularity_scores(ratings: Ratings) -> np.ndarray:
    """Ratings per item: the popularity baseline's score for every user."""
    np = require("numpy", extra="hf")
    return np.bincount(ratings.item, minlength=ratings.n_items).astype(np.float64)  # type: ignore[no-any-return]


@dataclass
class ALSBaseline:
    """Implicit ALS (the `implicit` library) on binarised ratings; `scores(users)` gives (n, n_items).

    Attributes:
        factors: latent dimension.
        regularization: L2 weight.
        iterations: ALS sweeps.
        alpha: confidence weight of an observed interaction (confidence = 1 + alpha).
        seed: random state of the factor initialisation.
        threads: worker threads (0: all cores).
    """

    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 1.0
    seed: int = 0
    threads: int = 2
    user_factors: Any = None
    item_factors: Any = None

    def fit(self, ratings: Ratings) -> ALSBaseline:
        """Fit on the (user, item) pairs of `ratings`; returns self."""
        np = require("numpy", extra="hf")
        sparse = require("scipy.sparse", extra="recommend", purpose="the ALS baseline")
        als_module = require("implicit.cpu.als", extra="recommend", purpose="the ALS baseline")
        matrix = sparse.csr_matrix(
            (np.ones(len(ratings), dtype=np.float32), (ratings.user, ratings.item)),
            shape=(ratings.n_users, ratings.n_items),
        )
        matrix.data[:] = 1.0  # duplicates summed by csr: binarise again
        threadpoolctl = require("threadpoolctl", extra="recommend", purpose="the ALS baseline")
        # implicit's advice (it warns otherwise): its own threads, BLAS single-threaded
        with threadpoolctl.threadpool_limits(1, "blas"):
            model = als_module.AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=self.threads,
            )
            model.fit(matrix, show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        """(n, n_items) preference scores of the given user indexes."""
        if self.user_factors is None:
            raise RuntimeError("ALSBaseline.fit() first")
        return self.user_factors[users] @ self.item_factors.T  # type: ignore[no-any-return]
