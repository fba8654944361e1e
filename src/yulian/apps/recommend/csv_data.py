"""Ratings and items from CSV files (your own data, not MovieLens's file layout).

    ratings.csv   user,item,rating,timestamp        (rating and timestamp optional; header names as below)
    items.csv     item,title,genres                 (genres separated by "|"; optional file)

    data = load_csv("ratings.csv", "items.csv")      # a Dataset, same as load_movielens gives

Accepted header names: user / user_id / userId; item / item_id / itemId / movieId; rating; timestamp / ts / time;
title / name; genres / genre. A missing column is reported with the columns the file has. User and item ids
must be whole numbers.
"""

from __future__ import annotations

import csv
import difflib
import os
from pathlib import Path

from yulian._optional import require
from yulian.apps.recommend.data import Dataset, Ratings

__all__ = ["load_csv", "load_data"]

_ALIASES = {
    "user": ("user", "user_id", "userid"),
    "item": ("item", "item_id", "itemid", "movieid", "movie_id"),
    "rating": ("rating", "score"),
    "timestamp": ("timestamp", "ts", "time"),
    "title": ("title", "name"),
    "genres": ("genres", "genre"),
}


def _column(path: Path, header: list[str], field: str, required: bool) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for alias in _ALIASES[field]:
        if alias in lowered:
            return lowered.index(alias)
    if not required:
        return None
    close = difflib.get_close_matches(field, lowered, n=1)
    hint = f" Did you mean {header[lowered.index(close[0])]!r}?" if close else ""
    raise ValueError(
        f"{path} has no column {field!r} (columns: {', '.join(header)}; also accepted: "
        f"{', '.join(_ALIASES[field][1:])}).{hint}"
    )


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: empty file (expected a header line)")
        return header, [(n, row) for n, row in enumerate(reader, 2) if row]


def _number(path: Path, line: int, field: str, value: str, kind: type) -> float:
    try:
        return float(kind(value))
    except ValueError:
        raise ValueError(f"{path} line {line}: field {field!r} must be a number, got {value!r}") from None


def load_csv(ratings: str | os.PathLike[str], items: str | os.PathLike[str] | None = None) -> Dataset:
    """A Dataset from a ratings CSV (and an items CSV with titles and genres). Without timestamps, the file
    order is the time order; without ratings, every row counts as a rating of 1."""
    np = require("numpy", extra="hf")
    rpath = Path(ratings)
    header, rows = _rows(rpath)
    cu, ci = _column(rpath, header, "user", True), _column(rpath, header, "item", True)
    cr, ct = _column(rpath, header, "rating", False), _column(rpath, header, "timestamp", False)
    assert cu is not None and ci is not None
    raw = []
    for n, row in rows:
        if len(row) != len(header):
            raise ValueError(f"{rpath} line {n}: expected {len(header)} fields, got {len(row)}")
        rating = _number(rpath, n, header[cr], row[cr], float) if cr is not None else 1.0
        ts = int(_number(rpath, n, header[ct], row[ct], int)) if ct is not None else n
        raw.append((row[cu].strip(), row[ci].strip(), rating, ts))
    if not raw:
        raise ValueError(f"{rpath}: no ratings")

    titles: dict[str, str] = {}
    item_genres: dict[str, list[str]] = {}
    if items is not None:
        ipath = Path(items)
        iheader, irows = _rows(ipath)
        ii, it = _column(ipath, iheader, "item", True), _column(ipath, iheader, "title", True)
        ig = _column(ipath, iheader, "genres", False)
        assert ii is not None and it is not None
        for n, row in irows:
            if len(row) != len(iheader):
                raise ValueError(f"{ipath} line {n}: expected {len(iheader)} fields, got {len(row)}")
            key = row[ii].strip()
            titles[key] = row[it].strip()
            item_genres[key] = [g.strip() for g in row[ig].split("|") if g.strip()] if ig is not None else []
        unknown = sorted({r[1] for r in raw} - set(titles))
        if unknown:
            raise ValueError(f"{rpath}: {len(unknown)} item ids are not in {ipath.name} (e.g. {unknown[0]!r})")

    item_keys = list(titles) if titles else sorted({r[1] for r in raw}, key=_natural)
    user_keys = sorted({r[0] for r in raw}, key=_natural)
    item_index = {k: i for i, k in enumerate(item_keys)}
    user_index = {k: i for i, k in enumerate(user_keys)}
    genre_names = sorted({g for gs in item_genres.values() for g in gs}) or ["unknown"]
    genres = np.zeros((len(item_keys), len(genre_names)), dtype=bool)
    for k, gs in item_genres.items():
        for g in gs:
            genres[item_index[k], genre_names.index(g)] = True
    r = Ratings(
        np.array([user_index[x[0]] for x in raw], dtype=np.int64),
        np.array([item_index[x[1]] for x in raw], dtype=np.int64),
        np.array([x[2] for x in raw], dtype=np.float32),
        np.array([x[3] for x in raw], dtype=np.int64),
        len(user_keys),
        len(item_keys),
    )
    return Dataset(
        ratings=r,
        item_ids=[_as_id(k) for k in item_keys],
        titles=[titles.get(k, f"item {k}") for k in item_keys],
        years=[0] * len(item_keys),
        genres=genres,
        genre_names=tuple(genre_names),
        user_ids=[_as_id(k) for k in user_keys],
        user_features=np.zeros((len(user_keys), 1), dtype=np.int64),
        user_info=[""] * len(user_keys),
        source=str(rpath),
    )


def load_data(data: str = "", items: str = "") -> Dataset:
    """A MovieLens 100K folder (default: the shared datasets) or a ratings CSV file (with an optional items CSV)."""
    from yulian.apps.recommend.data import load_movielens

    if data and Path(data).is_file():
        return load_csv(data, items or None)
    if items:
        raise ValueError("--items goes with a ratings CSV file as --data (a MovieLens folder has its own u.item)")
    return load_movielens(data or None)


def _natural(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def _as_id(key: str) -> int:
    if not key.isdigit():
        raise ValueError(f"ids must be whole numbers for now, got {key!r}")
    return int(key)
