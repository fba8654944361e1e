"""Compression: items/s of a fine-tuned classifier in float32 eager torch vs each compressed variant, with the
fidelity gate's numbers for each, side by side in one run.

1. Build every variant with `yulian.compression.compress` (gate on SST-2 dev, `force=True` so refused variants
   are still measured; the table says whether the gate passed them).
2. Throughput: SST-2 dev sentences through `predictor.batch(chunk)` in chunks of 1, 8 and 32 (the predictor's
   batch size set to the chunk size), max_length 64, the same thread count for torch and ONNX Runtime. Rounds
   interleave the variants (rotating the order each round); figures are medians of items/s and of the per-round
   paired ratio to fp32 eager.
3. Embedding fidelity of the packaged all-MiniLM-L6-v2 under int8 per-channel vs per-tensor (cosine to float32 on
   the SST-2 dev sentences).

Target (issue 6): ORT int8 >= 3x fp32 at batch 32 with an accuracy drop <= 0.5 pt on SST-2 dev.

    .venv/bin/python bench/compress.py --model /tmp/runs/sst2                 # ~5-8 minutes on 2 cores
    .venv/bin/python bench/compress.py --model /tmp/runs/sst2 --rounds 3 --methods onnx-int8 bf16
    .venv/bin/python bench/compress.py --report-only

The model is a `yulian train` output fine-tuned on SST-2, e.g. `yulian train --task classification --model
minilm-l6 --train $D/glue_sst2/train.tsv --eval $D/glue_sst2/dev.tsv --text-field sentence --out /tmp/sst2
--epochs 1 --batch-size 32 --lr 5e-5 --max-length 64 --threads 2 --max-steps 800`.
Data: $YULIAN_DATASETS or ../shared/datasets (read in place). Writes bench/results/compress.json and
bench/BENCHMARKS.compress.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "src"))

from _common import git_state, machine_info  # noqa: E402

RESULTS = BENCH / "results" / "compress.json"
MARKDOWN = BENCH / "BENCHMARKS.compress.md"

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "onnx": ("onnx", {}),
    "onnx-int8": ("onnx-int8", {}),
    "onnx-int8-per-tensor": ("onnx-int8-per-tensor", {}),
    "bf16": ("bf16", {}),
    "torch-int8": ("torch-int8", {}),
    "prune-magnitude": ("prune-magnitude", {"amount": 0.3}),
    "prune-heads-int8": ("prune-heads", {"heads": 0.25, "int8": True, "calibration": "TRAIN"}),
    "prune-heads-recovered-int8": (
        "prune-heads",
        {"heads": 0.25, "int8": True, "calibration": "TRAIN", "recover_train": "TRAIN", "recover_steps": 150},
    ),
}
DEFAULT = [name for name in VARIANTS if name != "prune-heads-recovered-int8"]  # recovery adds ~2 minutes: opt-in


def datasets() -> Path:
    return Path(os.environ.get("YULIAN_DATASETS") or ROOT.parent / "shared" / "datasets")


def sentences(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return [row["sentence"].strip() for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build(args: argparse.Namespace, dev: Path) -> dict[str, Any]:
    from yulian.compression import Thresholds, compress

    built: dict[str, Any] = {}
    for name in args.methods:
        method, options = VARIANTS[name]
        train = str(datasets() / "glue_sst2" / "train.tsv")  # heads are ranked / recovered on train, never on dev
        options = {k: train if v == "TRAIN" else v for k, v in options.items()}
        out = Path(args.work) / name
        if args.reuse and (out / "compression.json").is_file():  # measure artefacts built by an earlier run
            from yulian.compression import read_info

            info = read_info(out)
            built[name] = {
                "method": method,
                "options": options,
                "path": str(out),
                "build_seconds": None,
                "sizes": info.sizes,
                "passed": info.passed,
                "fidelity": info.fidelity,
            }
            log(f"reusing {out}")
            continue
        log(f"building {name}")
        start = time.perf_counter()
        try:
            result = compress(
                args.model,
                method,
                dev,
                out,
                thresholds=Thresholds(max_drop=args.max_drop),
                threads=args.threads,
                force=True,
                progress=False,
                **options,
            )
        except Exception as e:  # one broken variant must not sink the whole run
            log(f"  {name}: FAILED ({type(e).__name__}: {e})")
            continue
        seconds = time.perf_counter() - start
        report = result.report
        built[name] = {
            "method": method,
            "options": options,
            "path": str(out),
            "build_seconds": round(seconds, 1),
            "sizes": result.info.sizes,
            "passed": report.passed,
            "fidelity": report.to_dict(),
        }
        log(f"  {name}: {report.format().splitlines()[1].strip()}; agreement {report.agreement:.4f}; {seconds:.0f} s")
    return built


def throughput(args: argparse.Namespace, texts: list[str], built: dict[str, Any]) -> dict[str, Any]:
    import torch

    from yulian.compression import load_artifact
    from yulian.models import HFClassifier

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    for size in args.batch_sizes:
        count = {1: args.items_b1}.get(size, args.items)
        chunk_texts = [texts[i % len(texts)] for i in range(count)]
        chunks = [chunk_texts[i : i + size] for i in range(0, count, size)]
        predictors: dict[str, Any] = {
            "fp32": HFClassifier(args.model, dtype="float32", max_length=64, batch_size=size).warm_up()
        }
        for name, info in built.items():
            predictors[name] = load_artifact(
                info["path"], allow_refused=True, max_length=64, batch_size=size, threads=args.threads
            ).warm_up()
        for p in predictors.values():  # warm-up pass: allocator, ORT arenas, caches
            for chunk in chunks[:3]:
                p.batch(chunk)
        rates: dict[str, list[float]] = {name: [] for name in predictors}
        ratios: dict[str, list[float]] = {name: [] for name in predictors}
        names = list(predictors)
        loads: list[float] = []
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            this_round: dict[str, float] = {}
            for name in order:
                start = time.perf_counter()
                for chunk in chunks:
                    predictors[name].batch(chunk)
                this_round[name] = count / (time.perf_counter() - start)
                rates[name].append(this_round[name])
            for name in names:
                ratios[name].append(this_round[name] / this_round["fp32"])
            loads.append(round(os.getloadavg()[0], 2))
            log(
                f"batch {size} round {r + 1} (load {loads[-1]}): "
                + ", ".join(f"{n} {v:.0f}/s" for n, v in this_round.items())
            )
        results[str(size)] = {"load_per_round": loads} | {
            name: {
                "items_per_s": round(statistics.median(rates[name]), 1),
                "ratio_to_fp32": round(statistics.median(ratios[name]), 2),
                "rounds": [round(v, 1) for v in rates[name]],
            }
            for name in names
        }
    return results


def embeddings(args: argparse.Namespace, dev_texts: Path) -> dict[str, Any]:
    from yulian.compression import Thresholds, compress

    out: dict[str, Any] = {}
    for method in ("onnx-int8", "onnx-int8-per-tensor"):
        log(f"embedding fidelity: minilm-l6 {method}")
        result = compress(
            "minilm-l6",
            method,
            dev_texts,
            Path(args.work) / f"minilm-{method}",
            thresholds=Thresholds(),
            text_field="sentence",
            force=True,
            progress=False,
            threads=args.threads,
        )
        r = result.report
        out[method] = {
            "cosine_mean": r.cosine_mean,
            "cosine_min": r.cosine_min,
            "passed": r.passed,
            "sizes": result.info.sizes,
        }
    return out


def markdown(data: dict[str, Any]) -> str:
    built, speed = data["variants"], data["throughput"]
    sizes = [s for s in ("1", "8", "32") if s in speed]
    base = data["fp32"]
    lines = [
        "## Compression: fine-tuned MiniLM on SST-2, float32 eager vs compressed artefacts",
        "",
        f"Model `{data['model']}` (all-MiniLM-L6-v2 fine-tuned on SST-2); gate on SST-2 dev ({base['examples']} "
        f"examples), max_length 64, {data['threads']} threads for torch and ONNX Runtime, {data['rounds']} interleaved"
        " rounds; items/s are medians, ratios the median of per-round paired ratios to fp32 eager.",
        f"Measured {data['date']} on {data['machine']['cpu_model']} ({data['machine']['cpus']} cores, shared; load "
        f"{data['machine']['loadavg_start'][0]:.1f} at start).",
        "",
        "| variant | size MB | accuracy | drop (pt) | agreement | max prob change | gate | "
        + " | ".join(f"items/s b{s} (x fp32)" for s in sizes)
        + " |",
        "|---|---:|---:|---:|---:|---:|---|" + "---:|" * len(sizes),
    ]
    row = [
        "fp32 eager (torch)",
        f"{base['bytes'] / 1e6:.1f}",
        f"{base['accuracy']:.4f}",
        "-",
        "-",
        "-",
        "-",
    ]
    row += [f"{speed[s]['fp32']['items_per_s']:,.0f} (1.00x)" for s in sizes]
    lines.append("| " + " | ".join(row) + " |")
    for name, info in built.items():
        f = info["fidelity"]
        row = [
            name,
            f"{info['sizes']['artifact_bytes'] / 1e6:.1f}",
            f"{f['compressed']['accuracy']:.4f}",
            f"{f['drop']:+.2f}",
            f"{f['agreement']:.4f}",
            f"{f['max_prob_diff']:.4f}" if f.get("max_prob_diff") is not None else "-",
            "pass" if info["passed"] else "**refused**",
        ]
        row += [f"{speed[s][name]['items_per_s']:,.0f} ({speed[s][name]['ratio_to_fp32']:.2f}x)" for s in sizes]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Variants: `onnx` ONNX Runtime float32; `onnx-int8` ORT dynamic int8, per-channel weights (matmuls and the "
        "embedding table); `onnx-int8-per-tensor` the same with one scale per matrix; `bf16` bfloat16 weights in "
        "torch; `torch-int8` torch dynamic int8 Linear layers; `prune-magnitude` 30% smallest weights zeroed per "
        "layer (float32 torch); `prune-heads-int8` 25% of attention heads removed by gradient importance (ranked on "
        "256 SST-2 train sentences), exported to ORT int8; `prune-heads-recovered-int8` the same plus 150 steps of "
        "recovery fine-tuning on SST-2 train (best step picked on held-out train examples, never on dev). Accuracy "
        "is on the full SST-2 dev set; drop = fp32 accuracy - variant accuracy in points (negative: higher).",
    ]
    loads = {s: speed[s].get("load_per_round") for s in sizes if speed[s].get("load_per_round")}
    if loads:
        shown = "; ".join(f"b{s}: {', '.join(f'{v:.1f}' for v in v_)}" for s, v_ in loads.items())
        lines += ["", f"1-minute load average after each round ({shown}); 2 cores, so above ~2.5 other work competed."]
    target = built.get("onnx-int8")
    if target and "32" in speed:
        r = speed["32"]["onnx-int8"]["ratio_to_fp32"]
        drop = target["fidelity"]["drop"]
        verdict = "met" if r >= 3 and drop <= 0.5 else "not met"
        lines += [
            "",
            f"Target ORT int8 >= 3x fp32 at batch 32 with drop <= 0.5 pt: **{verdict}** ({r:.2f}x, {drop:+.2f} pt).",
        ]
    emb = data.get("embeddings") or {}
    if emb:
        lines += [
            "",
            "Embedding fidelity, packaged all-MiniLM-L6-v2 (cosine to float32 over the SST-2 dev sentences):",
            "",
            "| quantisation | cosine mean | cosine min | gate (mean >= 0.99, min >= 0.9) |",
            "|---|---:|---:|---|",
        ]
        for method, e in emb.items():
            lines.append(
                f"| {method} | {e['cosine_mean']:.5f} | {e['cosine_min']:.5f} | "
                f"{'pass' if e['passed'] else 'refused'} |"
            )
    if data.get("notes"):
        lines += ["", f"Note: {data['notes']}"]
    lines += ["", "Command:", "", "    " + data["command"]]
    if data.get("command_batch1"):
        lines += ["", "    " + data["command_batch1"]]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="/tmp/runs/sst2", help="fine-tuned SST-2 classifier folder")
    parser.add_argument("--methods", nargs="+", default=DEFAULT, choices=list(VARIANTS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=512, help="sentences per measurement at batch 8 and 32")
    parser.add_argument("--items-b1", type=int, default=96, help="sentences per measurement at batch 1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--work", default="/tmp/yulian-compress-bench", help="where the artefacts are written")
    parser.add_argument("--reuse", action="store_true", help="measure artefacts already in --work (no rebuild)")
    parser.add_argument("--no-embeddings", action="store_true", help="skip the MiniLM embedding-fidelity part")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.report_only:
        MARKDOWN.write_text(markdown(json.loads(RESULTS.read_text())), encoding="utf-8")
        print(MARKDOWN.read_text())
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    dev = datasets() / "glue_sst2" / "dev.tsv"
    texts = sentences(dev)
    machine = machine_info()
    started = time.perf_counter()
    built = build(args, dev)
    from yulian.compression.artifacts import folder_size

    any_report = next(iter(built.values()))["fidelity"]
    fp32 = {
        "bytes": folder_size(args.model),
        "accuracy": any_report["original"]["accuracy"],
        "examples": any_report["examples"],
    }
    speed = throughput(args, texts, built)
    emb = {} if args.no_embeddings else embeddings(args, dev)
    data = {
        "benchmark": "compress",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": args.model,
        "threads": args.threads,
        "rounds": args.rounds,
        "batch_sizes": args.batch_sizes,
        "fp32": fp32,
        "variants": built,
        "throughput": speed,
        "embeddings": emb,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
        "git": git_state(),
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/compress.py " + " ".join(sys.argv[1:]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2), encoding="utf-8")
    MARKDOWN.write_text(markdown(data), encoding="utf-8")
    print(MARKDOWN.read_text())
    log(f"done in {data['seconds']:.0f} s: {RESULTS}, {MARKDOWN}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
