"""Serving benchmark: `yulian serve` (micro-batching) vs a naive FastAPI app (one forward per request), same model.

The naive app has two routes: a sync one (FastAPI's thread pool runs forwards in parallel threads, the usual naive
app) and an async one (forwards one at a time on the event loop). Both servers run on 127.0.0.1 as separate
processes and serve all-MiniLM-L6-v2 (the packaged `minilm-l6`, through yulian's `HFEmbedder` with its defaults
in both) at `POST /v1/embeddings`, one SST-2 dev sentence per request, with the same JSON response. A lean
asyncio HTTP/1.1 client (keep-alive, one connection per virtual user) drives them
at concurrency 1, 8 and 32 for a fixed time per cell, interleaved A B A B over rounds; the table reports medians
over rounds. Then a load test: 10,000 requests at concurrency 64 against `yulian serve`, counting every non-200.

    python bench/serve.py                      # ~5 minutes
    python bench/serve.py --seconds 4 --rounds 2 --load-requests 2000   # quicker
    python bench/serve.py --render-only        # rewrite the Markdown from bench/results/serve.json

Writes bench/results/serve.json and bench/BENCHMARKS.serve.md. Set YULIAN_DATASETS to move the data sets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, git_state, machine_info

KEY = "yl-bench-key"
DATASETS = Path(os.environ.get("YULIAN_DATASETS", ROOT.parent / "shared" / "datasets"))

NAIVE_APP = """
import json, sys
from fastapi import FastAPI, Response
from yulian.models.registry import load

embedder = load("minilm-l6")
embedder.warm_up()
app = FastAPI()

@app.get("/readyz")
def readyz():
    return {"ready": True}

def answer(body):
    vector = embedder.embed([body["input"]])[0]
    data = [{"object": "embedding", "index": 0, "embedding": [float(x) for x in vector]}]
    out = {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 0, "total_tokens": 0}}
    return Response(json.dumps(out, separators=(",", ":")).encode(), media_type="application/json")

@app.post("/v1/embeddings")
def embeddings(body: dict):  # FastAPI runs sync routes in its thread pool: one forward per request, in parallel
    return answer(body)

@app.post("/serial/v1/embeddings")
async def embeddings_serial(body: dict):  # on the event loop: one forward per request, one at a time
    return answer(body)
