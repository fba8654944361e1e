"""Generation throughput: yulian's `HFChatModel` against plain transformers `generate`, on SmolLM2-135M-Instruct.

Measured side by side in one process, in interleaved rounds (the order of the implementations rotates each round),
wall-clock time, greedy decoding. The prompts are real customer messages from BANKING77 (`banking77/train.csv`
under the shared datasets folder, `$YULIAN_DATASETS` to override), each sent as a user message after a short
system prompt through the model's chat template.

Fixed-length runs (every stream generates exactly `--tokens` new tokens: end-of-sequence suppressed on both sides)
compare raw decoding speed:

- 1 stream: `generate` on float32 weights (what `from_pretrained` gives), `generate` on bf16 weights, yulian
  `invoke` and yulian `stream` (dtype "auto").
- 8 streams: `generate` once per request, batch 1, float32 (**the baseline of the target**: what a transformers
  user serving 8 requests writes), `generate` on a left-padded batch of 8 in float32 and in bf16 (for honesty:
  plain transformers with the same levers), and yulian `batch` of the 8 conversations.

A natural-length run (up to `--natural-tokens` tokens, stopping at end-of-sequence) counts useful tokens/s of
batched `generate` bf16 against yulian `batch`, where finished sequences leave yulian's batch early.

Run from the repository root:   .venv/bin/python bench/generate.py            (about 5-8 minutes)
                                .venv/bin/python bench/generate.py --quick    (one round, fewer tokens)
Writes bench/results/generate.json and bench/BENCHMARKS.generate.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
NAME = "generate"
SYSTEM = "You are a bank's customer-support assistant. Answer in one or two short sentences."
TARGET = 1.5  # yulian at 8 streams over per-request generate


def datasets_dir() -> Path:
    return Path(os.environ.get("YULIAN_DATASETS", ROOT.parent / "shared" / "datasets"))


def banking77_questions(n: int, seed: int = 0) -> list[str]:
    path = datasets_dir() / "banking77" / "train.csv"
    with open(path, encoding="utf-8", newline="") as f:
        texts = [row["text"].strip() for row in csv.DictReader(f)]
    rng = random.Random(seed)
    return rng.sample(texts, n)


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        git = commit.stdout.strip()
    except OSError:
        git = ""
    return {"cpu_model": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "git": git}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ============================================================================================ implementations
class Plain:
    """What a transformers user writes: tokenizer + AutoModelForCausalLM + generate."""

    def __init__(self, folder: str, dtype: Any) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()

    def texts(self, questions: list[str]) -> list[str]:
        return [
            self.tokenizer.apply_chat_template(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
                add_generation_prompt=True,
                tokenize=False,
            )
            for q in questions
        ]

    def generate(self, questions: list[str], tokens: int, fixed: bool) -> list[list[int]]:
        enc = self.tokenizer(self.texts(questions), return_tensors="pt", padding=True, add_special_tokens=False)
        extra = {"min_new_tokens": tokens} if fixed else {}
        with self.torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=tokens, do_sample=False, **extra)
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        eos = self.tokenizer.eos_token_id
        return [row[: row.index(eos)] if eos in row else row for row in new]

    def decode(self, ids: list[int]) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text


def build(tokens: int, natural_tokens: int) -> tuple[dict[str, Callable[[list[str]], Any]], dict[str, Any]]:
    import torch

    from yulian.models.hf_chat import HFChatModel
    from yulian.models.registry import load

    yl = load("smollm2-135m-instruct")
    assert isinstance(yl, HFChatModel)
    yl.warm_up()
    info = yl.runtime_info()
    folder = info["folder"]
    log(f"yulian: {info['dtype_reason']}")
    fp32 = Plain(folder, torch.float32)
    bf16 = Plain(folder, torch.bfloat16)
    fixed = yl.bind(max_tokens=tokens, extra={"min_tokens": tokens})
    natural = yl.bind(max_tokens=natural_tokens)

    def conv(q: str) -> list[tuple[str, str]]:
        return [("system", SYSTEM), ("user", q)]

    def per_request(plain: Plain) -> Callable[[list[str]], Any]:
        return lambda qs: [plain.decode(plain.generate([q], tokens, True)[0]) for q in qs]

    def batched(plain: Plain, n: int, is_fixed: bool) -> Callable[[list[str]], Any]:
        def run(qs: list[str]) -> Any:
            rows = plain.generate(qs, n, is_fixed)
            return [plain.decode(r) for r in rows], sum(len(r) for r in rows)

        return run

    def stream_one(qs: list[str]) -> Any:
        return ["".join(c.content for c in fixed.stream(conv(q))) for q in qs]

    def natural_batch(qs: list[str]) -> Any:
        replies = natural.batch([conv(q) for q in qs])
        return [r.content for r in replies], sum(r.metadata["usage"]["completion_tokens"] for r in replies)

    impls: dict[str, Callable[[list[str]], Any]] = {
        "generate_fp32_per_request": per_request(fp32),
        "generate_bf16_per_request": per_request(bf16),
        "yulian_invoke": lambda qs: [fixed.invoke(conv(q)).content for q in qs],
        "yulian_stream": stream_one,
        "generate_fp32_batch": batched(fp32, tokens, True),
        "generate_bf16_batch": batched(bf16, tokens, True),
        "yulian_batch": lambda qs: [r.content for r in fixed.batch([conv(q) for q in qs])],
        "natural_generate_bf16_batch": batched(bf16, natural_tokens, False),
        "natural_yulian_batch": natural_batch,
    }
    meta = {"yulian_runtime": info, "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    import transformers

    meta["transformers"] = transformers.__version__
    return impls, meta


SCENARIOS: dict[str, tuple[int, list[str]]] = {
    "1 stream": (1, ["generate_fp32_per_request", "generate_bf16_per_request", "yulian_invoke", "yulian_stream"]),
    "8 streams": (8, ["generate_fp32_per_request", "generate_fp32_batch", "generate_bf16_batch", "yulian_batch"]),
    "8 streams, natural length": (8, ["natural_generate_bf16_batch", "natural_yulian_batch"]),
}
BASELINE = {"1 stream": "generate_fp32_per_request", "8 streams": "generate_fp32_per_request"}
TWIN = {  # the plain transformers run with the same dtype as each yulian run: their texts should match
    "yulian_invoke": "generate_bf16_per_request",
    "yulian_stream": "generate_bf16_per_request",
    "yulian_batch": "generate_bf16_batch",
    "natural_yulian_batch": "natural_generate_bf16_batch",
}
LABELS = {
    "generate_fp32_per_request": "transformers `generate`, fp32, one call per request (batch 1)",
    "generate_bf16_per_request": "transformers `generate`, bf16 weights, one call per request",
    "yulian_invoke": "yulian `HFChatModel.invoke` (dtype auto)",
    "yulian_stream": "yulian `HFChatModel.stream` (dtype auto)",
    "generate_fp32_batch": "transformers `generate`, fp32, left-padded batch of 8",
    "generate_bf16_batch": "transformers `generate`, bf16 weights, left-padded batch of 8",
    "yulian_batch": "yulian `HFChatModel.batch` of 8 (dtype auto)",
    "natural_generate_bf16_batch": "transformers `generate`, bf16, batch of 8, stops at EOS",
    "natural_yulian_batch": "yulian `HFChatModel.batch` of 8, stops at EOS",
}


# ============================================================================================ measuring
def measure(args: argparse.Namespace) -> dict[str, Any]:
    questions = banking77_questions(8 * args.rounds, seed=args.seed)
    log("loading models (the first run converts the GGUF file once: ~20-150 s) ...")
    impls, meta = build(args.tokens, args.natural_tokens)
    samples: dict[str, dict[str, list[dict[str, float]]]] = {s: {i: [] for i in SCENARIOS[s][1]} for s in SCENARIOS}
    outputs: dict[str, dict[str, Any]] = {s: {} for s in SCENARIOS}
    log("warm-up ...")
    for streams, names in SCENARIOS.values():
        for name in names:
            impls[name](questions[:streams])
    loadavg_start = os.getloadavg()
    for r in range(args.rounds):
        qs = questions[8 * r : 8 * r + 8]
        for scenario, (streams, names) in SCENARIOS.items():
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no implementation always first
            for name in order:
                wall, cpu = time.perf_counter(), time.process_time()
                result = impls[name](qs[:streams])
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                if isinstance(result, tuple):
                    texts, generated = result
                else:
                    texts, generated = result, streams * args.tokens
                samples[scenario][name].append(
                    {
                        "wall_s": wall,
                        "cpu_s": cpu,
                        "tokens": generated,
                        "tokens_per_s": generated / wall,
                        "tokens_per_cpu_s": generated / cpu,
                    }
                )
                if r == 0:
                    outputs[scenario][name] = texts
                log(f"round {r + 1}/{args.rounds}  {scenario:<26} {name:<28} {generated / wall:7.1f} tokens/s")
    summary: dict[str, Any] = {}
    for scenario, (_, names) in SCENARIOS.items():
        summary[scenario] = {}
        for name in names:
            rates = [s["tokens_per_s"] for s in samples[scenario][name]]
            summary[scenario][name] = {
                "median_tokens_per_s": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
                "median_tokens_per_cpu_s": statistics.median(s["tokens_per_cpu_s"] for s in samples[scenario][name]),
            }
        base = BASELINE.get(scenario, names[0])
        ours = names[-1]
        for name in names:
            paired = [
                a["tokens_per_s"] / b["tokens_per_s"]
                for a, b in zip(samples[scenario][name], samples[scenario][base], strict=True)
            ]
            summary[scenario][name]["median_ratio_vs_baseline"] = statistics.median(paired)
        summary[scenario]["baseline"] = base
        summary[scenario]["ours"] = ours

    def same(a: list[str], b: list[str]) -> float:
        return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)

    agreement: dict[str, Any] = {}
    for scenario, outs in outputs.items():
        names = SCENARIOS[scenario][1]
        agreement[scenario] = {name: same(outs[name], outs[names[0]]) for name in names}
        agreement[scenario]["twin"] = {n: same(outs[n], outs[TWIN[n]]) for n in names if n in TWIN}
    return {
        "name": NAME,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["bench/generate.py", *sys.argv[1:]]),
        "machine": {**machine(), "loadavg_start": loadavg_start, "loadavg_end": os.getloadavg()},
        "settings": {
            "rounds": args.rounds,
            "tokens": args.tokens,
            "natural_tokens": args.natural_tokens,
            "seed": args.seed,
            "threads": args.threads or "torch default",
            "system_prompt": SYSTEM,
            "dataset": "banking77/train.csv",
        },
        "meta": meta,
        "summary": summary,
        "output_agreement_round_1": agreement,
        "outputs_round_1": outputs,
        "rounds": samples,
        "target": {"yulian_8_streams_over_per_request_generate": TARGET},
    }


def markdown(res: dict[str, Any]) -> str:
    m, s, meta = res["machine"], res["settings"], res["meta"]
    rt = meta["yulian_runtime"]
    lines = [
        "## Generation throughput (SmolLM2-135M-Instruct)",
        "",
        f"`.venv/bin/python {res['command']}`, run {res['date']} on {m['cpu_model']}, {m['cpus']} cores (shared, "
        f"noisy; load average {m['loadavg_start'][0]:.1f} at start, {m['loadavg_end'][0]:.1f} at end), "
        f"torch {meta['torch']} ({meta['torch_threads']} threads), transformers {meta['transformers']}. "
        f"Greedy decoding of BANKING77 customer messages (a system prompt + the message, through the chat "
        f"template). Wall-clock tokens/s, medians of {s['rounds']} interleaved rounds (implementation order "
        f"rotated each round); ratios are medians of per-round ratios. yulian's dtype: {rt['dtype_reason']}. "
        f"Raw rounds: `bench/results/{NAME}.json`.",
        "",
    ]
    if s.get("threads") == 1:
        lines += [
            "One torch thread on both sides: on this shared 2-core machine, two-thread OpenMP regions slow down "
            "erratically (up to 10x) whenever another process runs, while one-thread timings stay within a few "
            "percent from round to round. With two threads on a quiet moment, the ratios to the per-request "
            "baseline came out larger (batched bf16 decoding gains more from the second core), yulian against "
            "batched bf16 `generate` the same.",
            "",
        ]
    for scenario, (_, names) in SCENARIOS.items():
        summ = res["summary"][scenario]
        fixed = "natural" not in scenario
        what = (
            f"exactly {s['tokens']} new tokens per stream"
            if fixed
            else f"up to {s['natural_tokens']} tokens, stop at EOS"
        )
        lines += [
            f"**{scenario}** ({what}; ratio: tokens/s over the first row's, paired per round)",
            "",
            "| implementation | tokens/s (wall) | ratio | tokens per CPU-second | same text as the first row "
            "| same text as plain bf16 `generate` |",
            "|---|--:|--:|--:|--:|--:|",
        ]
        agree = res["output_agreement_round_1"][scenario]
        for name in names:
            row = summ[name]
            twin = agree.get("twin", {}).get(name)
            twin_text = "" if twin is None else f"{twin:.0%}"
            lines.append(
                f"| {LABELS[name]} | {row['median_tokens_per_s']:.1f} | {row['median_ratio_vs_baseline']:.2f}x "
                f"| {row['median_tokens_per_cpu_s']:.1f} | {agree[name]:.0%} | {twin_text} |"
            )
        lines.append("")
    eight = res["summary"]["8 streams"]
    ratio = eight["yulian_batch"]["median_ratio_vs_baseline"]
    vs_bf16 = eight["yulian_batch"]["median_tokens_per_s"] / eight["generate_bf16_batch"]["median_tokens_per_s"]
    vs_fp32 = eight["yulian_batch"]["median_tokens_per_s"] / eight["generate_fp32_batch"]["median_tokens_per_s"]
    verdict = "met" if ratio >= TARGET else "NOT met"
    lines += [
        f"Target: yulian at 8 streams >= {TARGET}x plain `generate` per request: **{ratio:.2f}x, {verdict}**. "
        f"Against plain `generate` given the same levers by hand: {vs_fp32:.2f}x a batched fp32 `generate`, "
        f"{vs_bf16:.2f}x a batched bf16 `generate` (same kernels: yulian's gain there is only its lighter "
        "decoding loop).",
        "",
        "Where the speed comes from: (1) batching: the 8 conversations share every forward pass (decoding a "
        "135M model is memory-bound, so a step for 8 rows costs little more than for 1); (2) bf16 weights, "
        'chosen by dtype "auto" after a check that bf16 picks float32\'s next token on a probe (this CPU has '
        "avx512_bf16: half the bytes to read per step); (3) finished sequences leave the batch and the KV cache "
        "at once (natural-length run). Text columns compare the round-1 replies: bf16 greedy replies drift from "
        "float32's after a few dozen tokens (rounding flips a near-tie, then the continuation differs), the same "
        "for plain `generate` in bf16 and for yulian; yulian's replies are compared with plain bf16 `generate`'s "
        "in the last column.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--tokens", type=int, default=48, help="new tokens per stream, fixed-length runs (48)")
    parser.add_argument("--natural-tokens", type=int, default=96, help="token cap of the natural-length run (96)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompt sample")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="1 round, 16 tokens: a smoke test")
    parser.add_argument("--no-write", action="store_true", help="print the table, write no files")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the Markdown from the saved JSON")
    args = parser.parse_args(argv)
    if args.from_json:
        res = json.loads((RESULTS / f"{NAME}.json").read_text())
        (BENCH / f"BENCHMARKS.{NAME}.md").write_text(markdown(res))
        print(markdown(res))
        return 0
    if args.quick:
        args.rounds, args.tokens, args.natural_tokens = 1, 16, 32
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT / "src"))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    res = measure(args)
    md = markdown(res)
    print(md)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{NAME}.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
        (BENCH / f"BENCHMARKS.{NAME}.md").write_text(md)
        log(f"wrote {RESULTS / f'{NAME}.json'} and {BENCH / f'BENCHMARKS.{NAME}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
