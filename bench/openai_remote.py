"""Remote models over an OpenAI-compatible endpoint: what yulian costs on top of the official `openai` client.

Measured side by side in one run, against the fake OpenAI-compatible server of the unit tests
(`tests/unit/models/fake_openai_server.py`) running in its own process on 127.0.0.1, so the server's CPU is not
charged to the client:

- chat `invoke`: `OpenAIChatModel.invoke(text)` vs `client.chat.completions.create(...)` + reading the content;
  also yulian under a run deadline (`RunConfig(timeout=30)`: per-request timeout and yulian's own retry loop).
- chat `stream`: joined `OpenAIChatModel.stream(text)` vs iterating `create(stream=True)` deltas (usage on).
- chat `abatch` of 32 (8 at once): `OpenAIChatModel.abatch` vs `asyncio.gather` over `AsyncOpenAI` with a
  semaphore, against a server answering after 100 ms (a stand-in for network + model time).
- embeddings of 1,024 real texts (dim 256): `OpenAIEmbedder.batch` (256 per request) vs the raw client batched by
  hand the same way, both with base64 vectors (the default of both) and with JSON floats; and one request per
  text (what a naive loop does).
- `aembed` (4 requests in flight) vs `embed` (one after another), 128 texts per request, on the 100 ms server.

The user messages and texts are real: Banking77 questions (en) and ChnSentiCorp reviews (zh) from the shared
datasets (location: env `YULIAN_DATASETS`, default `../shared/datasets`). Rounds interleave A B, B A, A B ...; figures
are medians over rounds of client CPU time (`time.process_time`) per call, with wall time kept in the JSON.

Run from the repository root:  .venv/bin/python bench/openai_remote.py [--rounds 9] [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import fmt_us, git_state, machine_info

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
NAME = "openai_remote"
SERVER = ROOT / "tests" / "unit" / "models" / "fake_openai_server.py"
MODEL = "fake-model"
DIM = 256
LATENCY = 0.1  # seconds: the slow server's stand-in for network + model time

# target: (row, compared with, max CPU ratio yulian / other) or a min speed-up for the wall-clock rows
TARGETS = {
    "invoke": 1.10,
    "invoke_deadline": 1.10,
    "stream": 1.10,
    "abatch": 1.15,
    "embed": 1.05,
    "embed_vs_per_text_speedup": 5.0,
    "aembed_speedup": 2.0,
}


def datasets_dir() -> Path:
    return Path(os.environ.get("YULIAN_DATASETS") or ROOT.parent / "shared" / "datasets")


def load_texts(n_en: int, n_zh: int) -> tuple[list[str], list[str]]:
    """English Banking77 questions and Chinese ChnSentiCorp reviews (first rows, stripped, non-empty)."""
    root = datasets_dir()
    with open(root / "banking77" / "train.csv", newline="", encoding="utf-8") as f:
        en = [row["text"].strip() for row in csv.DictReader(f) if row["text"].strip()][:n_en]
    with open(root / "chnsenticorp" / "train.tsv", newline="", encoding="utf-8") as f:
        zh = [row["text_a"].strip() for row in csv.DictReader(f, delimiter="\t") if row["text_a"].strip()][:n_zh]
    return en, zh


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--latency", str(latency), "--embedding-dim", str(DIM)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the fake server did not start (got {url!r})")
    return proc, url


def measure(fn: Callable[[], Any]) -> tuple[float, float]:
    """CPU and wall seconds of one call of `fn`."""
    import gc

    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu0, time.perf_counter() - wall0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=200, help="chat calls per measurement")
    ap.add_argument("--texts", type=int, default=1024, help="texts per embedding measurement")
    args = ap.parse_args()
    started = time.perf_counter()
    info = machine_info()  # load average at the start
    sys.path.insert(0, str(ROOT / "src"))
    import openai

    from yulian import RunConfig
    from yulian.models.openai_models import OpenAIChatModel, OpenAIEmbedder

    en, zh = load_texts(args.texts // 2 + args.calls, args.texts // 2)
    questions = en[: args.calls]
    texts = en[args.calls :] + zh
    print(f"{len(questions)} questions, {len(texts)} texts to embed ({len(zh)} zh) from {datasets_dir()}", flush=True)

    fast, fast_url = start_server(0.0)
    slow, slow_url = start_server(LATENCY)
    try:
        key = "sk-bench"
        llm = OpenAIChatModel(MODEL, base_url=fast_url, api_key=key)
        raw = openai.OpenAI(base_url=fast_url, api_key=key)
        emb = OpenAIEmbedder("fake-embedder", base_url=fast_url, api_key=key)
        emb_float = OpenAIEmbedder("fake-embedder", base_url=fast_url, api_key=key, encoding_format="float")
        slow_llm = OpenAIChatModel(MODEL, base_url=slow_url, api_key=key)
        slow_emb = OpenAIEmbedder("fake-embedder", base_url=slow_url, api_key=key, batch_size=128, max_concurrency=4)
        deadline = RunConfig(timeout=30)

        def chat_raw(q: str) -> str:
            out = raw.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}])
            return out.choices[0].message.content or ""

        def stream_raw(q: str) -> str:
            events = raw.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": q}],
                stream=True,
                stream_options={"include_usage": True},
            )
            return "".join(e.choices[0].delta.content or "" for e in events if e.choices)

        def embed_raw(items: list[str], size: int, **fmt: Any) -> list[list[float]]:
            out: list[list[float]] = []
            for i in range(0, len(items), size):
                resp = raw.embeddings.create(model="fake-embedder", input=items[i : i + size], **fmt)
                out.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
            return out

        async def abatch_yulian() -> list[Any]:
            return await slow_llm.abatch(questions[:32], max_concurrency=8)

        async def abatch_raw() -> list[str]:
            client = openai.AsyncOpenAI(base_url=slow_url, api_key=key)
            sem = asyncio.Semaphore(8)

            async def one(q: str) -> str:
                async with sem:
                    out = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}])
                    return out.choices[0].message.content or ""

            try:
                return list(await asyncio.gather(*(one(q) for q in questions[:32])))
            finally:
                await client.close()

        per_text = texts[:128]  # one request per text is slow: a subset, reported per text
        cases: dict[str, dict[str, Callable[[], Any]]] = {
            "invoke": {
                "yulian": lambda: [llm.invoke(q) for q in questions],
                "openai": lambda: [chat_raw(q) for q in questions],
            },
            "invoke_deadline": {
                "yulian": lambda: [llm.invoke(q, deadline) for q in questions],
                "openai": lambda: [chat_raw(q) for q in questions],
            },
            "stream": {
                "yulian": lambda: ["".join(c.content for c in llm.stream(q)) for q in questions],
                "openai": lambda: [stream_raw(q) for q in questions],
            },
            "abatch": {
                "yulian": lambda: asyncio.run(abatch_yulian()),
                "openai": lambda: asyncio.run(abatch_raw()),
            },
            "embed": {
                "yulian": lambda: emb.batch(texts),
                "openai": lambda: embed_raw(texts, 256),
                "yulian_float": lambda: emb_float.batch(texts),
                "openai_float": lambda: embed_raw(texts, 256, encoding_format="float"),
                "openai_per_text": lambda: embed_raw(per_text, 1),
            },
            "aembed": {
                "yulian_aembed": lambda: asyncio.run(slow_emb.abatch(texts)),
                "yulian_embed": lambda: slow_emb.batch(texts),
            },
        }
        units = {
            "invoke": len(questions),
            "invoke_deadline": len(questions),
            "stream": len(questions),
            "abatch": 32,
            "embed": len(texts),
            "aembed": len(texts),
        }
        per_text_units = len(per_text)

        # same answers from both sides before timing anything
        assert llm.invoke(questions[0]).content == chat_raw(questions[0])
        assert "".join(c.content for c in llm.stream(questions[1])) == stream_raw(questions[1])
        assert emb.batch(texts[:300]) == embed_raw(texts[:300], 256)
        assert emb_float.batch(texts[:300]) == embed_raw(texts[:300], 256, encoding_format="float")
        b64, flt = emb.batch(texts[:3]), emb_float.batch(texts[:3])
        assert max(abs(x - y) for u, v in zip(b64, flt, strict=True) for x, y in zip(u, v, strict=True)) < 1e-6
        for warm in cases.values():  # warm-up: imports, clients, connections
            for fn in warm.values():
                fn()

        raw_rounds: dict[str, dict[str, list[tuple[float, float]]]] = {c: {i: [] for i in cases[c]} for c in cases}
        for r in range(args.rounds):
            for case, impls in cases.items():
                order = list(impls.items())
                for impl, fn in order if r % 2 == 0 else order[::-1]:  # A B, then B A: no side always goes first
                    raw_rounds[case][impl].append(measure(fn))
            print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        for proc in (fast, slow):
            proc.terminate()
            proc.wait(timeout=10)

    def med(case: str, impl: str, which: int) -> float:
        n = per_text_units if impl == "openai_per_text" else units[case]
        return statistics.median(x[which] for x in raw_rounds[case][impl]) / n * 1e6  # µs per unit

    summary = {
        case: {impl: {"cpu_us": med(case, impl, 0), "wall_us": med(case, impl, 1)} for impl in impls}
        for case, impls in raw_rounds.items()
    }
    s = summary
    checks = [
        ("chat invoke, CPU yulian / openai", s["invoke"]["yulian"]["cpu_us"] / s["invoke"]["openai"]["cpu_us"], "<=",
         TARGETS["invoke"]),
        ("chat invoke under a deadline, CPU yulian / openai",
         s["invoke_deadline"]["yulian"]["cpu_us"] / s["invoke_deadline"]["openai"]["cpu_us"], "<=",
         TARGETS["invoke_deadline"]),
        ("chat stream, CPU yulian / openai", s["stream"]["yulian"]["cpu_us"] / s["stream"]["openai"]["cpu_us"], "<=",
         TARGETS["stream"]),
        ("chat abatch 32 (8 at once), CPU yulian / openai",
         s["abatch"]["yulian"]["cpu_us"] / s["abatch"]["openai"]["cpu_us"], "<=", TARGETS["abatch"]),
        ("embed 256/request, CPU yulian / openai batched by hand (base64)",
         s["embed"]["yulian"]["cpu_us"] / s["embed"]["openai"]["cpu_us"], "<=", TARGETS["embed"]),
        ("embed 256/request, CPU yulian / openai batched by hand (floats)",
         s["embed"]["yulian_float"]["cpu_us"] / s["embed"]["openai_float"]["cpu_us"], "<=", TARGETS["embed"]),
        ("embed, wall: one request per text / yulian batched",
         s["embed"]["openai_per_text"]["wall_us"] / s["embed"]["yulian"]["wall_us"], ">=",
         TARGETS["embed_vs_per_text_speedup"]),
        (f"{LATENCY * 1000:.0f} ms server, wall: embed / aembed (4 in flight)",
         s["aembed"]["yulian_embed"]["wall_us"] / s["aembed"]["yulian_aembed"]["wall_us"], ">=",
         TARGETS["aembed_speedup"]),
    ]  # fmt: skip
    results = [
        {"check": name, "measured": value, "op": op, "target": target,
         "pass": value <= target if op == "<=" else value >= target}
        for name, value, op, target in checks
    ]  # fmt: skip
    info["loadavg_end"] = os.getloadavg()
    payload = {
        "name": NAME,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python bench/openai_remote.py", *sys.argv[1:]]),
        "machine": info,
        "git": git_state(),
        "versions": {"openai": openai.__version__, "python": sys.version.split()[0]},
        "params": vars(args) | {"embedding_dim": DIM, "per_text_subset": per_text_units, "latency_s": LATENCY},
        "summary_us_per_unit": summary,
        "checks": results,
        "rounds_seconds_cpu_wall": raw_rounds,
        "total_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    (BENCH / f"BENCHMARKS.{NAME}.md").write_text(markdown(payload))
    print(markdown(payload))


def markdown(p: dict[str, Any]) -> str:
    s = p["summary_us_per_unit"]
    m = p["machine"]
    unit = {"invoke": "call", "invoke_deadline": "call", "stream": "call", "abatch": "call", "embed": "text",
            "aembed": "text"}  # fmt: skip
    labels = {
        "invoke": "chat invoke", "invoke_deadline": "chat invoke, `RunConfig(timeout=30)`", "stream": "chat stream",
        "abatch": f"chat abatch 32, 8 at once ({LATENCY * 1000:.0f} ms server)",
        "embed": f"embed {p['params']['texts']:,} texts",
        "aembed": f"embed {p['params']['texts']:,} texts, 128/request ({LATENCY * 1000:.0f} ms server)",
    }  # fmt: skip
    names = {
        "yulian": "yulian", "openai": "openai client", "yulian_float": "yulian, JSON floats",
        "openai_float": "openai client, JSON floats",
        "openai_per_text": "openai client, 1 text/request", "yulian_aembed": "yulian aembed (4 in flight)",
        "yulian_embed": "yulian embed (sequential)",
    }  # fmt: skip
    lines = [
        "## Remote models: OpenAIChatModel / OpenAIEmbedder over the official openai client",
        "",
        f"`bench/openai_remote.py`, run {p['date']} on {m['cpu_model']}, {m['cpus']} cores (shared, noisy), Python "
        f"{m['python']}, openai {p['versions']['openai']}. Server: the unit tests' fake OpenAI-compatible server "
        "in its own process on 127.0.0.1 (its CPU is not counted). Texts: Banking77 questions (en) and ChnSentiCorp "
        f"reviews (zh). Medians of {p['params']['rounds']} interleaved rounds; {p['params']['calls']} chat calls per "
        f"measurement; embeddings dim {p['params']['embedding_dim']}, 256 texts per request. Raw rounds: "
        f"`bench/results/{NAME}.json`.",
        "",
        "| operation | implementation | CPU µs per unit | wall µs per unit |",
        "|---|---|--:|--:|",
    ]
    for case, impls in s.items():
        for impl, v in impls.items():
            cpu, wall = fmt_us(v["cpu_us"]), fmt_us(v["wall_us"])
            lines.append(f"| {labels[case]} (per {unit[case]}) | {names[impl]} | {cpu} | {wall} |")
    lines += ["", "| check | measured | target | result |", "|---|--:|--:|:-:|"]
    for c in p["checks"]:
        res = "**PASS**" if c["pass"] else "**FAIL**"
        lines.append(f"| {c['check']} | {c['measured']:.2f}x | {c['op']} {c['target']:.2f}x | {res} |")
    lines += [
        "",
        "Notes:",
        "- CPU is the client process only (`time.process_time`); the server runs in another process.",
        "- `openai client, 1 text/request` runs on a 128-text subset and is reported per text.",
        f"- Command (from the repository root): `{p['command']}`; whole run {p['total_s']:.0f} s; "
        f"load average {m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
