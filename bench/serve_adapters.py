"""Several LoRA classifiers in one server process: one shared base model vs one merged model each (issue 6).

K LoRA adapters are trained on MiniLM (different SST-2 subsets, a few hundred steps in all), then each variant
runs in a fresh process: "shared" serves them the way `yulian serve` does for adapter sources
(`yulian.serving.adapters`: one base model, adapters switched per batch under a lock), "merged" loads each adapter
merged into its own copy of the base (what a server without adapter sharing holds). Reported: resident memory
added by the K models (RSS after loading minus RSS after importing torch), and throughput of round-robin batches
of 8 SST-2 dev sentences over the K models (a batch per model in turn: the worst case for switching). Predictions
of both variants are compared (they must agree).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_adapters.py --adapters 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _common import git_state, machine_info  # noqa: E402

DATA = Path(os.environ.get("YULIAN_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "bench" / "results" / "serve_adapters.json"
TABLE = ROOT / "bench" / "BENCHMARKS.serve_adapters.md"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _train_adapters(k: int, root: Path) -> list[str]:
    from yulian.models.registry import resolve
    from yulian.tuning.data import read_records
    from yulian.tuning.tasks import TaskConfig, get_task
    from yulian.tuning.trainer import TrainConfig, Trainer

    train = list(read_records(DATA / "glue_sst2" / "train.tsv", text_field="sentence", label_field="label"))
    base = resolve("minilm-l6").path
    folders = []
    for i in range(k):
        out = root / f"lora-{i}"
        config = TrainConfig(epochs=1, batch_size=16, max_steps=25, lr=3e-3, seed=i, method="lora", progress=False)
        task = get_task("classification", TaskConfig(max_length=64))
        Trainer(task, config, out).fit(train[i * 400 : (i + 1) * 400], train[-64:], str(base))
        folders.append(str(out))
        print(f"adapter {i + 1}/{k} trained", flush=True)
    return folders


def child(variant: str, folders: list[str], rounds: int) -> dict[str, Any]:
    import torch

    from yulian.tuning.data import read_records

    torch.set_num_threads(2)
    import peft  # noqa: F401  (imported before the first RSS reading: libraries are not the models' memory)
    import transformers  # noqa: F401

    from yulian.models.hf_tasks import HFClassifier
    from yulian.serving.adapters import AdapterPool, adapter_predictor

    texts = [e.text for e in read_records(DATA / "glue_sst2" / "dev.tsv", text_field="sentence", label_field="label")]
    start = _rss_mb()
    if variant == "shared":
        pool = AdapterPool()
        models: list[Any] = [adapter_predictor(pool, f"m{i}", f) for i, f in enumerate(folders)]
    else:  # the folders are the adapters merged into full models (by the parent)
        models = [HFClassifier(f, dtype="float32") for f in folders]
    for m in models:
        m.warm_up()
    loaded = _rss_mb()
    nets = [m.group.model.model for m in models[:1]] if variant == "shared" else [m._runtime().model for m in models]
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for n in nets for t in n.state_dict().values()
    }
    labels: list[str] = []
    batches = [texts[j : j + 8] for j in range(0, 8 * rounds * len(models), 8)]
    started = time.perf_counter()
    for j, batch in enumerate(batches):
        labels += [p.label for p in models[j % len(models)].batch(batch)]
    seconds = time.perf_counter() - started
    return {
        "variant": variant,
        "models_mb": round(loaded - start, 1),
        "weights_mb": round(sum(storages.values()) / 2**20, 1),
        "items_per_s": round(len(labels) / seconds, 1),
        "labels": labels,
    }


def _spawn(variant: str, folders: list[str], rounds: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, "--rounds", str(rounds), "--folders", *folders]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=12, help="batches of 8 per model per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="A B A B measurements")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folders", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.folders, args.rounds)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        from yulian.tuning.adapters import merge

        folders = _train_adapters(args.adapters, Path(tmp))
        merged = [str(merge(f, Path(tmp) / f"merged-{i}")) for i, f in enumerate(folders)]
        runs: dict[str, list[dict[str, Any]]] = {"shared": [], "merged": []}
        for r in range(args.repeats):
            for variant in ("shared", "merged"):
                got = _spawn(variant, folders if variant == "shared" else merged, args.rounds)
                runs[variant].append(got)
                print(
                    f"round {r + 1} {variant}: RSS +{got['models_mb']} MB, weights {got['weights_mb']} MB, "
                    f"{got['items_per_s']} items/s",
                    flush=True,
                )
    agree = statistics.fmean(
        a == b for a, b in zip(runs["shared"][0]["labels"], runs["merged"][0]["labels"], strict=True)
    )
    summary = {
        v: {
            "models_mb": statistics.median(r["models_mb"] for r in rs),
            "items_per_s": statistics.median(r["items_per_s"] for r in rs),
            "weights_mb": rs[0]["weights_mb"],
        }
        for v, rs in runs.items()
    }
    result = {
        "adapters": args.adapters,
        "summary": summary,
        "memory_ratio": round(summary["merged"]["models_mb"] / max(summary["shared"]["models_mb"], 1e-9), 2),
        "weights_ratio": round(summary["merged"]["weights_mb"] / summary["shared"]["weights_mb"], 2),
        "speed_ratio": round(summary["shared"]["items_per_s"] / summary["merged"]["items_per_s"], 2),
        "label_agreement": agree,
        "machine": machine_info(),
        "git": git_state(),
        "measured": time.strftime("%Y-%m-%d"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    s, m = summary["shared"], summary["merged"]
    TABLE.write_text(
        "## Several LoRA classifiers in one server: a shared base vs a merged model each (issue 6)\n\n"
        f"{args.adapters} LoRA adapters on MiniLM (SST-2), each process loads all of them; round-robin batches of 8 "
        f"SST-2 dev sentences over the models ({args.repeats} A B rounds, medians). `yulian serve` shares the base "
        "for every adapter `source` (`yulian.serving.adapters`).\n\n"
        "| variant | weights held (MB) | RSS added by loading them (MB) | items/s |\n|---|--:|--:|--:|\n"
        f"| shared base (yulian serve) | {s['weights_mb']:.0f} | {s['models_mb']:.0f} | {s['items_per_s']:.0f} |\n"
        f"| one merged model per adapter | {m['weights_mb']:.0f} | {m['models_mb']:.0f} | {m['items_per_s']:.0f} |\n\n"
        f"Weights: merged / shared **{result['weights_ratio']}x**, RSS {result['memory_ratio']}x (resident pages "
        "only: safetensors weights are memory-mapped); "
        f"speed shared / merged {result['speed_ratio']}x (the shared base runs the LoRA matmuls unmerged and "
        "switches adapters per batch; one base also stays warm in the CPU caches); "
        f"label agreement {agree:.3f}.\n\n"
        f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_adapters.py --adapters {args.adapters}`\n",
        encoding="utf-8",
    )
    print(TABLE.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
