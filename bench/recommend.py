"""Recommender accuracy on MovieLens 100K: popularity vs implicit ALS vs our two-tower model (+ behaviour).

Protocol: leave-one-out (each user's last rating by time is the test item; ties broken by file order), full
ranking over every item the user has not rated, HR@10 and NDCG@10 (ties in scores count as random order).
Tuning never sees the test item: ALS hyper-parameters (grid in yulian.apps.recommend.pipeline.ALS_GRID), our
epoch count (early stopping) and blend weights are chosen on a validation split carved from train (each user's
second-to-last rating). ALS is then refitted on all of train; ours keeps the validation-tuned model
(`refit=False`, half the training time) and reads the validation rating as history when scoring: a handicap
for ours if anything. Seeds vary ALS's initialisation and our initialisation + batch order.

    .venv/bin/python bench/recommend.py                   # 3 seeds, writes bench/results/recommend.json
    .venv/bin/python bench/recommend.py --seeds 1 --epochs 2   # quick look

Data: $YULIAN_DATASETS/movielens_100k (default ../shared/datasets/movielens_100k). Item texts are encoded once by
all-MiniLM-L6-v2 (`minilm-l6`) and cached under runs/apps/recommend/cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _common import git_state, machine_info  # noqa: E402

TARGETS = "beat both the popularity baseline and implicit ALS on HR@10 and NDCG@10"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10, help="most epochs (early stopping on validation)")
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--loss", default="full", choices=["full", "inbatch"])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: a loaded 2-core machine slows 2-thread regions)"
    )
    parser.add_argument("--data", default="")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--patience", type=int, default=2, help="epochs without validation gain before stopping")
    parser.add_argument("--ablations", type=int, default=1, help="seeds with ids-only / text-only two-tower rows")
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown from the saved JSON")
    parser.add_argument("--name", default="recommend", help="results name (bench/results/<name>.json)")
    args = parser.parse_args()

    if args.render:
        saved = json.loads((ROOT / "bench" / "results" / f"{args.name}.json").read_text())
        (ROOT / "bench" / f"BENCHMARKS.{args.name}.md").write_text(markdown(saved), encoding="utf-8")
        print(markdown(saved))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from yulian.apps.recommend.data import load_movielens
    from yulian.apps.recommend.model import TwoTowerConfig
    from yulian.apps.recommend.pipeline import RecommendConfig, evaluate_all
    from yulian.apps.recommend.recommender import embed_items

    start = time.perf_counter()
    machine = machine_info()
    data = load_movielens(args.data or None)
    print(f"{len(data.ratings):,} ratings, {data.ratings.n_users} users, {data.ratings.n_items} items", flush=True)
    t = time.perf_counter()
    text = embed_items(data.texts(), args.encoder, ROOT / "runs" / "apps" / "recommend" / "cache")
    encode_s = time.perf_counter() - t
    print(f"item texts encoded (or read from cache) in {encode_s:.1f} s: {text.shape}", flush=True)
    tower = TwoTowerConfig(
        epochs=args.epochs, patience=args.patience, history=args.history, loss=args.loss, threads=args.threads
    )
    cfg = RecommendConfig(tower=replace(tower), refit=False)
    report = evaluate_all(
        data, text, cfg, list(range(args.seeds)), progress=lambda m: print(m, flush=True), ablations=args.ablations
    )
    total = time.perf_counter() - start

    rows = []
    for name, runs in report["results"].items():
        hr = [r["hr"] for r in runs]
        nd = [r["ndcg"] for r in runs]
        sec = [r["seconds"] for r in runs]
        rows.append({
            "method": name, "runs": len(runs),
            "hr_mean": statistics.fmean(hr), "hr_sd": statistics.stdev(hr) if len(hr) > 1 else 0.0,
            "ndcg_mean": statistics.fmean(nd), "ndcg_sd": statistics.stdev(nd) if len(nd) > 1 else 0.0,
            "train_seconds_median": statistics.median(sec),
        })  # fmt: skip
    by = {r["method"]: r for r in rows}
    ours = by["two-tower + behaviour (ours)"]
    ratios = {
        base: {"hr": ours["hr_mean"] / by[base]["hr_mean"], "ndcg": ours["ndcg_mean"] / by[base]["ndcg_mean"]}
        for base in ("popularity", "implicit ALS")
        if base in by
    }
    passed = all(r["hr"] > 1 and r["ndcg"] > 1 for r in ratios.values())
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/recommend.py " + " ".join(sys.argv[1:])
    result = {
        "name": args.name, "command": command.strip(), "machine": machine, "git": git_state(),
        "config": {**vars(args), "tower": cfg.tower.to_dict(), "window_days": cfg.window_days, "refit": cfg.refit},
        "protocol": report["protocol"], "k": report["k"], "rows": rows, "ratios_vs": ratios, "target": TARGETS,
        "target_met": passed, "als_params": report["als_params"], "als_tuning_seconds": report["als_tuning_seconds"],
        "ours_per_seed": report["ours"], "raw": report["results"], "encode_seconds": encode_s,
        "total_seconds": total, "loadavg_end": os.getloadavg(),
    }  # fmt: skip
    out = ROOT / "bench" / "results" / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=1))
    (ROOT / "bench" / f"BENCHMARKS.{args.name}.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    print(f"wrote {out} ({total:.0f} s)")


def markdown(r: dict) -> str:
    k = r["k"]
    lines = [
        f"## Recommender: MovieLens 100K, {r['protocol']} (`{r['name']}`)",
        "",
        f"943 users, 1,682 items; HR@{k} / NDCG@{k}, mean ± sd over {r['config']['seeds']} seeds; training time is the",
        "median per seed on this loaded 2-core machine (ALS grid search on validation: "
        f"{r['als_tuning_seconds']:.0f} s once, chose {r['als_params']}).",
        "",
        f"| method | seeds | HR@{k} | NDCG@{k} | training s |",
        "|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['method']} | {row['runs']} | {row['hr_mean']:.4f} ± {row['hr_sd']:.4f} | {row['ndcg_mean']:.4f} ± "
            f"{row['ndcg_sd']:.4f} | {row['train_seconds_median']:.1f} |"
        )
    lines.append("")
    for base, ratio in r["ratios_vs"].items():
        lines.append(f"- ours / {base}: HR@{k} x{ratio['hr']:.2f}, NDCG@{k} x{ratio['ndcg']:.2f}")
    lines.append(f"- target ({r['target']}): {'met' if r['target_met'] else 'NOT met'}")
    seeds = "; ".join(
        f"seed {s['seed']}: {s['epochs']} epochs, blend " + ", ".join(f"{n}={w:g}" for n, w in s["weights"].items())
        for s in r["ours_per_seed"]
    )
    lines += [
        f"- ours per seed (chosen on validation): {seeds}",
        "- rows: popularity = most-rated first; recent popularity = most rated in the 30 days before the user's",
        "  last training rating; two-tower = MiniLM item-text vectors + item/user ids + user features, history of",
        "  the last items, softmax loss; + behaviour = plus weighted popularity / recent popularity / genre affinity.",
        "- protocol: each user's last rating by time is the test item (ties: file order); every unrated item is a",
        "  candidate (no sampled negatives); tied scores count as random order. Tuning (ALS grid, our epochs and",
        "  blend weights) uses only a validation split carved from train (each user's second-to-last rating).",
        "- ALS outside its grid (a separate check on the same validation split): 16 factors, regularisation 0.001,",
        "  alpha 0.5 or 2, or 30 iterations gave validation NDCG@10 0.0746-0.0839 vs 0.0841 for the grid's choice.",
        "- where the gain comes from: our user tower reads the user's latest items in order (recency slots), which",
        "  ALS cannot; the ids-only / text-only rows (first seed) show what the MiniLM item texts add.",
    ]
    for v in r.get("variants", []):
        lines.append(
            f"- variant, {v['name']}: two-tower HR@{k} {v['two_tower']['hr']:.4f} / NDCG@{k} "
            f"{v['two_tower']['ndcg']:.4f}, + behaviour {v['ours']['hr']:.4f} / {v['ours']['ndcg']:.4f} "
            f"({v['train_seconds']:.0f} s; `{v['command']}`, merged here with --render)"
        )
    lines += ["", f"Command: `{r['command']}` (total {r['total_seconds']:.0f} s).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
