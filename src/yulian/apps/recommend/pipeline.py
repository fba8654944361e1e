"""Training and evaluation recipes: tune on a validation split carved from train, refit, score with behaviour.

    fitted = tune_and_fit(ratings, text, user_features, genres, RecommendConfig())   # validation-tuned
    blend_scores(fitted, ratings, users)                                             # (n, n_items)
    evaluate_all(dataset, text, RecommendConfig(), seeds=[0, 1, 2])                  # the benchmark table

Validation protocol: from the ratings given, each user's last one (by time) is held out as validation; the
two-tower epoch count (early stopping), the loss and the blend weights of the behaviour features are chosen on
it; then the model is refitted on all the given ratings with those choices. For the test numbers, the given
ratings are the training part of a leave-one-out split, so the test item is never seen while tuning.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from yulian._optional import require
from yulian.apps.recommend.data import Ratings, leave_one_out
from yulian.apps.recommend.features import FEATURES, ALSBaseline, Behaviour, popularity_scores
from yulian.apps.recommend.metrics import evaluate_scores, held_out_ranks, hit_rate, ndcg
from yulian.apps.recommend.model import TwoTowerConfig, build_histories, fit_two_tower, user_scorer

if TYPE_CHECKING:
    import numpy as np

    from yulian.apps.recommend.data import Dataset

__all__ = [
    "ALS_GRID",
    "BLEND_GRID",
    "Fitted",
    "RecommendConfig",
    "blend_scores",
    "evaluate_all",
    "last_times",
    "tune_als",
    "tune_and_fit",
]

BLEND_GRID = {"popularity": (0.0, 0.5, 1.0, 2.0), "recent": (0.0, 0.5, 1.0, 2.0, 4.0), "genre": (0.0, 0.5, 1.0, 2.0)}
"""Candidate weights of each behaviour feature added to the two-tower logit (chosen on validation)."""

ALS_GRID = {"factors": (32, 64, 128), "regularization": (0.01, 0.1, 1.0), "iterations": (15,), "alpha": (1.0, 5.0)}
"""The hyper-parameters tried for the ALS baseline on validation."""


@dataclass(frozen=True)
class RecommendConfig:
    """Options of the recommender recipe.

    Attributes:
        tower: the two-tower model options (`epochs` is the most; validation early stopping picks the count).
        window_days: the recency window of the "recent" popularity feature.
        blend: tune the behaviour feature weights on validation (False: the two-tower score alone).
        k: the cut-off of the metrics.
        refit: after tuning, retrain on all the given ratings (the validation ratings included) with the chosen
            epoch count; False keeps the tuned model (half the training time; the validation ratings are then
            only used as history when scoring).
    """

    tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    window_days: float = 30.0
    blend: bool = True
    k: int = 10
    refit: bool = True

    def __post_init__(self) -> None:
        if self.window_days <= 0:
            raise ValueError(f"RecommendConfig.window_days must be > 0, got {self.window_days!r}")
        if self.k < 1:
            raise ValueError(f"RecommendConfig.k must be >= 1, got {self.k!r}")


@dataclass
class Fitted:
    """A trained recommender's parts: the torch model, the blend weights and what tuning found.

    Attributes:
        model: the two-tower torch module (eval mode), trained on all the ratings given to `tune_and_fit`.
        weights: blend weight per behaviour feature (FEATURES order).
        behaviour: behaviour statistics over the same ratings.
        epochs: the epoch count chosen on validation.
        val: validation metrics of the tuned model (before the refit), keyed "two_tower" and "blend".
        seconds: training time (tuning + refit).
    """

    model: Any
    weights: tuple[float, ...]
    behaviour: Behaviour
    epochs: int
    val: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def last_times(ratings: Ratings) -> np.ndarray:
    """Each user's latest rating time (0 for users without ratings): the reference time of `recent`."""
    np = require("numpy", extra="hf")
    out = np.zeros(ratings.n_users, dtype=np.int64)
    np.maximum.at(out, ratings.user, ratings.ts)
    return out  # type: ignore[no-any-return]


