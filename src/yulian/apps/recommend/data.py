"""MovieLens-style interaction data: loading with clear errors, leave-one-out splits, item texts.

    from yulian.apps.recommend.data import load_movielens, leave_one_out
    data = load_movielens("../shared/datasets/movielens_100k")   # u.data + u.item (+ u.user when present)
    split = leave_one_out(data.ratings)                           # last rating per user (by time) held out
    split.train, split.held_items                                 # Ratings without the held rows; one item per user

Users and items are numbered 0..n-1 internally (`Ratings.user`, `Ratings.item`); `Dataset.user_ids` and
`Dataset.item_ids` map back to the ids in the files. Rows with equal timestamps keep their file order, so the
split is deterministic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yulian._optional import require

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "GENRES",
    "Dataset",
    "Ratings",
    "Split",
    "default_data_dir",
    "item_text",
    "leave_one_out",
    "load_movielens",
]

GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""The 19 genre flags of MovieLens 100K's u.item, in file order."""


def _np() -> Any:
    return require("numpy", extra="hf", purpose="the recommender")


def default_data_dir() -> Path:
    """`$YULIAN_DATASETS/movielens_100k`, else `../shared/datasets/movielens_100k` from the working directory."""
    root = os.environ.get("YULIAN_DATASETS")
    return Path(root) / "movielens_100k" if root else Path("../shared/datasets/movielens_100k")


@dataclass
class Ratings:
    """Interactions as parallel arrays (one row per rating), users and items numbered 0..n-1.

    Attributes:
        user: int64 user index per row.
        item: int64 item index per row.
        rating: float32 explicit rating (1-5 for MovieLens).
        ts: int64 unix timestamp per row.
        n_users: number of users (indexes run 0..n_users-1).
        n_items: number of items.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    ts: np.ndarray
    n_users: int
    n_items: int

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, rows: np.ndarray) -> Ratings:
        """The ratings at `rows` (indexes or a boolean mask), same numbering."""
        return Ratings(self.user[rows], self.item[rows], self.rating[rows], self.ts[rows], self.n_users, self.n_items)

    def chronological(self) -> np.ndarray:
        """Row order sorted by (user, timestamp), ties kept in file order (a stable sort)."""
        np = _np()
        return np.lexsort((np.arange(len(self)), self.ts, self.user))  # type: ignore[no-any-return]

    def histories(self) -> list[np.ndarray]:
        """Per user, the row indexes of their ratings in time order."""
        np = _np()
        order = self.chronological()
        bounds = np.searchsorted(self.user[order], np.arange(self.n_users + 1))
        return [order[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]

    def seen(self) -> Any:
        """A scipy-free boolean matrix (n_users, n_items): True where the user has rated the item."""
        np = _np()
        mask = np.zeros((self.n_users, self.n_items), dtype=bool)
        mask[self.user, self.item] = True
        return mask

    def concat(self, other: Ratings) -> Ratings:
        """These rows followed by `other`'s (same numbering)."""
        np = _np()
        return Ratings(
            np.concatenate([self.user, other.user]),
            np.concatenate([self.item, other.item]),
            np.concatenate([self.rating, other.rating]),
            np.concatenate([self.ts, other.ts]),
            self.n_users,
            self.n_items,
        )


