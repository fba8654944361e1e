"""Our own tuners on the real MiniLM-L6: trainable share, training-step time and adapter size (issue 5).

Variants, all `AutoModelForSequenceClassification` (2 labels) on the packaged all-MiniLM-L6-v2, wrapped by the
registered yulian methods with their default options:

  full      every parameter trains
  houlsby   `adapter` kind=houlsby, reduction_factor 16 (attention output + FFN output of each layer)
  pfeiffer  `adapter` kind=pfeiffer, reduction_factor 16 (FFN output only)
  prefix    `prefix` num_virtual_tokens 16 (P-tuning v2 key/value prefixes in every layer)
  lora      `lora` with its defaults (reference: peft's own method)

One timed step = forward + backward + AdamW step on random token ids, batch 32 x 64 tokens (no padding), model in
train mode (dropout 0.1 as shipped), bf16 autocast as yulian's Trainer uses on this CPU (`--precision fp32` to
compare in fp32), 2 threads. Steps are interleaved: each round runs `--steps` steps of every variant in turn
(A B C D E A B C D E ...); reported: the median step time over all rounds and its ratio to `full`.

    .venv/bin/python bench/own_tuners.py                 # 5 rounds x 3 steps (~1-2 min)

Writes bench/results/own_tuners.json and bench/BENCHMARKS.own_tuners.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _common import git_state, machine_info  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "own_tuners.json"
MARKDOWN = ROOT / "bench" / "BENCHMARKS.own_tuners.md"
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("full", {}),
    "houlsby": ("adapter", {"kind": "houlsby"}),
    "pfeiffer": ("adapter", {"kind": "pfeiffer"}),
    "prefix": ("prefix", {}),
    "lora": ("lora", {}),
}


def build(name: str, path: str) -> Any:
    from transformers import AutoModelForSequenceClassification

    from yulian.tuning.methods import get_method

    method_name, options = VARIANTS[name]
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    method = get_method(method_name)
    return method, method.apply(model, None, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()

    import torch

    from yulian.models.registry import resolve
    from yulian.tuning.methods import count_parameters

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = str(resolve("minilm-l6").path)
    names = args.variants.split(",")
    models: dict[str, Any] = {}
    optimizers: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        method, model = build(name, path)
        model.train()
        models[name] = model
        params = [p for p in model.parameters() if p.requires_grad]
        optimizers[name] = torch.optim.AdamW(params, lr=1e-4)
        trainable, total = count_parameters(model)
        size = None
        if name != "full":
            with tempfile.TemporaryDirectory() as tmp:
                method.save(model, tmp)
                size = (Path(tmp) / "adapter_model.safetensors").stat().st_size
        rows[name] = {"trainable": trainable, "total": total, "share_pct": 100.0 * trainable / total,
                      "adapter_bytes": size, "times": []}  # fmt: skip
        print(f"{name}: trainable {trainable:,} / {total:,} ({100.0 * trainable / total:.2f}%)", flush=True)

    vocab = models[names[0]].config.vocab_size
    ids = torch.randint(1000, vocab, (args.batch, args.length))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (args.batch,))}
    dtype = torch.bfloat16 if args.precision == "bf16" else None

    def step(name: str) -> float:
        model, optimizer = models[name], optimizers[name]
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = model(**batch).loss
        loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    for name in names:  # warm-up
        step(name)
    for r in range(args.rounds):
        for name in names:
            for _ in range(args.steps):
                rows[name]["times"].append(step(name))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} {statistics.median(rows[n]['times']) * 1e3:.0f} ms" for n in names), flush=True)  # fmt: skip

    full_bytes = sum(p.numel() * p.element_size() for p in models[names[0]].parameters())
    base = statistics.median(rows["full"]["times"]) if "full" in rows else None
    for row in rows.values():
        row["median_ms"] = statistics.median(row["times"]) * 1e3
        row["speedup_vs_full"] = base * 1e3 / row["median_ms"] if base else None
        row["adapter_pct_of_model"] = 100.0 * row["adapter_bytes"] / full_bytes if row["adapter_bytes"] else None
    command = "python bench/own_tuners.py " + " ".join(sys.argv[1:])
    result = {"args": vars(args), "command": command.strip(), "machine": machine_info(), "git": git_state(),
              "variants": rows}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    lines = [
        "## Own tuners on MiniLM-L6 (bottleneck adapters, P-tuning v2 prefixes)",
        "",
        f"Batch {args.batch} x {args.length} tokens, {args.precision}, {args.threads} threads, forward + backward + "
        f"AdamW step, {args.rounds} interleaved rounds x {args.steps} steps; median step time.",
        "",
        "| variant | trainable | share | step (ms) | speed vs full | adapter file | % of model |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        speed = f"{row['speedup_vs_full']:.2f}x" if row["speedup_vs_full"] else "n/a"
        size = f"{row['adapter_bytes'] / 1e3:,.0f} kB" if row["adapter_bytes"] else "-"
        pct = f"{row['adapter_pct_of_model']:.2f}%" if row["adapter_pct_of_model"] else "-"
        lines.append(
            f"| {name} | {row['trainable']:,} | {row['share_pct']:.2f}% | {row['median_ms']:.0f} | {speed} | {size} "
            f"| {pct} |"
        )
    lines += ["", f"Command: `{command.strip()}`", ""]
    MARKDOWN.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
