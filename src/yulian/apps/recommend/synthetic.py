"""Tiny synthetic MovieLens-format data where the right answer is known: for tests, demos and the page test.

`n_groups` groups of `per_group` items; each item's text vector points at its group's direction (plus noise).
Each user belongs to one group and rates, in time order, items of that group only, so the held-out item is one
of the few unseen items of the user's group: a model that learns from interactions ranks it near the top,
while popularity (the groups are equally popular) cannot tell the groups apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["GENRE_OF_GROUP", "synthetic", "write_movielens"]

GENRE_OF_GROUP = ("Action", "Comedy", "Drama", "Horror")


def synthetic(n_groups: int = 4, per_group: int = 10, users_per_group: int = 12, per_user: int = 7, seed: int = 0
              ) -> tuple[Any, Any]:  # fmt: skip
    """(Dataset, text vectors) with the structure described above."""
    from yulian._optional import require
    from yulian.apps.recommend.data import GENRES, Dataset, Ratings

    np = require("numpy", extra="hf")

    rng = np.random.default_rng(seed)
    n_items = n_groups * per_group
    rows = []
    t0 = 880_000_000
    for g in range(n_groups):
        for j in range(users_per_group):
            u = g * users_per_group + j
            items = rng.choice(per_group, size=per_user, replace=False) + g * per_group
            for n, i in enumerate(items):
                rows.append((u, int(i), float(rng.integers(3, 6)), t0 + u * 1000 + n * 60))
    arr = np.array(rows)
    ratings = Ratings(arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2].astype(np.float32),
                      arr[:, 3].astype(np.int64), n_groups * users_per_group, n_items)  # fmt: skip
    genres = np.zeros((n_items, len(GENRES)), dtype=bool)
    for i in range(n_items):
        genres[i, GENRES.index(GENRE_OF_GROUP[i // per_group % len(GENRE_OF_GROUP)])] = True
    dim = 16
    centers = rng.normal(size=(n_groups, dim))
    text = centers[np.arange(n_items) // per_group] + 0.3 * rng.normal(size=(n_items, dim))
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    data = Dataset(
        ratings=ratings,
        item_ids=list(range(1, n_items + 1)),
        titles=[f"Movie {i + 1} ({1990 + i % 8})" for i in range(n_items)],
        years=[1990 + i % 8 for i in range(n_items)],
        genres=genres,
        user_ids=list(range(1, ratings.n_users + 1)),
        user_features=np.ones((ratings.n_users, 3), dtype=np.int64),
        user_info=[f"{20 + u % 30} M student" for u in range(ratings.n_users)],
        source="synthetic",
    )
    return data, text


def write_movielens(data: Any, folder: Path) -> Path:
    """Write a Dataset as MovieLens 100K files (u.data, u.item, u.user) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    r = data.ratings
    lines = [f"{data.user_ids[u]}\t{data.item_ids[i]}\t{int(x)}\t{t}" for u, i, x, t in
             zip(r.user.tolist(), r.item.tolist(), r.rating.tolist(), r.ts.tolist(), strict=True)]  # fmt: skip
    (folder / "u.data").write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = []
    for i, iid in enumerate(data.item_ids):
        flags = "|".join("1" if f else "0" for f in data.genres[i])
        items.append(f"{iid}|{data.titles[i]}|01-Jan-{data.years[i]}||http://example.org/{iid}|{flags}")
    (folder / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    users = [f"{uid}|{20 + n % 30}|{'MF'[n % 2]}|student|00000" for n, uid in enumerate(data.user_ids)]
    (folder / "u.user").write_text("\n".join(users) + "\n", encoding="latin-1")
    return folder
