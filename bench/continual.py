"""Continual learning (issue 10): how much of task A a model keeps after learning task B, with plain sequential
fine-tuning, experience replay and EWC, for MiniLM full fine-tuning and LoRA.

Two pairs, both run through `yulian.tuning.continual.ContinualLearner` exactly as `yulian train --model runs/a` would:
- sentiment (domain-incremental, same labels): A = SST-2 movie-review phrases (a stratified draw of the training
  set per seed; dev = the official dev set, 872), then B = Financial PhraseBank sentences with >= 75% annotator
  agreement, positive/negative only (neutral dropped; positive -> SST-2's 1, negative -> 0; a fixed stratified 25%
  dev split, seed 42, and a draw of the rest per seed).
- banking77 (class-incremental): the 77 intents shuffled with seed 42 and cut in two halves, A = 38 intents, B =
  the other 39; dev = a stratified 10% of train.csv (seed 42, as the data set's README asks), split by half; the
  re-tuned model's head grows from 38 to 77 labels, and A accuracy is over all 77 outputs.

Per pair, method and seed: train A (writing runs/a/replay.jsonl and the Fisher, runs/a/ewc.safetensors: empirical
Fisher on a stratified sample of A's examples), then each variant of B from the A folder, with a fixed number of
epochs and the final model scored (no best-checkpoint pick): A dev accuracy (what is kept) and B dev accuracy (what
is learned). Replay reads A's buffer; EWC reads A's Fisher. Mean over seeds with a 95% interval (t), and the mean
paired difference to plain sequential fine-tuning on the same draws.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/continual.py --pairs sentiment     # ~10 min on 2 free cores
    HF_HUB_OFFLINE=1 .venv/bin/python bench/continual.py --pairs banking77     # ~10 min
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv/bin/python bench/continual.py --smoke --threads 1   # ~3 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _common import ci95, git_state, machine_info  # noqa: E402

DATA = Path(os.environ.get("YULIAN_DATASETS") or ROOT.parent / "shared" / "datasets")
RESULTS = ROOT / "bench" / "results" / "continual.json"
TABLE = ROOT / "bench" / "BENCHMARKS.continual.md"
AFTER_A = "after A (before B)"

VARIANTS: dict[str, dict[str, Any]] = {
    "plain sequential": {},
    "replay 10%": {"replay_ratio": 0.1},
    "replay 100": {"replay_count": 100},
    "EWC λ=1e3": {"ewc": 1e3},
    "EWC λ=1e5": {"ewc": 1e5},
    "EWC λ=1e7": {"ewc": 1e7},
}
METHOD_VARIANTS = {  # LoRA moves few weights far: its Fisher-weighted shift is ~100x full fine-tuning's, so lambda/100
    "full": ["plain sequential", "replay 10%", "replay 100", "EWC λ=1e5", "EWC λ=1e7"],
    "lora": ["plain sequential", "replay 10%", "EWC λ=1e3", "EWC λ=1e5"],
}


@dataclass
class Pair:
    """Two tasks in sequence and how to train them."""

    name: str
    load: Callable[[], dict[str, list[Any]]]  # a_pool, a_dev, b_pool, b_dev
    size_a: int
    size_b: int
    epochs: int
    lr: dict[str, float]  # method -> learning rate
    note: str


def _sentiment() -> dict[str, list[Any]]:
    from yulian.tuning.data import TextExample, read_records, stratified_split

    sst = list(read_records(DATA / "glue_sst2" / "train.tsv", text_field="sentence", label_field="label"))
    dev = list(read_records(DATA / "glue_sst2" / "dev.tsv", text_field="sentence", label_field="label"))
    fpb = read_records(DATA / "financial_phrasebank" / "Sentences_75Agree.txt", delimiter="@", encoding="latin-1")
    mapped = [
        TextExample(e.text, label="1" if e.label == "positive" else "0", line=e.line)
        for e in fpb
        if e.label in ("positive", "negative")
    ]
    split = stratified_split(mapped, 0.25, seed=42)
    return {"a_pool": sst, "a_dev": dev, "b_pool": list(split.train), "b_dev": list(split.dev)}


def _banking77() -> dict[str, list[Any]]:
    from yulian.tuning.data import read_records, stratified_split

    records = list(read_records(DATA / "banking77" / "train.csv", label_field="category"))
    split = stratified_split(records, 0.1, seed=42)
    intents = sorted({e.label for e in records})
    random.Random(42).shuffle(intents)
    first = set(intents[:38])

    def half(examples: list[Any], a: bool) -> list[Any]:
        return [e for e in examples if (e.label in first) == a]

    train, dev = list(split.train), list(split.dev)
    return {
        "a_pool": half(train, True),
        "a_dev": half(dev, True),
        "b_pool": half(train, False),
        "b_dev": half(dev, False),
    }


PAIRS: dict[str, Pair] = {
    "sentiment": Pair(
        "sentiment",
        _sentiment,
        size_a=500,
        size_b=500,
        epochs=3,
        lr={"full": 5e-5, "lora": 3e-3},
        note="A = SST-2 (dev 872), B = Financial PhraseBank 75% agreement, positive/negative (dev 327)",
    ),
    "banking77": Pair(
        "banking77",
        _banking77,
        size_a=760,
        size_b=780,
        epochs=3,
        lr={"full": 1e-4, "lora": 3e-3},
        note="A = 38 Banking77 intents, B = the other 39 (class-incremental; dev: 10% of train.csv, by half)",
    ),
}


def _task() -> Any:
    from yulian.tuning.tasks import TaskConfig, get_task

    return get_task("classification", TaskConfig(max_length=64))


def _config(pair: Pair, method: str, seed: int, args: argparse.Namespace, *, final: bool) -> Any:
    from yulian.tuning.trainer import TrainConfig

    return TrainConfig(
        epochs=args.epochs or pair.epochs,
        batch_size=16,
        lr=pair.lr[method],
        warmup=0.1,
        seed=seed,
        eval_every=10**9,  # one evaluation, of the final model
        method=method,
        threads=args.threads,
        progress=False,
        artifacts=not final,
        save_model=not final,
    )


def _sizes(pair: Pair, args: argparse.Namespace) -> tuple[int, int]:
    return (args.size or pair.size_a, args.size or pair.size_b)


def run_pair(pair: Pair, method: str, seed: int, args: argparse.Namespace, results: dict[str, Any]) -> None:
    from yulian.models.registry import resolve
    from yulian.tuning.continual import ContinualConfig, ContinualLearner, EWCPenalty, EWCState, replay_sample

    rows = results.setdefault("rows", {})
    names = [v for v in METHOD_VARIANTS[method] if not args.only or any(v.startswith(o) for o in args.only)]
    keys = {v: f"{pair.name}|{method}|{v}|{seed}" for v in [AFTER_A, *names]}
    if all(k in rows for k in keys.values()) and not args.force:
        return
    data = _loaded(pair)
    size_a, size_b = _sizes(pair, args)
    a_train = replay_sample(data["a_pool"], size_a, seed=1000 + seed)
    b_train = replay_sample(data["b_pool"], size_b, seed=2000 + seed)
    a_dev, b_dev = data["a_dev"], data["b_dev"]
    if args.dev_cap:
        a_dev, b_dev = replay_sample(a_dev, args.dev_cap, seed=0), replay_sample(b_dev, args.dev_cap, seed=0)
    base = resolve("minilm-l6").path
    with tempfile.TemporaryDirectory() as tmp:
        folder_a = Path(tmp) / "a"
        started = time.perf_counter()
        cc = ContinualConfig(save_fisher=True, ewc_samples=args.ewc_samples, replay_buffer=1000)
        first = ContinualLearner(_task(), _config(pair, method, seed, args, final=False), folder_a, cc)
        result_a = first.fit(a_train, a_dev, base)
        after_a = {
            "old": result_a.metrics["after"]["accuracy"],
            "seconds": round(time.perf_counter() - started, 1),
            "samples_per_second": result_a.metrics["samples_per_second"],
            "fisher_seconds": result_a.metrics["continual"]["saved_fisher"]["seconds"],
        }
        print(
            f"{pair.name} {method} seed {seed}: A {after_a['old']:.4f} ({after_a['seconds']} s, Fisher "
            f"{after_a['fisher_seconds']} s)",
            flush=True,
        )
        state = EWCState.load(folder_a)
        for name in names:
            key = keys[name]
            if key in rows and not args.force:
                continue
            started = time.perf_counter()
            options = {**VARIANTS[name], "replay_buffer": 0, "ewc_samples": args.ewc_samples}
            learner = ContinualLearner(
                _task(), _config(pair, method, seed, args, final=True), Path(tmp) / "b", ContinualConfig(**options)
            )
            result = learner.fit(b_train, b_dev, folder_a)
            trainer = learner.trainer
            assert trainer is not None
            old = learner.task.evaluate(trainer.model, trainer.tokenizer, a_dev)["accuracy"]
            row = {
                "old": old,
                "new": result.metrics["after"]["accuracy"],
                "seconds": round(time.perf_counter() - started, 1),
                "samples_per_second": result.metrics["samples_per_second"],
            }
            if learner.penalty is not None:
                row["penalty_last"] = learner.penalty.last
            if name == "plain sequential":  # B accuracy of the A model, and EWC's scale: 1/2 sum F dw^2 of plain B
                after_a["new"] = result.metrics["before"]["accuracy"]
                row["predicted_old_loss_rise"] = float(EWCPenalty(state, 1.0).penalty(trainer.model).detach())
            rows[key] = row
            print(
                f"{pair.name} {method} seed {seed}: {name:<24} A {old:.4f}  B {row['new']:.4f}  "
                f"({row['seconds']} s, {row['samples_per_second']} samples/s)",
                flush=True,
            )
            _save(results)
        if "new" in after_a or keys[AFTER_A] not in rows:
            rows[keys[AFTER_A]] = {**rows.get(keys[AFTER_A], {}), **after_a}
        _save(results)


_CACHE: dict[str, dict[str, list[Any]]] = {}


def _loaded(pair: Pair) -> dict[str, list[Any]]:
    if pair.name not in _CACHE:
        _CACHE[pair.name] = pair.load()
        sizes = ", ".join(f"{k} {len(v):,}" for k, v in _CACHE[pair.name].items())
        print(f"{pair.name}: {sizes}", flush=True)
    return _CACHE[pair.name]


def _save(results: dict[str, Any]) -> None:
    path = Path(results.get("config", {}).get("results") or RESULTS)
    table = TABLE if path == RESULTS else path.with_suffix(".md")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table.write_text(_table(results), encoding="utf-8")


def _cell(values: list[float]) -> str:
    if not values:
        return ""
    mean, half = ci95(values)
    return f"{mean:.4f} ± {half:.4f}" if not math.isnan(half) else f"{mean:.4f}"


def _delta(rows: dict[str, Any], prefix: str, name: str, field: str) -> str:
    mine = {k.rsplit("|", 1)[1]: v.get(field) for k, v in rows.items() if k.startswith(f"{prefix}|{name}|")}
    plain = {k.rsplit("|", 1)[1]: v.get(field) for k, v in rows.items() if k.startswith(f"{prefix}|plain sequential|")}
    paired = [mine[s] - plain[s] for s in mine if s in plain and mine[s] is not None and plain[s] is not None]
    if not paired or name == "plain sequential":
        return ""
    d, half = ci95(paired)
    if math.isnan(half):
        return f"{d:+.4f}"
    mark = " (better)" if d - half > 0 else " (worse)" if d + half < 0 else ""
    return f"{d:+.4f} ± {half:.4f}{mark}"


def _table(results: dict[str, Any]) -> str:
    config = results.get("config", {})
    smoke = config.get("smoke")
    lines = [
        "## Continual learning: replay and EWC vs plain sequential fine-tuning (issue 10)",
        "",
        "MiniLM (all-MiniLM-L6-v2) trained on task A, then re-tuned on task B from the A folder through "
        "`ContinualLearner` (as `yulian train --model runs/a ...`). A = old task (what is kept), B = new task (what is "
        "learned). Final model after a fixed number of epochs, batch 16, max 64 tokens, bf16 autocast; replay draws "
        "a stratified sample from A's replay buffer (`runs/a/replay.jsonl`), EWC uses A's empirical Fisher "
        f"({config.get('ewc_samples', '?')} A examples, `runs/a/ewc.safetensors`). Mean over seeds with a 95% "
        "interval (t); Δ = mean paired difference to plain sequential on the same draws and seed (on the "
        "'after A' row: what plain sequential forgot, and what B it learned).",
        "",
    ]
    if config.get("dev_cap"):
        lines += [f"Dev sets capped at {config['dev_cap']} examples (a stratified sample).", ""]
    if smoke:
        lines += [
            "**Smoke run only (tiny subsets, one seed): checks that the benchmark works, not a measurement.** "
            "The full commands are below.",
            "",
        ]
    rows = results.get("rows", {})
    for pair in PAIRS.values():
        for method in METHOD_VARIANTS:
            prefix = f"{pair.name}|{method}"
            if not any(k.startswith(prefix + "|") for k in rows):
                continue
            sizes = config.get("sizes", {}).get(pair.name, [pair.size_a, pair.size_b])
            lines += [
                f"### {pair.name}, {method} ({pair.note}; {sizes[0]:,} A and {sizes[1]:,} B training examples, "
                f"{config.get('epochs') or pair.epochs} epochs, lr {pair.lr[method]:g})",
                "",
                "| variant | seeds | A dev accuracy (old) | Δ A vs plain | B dev accuracy (new) | Δ B vs plain | "
                "samples/s |",
                "|---|--:|--:|--:|--:|--:|--:|",
            ]
            for name in [AFTER_A, *METHOD_VARIANTS[method]]:
                found = [v for k, v in rows.items() if k.startswith(f"{prefix}|{name}|")]
                if not found:
                    continue
                old = [v["old"] for v in found if v.get("old") is not None]
                new = [v["new"] for v in found if v.get("new") is not None]
                speed = statistics.median(
                    [v["samples_per_second"] for v in found if v.get("samples_per_second")] or [0]
                )
                lines.append(
                    f"| {name} | {len(found)} | {_cell(old)} | {_delta(rows, prefix, name, 'old')} | {_cell(new)} | "
                    f"{_delta(rows, prefix, name, 'new')} | {speed:.0f} |"
                )
            rise = [
                v["predicted_old_loss_rise"] for k, v in rows.items() if k.startswith(f"{prefix}|plain sequential|")
            ]
            if rise:
                lines += [
                    "",
                    f"EWC's scale: after plain sequential B, 1/2 Σ F (w - w_A)² = {statistics.fmean(rise):.3g} (the "
                    "A-loss rise EWC predicts at λ = 1); λ multiplies it in B's loss.",
                ]
            lines.append("")
    lines += [
        "Commands (2 free cores, ~10 minutes each): `HF_HUB_OFFLINE=1 .venv/bin/python bench/continual.py --pairs "
        "sentiment` and `... --pairs banking77` (rows already measured are kept; `--force` re-runs them).",
    ]
    meta = results.get("meta", {})
    if meta:
        lines += [
            "",
            f"Measured at {(meta.get('git', {}).get('commit') or '?')[:10]} on "
            f"{meta.get('machine', {}).get('cpu_model')}, {config.get('threads')} torch thread(s), "
            f"{meta.get('seconds', '?')} s in all.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--methods", nargs="+", default=list(METHOD_VARIANTS), choices=list(METHOD_VARIANTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=None, help="training examples per task (default: per pair)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per task (default: per pair)")
    parser.add_argument("--ewc-samples", type=int, default=300, help="A examples the Fisher is estimated on")
    parser.add_argument("--dev-cap", type=int, default=None, help="score on at most this many dev examples")
    parser.add_argument("--only", nargs="*", default=None, help="variants whose name starts with these")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--force", action="store_true", help="re-run rows already measured")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one seed: check that it runs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results JSON (a table .md is written beside)")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.size, args.epochs, args.ewc_samples, args.dev_cap = 1, 64, 1, 32, 128
    config = {
        "smoke": args.smoke,
        "epochs": args.epochs,
        "ewc_samples": args.ewc_samples,
        "dev_cap": args.dev_cap,
        "threads": args.threads,
        "sizes": {p.name: list(_sizes(p, args)) for p in PAIRS.values()},
        "results": None if args.results == RESULTS else str(args.results),
    }
    results: dict[str, Any] = json.loads(args.results.read_text()) if args.results.exists() else {}
    if results.get("config") != config:
        if results.get("rows"):
            print("settings changed: starting a fresh results file", flush=True)
        results = {}
    results["config"] = config
    results["meta"] = {"machine": machine_info(), "git": git_state()}
    started = time.perf_counter()
    for name in args.pairs:
        for seed in range(args.seeds):
            for method in args.methods:
                run_pair(PAIRS[name], method, seed, args, results)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    _save(results)
    print(_table(results))


if __name__ == "__main__":
    main()
