"""Training throughput: yulian's `Trainer` against HF `Trainer`, side by side (issue 4, speed section).

Banking77 train (label field `category`) with a fixed stratified dev split (10%, seed 42); MiniLM-L6 full
fine-tuning, batch 32, max_length 64, lr 1e-4, weight decay 0.01, linear schedule without warm-up, gradient
clipping 1.0, seed 42, the same number of optimiser steps (`--steps`) for every variant:

  A  HF Trainer, its documented text-classification recipe: fp32, DataCollatorWithPadding, random batches.
  B  HF Trainer, its best CPU setting: bf16=True, train_sampling_strategy="group_by_length".
  C  yulian Trainer with its defaults (precision "auto" -> bf16 on this CPU, group_by_length).

Each measurement runs in its own child process; the parent runs them one at a time, interleaved
A B C A B C ... over `--rounds`. Timed: the training steps only (model load, tokenisation and evaluation are
excluded). Reported per variant: medians of samples/s, real (unpadded) tokens/s, padded tokens/s, peak RSS of
the child (getrusage), MFU = 6 x non-embedding params x real tokens/s / the bf16 matmul ceiling (measured here,
with the same thread count: a large bf16 and fp32 torch.matmul), and dev accuracy after `--steps` steps (every
child evaluates once after its timed steps; the runs are seeded, so rounds agree up to bf16 rounding).

    .venv/bin/python bench/train_throughput.py                      # 3 rounds x 150 steps, 2 threads (~12 min)
    .venv/bin/python bench/train_throughput.py --steps 20 --rounds 1 --limit 2000   # smoke test (~1 min)

Writes bench/results/train_throughput.json and bench/BENCHMARKS.train.md. Data: $YULIAN_DATASETS, else
../shared/datasets.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _common import git_state, machine_info  # noqa: E402

DATA = Path(os.environ.get("YULIAN_DATASETS") or ROOT.parent / "shared" / "datasets")
TRAIN_CSV = DATA / "banking77" / "train.csv"
RESULTS = ROOT / "bench" / "results" / "train_throughput.json"
MARKDOWN = ROOT / "bench" / "BENCHMARKS.train.md"

VARIANTS = {
    "A": "HF Trainer recipe (fp32, DataCollatorWithPadding, random batches)",
    "B": "HF Trainer best CPU (bf16, group_by_length)",
    "C": "yulian Trainer defaults (auto -> bf16, group_by_length)",
    "D": "yulian Trainer, dropout=0 (a lever, not a target row)",
    "E": "yulian Trainer, torch dropout masks + dense AdamW (fast_dropout=False, lazy_embeddings=False)",
}
BATCH, MAX_LENGTH, LR, SEED, WEIGHT_DECAY = 32, 64, 1e-4, 42, 0.01
TARGETS = {"C/A": 3.0, "C/B": 1.5, "accuracy_pt": 0.5, "mfu": 0.30}


# ------------------------------------------------------------------------------------------------ children
def _load_data(limit: int | None) -> tuple[list[Any], list[Any]]:
    from yulian.tuning.data import TextExample, read_records, stratified_split

    records = read_records(TRAIN_CSV, task="classification", text_field="text", label_field="category")
    examples = records.of(TextExample)
    split = stratified_split(examples, dev_fraction=0.1, seed=SEED)
    train, dev = split.train, split.dev
    if limit:  # smoke tests: a random subset, dev restricted to the labels it has
        import random

        train = random.Random(SEED).sample(train, min(limit, len(train)))
        seen = {t for e in train for t in e.targets}
        dev = [e for e in dev if set(e.targets) <= seen][: max(1, limit // 5)]
    return train, dev


def _non_embedding_params(model: Any) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in f".{name}")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Counter:
    """Counts real and padded tokens of the training batches (not of evaluation, which runs without grad)."""

    def __init__(self) -> None:
        self.real = 0
        self.padded = 0
        self.batches = 0

    def add(self, batch: Any) -> None:
        import torch

        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return
        mask = batch.get("attention_mask")
        ids = batch["input_ids"]
        self.real += int(mask.sum()) if mask is not None else int(ids.numel())
        self.padded += int(ids.numel())
        self.batches += 1


def child_ceiling(threads: int) -> dict[str, Any]:
    """GFLOP/s of a large torch.matmul in bf16 and fp32 (best of several), with `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    out: dict[str, Any] = {"threads": threads}
    for name, dtype, n, reps in (("bf16", torch.bfloat16, 4096, 6), ("fp32", torch.float32, 2048, 6)):
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        torch.matmul(a, b)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - t0)
        out[f"{name}_gflops"] = 2 * n**3 / best / 1e9
        out[f"{name}_n"] = n
    return out


def child_hf(variant: str, steps: int, threads: int, limit: int | None, out_dir: str) -> dict[str, Any]:
    """Variant A or B: HF Trainer on the same features, then dev accuracy with the task's evaluation."""
    import torch
    import transformers

    from yulian.tuning.tasks import TaskConfig, get_task

    torch.set_num_threads(threads)
    train, dev = _load_data(limit)
    task = get_task("classification", TaskConfig(max_length=MAX_LENGTH))
    torch.manual_seed(SEED)
    task.setup(train, "minilm-l6")
    model, tokenizer = task.build_model("minilm-l6")
    features = task.encode(train, tokenizer)
    counter = _Counter()
    pad = transformers.DataCollatorWithPadding(tokenizer)

    def collate(rows: list[dict[str, Any]]) -> Any:
        batch = pad(rows)
        counter.add(batch)
        return batch

    timing: dict[str, float] = {}

    class Timer(transformers.TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timing["t0"] = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == steps:
                timing["t1"] = time.perf_counter()
                timing["real"], timing["padded"], timing["batches"] = counter.real, counter.padded, counter.batches

    best = variant == "B"
    args = transformers.TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=BATCH,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        max_steps=steps,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        seed=SEED,
        bf16=best,
        train_sampling_strategy="group_by_length" if best else "random",
        use_cpu=True,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=features, data_collator=collate, callbacks=[Timer()]
    )
    trainer.train()
    seconds = timing["t1"] - timing["t0"]
    rss = _peak_rss_mb()
    metrics = task.evaluate(model, tokenizer, dev)
    return {
        "variant": variant,
        "seconds": seconds,
        "samples": steps * BATCH,
        "real_tokens": timing["real"],
        "padded_tokens": timing["padded"],
        "batches_counted": timing["batches"],
        "peak_rss_mb": rss,
        "accuracy": metrics["accuracy"],
        "non_embedding_params": _non_embedding_params(model),
        "optimizer": str(args.optim),
        "precision": "bf16" if best else "fp32",
    }


def child_yulian(variant: str, steps: int, threads: int, limit: int | None, out_dir: str) -> dict[str, Any]:
    """Variant C (D: dropout off; E: SFC64 dropout masks and lazy embedding updates off): yulian's Trainer with
    its defaults; timed by its own per-step clock."""
    import torch

    from yulian.tuning.tasks import TaskConfig, get_task
    from yulian.tuning.trainer import TrainConfig, Trainer

    torch.set_num_threads(threads)
    train, dev = _load_data(limit)
    task = get_task("classification", TaskConfig(max_length=MAX_LENGTH))
    counter = _Counter()
    collate = task.collate

    def counting(features: Any, tokenizer: Any) -> Any:
        batch = collate(features, tokenizer)
        counter.add(batch)
        return batch

    task.collate = counting  # type: ignore[method-assign]
    config = TrainConfig(
        epochs=100,
        max_steps=steps,
        batch_size=BATCH,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        seed=SEED,
        eval_every=10**9,  # evaluate once, after the last step
        threads=threads,
        progress=False,
        save_model=False,
        dropout=0.0 if variant == "D" else None,
        fast_dropout=variant != "E",
        lazy_embeddings=variant != "E",
    )
    trainer = Trainer(task, config, out_dir)
    result = trainer.fit(train, dev, "minilm-l6")
    m = result.metrics
    return {
        "variant": variant,
        "seconds": m["train_seconds"],
        "samples": steps * BATCH,
        "real_tokens": counter.real,
        "padded_tokens": counter.padded,
        "batches_counted": counter.batches,
        "peak_rss_mb": _peak_rss_mb(),
        "accuracy": result.evals[-1]["accuracy"],
        "non_embedding_params": _non_embedding_params(trainer.model),
        "optimizer": "adamw (fused)",
        "precision": m["precision"],
    }


def run_child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="yulian-train-bench-") as tmp:
        if args.child == "ceiling":
            out = child_ceiling(args.threads)
        elif args.child in ("C", "D", "E"):
            out = child_yulian(args.child, args.steps, args.threads, args.limit, tmp)
        else:
            out = child_hf(args.child, args.steps, args.threads, args.limit, tmp)
    Path(args.result).write_text(json.dumps(out), encoding="utf-8")


# ------------------------------------------------------------------------------------------------ parent
def spawn(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
    )
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result = fh.name
    cmd = [sys.executable, __file__, "--child", kind, "--result", result, "--steps", str(args.steps)]
    cmd += ["--threads", str(args.threads)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child {kind} failed (exit {proc.returncode})")
    out: dict[str, Any] = json.loads(Path(result).read_text(encoding="utf-8"))
    os.unlink(result)
    out["child_wall_s"] = time.perf_counter() - started
    return out


def summarise(runs: dict[str, list[dict[str, Any]]], ceiling: dict[str, Any]) -> dict[str, Any]:
    bf16 = ceiling["bf16_gflops"] * 1e9
    table: dict[str, Any] = {}
    for v, rows in runs.items():
        if not rows:
            continue
        n = rows[0]["non_embedding_params"]
        sps = [r["samples"] / r["seconds"] for r in rows]
        rtps = [r["real_tokens"] / r["seconds"] for r in rows]
        ptps = [r["padded_tokens"] / r["seconds"] for r in rows]
        real_tps = statistics.median(rtps)
        padded_tps = statistics.median(ptps)
        table[v] = {
            "name": VARIANTS[v],
            "samples_per_s": statistics.median(sps),
            "samples_per_s_all": sps,
            "real_tokens_per_s": real_tps,
            "padded_tokens_per_s": padded_tps,
            "padding_efficiency": rows[0]["real_tokens"] / rows[0]["padded_tokens"],
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rows),
            "accuracy": statistics.median(r["accuracy"] for r in rows),
            "accuracy_all": [r["accuracy"] for r in rows],
            "mfu": 6 * n * real_tps / bf16,
            "mfu_padded": 6 * n * padded_tps / bf16,
            "non_embedding_params": n,
            "precision": rows[0]["precision"],
            "optimizer": rows[0]["optimizer"],
        }
    return table


def _paired_ratios(runs: dict[str, list[dict[str, Any]]], num: str, den: str) -> list[float]:
    return [b["seconds"] / a["seconds"] for a, b in zip(runs[num], runs[den], strict=False)]


def write_markdown(report: dict[str, Any], command: str) -> str:
    t, c = report["table"], report["ceiling"]
    lines = [
        "## Training throughput: yulian Trainer vs HF Trainer (bench/train_throughput.py)",
        "",
        f"Banking77 train ({report['n_train']:,} texts, dev {report['n_dev']:,}: stratified 10%, seed 42), "
        f"MiniLM-L6 full fine-tuning, batch {BATCH}, max_length {MAX_LENGTH}, lr {LR:g}, weight decay "
        f"{WEIGHT_DECAY}, linear schedule, clip 1.0, seed {SEED}; {report['steps']} optimiser steps per "
        f"measurement, {report['rounds']} interleaved rounds (A B C ...), each in its own process, "
        f"{report['threads']} torch threads, OpenMP wait policy "
        f"{report['machine'].get('omp_wait_policy', 'default')}. Medians; timed: the training steps only.",
        "",
        f"CPU: {report['machine']['cpu_model']}. Measured matmul ceiling ({report['threads']} threads): "
        f"bf16 {c['bf16_gflops']:.0f} GFLOP/s (n={c['bf16_n']}), fp32 {c['fp32_gflops']:.0f} GFLOP/s "
        f"(n={c['fp32_n']}). MFU = 6 x {t['C']['non_embedding_params'] / 1e6:.2f}M non-embedding params x "
        "real tokens/s / bf16 ceiling (padded-token MFU in brackets).",
        "",
        "| variant | samples/s | (per round) | real tokens/s | padded tokens/s | padding eff. | peak RSS | MFU | "
        f"dev acc after {report['steps']} steps |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v, row in t.items():
        per_round = ", ".join(f"{x:.0f}" for x in row["samples_per_s_all"])
        lines.append(
            f"| {v}: {row['name']} | {row['samples_per_s']:.1f} | {per_round} | {row['real_tokens_per_s']:,.0f} | "
            f"{row['padded_tokens_per_s']:,.0f} | {row['padding_efficiency']:.0%} | {row['peak_rss_mb']:,.0f} MB | "
            f"{row['mfu']:.1%} ({row['mfu_padded']:.1%}) | {row['accuracy']:.2%} |"
        )
    lines += ["", "| check | target | measured | verdict |", "|---|---|---|---|"]
    for check in report["checks"]:
        lines.append(f"| {check['name']} | {check['target']} | {check['measured']} | {check['verdict']} |")
    lines += ["", "Command:", "", "```bash", command, "```", ""]
    if report.get("notes"):
        lines += [*report["notes"], ""]
    return "\n".join(lines)


def checks(table: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if "C" not in table:
        return out
    c = table["C"]
    for other, target in (("A", TARGETS["C/A"]), ("B", TARGETS["C/B"])):
        if other not in table:
            continue
        r = c["samples_per_s"] / table[other]["samples_per_s"]
        paired = _paired_ratios(runs, "C", other)
        gap = (c["accuracy"] - table[other]["accuracy"]) * 100
        tokens = c["real_tokens_per_s"] / table[other]["real_tokens_per_s"]
        out.append(
            {
                "name": f"speed C/{other}",
                "target": f">= {target:g}x",
                "measured": f"{r:.2f}x (per round {', '.join(f'{p:.2f}' for p in paired)})",
                "verdict": "PASS" if r >= target else f"FAIL (short by {target / r:.2f}x)",
            }
        )
        out.append(
            {
                "name": f"real tokens/s C/{other}",
                "target": "(information: the same work per second, whatever texts the batches drew)",
                "measured": f"{tokens:.2f}x",
                "verdict": "-",
            }
        )
        out.append(
            {
                "name": f"dev accuracy C - {other}",
                "target": f">= -{TARGETS['accuracy_pt']} pt",
                "measured": f"{gap:+.2f} pt",
                "verdict": "PASS" if gap >= -TARGETS["accuracy_pt"] else "FAIL",
            }
        )
    for lever, what in (("D", "dropout off"), ("E", "torch dropout + dense AdamW")):
        if lever not in table:
            continue
        d = table[lever]
        for other in ("C", "B"):
            if other in table:
                r = d["samples_per_s"] / table[other]["samples_per_s"]
                gap = (d["accuracy"] - table[other]["accuracy"]) * 100
                out.append(
                    {
                        "name": f"lever: {what}, {lever}/{other}",
                        "target": "(information)",
                        "measured": f"{r:.2f}x speed, accuracy {gap:+.2f} pt",
                        "verdict": "-",
                    }
                )
    out.append(
        {
            "name": "MFU of C (real tokens)",
            "target": f">= {TARGETS['mfu']:.0%}",
            "measured": f"{c['mfu']:.1%}",
            "verdict": "PASS" if c["mfu"] >= TARGETS["mfu"] else f"FAIL (short by {TARGETS['mfu'] / c['mfu']:.1f}x)",
        }
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps per measurement (default 150)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds A B C (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every child (default 2)")
    parser.add_argument("--variants", default="ABC", help="which variants to run (default ABC)")
    parser.add_argument("--limit", type=int, default=None, help="use only this many training texts (smoke test)")
    parser.add_argument("--no-write", action="store_true", help="print the table but write no result files")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--from-json", help="rewrite the Markdown from a results JSON (no measurement)")
    args = parser.parse_args()
    if args.from_json:
        saved: dict[str, Any] = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        saved["table"] = summarise(saved["runs"], saved["ceiling"])
        saved["checks"] = checks(saved["table"], saved["runs"])
        MARKDOWN.write_text(write_markdown(saved, saved["command"]), encoding="utf-8")
        print(MARKDOWN.read_text(encoding="utf-8"))
        return
    if args.child:
        run_child(args)
        return
    if not TRAIN_CSV.exists():
        raise SystemExit(f"{TRAIN_CSV} not found: set YULIAN_DATASETS to the folder holding banking77/")
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/train_throughput.py " + " ".join(sys.argv[1:])
    started = time.perf_counter()
    print(f"matmul ceiling ({args.threads} threads) ...", flush=True)
    ceiling = spawn("ceiling", args)
    print(f"  bf16 {ceiling['bf16_gflops']:.0f} GFLOP/s, fp32 {ceiling['fp32_gflops']:.0f} GFLOP/s", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        for v in args.variants:
            print(f"round {r + 1}/{args.rounds} {v} ({VARIANTS[v]}) ...", end=" ", flush=True)
            out = spawn(v, args)
            runs[v].append(out)
            print(
                f"{out['samples'] / out['seconds']:.1f} samples/s, {out['real_tokens'] / out['seconds']:,.0f} "
                f"real tok/s, acc {out['accuracy']:.2%}, RSS {out['peak_rss_mb']:,.0f} MB "
                f"(child {out['child_wall_s']:.0f} s; elapsed {time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    table = summarise(runs, ceiling)
    from yulian.tuning.data import TextExample, read_records, stratified_split

    examples = read_records(TRAIN_CSV, task="classification", label_field="category").of(TextExample)
    split = stratified_split(examples, dev_fraction=0.1, seed=SEED)
    report: dict[str, Any] = {
        "benchmark": "train_throughput",
        "steps": args.steps,
        "rounds": args.rounds,
        "threads": args.threads,
        "limit": args.limit,
        "n_train": len(split.train) if not args.limit else args.limit,
        "n_dev": len(split.dev) if not args.limit else max(1, args.limit // 5),
        "machine": machine_info(),
        "git": git_state(),
        "ceiling": ceiling,
        "table": table,
        "runs": runs,
        "targets": TARGETS,
        "total_seconds": time.perf_counter() - started,
        "command": command,
    }
    report["checks"] = checks(table, runs)
    markdown = write_markdown(report, command)
    print()
    print(markdown)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2), encoding="utf-8")
        MARKDOWN.write_text(markdown, encoding="utf-8")
        print(f"wrote {RESULTS.relative_to(ROOT)} and {MARKDOWN.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