def _blend_weights(
    model_scores: np.ndarray, feats: np.ndarray, seen: np.ndarray, held: np.ndarray, k: int
) -> tuple[tuple[float, ...], float]:
    """The grid point of BLEND_GRID with the best validation NDCG@k (ties: the smaller weights)."""
    np = require("numpy", extra="hf")
    users = np.flatnonzero(held >= 0)
    best: tuple[float, tuple[float, ...]] = (-1.0, ())
    for weights in itertools.product(*(BLEND_GRID[name] for name in FEATURES)):
        scores = model_scores[users] + np.tensordot(np.asarray(weights), feats[:, users], axes=1)
        value = ndcg(held_out_ranks(scores, seen[users], held[users]), k)
        if value > best[0] + 1e-9:
            best = (value, tuple(float(w) for w in weights))
    return best[1], best[0]


def tune_and_fit(
    ratings: Ratings,
    text: np.ndarray,
    user_features: np.ndarray,
    genres: np.ndarray,
    cfg: RecommendConfig,
    progress: Callable[[str], None] | None = None,
) -> Fitted:
    """Choose epochs and blend weights on a leave-one-out validation split of `ratings`, then refit on all of it."""
    np = require("numpy", extra="hf")
    start = time.perf_counter()
    say = progress or (lambda _m: None)
    split = leave_one_out(ratings)
    seen = split.train.seen()
    model, report = fit_two_tower(
        split.train, text, user_features, cfg.tower, val=(split.held_items, seen), progress=progress
    )
    _, _, _, latest = build_histories(split.train, cfg.tower.history)
    all_users = np.arange(ratings.n_users)
    model_scores = user_scorer(model, latest, user_features)(all_users)
    val = {"two_tower_hr": max(report.val_hr) if report.val_hr else 0.0}
    weights: tuple[float, ...] = (0.0,) * len(FEATURES)
    if cfg.blend:
        behaviour = Behaviour.fit(split.train, genres, cfg.window_days)
        feats = behaviour.features(all_users, last_times(split.train))
        weights, val["blend_ndcg"] = _blend_weights(model_scores, feats, seen, split.held_items, cfg.k)
        scores = model_scores + np.tensordot(np.asarray(weights), feats, axes=1)
        val["blend_hr"] = hit_rate(held_out_ranks(scores, seen, split.held_items), cfg.k)
    say(f"validation: two-tower HR@{cfg.k} {val['two_tower_hr']:.4f} at epoch {report.best_epoch}; blend weights "
        + ", ".join(f"{n}={w:g}" for n, w in zip(FEATURES, weights, strict=False)))  # fmt: skip
    epochs = max(report.best_epoch, 1)
    final = model
    if cfg.refit:
        final, _ = fit_two_tower(ratings, text, user_features, cfg.tower, epochs=epochs, progress=progress)
    behaviour = Behaviour.fit(ratings, genres, cfg.window_days)
    return Fitted(final, weights, behaviour, epochs, val, time.perf_counter() - start)


