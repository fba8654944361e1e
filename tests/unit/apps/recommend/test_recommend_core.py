"""Recommender core: the split does not leak, metrics match hand-computed values, the model learns a known
structure, reasons are true of the data, save/load round-trips, errors name file, line and field."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from yulian.apps.recommend import (
    RecommendConfig,
    Recommender,
    TwoTowerConfig,
    evaluate_scores,
    hit_rate,
    leave_one_out,
    load_movielens,
    ndcg,
)
from yulian.apps.recommend.data import Ratings
from yulian.apps.recommend.features import Behaviour, popularity_scores
from yulian.apps.recommend.metrics import held_out_ranks
from yulian.apps.recommend.model import build_histories, fit_two_tower, user_scorer
from yulian.apps.recommend.synthetic import synthetic, write_movielens

TINY = TwoTowerConfig(dim=16, history=8, epochs=15, patience=15, batch_size=32, lr=1e-2, dropout=0.0, threads=1)


@pytest.fixture(scope="module")
def data() -> tuple[Any, Any]:
    return synthetic()


@pytest.fixture(scope="module")
def trained(data: tuple[Any, Any]) -> Recommender:
    dataset, text = data
    return Recommender.train(dataset, cfg=RecommendConfig(tower=TINY, k=5), text=text)


# ------------------------------------------------------------------------------------------------ split
def test_leave_one_out_holds_the_latest_rating_and_breaks_ties_by_file_order() -> None:
    r = Ratings(
        user=np.array([0, 0, 0, 1, 1, 1]),
        item=np.array([5, 3, 4, 1, 2, 0]),
        rating=np.ones(6, dtype=np.float32),
        ts=np.array([30, 10, 30, 7, 9, 8]),
        n_users=2,
        n_items=6,
    )
    split = leave_one_out(r)
    # user 0: items 5 and 4 share the latest time; item 4 comes later in the file, so it is held out
    assert split.held_items.tolist() == [4, 2]
    assert split.held_ts.tolist() == [30, 9]
    assert sorted(zip(split.train.user.tolist(), split.train.item.tolist(), strict=True)) == [
        (0, 3),
        (0, 5),
        (1, 0),
        (1, 1),
    ]


def test_split_has_no_leakage(data: tuple[Any, Any]) -> None:
    dataset, _ = data
    test = leave_one_out(dataset.ratings)
    val = leave_one_out(test.train)
    for held, train in ((test.held_items, test.train), (val.held_items, val.train)):
        seen = train.seen()
        assert not seen[np.arange(len(held)), held].any()  # the held item is in nobody's own history
        latest = np.zeros(train.n_users, dtype=np.int64)
        np.maximum.at(latest, train.user, train.ts)
    assert (val.held_ts <= test.held_ts).all()  # validation comes before test, per user
    assert len(val.train) + 2 * dataset.ratings.n_users == len(dataset.ratings)
    # nothing of the test item is in the data used for tuning
    tuning_pairs = set(zip(val.train.user.tolist(), val.train.item.tolist(), strict=True))
    assert not any((u, int(i)) in tuning_pairs for u, i in enumerate(test.held_items))


def test_a_leaking_split_is_refused() -> None:
    scores = np.zeros((1, 4))
    seen = np.array([[True, False, False, False]])
    with pytest.raises(ValueError, match="leaks"):
        held_out_ranks(scores, seen, np.array([0]))


# ------------------------------------------------------------------------------------------------ metrics
def test_metrics_against_hand_computed_values() -> None:
    n_items = 20
    scores = np.tile(-np.arange(n_items, dtype=float), (3, 1))  # item i ranks i-th
    seen = np.zeros((3, n_items), dtype=bool)
    seen[1, 0] = True  # user 1 has seen item 0: its held item 3 moves from rank 3 to rank 2
    held = np.array([0, 3, 12])
    ranks = held_out_ranks(scores, seen, held)
    assert ranks[0].tolist() == [0, 2, 12]
    assert hit_rate(ranks, 10) == pytest.approx(2 / 3)
    assert ndcg(ranks, 10) == pytest.approx((1.0 + 1.0 / math.log2(4) + 0.0) / 3)
    assert hit_rate(ranks, 1) == pytest.approx(1 / 3)


def test_ties_count_as_random_order() -> None:
    scores = np.zeros((1, 20))  # everything ties: the held item's rank is uniform over 0..19
    ranks = held_out_ranks(scores, np.zeros((1, 20), dtype=bool), np.array([7]))
    assert hit_rate(ranks, 10) == pytest.approx(0.5)
    assert ndcg(ranks, 10) == pytest.approx(sum(1 / math.log2(r + 2) for r in range(10)) / 20)


# ------------------------------------------------------------------------------------------------ learning
def test_two_tower_learns_the_known_structure(data: tuple[Any, Any]) -> None:
    dataset, text = data
    test = leave_one_out(dataset.ratings)
    seen = test.train.seen()
    pop = popularity_scores(test.train)
    baseline = evaluate_scores(lambda u: np.broadcast_to(pop, (len(u), len(pop))), seen, test.held_items, k=5)
    model, report = fit_two_tower(test.train, text, dataset.user_features, TINY, epochs=TINY.epochs)
    _, _, _, latest = build_histories(test.train, TINY.history)
    ours = evaluate_scores(user_scorer(model, latest, dataset.user_features), seen, test.held_items, k=5)
    # 3 unseen items in the user's group out of 33 unseen: learning puts the held one in the top 5
    assert ours["hr@5"] >= 0.9, ours
    assert baseline["hr@5"] < 0.4, baseline
    assert report.losses[-1] < report.losses[0] * 0.8


def test_inbatch_loss_with_logq_also_learns(data: tuple[Any, Any]) -> None:
    dataset, text = data
    test = leave_one_out(dataset.ratings)
    cfg = TwoTowerConfig(**{**TINY.to_dict(), "loss": "inbatch"})
    model, _ = fit_two_tower(test.train, text, dataset.user_features, cfg, epochs=cfg.epochs)
    _, _, _, latest = build_histories(test.train, cfg.history)
    ours = evaluate_scores(user_scorer(model, latest, dataset.user_features), test.train.seen(), test.held_items, 5)
    assert ours["hr@5"] >= 0.8, ours


def test_early_stopping_keeps_the_best_validation_epoch(data: tuple[Any, Any]) -> None:
    dataset, text = data
    val = leave_one_out(dataset.ratings)
    cfg = TwoTowerConfig(**{**TINY.to_dict(), "epochs": 6, "patience": 1})
    _, report = fit_two_tower(val.train, text, dataset.user_features, cfg, val=(val.held_items, val.train.seen()))
    assert report.best_epoch == int(np.argmax(report.val_hr)) + 1
    assert len(report.val_hr) == report.epochs_run


# ------------------------------------------------------------------------------------------------ behaviour
def test_behaviour_features_count_what_they_say() -> None:
    r = Ratings(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 2, 1]), np.ones(5, dtype=np.float32),
                np.array([0, 100 * 86_400, 99 * 86_400, 100 * 86_400, 10 * 86_400]), 2, 3)  # fmt: skip
    genres = np.array([[True, False], [False, True], [False, True]])
    b = Behaviour.fit(r, genres, window_days=5)
    assert b.counts.tolist() == [2, 2, 1]
    # window (95 days, 100 days]: item 0 rated at day 99, item 1 at day 100, item 2 at day 100
    assert b.recent_counts(np.array([100 * 86_400])).tolist() == [[1, 1, 1]]
    assert b.recent_counts(np.array([50 * 86_400])).tolist() == [[0, 0, 0]]
    aff = b.genre_affinity(np.array([0, 1]))
    assert aff[1, 1] > aff[1, 0]  # user 1 rated two genre-1 items and one genre-0 item


# ------------------------------------------------------------------------------------------------ reasons
def test_reasons_are_true_of_the_data(trained: Recommender) -> None:
    import torch

    user_id = 5
    recs = trained.recommend(user_id, k=5)
    assert len(recs) == 5
    u = trained.data.user_index(user_id)
    r = trained.data.ratings
    rated = {int(i): float(x) for i, x in zip(r.item[r.user == u], r.rating[r.user == u], strict=True)}
    assert not {trained.data.item_index(x.item_id) for x in recs} & set(rated)  # nothing already rated
    with torch.no_grad():
        vectors = trained.fitted().model.items().numpy()
    liked = [i for i, x in rated.items() if x >= 4] or list(rated)
    favourites = [g for g, _ in trained.favourite_genres(user_id)]
    t_last = int(r.ts[r.user == u].max())
    recent = np.array([((r.item == i) & (r.ts > t_last - 30 * 86_400) & (r.ts <= t_last)).sum() for i in range(40)])
    top_recent = set(np.argsort(-recent, kind="stable")[:20].tolist())
    assert favourites and favourites[0] == "Action"  # user 5 is in group 0: Action only
    for n, rec in enumerate(recs):
        i = trained.data.item_index(rec.item_id)
        nearest = max(liked, key=lambda j: float(vectors[j] @ vectors[i]))
        assert rec.reasons[0] == f"because you rated {trained.data.titles[nearest]} {rated[nearest]:g}★"
        if n < 3:  # the user's group has 3 unseen items: the learned model puts them first
            assert rec.genres == ["Action"]
            assert "popular in Action" in rec.reasons  # Action has 10 items: all are among its 20 most rated
        else:
            assert not any("Action" in x for x in rec.reasons[1:])
        in_window = int(recent[i])  # all synthetic ratings fall within 30 days of user 5's last one
        trending = f"trending: {in_window} ratings in the last 30 days"
        assert (trending in rec.reasons) == (i in top_recent), (rec.reasons, in_window)
    assert [x.score for x in recs] == sorted((x.score for x in recs), reverse=True)


def test_runnable_invoke_batch_and_bad_input(trained: Recommender) -> None:
    one = trained.invoke(5)
    assert [x.item_id for x in trained.invoke({"user": 5, "k": 3})] == [x.item_id for x in one[:3]]
    assert next([x.item_id for x in rs] for rs in trained.batch([5, 13])) == [x.item_id for x in one]
    with pytest.raises(ValueError, match=r"unknown user id 999 \(users are 1\.\.48\)"):
        trained.invoke(999)
    with pytest.raises(ValueError, match="'user' field"):
        trained.invoke({"k": 3})


def test_save_and_load_give_the_same_recommendations(trained: Recommender, tmp_path: Path) -> None:
    trained.save(tmp_path / "rec")
    loaded = Recommender.load(tmp_path / "rec")
    assert loaded._fitted is None  # weights load lazily
    before, after = trained.recommend(7, 4), loaded.recommend(7, 4)
    assert [(x.item_id, x.reasons) for x in after] == [(x.item_id, x.reasons) for x in before]
    assert [x.score for x in after] == pytest.approx([x.score for x in before], abs=1e-5)
    assert loaded.history(7)[0]["ts"] >= loaded.history(7)[-1]["ts"]
    with pytest.raises(FileNotFoundError, match="no trained recommender"):
        Recommender.load(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------------ data errors
def test_load_movielens_round_trip_and_errors(data: tuple[Any, Any], tmp_path: Path) -> None:
    dataset, _ = data
    folder = write_movielens(dataset, tmp_path / "ml")
    loaded = load_movielens(folder)
    assert len(loaded.ratings) == len(dataset.ratings)
    assert loaded.titles == dataset.titles
    assert (loaded.genres == dataset.genres).all()
    assert loaded.texts()[0] == "Movie 1 (1990). Genres: Action"
    lines = (folder / "u.data").read_text().splitlines()
    lines[2] = "3\tx\t4\t880000000"
    (folder / "u.data").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"u\.data line 3: field 'item id' must be an integer, got 'x'"):
        load_movielens(folder)
    lines[2] = "3\t9999\t4\t880000000"
    (folder / "u.data").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"u\.data line 3: field 'item id' 9999 is not in u\.item"):
        load_movielens(folder)
    (folder / "u.item").write_text("1|Only a title\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"u\.item line 1: expected 24 '\|'-separated fields"):
        load_movielens(folder)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_movielens(tmp_path / "missing")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=r"TwoTowerConfig\.loss must be one of inbatch, full"):
        TwoTowerConfig(loss="bpr")
    with pytest.raises(ValueError, match=r"use_ids and use_text cannot both be False"):
        TwoTowerConfig(use_ids=False, use_text=False)
    with pytest.raises(ValueError, match=r"window_days must be > 0"):
        RecommendConfig(window_days=0)


def test_als_baseline_fits_and_scores(data: tuple[Any, Any]) -> None:
    from yulian.apps.recommend.features import ALSBaseline

    dataset, _ = data
    test = leave_one_out(dataset.ratings)
    als = ALSBaseline(factors=8, iterations=10, regularization=0.1, threads=1).fit(test.train)
    assert als.scores(np.array([0, 1])).shape == (2, dataset.ratings.n_items)
    result = evaluate_scores(als.scores, test.train.seen(), test.held_items, k=5)
    assert result["hr@5"] >= 0.6  # the group structure is plain collaborative signal: ALS finds it too