"""


def sentences() -> list[str]:
    path = DATASETS / "glue_sst2" / "dev.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0] for line in lines if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


Servers = dict[str, tuple[subprocess.Popen[bytes], int, str]]
NAMES = ("yulian", "naive", "naive_serial")


def start_servers(tmp: Path, max_batch: int, max_wait_ms: float) -> Servers:
    import hashlib

    config = tmp / "serve.yaml"
    port_y, port_n = free_port(), free_port()
    config.write_text(
        textwrap.dedent(f"""
        models:
          - name: minilm
            source: minilm-l6
            batch: {{max_batch: {max_batch}, max_wait_ms: {max_wait_ms}}}
        keys:
          - id: bench
            sha256: {hashlib.sha256(KEY.encode()).hexdigest()}
            models: ["*"]
        limits: {{rate_per_minute: 100000000, burst: 1000000, max_concurrency: 1000}}
        audit_log: {tmp / "audit.jsonl"}
        port: {port_y}
        """)
    )
    (tmp / "naive_app.py").write_text(NAIVE_APP)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    yulian = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from yulian.serving.commands import serve; serve(config={str(config)!r}, log_level='warning')",
        ],
        env=env,
    )
    naive = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "naive_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port_n),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=tmp,
    )
    return {
        "yulian": (yulian, port_y, "/v1/embeddings"),
        "naive": (naive, port_n, "/v1/embeddings"),
        "naive_serial": (naive, port_n, "/serial/v1/embeddings"),
    }


def wait_ready(port: int, timeout: float = 180) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server on port {port} did not become ready")


# ============================================================================================ client
async def _user(
    port: int,
    path: str,
    texts: list[str],
    until: float,
    limit: list[int],
    lat: list[float],
    errors: list[str],
    seed: int,
) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until and limit[0] > 0:
            limit[0] -= 1
            body = json.dumps({"model": "minilm", "input": rng.choice(texts)}).encode()
            head = (
                f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {KEY}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            lat.append(time.perf_counter() - started)
            status = status_line.split(b" ")[1] if b" " in status_line else b"?"
            if status != b"200" or not payload.startswith(b'{"object":"list"'):
                errors.append(status.decode())
    except (OSError, asyncio.IncompleteReadError) as e:
        errors.append(type(e).__name__)
    finally:
        writer.close()


async def drive(
    server: tuple[Any, int, str], concurrency: int, texts: list[str], seconds: float, requests: int = 10**9
) -> dict[str, Any]:
    _, port, path = server
    lat: list[float] = []
    errors: list[str] = []
    limit = [requests]
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(_user(port, path, texts, until, limit, lat, errors, i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "requests": len(lat),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "seconds": elapsed,
        "rps": len(lat) / elapsed,
        "p50_ms": q(0.50),
        "p99_ms": q(0.99),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds per (server, concurrency, round) cell")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--load-requests", type=int, default=10_000)
    ap.add_argument("--load-concurrency", type=int, default=64)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--render-only", action="store_true", help="rewrite the Markdown from bench/results/serve.json")
    args = ap.parse_args()
    if args.render_only:
        saved = json.loads((ROOT / "bench" / "results" / "serve.json").read_text())
        write_markdown(saved, argparse.Namespace(**saved["args"]))
        return
    texts = sentences()
    info = {
        "machine": machine_info(),
        "git": git_state(),
        "args": vars(args),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        servers = start_servers(Path(tmp), args.max_batch, args.max_wait_ms)
        try:
            for name, (_, port, _) in servers.items():
                wait_ready(port)
                print(f"{name} ready on port {port}", flush=True)
            for server in servers.values():  # warm the paths
                asyncio.run(drive(server, 4, texts, 1.5))
            rounds: list[dict[str, Any]] = []
            for r in range(args.rounds):
                for c in args.concurrency:
                    order = NAMES if r % 2 == 0 else NAMES[::-1]
                    for name in order:
                        res = asyncio.run(drive(servers[name], c, texts, args.seconds))
                        rounds.append({"round": r, "server": name, "concurrency": c, **res})
                        print(
                            f"round {r} c={c:<3} {name:<12} {res['rps']:8.1f} req/s  p50 {res['p50_ms']:7.1f} ms  "
                            f"p99 {res['p99_ms']:7.1f} ms  errors {res['errors']}",
                            flush=True,
                        )
            print(f"load test: {args.load_requests} requests at concurrency {args.load_concurrency}", flush=True)
            load = asyncio.run(drive(servers["yulian"], args.load_concurrency, texts, 3600, args.load_requests))
            print(
                f"load test: {load['requests']} answered, {load['errors']} errors, {load['rps']:.1f} req/s, "
                f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms",
                flush=True,
            )
            audit = Path(tmp) / "audit.jsonl"
            audit_lines = sum(1 for _ in audit.open()) if audit.exists() else 0
        finally:
            procs = {id(proc): proc for proc, _, _ in servers.values()}.values()
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    summary = summarise(rounds, args.concurrency)
    result = {
        **info,
        "rounds": rounds,
        "summary": summary,
        "load_test": load,
        "audit_lines": audit_lines,
        "seconds_total": time.time() - t0,
        "loadavg_end": os.getloadavg(),
    }
    out = ROOT / "bench" / "results" / "serve.json"
    out.write_text(json.dumps(result, indent=1))
    write_markdown(result, args)
    print(f"wrote {out} and bench/BENCHMARKS.serve.md", flush=True)


def summarise(rounds: list[dict[str, Any]], levels: list[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for c in levels:
        row: dict[str, Any] = {}
        for name in NAMES:
            cells = [x for x in rounds if x["server"] == name and x["concurrency"] == c]
            row[name] = {k: statistics.median(x[k] for x in cells) for k in ("rps", "p50_ms", "p99_ms")}
            row[name]["errors"] = sum(x["errors"] for x in cells)
        for base in NAMES[1:]:
            ratios = []
            for r in sorted({x["round"] for x in rounds}):
                cell = {x["server"]: x for x in rounds if x["round"] == r and x["concurrency"] == c}
                ratios.append(cell["yulian"]["rps"] / cell[base]["rps"])
            row[f"ratio_vs_{base}"] = statistics.median(ratios)
            row[f"ratios_vs_{base}"] = ratios
        summary[str(c)] = row
    return summary


def write_markdown(result: dict[str, Any], args: Any) -> None:
    s = result["summary"]
    lines = [
        "## Serving: `yulian serve` (micro-batching) vs a naive FastAPI app (one forward per request)",
        "",
        f"`bench/serve.py`, run {result['started']} on {result['machine']['cpu_model']}, {result['machine']['cpus']} "
        "cores (shared with other work: ratios measured side by side are what count). Same model everywhere: "
        "all-MiniLM-L6-v2 (`minilm-l6`, yulian `HFEmbedder`, defaults), `POST /v1/embeddings`, one SST-2 dev sentence "
        "per request, the same JSON shape (yulian writes each float32 in its shortest exact form: 4.8 KB per vector "
        "instead of the naive app's 8.2 KB of float64 digits). **yulian**: `yulian serve` with its defaults and "
        f"max_batch {args.max_batch}, max_wait {args.max_wait_ms:g} ms (parallel auto: two batches in flight, one "
        "torch thread each, length-aware sub-batches, orjson bodies, gc frozen after loading), API key check, rate "
        "limiter, metrics and audit log on. **naive**: a sync FastAPI "
        "route calling `embed([text])` (FastAPI's thread pool: forwards run in parallel threads). **naive serial**: "
        "the same call in an `async` route (one forward at a time on the event loop). "
        f"{args.rounds} interleaved rounds x {args.seconds:g} s per cell, medians over rounds; load from a "
        "keep-alive asyncio client (one connection per concurrent user) on the same machine.",
        "",
        f"Command: `python bench/serve.py --seconds {args.seconds:g} --rounds {args.rounds}`",
        "",
        "| concurrency | yulian req/s | naive req/s | naive serial req/s | yulian / naive | yulian / naive serial "
        "| yulian p50 / p99 ms | naive p50 / p99 ms | naive serial p50 / p99 ms |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c, row in s.items():
        y, n, z = row["yulian"], row["naive"], row["naive_serial"]
        lines.append(
            f"| {c} | {y['rps']:.1f} | {n['rps']:.1f} | {z['rps']:.1f} | {row['ratio_vs_naive']:.2f}x | "
            f"{row['ratio_vs_naive_serial']:.2f}x | {y['p50_ms']:.1f} / {y['p99_ms']:.1f} | "
            f"{n['p50_ms']:.1f} / {n['p99_ms']:.1f} | {z['p50_ms']:.1f} / {z['p99_ms']:.1f} |"
        )
    top_c = max(int(c) for c in s)
    top = s[str(top_c)]
    load = result["load_test"]
    p99_ratio = top["yulian"]["p99_ms"] / top["yulian"]["p50_ms"]
    load_ok = load["errors"] == 0 and load["requests"] == args.load_requests
    lines += [
        "",
        "| target | measured | result |",
        "|---|--:|:-:|",
        f"| yulian >= 4x naive req/s at concurrency {top_c} | {top['ratio_vs_naive']:.2f}x "
        f"(vs naive serial {top['ratio_vs_naive_serial']:.2f}x) | "
        f"**{'PASS' if top['ratio_vs_naive'] >= 4 else 'FAIL'}** |",
        f"| yulian p99 <= 2x p50 at concurrency {top_c} | {p99_ratio:.2f}x | "
        f"**{'PASS' if p99_ratio <= 2 else 'FAIL'}** |",
        f"| {args.load_requests:,} requests at concurrency {args.load_concurrency}, zero errors | "
        f"{load['requests']:,} answered, {load['errors']} errors | **{'PASS' if load_ok else 'FAIL'}** |",
        "",
        f"Load test: {load['rps']:.1f} req/s, p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms; "
        f"{result['audit_lines']:,} audit lines written. Per-round yulian/naive ratios at concurrency {top_c}: "
        + ", ".join(f"{x:.2f}x" for x in top["ratios_vs_naive"])
        + ". Per-round yulian p99/p50 at concurrency "
        + f"{top_c}: "
        + ", ".join(
            f"{x['p99_ms'] / x['p50_ms']:.2f}x"
            for x in result["rounds"]
            if x["server"] == "yulian" and x["concurrency"] == top_c
        )
        + " (the table shows medians over rounds: a slow first round at a new concurrency shows here)"
        + f". Load average {result['machine']['loadavg_start'][0]:.2f} at start, "
        f"{result['loadavg_end'][0]:.2f} at end; whole run {result['seconds_total']:.0f} s. "
        "Raw cells: `bench/results/serve.json`.",
        "",
    ]
    (ROOT / "bench" / "BENCHMARKS.serve.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