@dataclass
class Dataset:
    """Ratings plus what is known about the items and users.

    Attributes:
        ratings: all interactions.
        item_ids: file id of each item index.
        titles: item titles ("Toy Story (1995)").
        years: release year per item (0 when unknown).
        genres: bool matrix (n_items, len(genre_names)).
        genre_names: the genre column names.
        user_ids: file id of each user index.
        user_features: int matrix (n_users, 3): age bucket, gender, occupation index (zeros when unknown).
        user_info: per user a short description ("24 M technician"), "" when unknown.
        source: where the data came from.
    """

    ratings: Ratings
    item_ids: list[int]
    titles: list[str]
    years: list[int]
    genres: np.ndarray
    genre_names: tuple[str, ...] = GENRES
    user_ids: list[int] = field(default_factory=list)
    user_features: np.ndarray | None = None
    user_info: list[str] = field(default_factory=list)
    source: str = ""

    def item_index(self, item_id: int) -> int:
        """The internal index of a file item id (ValueError naming the range when unknown)."""
        try:
            return self.item_ids.index(item_id)
        except ValueError:
            raise ValueError(
                f"unknown item id {item_id} (items are {min(self.item_ids)}..{max(self.item_ids)})"
            ) from None

    def user_index(self, user_id: int) -> int:
        """The internal index of a file user id (ValueError naming the range when unknown)."""
        lookup = {u: i for i, u in enumerate(self.user_ids)}
        if user_id not in lookup:
            raise ValueError(f"unknown user id {user_id} (users are {min(self.user_ids)}..{max(self.user_ids)})")
        return lookup[user_id]

    def texts(self) -> list[str]:
        """One text per item for the encoder: title (with year), then its genres."""
        return [
            item_text(t, y, self.item_genres(i)) for i, (t, y) in enumerate(zip(self.titles, self.years, strict=False))
        ]

    def item_genres(self, index: int) -> list[str]:
        """The genre names of an item index."""
        return [g for g, on in zip(self.genre_names, self.genres[index], strict=False) if on]


def item_text(title: str, year: int, genres: list[str]) -> str:
    """The text the encoder sees for an item: "Toy Story (1995). Genres: Animation, Children's, Comedy"."""
    if year and f"({year})" not in title:
        title = f"{title} ({year})"
    return f"{title}. Genres: {', '.join(g for g in genres if g != 'unknown') or 'unknown'}"


@dataclass
class Split:
    """A leave-one-out split: `train` keeps every rating but each user's held one.

    Attributes:
        train: the remaining ratings.
        held_items: int64 item index held out per user (-1 for users with too few ratings).
        held_ts: timestamp of the held rating per user (0 when none).
    """

    train: Ratings
    held_items: np.ndarray
    held_ts: np.ndarray

    def held(self) -> Ratings:
        """The held-out ratings as rows (users with one), rating set to 0 (unknown to the model)."""
        np = _np()
        users = np.flatnonzero(self.held_items >= 0)
        return Ratings(
            users.astype(np.int64),
            self.held_items[users],
            np.zeros(len(users), dtype=np.float32),
            self.held_ts[users],
            self.train.n_users,
            self.train.n_items,
        )


def leave_one_out(ratings: Ratings, min_history: int = 1) -> Split:
    """Hold out each user's last rating by timestamp (ties: the later row in the file); a user keeps all their
    ratings when they have `min_history` or fewer (nothing would be left to learn from)."""
    np = _np()
    held_items = np.full(ratings.n_users, -1, dtype=np.int64)
    held_ts = np.zeros(ratings.n_users, dtype=np.int64)
    keep = np.ones(len(ratings), dtype=bool)
    for u, rows in enumerate(ratings.histories()):
        if len(rows) <= min_history:
            continue
        last = rows[-1]
        keep[last] = False
        held_items[u] = ratings.item[last]
        held_ts[u] = ratings.ts[last]
    return Split(ratings.take(keep), held_items, held_ts)


# ============================================================================================ loading
def _read_lines(path: Path, encoding: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a MovieLens 100K folder with u.data and u.item)")
    return path.read_text(encoding=encoding).splitlines()


