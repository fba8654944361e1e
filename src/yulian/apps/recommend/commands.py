"""`yulian app recommend`: train, show recommendations with reasons, evaluate, serve the page.

    $ yulian app recommend train --data ../shared/datasets/movielens_100k --out runs/apps/recommend
    $ yulian app recommend train --data ratings.csv --items items.csv --out models/rec     # your own data
    $ yulian app recommend show --user 42 -k 10            # top-k with reasons (--json for machines)
    $ yulian app recommend evaluate --seeds 1              # HR@10 / NDCG@10 vs popularity and implicit ALS
    $ yulian app recommend serve --port 8000               # the page at /apps/recommend/
    $ yulian app recommend train --serve                   # train, then serve

A plain function: the signature is the command line, the docstring its help (see `yulian.cli`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["ACTIONS", "recommend_command"]

ACTIONS = ("train", "show", "evaluate", "serve")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def recommend_command(
    action: str,
    data: str = "",
    items: str = "",
    out: Path = Path("runs/apps/recommend"),
    user: int = 0,
    k: int = 10,
    epochs: int = 10,
    loss: str = "full",
    seeds: int = 1,
    encoder: str = "minilm-l6",
    threads: int = 1,
    json_output: bool = False,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> int:
    """Text-aware movie recommender: two-tower model over MiniLM item texts + behaviour features (MovieLens 100K).

    Actions: train (tune on a validation split, refit, save to --out), show (top-k for --user with reasons),
    evaluate (leave-one-out test, full ranking: ours vs popularity vs implicit ALS), serve (the page).

    Args:
        action: train, show, evaluate or serve.
        data: a MovieLens 100K folder (u.data, u.item, u.user; default $YULIAN_DATASETS/movielens_100k or
            ../shared/datasets/movielens_100k), or a ratings CSV (columns user,item[,rating][,timestamp]).
        items: with a ratings CSV: an items CSV (columns item,title[,genres] with genres separated by |).
        out: the folder of the trained recommender (written by train, read by show and serve).
        user: the user id to recommend for (show).
        k: how many items to recommend (and the metric cut-off of evaluate).
        epochs: most training epochs (early stopping on the validation split picks the count).
        loss: full (softmax over all items) or inbatch (in-batch negatives with logQ correction).
        seeds: evaluate: how many seeds to average.
        encoder: the text encoder of the item texts (a registered name or model folder).
        threads: torch threads for training.
        json_output: print JSON instead of text.
        serve: after the action, serve the page.
        host: the address to serve on.
        port: the port to serve on.
    """
    from yulian.apps.recommend.model import TwoTowerConfig
    from yulian.apps.recommend.pipeline import RecommendConfig

    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    cfg = RecommendConfig(tower=TwoTowerConfig(epochs=epochs, loss=loss, threads=threads), k=k)
    if action == "train":
        from yulian.apps.recommend.csv_data import load_data
        from yulian.apps.recommend.recommender import Recommender

        dataset = load_data(data, items)
        _say(f"{len(dataset.ratings):,} ratings, {dataset.ratings.n_users} users, {dataset.ratings.n_items} items")
        rec = Recommender.train(dataset, out=out, cfg=cfg, encoder=encoder, progress=_say)
        print(json.dumps({"out": str(out), **rec.meta}) if json_output else f"trained recommender saved to {out}")
    elif action == "evaluate":
        _evaluate(data, items, cfg, seeds, encoder, out, json_output)
    elif action == "show":
        _show(out, user, k, json_output)
    if action == "serve" or serve:
        from yulian.apps.recommend.recommender import Recommender
        from yulian.apps.recommend.web import serve as run_server

        run_server(Recommender.load(out), host=host, port=port)
    return 0


def _show(out: Path, user: int, k: int, json_output: bool) -> None:
    from yulian.apps.recommend.recommender import Recommender

    if not user:
        raise ValueError("show needs --user ID (a user id from the data, e.g. --user 42)")
    rec = Recommender.load(out)
    items = rec.recommend(user, k)
    if json_output:
        print(json.dumps([r.to_dict() for r in items], ensure_ascii=False))
        return
    info = rec.data.user_info[rec.data.user_index(user)] if rec.data.user_info else ""
    print(f"top {k} for user {user}" + (f" ({info})" if info else ""))
    for n, r in enumerate(items, 1):
        print(f"{n:>3}. {r.title}  [{', '.join(r.genres)}]")
        for reason in r.reasons:
            print(f"       - {reason}")


def _evaluate(data: str, items: str, cfg: object, seeds: int, encoder: str, out: Path, json_output: bool) -> None:
    from yulian.apps.recommend.csv_data import load_data
    from yulian.apps.recommend.pipeline import RecommendConfig, evaluate_all
    from yulian.apps.recommend.recommender import embed_items

    assert isinstance(cfg, RecommendConfig)
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    dataset = load_data(data, items)
    text = embed_items(dataset.texts(), encoder, out / "cache")
    report = evaluate_all(dataset, text, cfg, list(range(seeds)), progress=_say)
    if json_output:
        print(json.dumps(report))
        return
    print(f"{report['protocol']}; k={report['k']}")
    print(f"{'method':<32} {'HR@k':>8} {'NDCG@k':>8} {'train s':>8}")
    for name, runs in report["results"].items():
        hr = sum(r["hr"] for r in runs) / len(runs)
        nd = sum(r["ndcg"] for r in runs) / len(runs)
        sec = sum(r["seconds"] for r in runs) / len(runs)
        print(f"{name:<32} {hr:>8.4f} {nd:>8.4f} {sec:>8.1f}")
