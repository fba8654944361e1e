"""`Recommender`: a trained recommender as a Runnable, user id -> top-k items with reasons; save and load.

    rec = Recommender.train(load_movielens(dir), out="runs/apps/recommend")   # encode items, tune, fit, save
    rec = Recommender.load("runs/apps/recommend")                             # cheap: weights load on first use
    for r in rec.invoke(42):                                                  # or {"user": 42, "k": 5}
        print(r.title, r.reasons)        # ["because you rated Star Wars (1977) 5★", "popular in Sci-Fi", ...]

Reasons, each true of the item and the user's data:
- "because you rated X N★": X is the user's highly rated item (rating >= 4, else their best) whose learned
  item vector is nearest (cosine) to the recommended one;
- "popular in G": G is one of the user's three favourite genres (by lift over the catalogue) and the item is
  among the 20 most rated of G; otherwise "you often watch G" when it shares a favourite genre;
- "trending: N ratings in the last D days": the item is among the 20 most rated in the window before the
  user's latest rating.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yulian._optional import require
from yulian.apps.recommend.data import Dataset, Ratings
from yulian.apps.recommend.features import FEATURES, Behaviour
from yulian.apps.recommend.model import TwoTowerConfig, make_two_tower
from yulian.apps.recommend.pipeline import Fitted, RecommendConfig, blend_scores, last_times, tune_and_fit
from yulian.core.runnable import ConfigLike, Runnable

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Recommendation", "Recommender", "embed_items", "embedding_cache_path"]

TOP_N = 20
"""An item is "popular in G" / "trending" when it is among the TOP_N most rated of G / of the window."""


@dataclass
class Recommendation:
    """One recommended item.

    Attributes:
        item_id: the item's id in the data files.
        title: its title.
        score: the ranking score (two-tower logit + weighted behaviour features).
        genres: its genres.
        reasons: short human-readable reasons, most specific first.
    """

    item_id: int
    title: str
    score: float
    genres: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def embed_items(texts: list[str], encoder: str = "minilm-l6", cache_dir: Path | None = None) -> np.ndarray:
    """Encode item texts with a yulian embedder (a registered name or model folder); cached in `cache_dir` under
    a hash of the encoder name and the texts, so retraining does not re-encode."""
    np = require("numpy", extra="hf")
    path = embedding_cache_path(texts, encoder, cache_dir) if cache_dir else None
    if path is not None and path.is_file():
        return np.load(path)  # type: ignore[no-any-return]
    from yulian.models.embed_commands import load_embedder

    embedder = load_embedder(encoder)
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        os.replace(tmp, path)
    return vectors  # type: ignore[no-any-return]


def embedding_cache_path(texts: list[str], encoder: str, cache_dir: Path) -> Path:
    """Where `embed_items` caches the vectors of `texts` encoded by `encoder`."""
    key = hashlib.sha256("\n".join([encoder, *texts]).encode()).hexdigest()[:16]
    return cache_dir / f"items-{key}.npy"


class Recommender(Runnable[Any, list[Recommendation]]):
    """A trained recommender over one dataset: `invoke(user_id)` or `invoke({"user": id, "k": 5})` returns the
    top-k unseen items with reasons. Build with `train` or `load`; weights load lazily on first use."""

    def __init__(
        self,
        data: Dataset,
        text: np.ndarray,
        cfg: RecommendConfig,
        weights: tuple[float, ...],
        state: Any = None,
        folder: Path | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.data = data
        self.text = text
        self.cfg = cfg
        self.weights = tuple(weights)
        self.meta = dict(meta or {})
        self._state = state  # a torch state dict or None (then read from folder/model.pt on first use)
        self._folder = folder
        self._fitted: Fitted | None = None
        self._cache: dict[str, Any] = {}  # histories and reference times, built once

    # ------------------------------------------------------------------------------------------ build
    @classmethod
    def train(
        cls,
        data: Dataset,
        out: str | os.PathLike[str] | None = None,
        cfg: RecommendConfig | None = None,
        encoder: str = "minilm-l6",
        text: np.ndarray | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Recommender:
        """Encode item texts (or use `text`), tune on a validation split, refit on all ratings; save to `out`."""
        cfg = cfg or RecommendConfig()
        say = progress or (lambda _m: None)
        folder = Path(out) if out else None
        if text is None:
            say(f"encoding {len(data.titles):,} item texts with {encoder}")
            text = embed_items(data.texts(), encoder, folder / "cache" if folder else None)
        if data.user_features is None:
            raise ValueError("the dataset has no user features array")
        fitted = tune_and_fit(data.ratings, text, data.user_features, data.genres, cfg, progress=progress)
        meta = {"encoder": encoder, "epochs": fitted.epochs, "validation": fitted.val, "seconds": fitted.seconds}
        rec = cls(data, text, cfg, fitted.weights, folder=folder, meta=meta)
        rec._fitted = fitted
        if folder is not None:
            rec.save(folder)
            say(f"saved the recommender to {folder}")
        return rec

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write model.pt, items.npy, data.npz and meta.json into `folder`."""
        np = require("numpy", extra="hf")
        torch = require("torch", extra="hf")
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.fitted().model.state_dict(), path / "model.pt")
        np.save(path / "items.npy", self.text)
        r, d = self.data.ratings, self.data
        np.savez(path / "data.npz", user=r.user, item=r.item, rating=r.rating, ts=r.ts, genres=d.genres,
                 user_features=d.user_features)  # fmt: skip
        meta = {
            **self.meta,
            "format": 1,
            "tower": self.cfg.tower.to_dict(),
            "window_days": self.cfg.window_days,
            "k": self.cfg.k,
            "weights": dict(zip(FEATURES, self.weights, strict=False)),
            "n_users": r.n_users,
            "n_items": r.n_items,
            "item_ids": d.item_ids,
            "titles": d.titles,
            "years": d.years,
            "genre_names": list(d.genre_names),
            "user_ids": d.user_ids,
            "user_info": d.user_info,
            "source": d.source,
        }
        (path / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        self._folder = path

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Recommender:
        """A saved recommender (written by `train`/`save`); the torch weights load on first use."""
        np = require("numpy", extra="hf")
        path = Path(folder)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{path}: no trained recommender here (meta.json missing): "
                f"run `yulian app recommend train --out {path}`"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        arrays = np.load(path / "data.npz")
        ratings = Ratings(arrays["user"], arrays["item"], arrays["rating"], arrays["ts"], meta["n_users"],
                          meta["n_items"])  # fmt: skip
        data = Dataset(
            ratings=ratings,
            item_ids=meta["item_ids"],
            titles=meta["titles"],
            years=meta["years"],
            genres=arrays["genres"],
            genre_names=tuple(meta["genre_names"]),
            user_ids=meta["user_ids"],
            user_features=arrays["user_features"],
            user_info=meta["user_info"],
            source=meta.get("source", ""),
        )
        cfg = RecommendConfig(tower=TwoTowerConfig(**meta["tower"]), window_days=meta["window_days"], k=meta["k"])
        weights = tuple(float(meta["weights"][name]) for name in FEATURES)
        keep = {k: meta[k] for k in ("encoder", "epochs", "validation", "seconds") if k in meta}
        return cls(data, np.load(path / "items.npy"), cfg, weights, folder=path, meta=keep)

    def fitted(self) -> Fitted:
        """The model parts, loading the torch weights on first use."""
        if self._fitted is None:
            torch = require("torch", extra="hf")
            d = self.data
            assert d.user_features is not None
            sizes = [int(d.user_features[:, j].max()) + 1 for j in range(d.user_features.shape[1])]
            model = make_two_tower(self.text, d.ratings.n_users, sizes, self.cfg.tower)
            state = self._state
            if state is None:
                if self._folder is None:
                    raise RuntimeError("this Recommender has neither weights nor a folder to load them from")
                state = torch.load(self._folder / "model.pt", weights_only=True)
            model.load_state_dict(state)
            model.eval()
            behaviour = Behaviour.fit(d.ratings, d.genres, self.cfg.window_days)
            self._fitted = Fitted(model, self.weights, behaviour, int(self.meta.get("epochs", 0)))
        return self._fitted

    def warm_up(self) -> Recommender:
        """Load the weights now (otherwise the first recommendation does)."""
        self.fitted()
        return self

    # ------------------------------------------------------------------------------------------ use
    def invoke(self, input: Any, config: ConfigLike = None) -> list[Recommendation]:
        """Top-k for a user id (int) or {"user": id, "k": n}."""
        if isinstance(input, Mapping):
            if "user" not in input:
                raise ValueError(f"a recommendation request needs a 'user' field, got {sorted(input)}")
            return self.recommend(int(input["user"]), int(input.get("k", 10)))
        return self.recommend(int(input))

    def recommend(self, user_id: int, k: int = 10) -> list[Recommendation]:
        """The k best items the user has not rated, with reasons."""
        np = require("numpy", extra="hf")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        d = self.data
        u = d.user_index(user_id)
        fitted = self.fitted()
        assert d.user_features is not None
        scores, _ = blend_scores(fitted, d.ratings, d.user_features, np.array([u]), self.cfg.tower.history, self._cache)
        row = scores[0].copy()
        row[d.ratings.item[d.ratings.user == u]] = -np.inf
        top = np.argsort(-row, kind="stable")[:k]
        explain = self._explainer(u)
        return [
            Recommendation(d.item_ids[i], d.titles[i], float(row[i]), d.item_genres(int(i)), explain(int(i)))
            for i in top
        ]

    def history(self, user_id: int, limit: int = 0) -> list[dict[str, Any]]:
        """The user's ratings, most recent first: item id, title, rating, time, genres."""
        d = self.data
        u = d.user_index(user_id)
        rows = d.ratings.histories()[u][::-1]
        if limit:
            rows = rows[:limit]
        r = d.ratings
        return [
            {
                "item_id": d.item_ids[int(r.item[j])],
                "title": d.titles[int(r.item[j])],
                "rating": float(r.rating[j]),
                "ts": int(r.ts[j]),
                "genres": d.item_genres(int(r.item[j])),
            }
            for j in rows
        ]

    def users(self) -> list[dict[str, Any]]:
        """Every user: id, a short description and how many ratings they have."""
        np = require("numpy", extra="hf")
        counts = np.bincount(self.data.ratings.user, minlength=self.data.ratings.n_users)
        info = self.data.user_info or [""] * len(self.data.user_ids)
        return [{"id": uid, "info": info[i], "ratings": int(counts[i])} for i, uid in enumerate(self.data.user_ids)]

    def favourite_genres(self, user_id: int, n: int = 3) -> list[tuple[str, float]]:
        """The user's n genres with the highest lift (share of their ratings over the catalogue's share)."""
        np = require("numpy", extra="hf")
        fitted = self.fitted()
        u = self.data.user_index(user_id)
        b = fitted.behaviour
        total = b.user_genre.sum(axis=0)
        own = b.user_genre[u]
        if own.sum() == 0:
            return []
        lift = (own / own.sum()) / np.maximum(total / total.sum(), 1e-12)
        order = [int(g) for g in np.argsort(-lift) if own[g] >= 2 and self.data.genre_names[g] != "unknown"]
        return [(self.data.genre_names[g], float(lift[g])) for g in order[:n]]

    def _explainer(self, u: int) -> Callable[[int], list[str]]:
        np = require("numpy", extra="hf")
        torch = require("torch", extra="hf")
        d, fitted = self.data, self.fitted()
        with torch.no_grad():
            vectors = fitted.model.items().numpy()
        rows = d.ratings.user == u
        items, ratings = d.ratings.item[rows], d.ratings.rating[rows]
        liked_mask = ratings >= 4 if (ratings >= 4).any() else ratings == ratings.max()
        liked, liked_ratings = items[liked_mask], ratings[liked_mask]
        favourites = [name for name, _ in self.favourite_genres(d.user_ids[u])]
        b = fitted.behaviour
        genre_index = {name: j for j, name in enumerate(d.genre_names)}
        if "ref" not in self._cache:
            self._cache["ref"] = last_times(d.ratings)
        recent = b.recent_counts(self._cache["ref"][[u]])[0]
        trending = set(np.argsort(-recent, kind="stable")[:TOP_N].tolist())

        def reasons(i: int) -> list[str]:
            out = []
            if len(liked):
                j = int(np.argmax(vectors[liked] @ vectors[i]))
                out.append(f"because you rated {d.titles[int(liked[j])]} {liked_ratings[j]:g}★")
            shared = [g for g in favourites if g in d.item_genres(i)]
            if shared:
                g = shared[0]
                in_genre = np.flatnonzero(d.genres[:, genre_index[g]])
                top = in_genre[np.argsort(-b.counts[in_genre], kind="stable")[:TOP_N]]
                out.append(f"popular in {g}" if i in set(top.tolist()) else f"you often watch {g}")
            if i in trending and recent[i] > 0:
                out.append(f"trending: {int(recent[i])} ratings in the last {self.cfg.window_days:g} days")
            return out

        return reasons

    def __repr__(self) -> str:
        return f"Recommender(users={self.data.ratings.n_users}, items={self.data.ratings.n_items})"
