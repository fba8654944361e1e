"""Federated fine-tuning benchmark (issue 7): SST-2 with minilm-l6 + LoRA, 4 clients, Dirichlet(0.5) label skew.

Runs, one after the other in one process, on the same subset and the same dev set:
  A. federated LoRA, FedAvg, Flower simulation (4 virtual clients, 1 local epoch per round, R rounds);
  B. centralised LoRA on the union of the clients' data for R epochs (the same examples seen), same recipe;
  C. A with record-level DP-SGD on every client (Opacus, epsilon ~8 over the whole run, delta 1e-5).
Reports dev accuracy per round/epoch, bytes per round (LoRA as sent vs the full model's parameters as full-model
FedAvg would send them), wall time per round, epsilon per round; checks the issue's targets.

    .venv/bin/python bench/federated.py                       # ~8-10 minutes on 2 shared cores
    .venv/bin/python bench/federated.py --train-size 2000 --rounds 2 --no-dp     # a quick look

Data: $YULIAN_DATASETS (default ../shared/datasets)/glue_sst2: a stratified random subset of train.tsv
(--train-size, seed 42) and the full GLUE dev set (872).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, git_state, machine_info

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_data(train_size: int, seed: int) -> tuple[list[Any], list[Any]]:
    from yulian.tuning.data import stratified_split
    from yulian.tuning.tasks import TaskConfig, get_task

    root = Path(os.environ.get("YULIAN_DATASETS", ROOT.parent / "shared" / "datasets")) / "glue_sst2"
    reader = get_task("classification", TaskConfig(text_field="sentence", label_field="label"))
    train = list(reader.read(str(root / "train.tsv")))
    dev = list(reader.read(str(root / "dev.tsv")))
    if train_size < len(train):
        train = stratified_split(train, dev_fraction=train_size / len(train), seed=seed).dev
    random.Random(seed).shuffle(train)
    return train, dev


def centralised(config: Any, train: list[Any], dev: list[Any], epochs: int, threads: int) -> dict[str, Any]:
    """LoRA on the union with the same recipe, evaluated after every epoch."""
    import tempfile

    from yulian.federated.client import build_task
    from yulian.tuning.trainer import TrainConfig, Trainer

    cfg = TrainConfig(
        epochs=epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        method=config.method,
        method_options=dict(config.method_options),
        seed=config.seed,
        threads=threads,
        progress=False,
        save_model=False,
        artifacts=False,
        warmup=0.0,
        device="cpu",
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(build_task(config), cfg, tmp, task_ready=True)
        result = trainer.fit(train, dev, config.base_model)
    seconds = time.perf_counter() - started
    accs = [float(e["accuracy"]) for e in result.evals]
    initial = result.metrics.get("before", {}).get("accuracy")
    return {
        "initial_accuracy": initial,
        "accuracy_per_epoch": accs,
        "final_accuracy": accs[-1],
        "seconds": round(seconds, 1),
    }


def federated(config: Any, shards: list[list[Any]], dev: list[Any], label: str) -> dict[str, Any]:
    from yulian.federated.simulation import simulate

    started = time.perf_counter()
    run = simulate(config, shards, dev, None, log=lambda m: say(f"{label}: {m}"))
    seconds = time.perf_counter() - started
    rounds = [
        {
            "round": r.round,
            "clients": r.clients,
            "accuracy": r.dev.get("accuracy"),
            "train_loss": r.train_loss,
            "bytes_up": r.bytes_up,
            "bytes_down": r.bytes_down,
            "seconds": r.seconds,
            "epsilon": r.epsilon,
            "dropped": r.dropped,
        }
        for r in run.rounds
    ]
    return {
        "initial_accuracy": run.initial.get("accuracy"),
        "rounds": rounds,
        "final_accuracy": rounds[-1]["accuracy"],
        "seconds": round(seconds, 1),
        "trainable_bytes": run.trainable_bytes,
    }


def full_model_bytes(config: Any) -> int:
    """The payload of full-model FedAvg: every parameter of the model (method full), per client per direction."""
    from dataclasses import replace

    from yulian.federated.apps import to_record
    from yulian.federated.client import GlobalModel

    weights = GlobalModel(replace(config, method="full", method_options={})).weights()
    return int(sum(a.numpy().nbytes for a in to_record(weights).values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--logit-adjust", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--dp", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--dp-epsilon", type=float, default=8.0)
    parser.add_argument("--dp-batch-size", type=int, default=64, help="local batch size of the DP run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--name", default="federated")
    args = parser.parse_args()

    import torch

    from yulian.federated.config import FederatedConfig
    from yulian.federated.partition import dirichlet_partition
    from yulian.models.registry import resolve

    torch.set_num_threads(1)  # the server's evaluation and the centralised run: one thread, as each client has
    t0 = time.perf_counter()
    train, dev = load_data(args.train_size, args.seed)
    shards = dirichlet_partition(train, args.clients, args.alpha, lambda e: e.label, seed=args.seed)
    mix = [{lab: sum(e.label == lab for e in s) for lab in ("0", "1")} for s in shards]
    say(f"{len(train):,} training examples, {len(dev)} dev; clients: {mix}")
    config = FederatedConfig(
        base_model=str(resolve("minilm-l6").path),
        labels=["0", "1"],
        text_field="sentence",
        max_length=64,
        method="lora",
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        min_fit_clients=args.clients,
        min_available_clients=args.clients,
        logit_adjust=args.logit_adjust,
        seed=args.seed,
    )
    results: dict[str, Any] = {
        "train_size": len(train),
        "dev_size": len(dev),
        "clients": args.clients,
        "alpha": args.alpha,
        "rounds": args.rounds,
        "local_epochs": args.local_epochs,
        "logit_adjust": args.logit_adjust,
        "client_sizes": mix,
    }
    say(f"A: federated LoRA, FedAvg{' + client logit adjustment' if args.logit_adjust else ''}")
    results["federated"] = federated(config, shards, dev, "fedavg")
    say("B: centralised LoRA on the union")
    results["centralised"] = centralised(config, train, dev, args.rounds * args.local_epochs, threads=1)
    say(f"B: accuracy per epoch {results['centralised']['accuracy_per_epoch']}")
    if args.dp:
        from dataclasses import replace

        say(f"C: federated LoRA + DP-SGD (epsilon {args.dp_epsilon}, batch {args.dp_batch_size})")
        dp_config = replace(config, dp=True, dp_epsilon=args.dp_epsilon, batch_size=args.dp_batch_size)
        results["federated_dp"] = federated(dp_config, shards, dev, "dp")
        results["dp_batch_size"] = args.dp_batch_size
    full = full_model_bytes(config)
    lora = results["federated"]["trainable_bytes"]
    fed_rounds = results["federated"]["rounds"]
    per_round_lora = statistics.median(r["bytes_up"] + r["bytes_down"] for r in fed_rounds)
    per_round_full = 2 * full * args.clients
    results["bytes"] = {
        "lora_per_client_per_direction": lora,
        "full_per_client_per_direction": full,
        "lora_per_round": per_round_lora,
        "full_per_round": per_round_full,
        "ratio": per_round_lora / per_round_full,
    }
    gap = (results["centralised"]["final_accuracy"] - results["federated"]["final_accuracy"]) * 100
    targets = {
        "bytes_ratio_le_1pct": results["bytes"]["ratio"] <= 0.01,
        "accuracy_gap_pt": round(gap, 2),
        "accuracy_within_1_5pt": gap <= 1.5,
    }
    if args.dp:
        dp = results["federated_dp"]
        targets["dp_accuracy_cost_pt"] = round((results["federated"]["final_accuracy"] - dp["final_accuracy"]) * 100, 2)
        targets["dp_final_epsilon"] = dp["rounds"][-1]["epsilon"]
    results["targets"] = targets
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"] = machine_info()
    results["git"] = git_state()
    results["command"] = "HF_HUB_OFFLINE=1 .venv/bin/python bench/federated.py " + " ".join(sys.argv[1:])
    out = ROOT / "bench" / "results" / f"{args.name}.json"
    out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    md = ROOT / "bench" / f"BENCHMARKS.{args.name}.md"
    md.write_text(markdown(results), encoding="utf-8")
    say(f"wrote {out} and {md} in {results['seconds']:.0f} s")
    print(json.dumps(targets))
    return 0


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def markdown(r: dict[str, Any]) -> str:
    fed, cen = r["federated"], r["centralised"]
    dp = r.get("federated_dp")
    lines = [
        "## Federated fine-tuning (bench/federated.py)",
        "",
        f"Command: `{r['command']}`  ",
        f"Data: GLUE SST-2, a stratified random subset of {r['train_size']:,} training sentences (seed 42), split "
        f"among {r['clients']} clients by Dirichlet({r['alpha']}) label skew (label counts per client "
        f"{r['client_sizes']}); dev: the full GLUE dev set ({r['dev_size']}). Model minilm-l6 + LoRA (yulian's "
        f"defaults: r 8 on query/value, lr 3e-3; batch 16, max 64 tokens); {r['local_epochs']} local epoch per round; "
        + (
            "clients train with logit adjustment (FederatedConfig.logit_adjust: log of their own label frequencies "
            "added to the training logits); "
            if r.get("logit_adjust")
            else ""
        )
        + "Flower 1.42 simulation (Ray), 1 CPU and 1 torch thread per client, 2 cores shared with other engineers.",
        "",
        "Dev accuracy after each round (federated) or epoch (centralised on the union: the same examples seen):",
        "",
        "| round | federated FedAvg | centralised | "
        + ("federated + DP | epsilon | " if dp else "")
        + "LoRA bytes (up+down) | wall s |",
        "|--:|--:|--:|" + ("--:|--:|" if dp else "") + "--:|--:|",
    ]
    lines.append(
        f"| 0 | {_pct(fed['initial_accuracy'])} | {_pct(cen.get('initial_accuracy'))} | "
        + (f"{_pct(dp['initial_accuracy'])} | 0 | " if dp else "")
        + "- | - |"
    )
    for i, row in enumerate(fed["rounds"]):
        acc_c = cen["accuracy_per_epoch"][i] if i < len(cen["accuracy_per_epoch"]) else None
        cells = [str(row["round"]), _pct(row["accuracy"]), _pct(acc_c)]
        if dp:
            drow = dp["rounds"][i]
            cells += [_pct(drow["accuracy"]), f"{drow['epsilon']:.2f}" if drow["epsilon"] is not None else "-"]
        cells += [f"{row['bytes_up'] + row['bytes_down']:,}", f"{row['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    b, t = r["bytes"], r["targets"]
    lines += [
        "",
        f"Wall time: federated {fed['seconds']} s (first round includes starting Ray and the client actors), "
        f"centralised {cen['seconds']} s" + (f", federated + DP {dp['seconds']} s" if dp else "") + ".",
        "",
        "| target | measured | verdict |",
        "|---|--:|---|",
        f"| LoRA bytes per round <= 1% of full-model FedAvg | {b['lora_per_round']:,.0f} B vs {b['full_per_round']:,} B"
        f" = {100 * b['ratio']:.2f}% | {'PASS' if t['bytes_ratio_le_1pct'] else 'FAIL'} |",
        f"| final federated accuracy within 1.5 pt of centralised | {_pct(fed['final_accuracy'])} vs "
        f"{_pct(cen['final_accuracy'])} ({t['accuracy_gap_pt']:+.2f} pt gap) | "
        f"{'PASS' if t['accuracy_within_1_5pt'] else 'FAIL'} |",
    ]
    if dp:
        lines.append(
            f"| DP (epsilon ~8, batch {r.get('dp_batch_size', 16)}) accuracy cost: report | "
            f"{_pct(dp['final_accuracy'])} with DP, "
            f"{t['dp_accuracy_cost_pt']:+.2f} pt vs no DP, final epsilon {t['dp_final_epsilon']} (delta 1e-5) | "
            "reported |"
        )
    lines += [
        "",
        f"Bytes: one client's LoRA + head payload is {b['lora_per_client_per_direction']:,} B per direction; "
        f"full-model FedAvg would send all parameters, {b['full_per_client_per_direction']:,} B (measured as the "
        "ArrayRecord of the model's parameters, method full; the full-model run itself is not trained here). "
        "Per round = clients x (down + up).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