def blend_scores(
    fitted: Fitted,
    ratings: Ratings,
    user_features: np.ndarray,
    users: np.ndarray,
    history: int,
    cache: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(final scores, feature stack) for `users` given their histories in `ratings` (n, n_items). Pass the same
    `cache` dict across calls on unchanged ratings to build the histories once."""
    np = require("numpy", extra="hf")
    cache = {} if cache is None else cache
    if "latest" not in cache:
        cache["latest"] = build_histories(ratings, history)[3]
        cache["ref"] = last_times(ratings)
    model_scores = user_scorer(fitted.model, cache["latest"], user_features)(users)
    feats = fitted.behaviour.features(users, cache["ref"][users])
    return model_scores + np.tensordot(np.asarray(fitted.weights), feats, axes=1), feats


def tune_als(train: Ratings, seed: int = 0, k: int = 10) -> tuple[dict[str, Any], float]:
    """The ALS_GRID point with the best validation NDCG@k on a leave-one-out split of `train`."""
    split = leave_one_out(train)
    seen = split.train.seen()
    best: tuple[float, dict[str, Any]] = (-1.0, {})
    for values in itertools.product(*ALS_GRID.values()):
        params = dict(zip(ALS_GRID, values, strict=False))
        als = ALSBaseline(**params, seed=seed).fit(split.train)  # type: ignore[arg-type]
        value = float(evaluate_scores(als.scores, seen, split.held_items, k)[f"ndcg@{k}"])
        if value > best[0]:
            best = (value, params)
    return best[1], best[0]


def evaluate_all(
    data: Dataset,
    text: np.ndarray,
    cfg: RecommendConfig,
    seeds: list[int],
    progress: Callable[[str], None] | None = None,
    als: bool = True,
    ablations: int = 0,
) -> dict[str, Any]:
    """HR@k / NDCG@k on the leave-one-out test split (full ranking) for popularity, recent popularity, ALS and
    ours (two-tower alone and blended), per seed, with training times; for the first `ablations` seeds, also the
    two-tower without item texts (ids only) and without ids (texts only), tuned the same way, without the blend."""
    np = require("numpy", extra="hf")
    say = progress or (lambda _m: None)
    assert data.user_features is not None
    test = leave_one_out(data.ratings)
    train = test.train
    seen = train.seen()
    held = test.held_items
    k = cfg.k
    results: dict[str, list[dict[str, float]]] = {}

    def add(name: str, metrics: dict[str, Any], seconds: float) -> None:
        results.setdefault(name, []).append(
            {"hr": float(metrics[f"hr@{k}"]), "ndcg": float(metrics[f"ndcg@{k}"]), "seconds": seconds}
        )
        say(f"  {name}: HR@{k} {metrics[f'hr@{k}']:.4f}  NDCG@{k} {metrics[f'ndcg@{k}']:.4f}  ({seconds:.1f} s)")

    t = time.perf_counter()
    pop = popularity_scores(train)
    add("popularity", evaluate_scores(lambda u: np.broadcast_to(pop, (len(u), len(pop))), seen, held, k), 0.0)
    behaviour = Behaviour.fit(train, data.genres, cfg.window_days)
    ref = last_times(train)
    add("recent popularity", evaluate_scores(lambda u: behaviour.recent_counts(ref[u]), seen, held, k), 0.0)
    als_params: dict[str, Any] = {}
    als_tuning = 0.0
    details: list[dict[str, Any]] = []
    if als:
        t = time.perf_counter()
        als_params, _ = tune_als(train, seed=seeds[0], k=k)
        als_tuning = time.perf_counter() - t
        say(f"  ALS grid ({als_tuning:.0f} s) chose on validation: {als_params}")
    for seed in seeds:
        if als:
            t = time.perf_counter()
            model = ALSBaseline(**als_params, seed=seed).fit(train)
            add("implicit ALS", evaluate_scores(model.scores, seen, held, k), time.perf_counter() - t)
        seed_cfg = replace(cfg, tower=replace(cfg.tower, seed=seed))
        fitted = tune_and_fit(train, text, data.user_features, data.genres, seed_cfg, progress=progress)
        weights = dict(zip(FEATURES, fitted.weights, strict=True))
        details.append({"seed": seed, "epochs": fitted.epochs, "weights": weights, "validation": fitted.val,
                        "seconds": fitted.seconds})  # fmt: skip
        users_feats = data.user_features
        only = replace(fitted, weights=(0.0,) * len(FEATURES))
        for name, f in (("two-tower (text + ids)", only), ("two-tower + behaviour (ours)", fitted)):
            scorer = _scorer(f, train, users_feats, cfg.tower.history)
            add(name, evaluate_scores(scorer, seen, held, k), fitted.seconds)
        if seed in seeds[:ablations]:
            variants = (
                ("two-tower, ids only (no text)", replace(seed_cfg.tower, use_text=False)),
                ("two-tower, text only (no ids)", replace(seed_cfg.tower, use_ids=False)),
            )
            for name, tower in variants:
                ab_cfg = replace(seed_cfg, tower=tower, blend=False)
                ab = tune_and_fit(train, text, data.user_features, data.genres, ab_cfg, progress=progress)
                add(
                    name, evaluate_scores(_scorer(ab, train, users_feats, cfg.tower.history), seen, held, k), ab.seconds
                )
        say(f"  seed {seed}: epochs {fitted.epochs}, blend {dict(zip(FEATURES, fitted.weights, strict=False))}")
    return {"k": k, "protocol": "leave-one-out, full ranking over unseen items", "results": results,
            "als_params": als_params, "als_tuning_seconds": als_tuning, "ours": details}  # fmt: skip


def _scorer(fitted: Fitted, ratings: Ratings, feats: np.ndarray, history: int) -> Callable[[np.ndarray], np.ndarray]:
    cache: dict[str, Any] = {}

    def score(users: np.ndarray) -> np.ndarray:
        return blend_scores(fitted, ratings, feats, users, history, cache)[0]

    return score
