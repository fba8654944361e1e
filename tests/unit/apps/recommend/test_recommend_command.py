"""`yulian app recommend` through the real CLI parser, and the page's router through FastAPI's test client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from yulian.apps.recommend import load_movielens
from yulian.apps.recommend.commands import recommend_command
from yulian.apps.recommend.recommender import embedding_cache_path
from yulian.apps.recommend.synthetic import synthetic, write_movielens
from yulian.cli import main

COMMANDS = {"recommend": recommend_command}


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rec")
    data, text = synthetic()
    folder = write_movielens(data, root / "ml")
    out = root / "model"
    # item vectors already cached for this encoder name: training must use them, not load an encoder (there is
    # no model called "cached-test-encoder"; the integration test runs the real MiniLM path)
    cache = embedding_cache_path(load_movielens(folder).texts(), "cached-test-encoder", out / "cache")
    cache.parent.mkdir(parents=True)
    np.save(cache, text)
    argv = f"recommend train --data {folder} --out {out} --encoder cached-test-encoder --epochs 3 --threads 1"
    code = main(argv.split(), commands=COMMANDS)
    assert code == 0
    return folder, out


def test_train_writes_a_model_and_caches_item_vectors(trained_folder: tuple[Path, Path]) -> None:
    _, out = trained_folder
    assert {"meta.json", "model.pt", "items.npy", "data.npz"} <= {p.name for p in out.iterdir()}
    assert len(list((out / "cache").glob("items-*.npy"))) == 1
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_users"] == 48 and meta["n_items"] == 40
    assert set(meta["weights"]) == {"popularity", "recent", "genre"}


def test_show_prints_top_k_with_reasons(trained_folder: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = trained_folder
    assert main(["recommend", "show", "--out", str(out), "--user", "3", "--k", "4"], commands=COMMANDS) == 0
    text = capsys.readouterr().out
    assert text.startswith("top 4 for user 3")
    assert text.count("  1. ") + text.count("  4. ") == 2
    assert "because you rated Movie" in text
    assert main(["recommend", "show", "--out", str(out), "--user", "3", "--k", "4", "--json-output"],
                commands=COMMANDS) == 0  # fmt: skip
    items = json.loads(capsys.readouterr().out)
    assert len(items) == 4 and all(item["reasons"] for item in items)


def test_errors_are_one_clear_line(trained_folder: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path) -> None:  # fmt: skip
    _, out = trained_folder
    assert main(["recommend", "show", "--out", str(out), "--user", "999"], commands=COMMANDS) == 1
    assert "error: unknown user id 999 (users are 1..48)" in capsys.readouterr().err
    assert main(["recommend", "show", "--out", str(tmp_path), "--user", "1"], commands=COMMANDS) == 1
    assert "no trained recommender here" in capsys.readouterr().err
    assert main(["recommend", "dance"], commands=COMMANDS) == 1
    assert "unknown action 'dance': use one of train, show, evaluate, serve" in capsys.readouterr().err
    assert main(["recommend", "train", "--data", str(tmp_path / "nope")], commands=COMMANDS) == 1
    assert "not a folder" in capsys.readouterr().err


def test_router_serves_page_and_json(trained_folder: tuple[Path, Path]) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from yulian.apps.recommend import Recommender
    from yulian.apps.recommend.web import router

    _, out = trained_folder
    app = FastAPI()
    app.include_router(router(Recommender.load(out)))
    client = TestClient(app)
    page = client.get("/apps/recommend/")
    assert page.status_code == 200 and '<select id="user">' in page.text
    users: list[dict[str, Any]] = client.get("/apps/recommend/api/users").json()
    assert len(users) == 48 and users[0] == {"id": 1, "info": "20 M student", "ratings": 7}
    body = client.get("/apps/recommend/api/users/3?k=5").json()
    assert body["user"] == 3 and len(body["recommendations"]) == 5 and len(body["history"]) == 7
    assert body["genres"][0]["genre"] == "Action"
    assert client.get("/apps/recommend/api/users/999").status_code == 404
    assert client.get("/apps/recommend/api/users/3?k=0").status_code == 422


def test_evaluate_prints_the_comparison(
    trained_folder: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from yulian.apps.recommend import pipeline

    small_grid = {"factors": (8, 16), "regularization": (0.1,), "iterations": (10,), "alpha": (1.0,)}
    monkeypatch.setattr(pipeline, "ALS_GRID", small_grid)  # the 18-point grid is for MovieLens, not 48 users
    folder, out = trained_folder
    argv = (
        f"recommend evaluate --data {folder} --out {out} --encoder cached-test-encoder --epochs 3 --k 5 --json-output"
    )
    assert main(argv.split(), commands=COMMANDS) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["protocol"] == "leave-one-out, full ranking over unseen items" and report["k"] == 5
    results = report["results"]
    assert set(results) == {"popularity", "recent popularity", "implicit ALS", "two-tower (text + ids)",
                            "two-tower + behaviour (ours)"}  # fmt: skip
    assert results["two-tower + behaviour (ours)"][0]["hr"] > results["popularity"][0]["hr"]
    assert report["als_params"]["factors"] in (8, 16)
