"""The recommender on the real MovieLens 100K with the real MiniLM encoder: a short training run must beat the
popularity baseline on the leave-one-out test, and its recommendations must carry true reasons."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from yulian.apps.recommend import RecommendConfig, Recommender, TwoTowerConfig, evaluate_scores, leave_one_out
from yulian.apps.recommend.data import default_data_dir, load_movielens
from yulian.apps.recommend.features import popularity_scores
from yulian.apps.recommend.pipeline import blend_scores

pytestmark = pytest.mark.integration

DATA = (
    default_data_dir()
    if os.environ.get("YULIAN_DATASETS")
    else Path(__file__).parents[4] / "../shared/datasets/movielens_100k"
)


@pytest.mark.timeout(240)
def test_short_training_run_beats_popularity(tmp_path: Path) -> None:
    if not (DATA / "u.data").is_file():
        pytest.skip(f"MovieLens 100K not found at {DATA}")
    data = load_movielens(DATA)
    test = leave_one_out(data.ratings)
    train_data = load_movielens(DATA)
    train_data.ratings = test.train
    cfg = RecommendConfig(tower=TwoTowerConfig(epochs=1, history=10, batch_size=1024, threads=1), refit=False)
    rec = Recommender.train(train_data, out=tmp_path / "rec", cfg=cfg)  # real MiniLM encoding of 1,682 titles
    assert rec.text.shape == (1682, 384)
    seen = test.train.seen()
    pop = popularity_scores(test.train)
    baseline = evaluate_scores(lambda u: np.broadcast_to(pop, (len(u), len(pop))), seen, test.held_items)
    fitted = rec.fitted()
    ours = evaluate_scores(
        lambda u: blend_scores(fitted, test.train, data.user_features, u, cfg.tower.history)[0], seen, test.held_items
    )
    assert ours["hr@10"] > baseline["hr@10"] + 0.02, (ours, baseline)
    assert ours["ndcg@10"] > baseline["ndcg@10"], (ours, baseline)

    recs = Recommender.load(tmp_path / "rec").recommend(1, k=10)
    rated = {data.titles[i] for i in test.train.item[test.train.user == 0]}
    assert len(recs) == 10 and not {r.title for r in recs} & rated
    for r in recs:
        assert r.reasons[0].startswith("because you rated ")
        assert r.reasons[0].removeprefix("because you rated ").rsplit(" ", 1)[0] in rated
