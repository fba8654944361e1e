"""Your own data as CSV files: the same Dataset as the MovieLens layout, and errors that name file, line, column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yulian.apps.recommend.commands import recommend_command
from yulian.apps.recommend.csv_data import load_csv, load_data
from yulian.apps.recommend.synthetic import synthetic
from yulian.cli import main


def _write(tmp_path: Path) -> tuple[Path, Path]:
    data, _ = synthetic()
    r = data.ratings
    ratings = tmp_path / "ratings.csv"
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{data.user_ids[u]},{data.item_ids[i]},{x:g},{t}" for u, i, x, t in
              zip(r.user.tolist(), r.item.tolist(), r.rating.tolist(), r.ts.tolist(), strict=True)]  # fmt: skip
    ratings.write_text("\n".join(lines) + "\n")
    items = tmp_path / "items.csv"
    rows = ["item,title,genres"]
    rows += [f'{iid},"{data.titles[i]}",{"|".join(data.item_genres(i))}' for i, iid in enumerate(data.item_ids)]
    items.write_text("\n".join(rows) + "\n")
    return ratings, items


def test_csv_gives_the_same_dataset(tmp_path: Path) -> None:
    data, _ = synthetic()
    ratings, items = _write(tmp_path)
    loaded = load_csv(ratings, items)
    assert loaded.item_ids == data.item_ids and loaded.user_ids == data.user_ids
    assert loaded.titles == data.titles
    assert np.array_equal(loaded.ratings.item, data.ratings.item)
    assert np.array_equal(loaded.ratings.ts, data.ratings.ts)
    assert loaded.genre_names == ("Action", "Comedy", "Drama", "Horror")
    assert [loaded.item_genres(i) for i in range(3)] == [["Action"]] * 3
    assert load_data(str(ratings), str(items)).titles == data.titles
    no_items = load_csv(ratings)
    assert no_items.titles[0] == "item 1" and no_items.genre_names == ("unknown",)


def test_csv_errors_name_file_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, items = _write(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("usr,item\n1,2\n")
    with pytest.raises(ValueError, match=r"bad\.csv has no column 'user' \(columns: usr, item; .*Did you mean 'usr'\?"):
        load_csv(bad)
    bad.write_text("user,item,rating\n1,2,4\n1,3,five\n")
    with pytest.raises(ValueError, match=r"bad\.csv line 3: field 'rating' must be a number, got 'five'"):
        load_csv(bad)
    bad.write_text("user,item\n1,2\n1,999\n")
    with pytest.raises(ValueError, match=r"bad\.csv: 1 item ids are not in items\.csv \(e\.g\. '999'\)"):
        load_csv(bad, items)
    commands = {"recommend": recommend_command}
    assert main(["recommend", "train", "--data", str(bad), "--items", str(tmp_path / "none.csv")], commands) == 1
    assert "none.csv: no such file" in capsys.readouterr().err
