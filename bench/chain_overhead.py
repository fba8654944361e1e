"""Composition overhead of a 3-step chain of trivial `x + 1` functions, yulian against its anchors.

Measured side by side in one run:

- `yulian`: `runnable(f) | g | h` (project venv).
- `plain`: `h(g(f(x)))`, the floor (project venv, yulian not imported).
- `langchain`: `RunnableLambda(f) | RunnableLambda(g) | RunnableLambda(h)` (langchain-core, own venv).
- `dspy`: three `dspy.Module`s with `forward(x): return x + 1` composed by a parent module (own venv).

Each anchor lives in a throwaway venv under `bench/.venvs/<name>` (git-ignored, never a project
dependency), created by this script when missing. Each implementation runs in its own long-lived child
process (this same file run with `--worker NAME` by that venv's python); the parent asks the children in
turn, one measurement at a time, so rounds interleave A B C D A B C D ... and only one child is busy at any
moment. Reported numbers are medians over rounds of CPU time (`time.process_time`, all threads of the child),
never wall time.

Also measured: CPU time of the `import yulian` statement alone in a fresh interpreter, and whether it loads
torch; for context, the anchors' imports of what the chain needs (`from langchain_core.runnables import
RunnableLambda`: `import langchain_core.runnables` alone is lazy and cheap; `import dspy`).

Run from the repository root:  .venv/bin/python bench/chain_overhead.py   (see bench/README.md)

Only the standard library is imported at module level: the same file runs inside the anchors' venvs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from _common import Child, calibrate, fmt_rate, fmt_us, git_state, machine_info, ratio, timed

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
NAME = "chain_overhead"

BATCH_SIZE = 1_000

# Anchors: pins tried in order. langchain-core 1.8.4 (the newest 1.8.x) needs langchain-protocol>=0.0.22,
# which the package index reachable here does not have; 1.8.3 is the version of the project's earlier anchor
# measurement (shared/KNOWN.md), 1.8.1 the fallback.
ANCHORS: dict[str, dict[str, Any]] = {
    "langchain": {"dist": "langchain-core", "pins": ["langchain-core==1.8.3", "langchain-core==1.8.1"]},
    "dspy": {"dist": "dspy", "pins": ["dspy==3.4.1"]},
}
IMPLS = ["yulian", "plain", "langchain", "dspy"]
LABELS = {"yulian": "yulian", "plain": "plain `h(g(f(x)))`", "langchain": "langchain-core", "dspy": "DSPy"}
MAIN_DIST = {"yulian": "yulian", "langchain": "langchain-core", "dspy": "dspy"}

# op name -> (unit, items per call). "call" ops report CPU microseconds per call; "items" ops items/s.
OPS: dict[str, tuple[str, int]] = {
    "invoke": ("call", 1),
    "ainvoke": ("call", 1),
    "stream": ("call", 1),
    "batch": ("items", BATCH_SIZE),
    "batch_mc1": ("items", BATCH_SIZE),
    "abatch": ("items", BATCH_SIZE),
}

IMPORT_STMT = {
    "yulian": "import yulian",
    "langchain": "from langchain_core.runnables import RunnableLambda",
    "dspy": "import dspy",
}

TARGETS = {"invoke_us": 3.0, "batch_items_per_s": 200_000.0, "import_ms": 60.0}


def child_env(impl: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if impl == "dspy":
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never reach for the network at import
        env["DSPY_CACHEDIR"] = str(VENVS / "dspy-cache")
    return env


# ============================================================================================ the child side
def _setup_yulian() -> tuple[dict[str, Callable[[int], None]], dict[str, Any]]:
    import asyncio

    from yulian import runnable

    def f(x: int) -> int:
        return x + 1

    def g(x: int) -> int:
        return x + 1

    def h(x: int) -> int:
        return x + 1

    chain = runnable(f) | g | h
    inputs = list(range(BATCH_SIZE))
    loop = asyncio.new_event_loop()
    assert chain.invoke(1) == 4
    assert list(chain.stream(1)) == [4]
    assert loop.run_until_complete(chain.ainvoke(1)) == 4
    assert chain.batch(inputs) == [x + 3 for x in inputs]
    assert loop.run_until_complete(chain.abatch(inputs)) == [x + 3 for x in inputs]

    def invoke(n: int) -> None:
        call = chain.invoke
        for _ in range(n):
            call(1)

    async def _ainvoke(n: int) -> None:
        call = chain.ainvoke
        for _ in range(n):
            await call(1)

    def stream(n: int) -> None:
        call = chain.stream
        for _ in range(n):
            for _piece in call(1):
                pass

    def batch(n: int) -> None:
        for _ in range(n):
            chain.batch(inputs)

    async def _abatch(n: int) -> None:
        for _ in range(n):
            await chain.abatch(inputs)

    ops = {
        "invoke": invoke,
        "ainvoke": lambda n: loop.run_until_complete(_ainvoke(n)),
        "stream": stream,
        "batch": batch,
        "abatch": lambda n: loop.run_until_complete(_abatch(n)),
    }
    return ops, {"chain": repr(chain)}


def _setup_plain() -> tuple[dict[str, Callable[[int], None]], dict[str, Any]]:
    import asyncio

    def f(x: int) -> int:
        return x + 1

    def g(x: int) -> int:
        return x + 1

    def h(x: int) -> int:
        return x + 1

    async def af(x: int) -> int:
        return x + 1

    async def ag(x: int) -> int:
        return x + 1

    async def ah(x: int) -> int:
        return x + 1

    async def achain(x: int) -> int:
        return await ah(await ag(await af(x)))

    def gen(x: int) -> Any:
        yield h(g(f(x)))

    inputs = list(range(BATCH_SIZE))
    loop = asyncio.new_event_loop()

    def invoke(n: int) -> None:
        for _ in range(n):
            h(g(f(1)))

    async def _ainvoke(n: int) -> None:
        for _ in range(n):
            await ah(await ag(await af(1)))

    def stream(n: int) -> None:
        for _ in range(n):
            for _piece in gen(1):
                pass

    def batch(n: int) -> None:
        for _ in range(n):
            [h(g(f(x))) for x in inputs]

    async def _abatch(n: int) -> None:
        for _ in range(n):
            await asyncio.gather(*(achain(x) for x in inputs))

    ops = {
        "invoke": invoke,
        "ainvoke": lambda n: loop.run_until_complete(_ainvoke(n)),
        "stream": stream,
        "batch": batch,
        "abatch": lambda n: loop.run_until_complete(_abatch(n)),
    }
    return ops, {"chain": "h(g(f(x))); async: three async defs awaited in turn; abatch: asyncio.gather"}


def _setup_langchain() -> tuple[dict[str, Callable[[int], None]], dict[str, Any]]:
    import asyncio

    from langchain_core.runnables import RunnableLambda

    def f(x: int) -> int:
        return x + 1

    def g(x: int) -> int:
        return x + 1

    def h(x: int) -> int:
        return x + 1

    chain = RunnableLambda(f) | RunnableLambda(g) | RunnableLambda(h)
    inputs = list(range(BATCH_SIZE))
    mc1 = {"max_concurrency": 1}
    loop = asyncio.new_event_loop()
    assert chain.invoke(1) == 4
    assert list(chain.stream(1)) == [4]
    assert loop.run_until_complete(chain.ainvoke(1)) == 4
    assert chain.batch(inputs) == [x + 3 for x in inputs]
    assert chain.batch(inputs, config=mc1) == [x + 3 for x in inputs]  # type: ignore[arg-type]
    assert loop.run_until_complete(chain.abatch(inputs)) == [x + 3 for x in inputs]

    def invoke(n: int) -> None:
        call = chain.invoke
        for _ in range(n):
            call(1)

    async def _ainvoke(n: int) -> None:
        call = chain.ainvoke
        for _ in range(n):
            await call(1)

    def stream(n: int) -> None:
        call = chain.stream
        for _ in range(n):
            for _piece in call(1):
                pass

    def batch(n: int) -> None:
        for _ in range(n):
            chain.batch(inputs)

    def batch_mc1(n: int) -> None:
        for _ in range(n):
            chain.batch(inputs, config=mc1)  # type: ignore[arg-type]

    async def _abatch(n: int) -> None:
        for _ in range(n):
            await chain.abatch(inputs)

    ops = {
        "invoke": invoke,
        "ainvoke": lambda n: loop.run_until_complete(_ainvoke(n)),
        "stream": stream,
        "batch": batch,
        "batch_mc1": batch_mc1,
        "abatch": lambda n: loop.run_until_complete(_abatch(n)),
    }
    return ops, {"chain": repr(chain)}


def _setup_dspy() -> tuple[dict[str, Callable[[int], None]], dict[str, Any]]:
    import asyncio

    import dspy

    class Step(dspy.Module):  # type: ignore[misc]
        def forward(self, x: int) -> int:
            return x + 1

        async def aforward(self, x: int) -> int:
            return x + 1

    class Chain(dspy.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.f = Step()
            self.g = Step()
            self.h = Step()

        def forward(self, x: int) -> int:
            return self.h(self.g(self.f(x)))

        async def aforward(self, x: int) -> int:
            return await self.h.acall(await self.g.acall(await self.f.acall(x)))

    module = Chain()
    inputs = list(range(BATCH_SIZE))
    examples = [dspy.Example(x=x).with_inputs("x") for x in inputs]
    loop = asyncio.new_event_loop()
    assert module(1) == 4
    assert loop.run_until_complete(module.acall(1)) == 4
    assert module.batch(examples, disable_progress_bar=True) == [x + 3 for x in inputs]

    def invoke(n: int) -> None:
        for _ in range(n):
            module(1)

    async def _ainvoke(n: int) -> None:
        call = module.acall
        for _ in range(n):
            await call(1)

    def batch(n: int) -> None:
        for _ in range(n):
            module.batch(examples, disable_progress_bar=True)

    ops = {
        "invoke": invoke,
        "ainvoke": lambda n: loop.run_until_complete(_ainvoke(n)),
        "batch": batch,
    }
    info = {
        "chain": "Chain(dspy.Module) of three Step(dspy.Module); module(x), await module.acall(x)",
        "batch": "Module.batch(list of dspy.Example, disable_progress_bar=True): dspy.Parallel thread pool, "
        f"settings.num_threads={dspy.settings.num_threads}",
        "stream": "n/a: dspy.streamify streams LM output (async); plain modules have no stream",
        "abatch": "n/a: no async batch for modules",
    }
    return ops, info


SETUPS = {"yulian": _setup_yulian, "plain": _setup_plain, "langchain": _setup_langchain, "dspy": _setup_dspy}
VERSION_DISTS = {
    "yulian": ["yulian", "pydantic"],
    "plain": [],
    "langchain": ["langchain-core", "pydantic", "langsmith"],
    "dspy": ["dspy", "pydantic", "litellm"],
}


def worker(impl: str) -> None:
    """Serve measurement requests, one JSON line in, one JSON line out, until stdin closes."""
    proto: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the libraries print goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    from importlib import metadata

    cpu0 = time.process_time()
    ops, info = SETUPS[impl]()
    setup_cpu = time.process_time() - cpu0
    versions = {}
    for dist in VERSION_DISTS[impl]:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None

    def reply(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")

    reply(
        {
            "ops": list(ops),
            "info": info,
            "versions": versions,
            "python": platform.python_version(),
            "executable": sys.executable,
            "setup_cpu_s": setup_cpu,
            "torch_loaded": "torch" in sys.modules,
        }
    )
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "calibrate":
            reply({"n": calibrate(ops[msg["op"]], msg["target_s"])})
        elif msg["cmd"] == "run":
            cpu, wall = timed(ops[msg["op"]], msg["n"])
            reply({"cpu": cpu, "wall": wall})
        else:
            break


# ============================================================================================ the parent side
def project_python() -> Path:
    venv = ROOT / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def installed_version(python: Path, dist: str) -> str | None:
    code = f"import importlib.metadata as m\ntry: print(m.version({dist!r}))\nexcept Exception: pass"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def ensure_venv(impl: str, skip_install: bool) -> Path | None:
    """The anchor venv's python, creating the venv and installing the pinned anchor when needed."""
    spec = ANCHORS[impl]
    venv = VENVS / impl
    python = venv / "bin" / "python"
    wanted = [p.split("==")[1] for p in spec["pins"]]
    have = installed_version(python, spec["dist"]) if python.exists() else None
    if have in wanted:
        print(f"[venv] {venv.relative_to(ROOT)}: {spec['dist']} {have} present", flush=True)
        return python
    if skip_install:
        if have:
            print(f"[venv] {impl}: {spec['dist']} {have} is not pinned; using it anyway", flush=True)
            return python
        print(f"[venv] {impl}: no {venv.relative_to(ROOT)} and --skip-install given: skipped", flush=True)
        return None
    if not python.exists():
        base = shutil.which("python3") or sys.executable
        print(f"[venv] creating {venv.relative_to(ROOT)} with {base} -m venv", flush=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    log = RESULTS / f"{NAME}-pip-{impl}.log.tmp"
    for pin in spec["pins"]:
        where = venv.relative_to(ROOT)
        print(f"[venv] pip install {pin} into {where} (log {log.relative_to(ROOT)})", flush=True)
        t0 = time.perf_counter()
        with log.open("a") as out:
            rc = subprocess.run(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", pin],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        print(f"[venv]   exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc == 0:
            return python
    print(f"[venv] {impl}: no pinned version installed; skipped (see {log})", flush=True)
    return None


def measure_imports(pythons: dict[str, Path], runs: int) -> dict[str, Any]:
    """CPU time of the import statement alone, in fresh interpreters, interleaved; first run discarded."""
    snippet = (
        "import json, sys, time\n"
        "c0 = time.process_time(); w0 = time.perf_counter()\n"
        "{stmt}\n"
        "c = time.process_time() - c0; w = time.perf_counter() - w0\n"
        "torch = 'torch' in sys.modules\n"
        "print(json.dumps({{'cpu': c, 'wall': w, 'torch': torch, 'modules': len(sys.modules)}}))\n"
    )
    samples: dict[str, list[dict[str, Any]]] = {impl: [] for impl in pythons}
    for run in range(runs + 1):
        for impl, python in pythons.items():
            out = subprocess.run(
                [str(python), "-c", snippet.format(stmt=IMPORT_STMT[impl])],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=child_env(impl),
                check=True,
            )
            if run:  # run 0 writes bytecode caches and warms the page cache
                samples[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = {}
    for impl, rows in samples.items():
        cpu_ms = [r["cpu"] * 1e3 for r in rows]
        result[impl] = {
            "statement": IMPORT_STMT[impl],
            "cpu_ms_median": statistics.median(cpu_ms),
            "cpu_ms_min": min(cpu_ms),
            "cpu_ms_max": max(cpu_ms),
            "wall_ms_median": statistics.median(r["wall"] * 1e3 for r in rows),
            "torch_loaded": any(r["torch"] for r in rows),
            "modules_after": rows[-1]["modules"],
            "cpu_ms_runs": cpu_ms,
        }
    return result


def summarise(rows: list[dict[str, Any]], unit: str, items: int) -> dict[str, Any]:
    """Medians over rounds: microseconds per call ("call") or items per second ("items"), CPU and wall."""
    if unit == "call":
        cpu = [r["cpu"] / r["n"] * 1e6 for r in rows]
        wall = [r["wall"] / r["n"] * 1e6 for r in rows]
        key = "cpu_us_per_call"
        wkey = "wall_us_per_call"
    else:
        cpu = [r["n"] * items / r["cpu"] for r in rows]
        wall = [r["n"] * items / r["wall"] for r in rows]
        key = "cpu_items_per_s"
        wkey = "wall_items_per_s"
    return {
        key: statistics.median(cpu),
        f"{key}_min": min(cpu),
        f"{key}_max": max(cpu),
        wkey: statistics.median(wall),
        "n_per_round": rows[0]["n"],
        "rounds": [{"cpu_s": r["cpu"], "wall_s": r["wall"], "n": r["n"]} for r in rows],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    only = [s.strip() for s in args.only.split(",")] if args.only else IMPLS
    unknown = set(only) - set(IMPLS)
    if unknown:
        raise SystemExit(f"--only: unknown implementation(s) {sorted(unknown)}; choose from {IMPLS}")
    info = machine_info()
    pythons: dict[str, Path] = {}
    for impl in [i for i in IMPLS if i in only]:
        if impl in ANCHORS:
            python = ensure_venv(impl, args.skip_install)
            if python is not None:
                pythons[impl] = python
        else:
            pythons[impl] = project_python()
    t_bench = time.perf_counter()

    children: dict[str, Child] = {}
    try:
        for impl, python in pythons.items():
            print(f"[start] {impl}: {python}", flush=True)
            children[impl] = Child(impl, python, __file__, RESULTS / f"{NAME}-{impl}.stderr.tmp", env=child_env(impl))
        plan: dict[str, dict[str, int]] = {}
        for impl, child in children.items():
            plan[impl] = {}
            for op in child.hello["ops"]:
                plan[impl][op] = child.ask(cmd="calibrate", op=op, target_s=args.target)["n"]
            print(f"[calibrate] {impl}: {plan[impl]}", flush=True)
        samples: dict[str, dict[str, list[dict[str, Any]]]] = {impl: {} for impl in children}
        for rnd in range(1, args.rounds + 1):
            t0 = time.perf_counter()
            for op in OPS:
                for impl, child in children.items():
                    if op in plan[impl]:
                        n = plan[impl][op]
                        res = child.ask(cmd="run", op=op, n=n)
                        samples[impl].setdefault(op, []).append({**res, "n": n})
            print(f"[round {rnd}/{args.rounds}] {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        for child in children.values():
            child.close()

    import_pythons = {impl: p for impl, p in pythons.items() if impl in IMPORT_STMT}
    print(f"[import] {args.import_runs} fresh interpreters per implementation, interleaved", flush=True)
    imports = measure_imports(import_pythons, args.import_runs) if import_pythons else {}

    info["loadavg_end"] = os.getloadavg()
    impls: dict[str, Any] = {}
    for impl, child in children.items():
        hello = child.hello
        impls[impl] = {
            "label": LABELS[impl],
            "python": hello["python"],
            "executable": hello["executable"],
            "versions": hello["versions"],
            "info": hello["info"],
            "torch_loaded_in_worker": hello["torch_loaded"],
            "ops": {op: summarise(rows, *OPS[op]) for op, rows in samples[impl].items()},
            "import": imports.get(impl),
        }
    return {
        "benchmark": NAME,
        "description": "3-step chain of trivial x + 1 functions: CPU time per call (process_time, all "
        "threads), medians of interleaved rounds",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "git": git_state(),
        "settings": {
            "rounds": args.rounds,
            "target_s_per_measurement": args.target,
            "batch_size": BATCH_SIZE,
            "import_runs": args.import_runs,
            "order": "per round: for each op, each implementation in turn (" + ", ".join(children) + ")",
        },
        "targets": TARGETS,
        "implementations": impls,
        "install_s": round(t_bench - t_start, 1),
        "total_s": round(time.perf_counter() - t_start, 1),
    }


# ============================================================================================ report
def _get(res: dict[str, Any], impl: str, op: str) -> float | None:
    data = res["implementations"].get(impl, {}).get("ops", {}).get(op)
    if data is None:
        return None
    return data.get("cpu_us_per_call", data.get("cpu_items_per_s"))


def _import_ms(res: dict[str, Any], impl: str) -> float | None:
    imp = res["implementations"].get(impl, {}).get("import")
    return imp["cpu_ms_median"] if imp else None


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    s = res["settings"]
    impls = res["implementations"]
    lines = [
        "## Composition overhead: 3-step chain of trivial functions",
        "",
        f"`bench/chain_overhead.py`, run {res['date']} on {m['cpu_model']}, {m['cpus']} cores "
        f"(shared, noisy), Python {m['python']}. A chain of three `x + 1` functions; CPU time "
        f"(`time.process_time`, all threads of the measuring process), medians of {s['rounds']} "
        f"interleaved rounds (each implementation in its own process, asked in turn; each measurement "
        f"~{s['target_s_per_measurement']} s of CPU). Batches are of {s['batch_size']:,} inputs. Imports: "
        f"the import statement alone in a fresh interpreter, median of {s['import_runs']} runs. "
        f"Raw rounds: `bench/results/{NAME}.json`.",
        "",
        "| implementation | invoke (µs CPU) | ainvoke (µs CPU) | stream (µs CPU) "
        "| batch 1,000 (items/s CPU) | abatch 1,000 (items/s CPU) | import (ms CPU) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for impl in ["plain", "yulian", "langchain", "dspy"]:
        if impl not in impls:
            continue
        d = impls[impl]
        dist = MAIN_DIST.get(impl)
        label = f"{d['label']} {d['versions'].get(dist, '')}".strip() if dist else d["label"]
        batch = fmt_rate(_get(res, impl, "batch"))
        if "batch_mc1" in d["ops"]:
            batch += f" (max_concurrency=1: {fmt_rate(_get(res, impl, 'batch_mc1'))})"
        imp = _import_ms(res, impl)
        lines.append(
            f"| {label} | {fmt_us(_get(res, impl, 'invoke'))} | {fmt_us(_get(res, impl, 'ainvoke'))} "
            f"| {fmt_us(_get(res, impl, 'stream'))} | {batch} | {fmt_rate(_get(res, impl, 'abatch'))} "
            f"| {'n/a' if imp is None else f'{imp:,.0f}'} |"
        )
    if "yulian" in impls:
        t = res["targets"]
        inv = _get(res, "yulian", "invoke")
        bat = _get(res, "yulian", "batch")
        imp = _import_ms(res, "yulian")
        torch = impls["yulian"]["import"]["torch_loaded"] if impls["yulian"]["import"] else None

        torch_text = "n/a" if torch is None else ("torch loaded" if torch else "no torch")

        def verdict(ok: bool | None) -> str:
            return "n/a" if ok is None else ("**PASS**" if ok else "**FAIL**")

        torch_verdict = verdict(None if torch is None else not torch)

        lines += [
            "",
            "| yulian target | measured | result |",
            "|---|--:|:-:|",
            f"| invoke <= {t['invoke_us']:g} µs CPU per 3-step call | {fmt_us(inv)} µs "
            f"| {verdict(None if inv is None else inv <= t['invoke_us'])} |",
            f"| batch of 1,000 >= {t['batch_items_per_s'] / 1e3:,.0f}k items/s | {fmt_rate(bat)} "
            f"| {verdict(None if bat is None else bat >= t['batch_items_per_s'])} |",
            f"| `import yulian` <= {t['import_ms']:g} ms CPU | {'n/a' if imp is None else f'{imp:,.1f} ms'} "
            f"| {verdict(None if imp is None else imp <= t['import_ms'])} |",
            f"| `import yulian` loads no torch | {torch_text} | {torch_verdict} |",
        ]
        ratio_rows = []
        for impl in ["langchain", "dspy", "plain"]:
            if impl not in impls:
                continue
            cells = []
            for op in ["invoke", "ainvoke", "stream"]:
                cells.append(ratio(_get(res, impl, op), _get(res, "yulian", op)))
            for op in ["batch", "abatch"]:  # rates: higher is better, so yulian over the other
                cells.append(ratio(_get(res, "yulian", op), _get(res, impl, op)))
            cells.append(ratio(_import_ms(res, impl), _import_ms(res, "yulian")))
            ratio_rows.append(f"| {impls[impl]['label']} | " + " | ".join(cells) + " |")
        if ratio_rows:
            lines += [
                "",
                "Ratios: the other implementation's CPU cost over yulian's (above 1x: yulian is cheaper; "
                "below 1x: the other is cheaper, as plain functions must be).",
                "",
                "| vs | invoke | ainvoke | stream | batch | abatch | import |",
                "|---|--:|--:|--:|--:|--:|--:|",
                *ratio_rows,
            ]
    notes = [
        "",
        "Notes:",
        "- Per-call figures include the measuring loop (`for _ in range(n): chain.invoke(1)`), ~0.02 µs.",
        "- CPU time counts every thread of the process, so thread-pool batches are charged for their "
        "workers; wall-clock figures are in the JSON.",
    ]
    if "langchain" in impls:
        ops = impls["langchain"]["ops"]
        wall = ops.get("batch", {}).get("wall_items_per_s")
        wall_text = f" Default batch wall-clock: {fmt_rate(wall)} items/s." if wall else ""
        notes.append(
            "- langchain-core `batch` runs each step's batch on a `ThreadPoolExecutor` (default "
            "`max_workers=None`: min(32, cpus + 4) threads); `config={'max_concurrency': 1}` still uses a "
            "pool, of one thread. Its `abatch` runs sync `RunnableLambda`s in the default executor via "
            "`run_in_executor`." + wall_text
        )
    if "dspy" in impls:
        d = impls["dspy"]
        wall = d["ops"].get("batch", {}).get("wall_items_per_s")
        notes.append(
            "- DSPy: `module(x)` / `await module.acall(x)` (each child defines `aforward`). batch: "
            + d["info"]["batch"]
            + (f" (wall-clock {fmt_rate(wall)} items/s)" if wall else "")
            + f". stream {d['info']['stream'].removeprefix('n/a: ')}"
            + f"; abatch {d['info']['abatch'].removeprefix('n/a: ')}."
        )
    g = res.get("git", {})
    if g.get("commit"):
        dirty = " with uncommitted changes in `src/`" if g.get("src_dirty") else ""
        notes.append(f"- yulian measured at commit `{g['commit'][:10]}`{dirty}.")
    notes.append(
        f"- Whole run {res['total_s']:.0f} s (of which venv checks/installs {res['install_s']:.0f} s); load "
        f"average {m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end."
    )
    return "\n".join(lines + notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(IMPLS)}")
    parser.add_argument("--skip-install", action="store_true", help="never create venvs or pip install")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--target", type=float, default=0.3, help="CPU seconds per measurement (default 0.3)")
    parser.add_argument("--import-runs", type=int, default=9, help="fresh interpreters per import (9)")
    parser.add_argument("--out", type=Path, default=RESULTS / f"{NAME}.json", help="JSON results file")
    parser.add_argument("--md", type=Path, default=BENCH / "BENCHMARKS.chain.md", help="Markdown section")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    res = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    tmp.replace(args.out)
    md = markdown(res)
    args.md.write_text(md)
    print()
    print(md)
    print(f"wrote {args.out} and {args.md} in {res['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
