"""Text-aware recommender (issue 8): MovieLens-style ratings, item texts encoded by MiniLM, a two-tower
user-interest model trained on interactions in torch, behaviour features (popularity, recency, genre affinity)
blended in for ranking, reasons for every recommendation, a page, and `yulian app recommend`.

    from yulian.apps.recommend import Recommender, load_movielens
    rec = Recommender.train(load_movielens(), out="runs/apps/recommend")
    rec.invoke(42)            # [Recommendation(item_id, title, score, genres, reasons), ...]

Importing this package is light: numpy, torch and fastapi load inside the functions that need them.
"""

from yulian.apps.recommend.data import Dataset, Ratings, Split, leave_one_out, load_movielens
from yulian.apps.recommend.metrics import evaluate_scores, hit_rate, ndcg
from yulian.apps.recommend.model import TwoTowerConfig
from yulian.apps.recommend.pipeline import RecommendConfig
from yulian.apps.recommend.recommender import Recommendation, Recommender

__all__ = [
    "Dataset",
    "Ratings",
    "RecommendConfig",
    "Recommendation",
    "Recommender",
    "Split",
    "TwoTowerConfig",
    "evaluate_scores",
    "hit_rate",
    "leave_one_out",
    "load_movielens",
    "ndcg",
]