def _int(path: Path, line_no: int, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{path} line {line_no}: field {name!r} must be an integer, got {value!r}") from None


def load_movielens(folder: str | os.PathLike[str] | None = None) -> Dataset:
    """Read a MovieLens 100K folder: u.data (user, item, rating, time; tab-separated), u.item (latin-1,
    `|`-separated, 19 genre flags) and u.user (optional). Bad lines raise ValueError naming file, line and field."""
    np = _np()
    root = Path(folder) if folder else default_data_dir()
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: not a folder (give --data DIR with u.data and u.item, or set YULIAN_DATASETS)"
        )

    item_path = root / "u.item"
    item_ids: list[int] = []
    titles: list[str] = []
    years: list[int] = []
    flags: list[list[bool]] = []
    for n, line in enumerate(_read_lines(item_path, "latin-1"), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 5 + len(GENRES):
            raise ValueError(
                f"{item_path} line {n}: expected {5 + len(GENRES)} '|'-separated fields "
                f"(id|title|release date|video date|url|{len(GENRES)} genre flags), got {len(parts)}"
            )
        item_ids.append(_int(item_path, n, "movie id", parts[0]))
        titles.append(parts[1].strip())
        date = parts[2].strip()
        years.append(int(date[-4:]) if len(date) >= 4 and date[-4:].isdigit() else 0)
        flags.append([p.strip() == "1" for p in parts[5:]])
    if not item_ids:
        raise ValueError(f"{item_path}: no items")
    item_index = {iid: i for i, iid in enumerate(item_ids)}

    data_path = root / "u.data"
    raw: list[tuple[int, int, float, int]] = []
    for n, line in enumerate(_read_lines(data_path, "utf-8"), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 4:
            raise ValueError(
                f"{data_path} line {n}: expected 4 tab-separated fields (user, item, rating, timestamp), "
                f"got {len(parts)}"
            )
        uid = _int(data_path, n, "user id", parts[0])
        iid = _int(data_path, n, "item id", parts[1])
        if iid not in item_index:
            raise ValueError(f"{data_path} line {n}: field 'item id' {iid} is not in {item_path.name}")
        try:
            rating = float(parts[2])
        except ValueError:
            raise ValueError(f"{data_path} line {n}: field 'rating' must be a number, got {parts[2]!r}") from None
        raw.append((uid, iid, rating, _int(data_path, n, "timestamp", parts[3])))
    if not raw:
        raise ValueError(f"{data_path}: no ratings")

    user_ids = sorted({r[0] for r in raw})
    user_index = {uid: i for i, uid in enumerate(user_ids)}
    ratings = Ratings(
        np.array([user_index[r[0]] for r in raw], dtype=np.int64),
        np.array([item_index[r[1]] for r in raw], dtype=np.int64),
        np.array([r[2] for r in raw], dtype=np.float32),
        np.array([r[3] for r in raw], dtype=np.int64),
        len(user_ids),
        len(item_ids),
    )
    features, info = _load_users(root / "u.user", user_index)
    return Dataset(
        ratings=ratings,
        item_ids=item_ids,
        titles=titles,
        years=years,
        genres=np.array(flags, dtype=bool),
        user_ids=user_ids,
        user_features=features,
        user_info=info,
        source=str(root),
    )


AGE_BUCKETS = (18, 25, 35, 45, 50, 56)


def _load_users(path: Path, user_index: dict[int, int]) -> tuple[np.ndarray, list[str]]:
    """User features (age bucket, gender, occupation) from u.user; zeros when the file is absent."""
    np = _np()
    features = np.zeros((len(user_index), 3), dtype=np.int64)
    info = [""] * len(user_index)
    if not path.is_file():
        return features, info
    occupations: dict[str, int] = {}
    for n, line in enumerate(_read_lines(path, "latin-1"), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 4:
            raise ValueError(f"{path} line {n}: expected user id|age|gender|occupation|zip, got {len(parts)} fields")
        uid = _int(path, n, "user id", parts[0])
        if uid not in user_index:
            continue
        age = _int(path, n, "age", parts[1])
        bucket = 1 + sum(age >= a for a in AGE_BUCKETS)
        gender = {"M": 1, "F": 2}.get(parts[2].strip(), 0)
        occupation = occupations.setdefault(parts[3].strip(), len(occupations) + 1)
        features[user_index[uid]] = (bucket, gender, occupation)
        info[user_index[uid]] = f"{age} {parts[2].strip()} {parts[3].strip()}"
    return features, info
