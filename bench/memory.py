"""Chat memory: the cost of a chat turn with history, yulian `with_history` against LangChain's
`RunnableWithMessageHistory`.

The chain is a chat prompt with a history placeholder piped into a fake chat model that always answers "ok", so
only the framework is measured. One unit of work is a 20-turn conversation in a fresh session: each turn loads
the session's history into the prompt, runs the chain and saves the question and the reply.

- `yulian bare`: the chain alone, history passed by hand (empty), as the floor.
- `yulian memory`: `with_history(chain, lambda sid: InMemoryChatHistory, window=None)` (whole history, as
  LangChain loads it).
- `yulian sqlite`: `with_history(chain, SQLiteChatStore(<file>), window=20)`: the default, a real database file
  in WAL mode.
- `langchain bare` / `langchain memory`: `ChatPromptTemplate | FakeListChatModel`, then wrapped in
  `RunnableWithMessageHistory` with `InMemoryChatMessageHistory` (langchain-core 1.8.3, the venv under
  bench/.venvs/langchain that bench/chain_overhead.py makes).

Each implementation runs in its own child process, asked in turn (A B C ... rounds); CPU time per turn
(`time.process_time`), medians over rounds. Overhead = with history - bare, within each framework.

Run from the repository root:  .venv/bin/python bench/memory.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from _common import Child

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
NAME = "memory"
TURNS = 20
LANGCHAIN_PYTHON = BENCH / ".venvs" / "langchain" / "bin" / "python"
IMPLS = {
    "yulian bare": "yulian",
    "yulian memory": "yulian",
    "yulian sqlite": "yulian",
    "langchain bare": "langchain",
    "langchain memory": "langchain",
}
TARGETS = {"sqlite_overhead_us": 1000.0, "memory_overhead_vs_langchain": 1.0}


# ============================================================================================ the child side
def _setup_yulian(kind: str, folder: str) -> Any:
    from yulian.prompts import ChatPrompt, placeholder
    from yulian.retrieval.memory import InMemoryChatHistory, SQLiteChatStore, with_history
    from yulian.testing import FakeChatModel

    chain = ChatPrompt([("system", "Answer briefly."), placeholder("history"), ("user", "{question}")]) | FakeChatModel(
        ["ok"]
    )
    if kind == "bare":
        return lambda sid, q: chain.invoke({"question": q, "history": []})
    if kind == "memory":
        sessions: dict[str, InMemoryChatHistory] = {}
        bot = with_history(chain, lambda sid: sessions.setdefault(sid, InMemoryChatHistory(sid)), window=None)
    else:
        bot = with_history(chain, SQLiteChatStore(Path(folder) / "chat.db"), window=20)
    return lambda sid, q: bot.invoke({"question": q}, config={"metadata": {"session_id": sid}})


def _setup_langchain(kind: str, folder: str) -> Any:
    import warnings

    warnings.simplefilter("ignore")
    from langchain_core.chat_history import InMemoryChatMessageHistory
    from langchain_core.language_models import FakeListChatModel
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
    from langchain_core.runnables.history import RunnableWithMessageHistory

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer briefly."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    chain = prompt | FakeListChatModel(responses=["ok"])
    if kind == "bare":
        return lambda sid, q: chain.invoke({"question": q, "history": []})
    sessions: dict[str, Any] = {}
    bot = RunnableWithMessageHistory(
        chain,
        lambda sid: sessions.setdefault(sid, InMemoryChatMessageHistory()),
        input_messages_key="question",
        history_messages_key="history",
    )
    return lambda sid, q: bot.invoke({"question": q}, config={"configurable": {"session_id": sid}})


def worker(impl: str, folder: str) -> None:
    proto: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from importlib import metadata

    framework, kind = impl.split()
    turn = (_setup_yulian if framework == "yulian" else _setup_langchain)(kind, folder)
    dist = "yulian" if framework == "yulian" else "langchain-core"
    counter = [0]

    def conversation(n: int) -> None:
        for _ in range(n):
            counter[0] += 1
            sid = f"{impl}-{counter[0]}"
            for t in range(TURNS):
                turn(sid, f"question {t}")

    conversation(2)  # warm up
    proto.write(json.dumps({"version": metadata.version(dist), "python": platform.python_version()}) + "\n")
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "calibrate":
            n = 1
            while True:
                t0 = time.process_time()
                conversation(n)
                cpu = time.process_time() - t0
                if cpu >= msg["target_s"] / 4:
                    break
                n *= 2
            proto.write(json.dumps({"n": max(1, round(n * msg["target_s"] / cpu))}) + "\n")
        elif msg["cmd"] == "run":
            c0, w0 = time.process_time(), time.perf_counter()
            conversation(msg["n"])
            proto.write(json.dumps({"cpu": time.process_time() - c0, "wall": time.perf_counter() - w0}) + "\n")
        else:
            break


# ============================================================================================ the parent side
def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    loadavg_start = os.getloadavg()
    pythons = {"yulian": ROOT / ".venv" / "bin" / "python", "langchain": LANGCHAIN_PYTHON}
    impls = [i for i, fw in IMPLS.items() if fw == "yulian" or LANGCHAIN_PYTHON.exists()]
    if len(impls) < len(IMPLS):
        print(f"[venv] {LANGCHAIN_PYTHON} missing (run bench/chain_overhead.py once): LangChain skipped", flush=True)
    samples: dict[str, list[dict[str, float]]] = {i: [] for i in impls}
    with tempfile.TemporaryDirectory(prefix="yulian-memory-bench-") as folder:
        children = {
            i: Child(
                i, pythons[IMPLS[i]], __file__, RESULTS / f"{NAME}-{i}.stderr.tmp", extra_args=("--folder", folder)
            )
            for i in impls
        }
        try:
            plan = {i: c.ask(cmd="calibrate", target_s=args.target)["n"] for i, c in children.items()}
            print(f"[calibrate] conversations per measurement: {plan}", flush=True)
            for rnd in range(1, args.rounds + 1):
                for i, c in children.items():
                    samples[i].append({**c.ask(cmd="run", n=plan[i]), "n": plan[i]})
                print(f"[round {rnd}/{args.rounds}]", flush=True)
        finally:
            for c in children.values():
                c.close()
    out: dict[str, Any] = {}
    for i, rows in samples.items():
        per_turn = [r["cpu"] / (r["n"] * TURNS) * 1e6 for r in rows]
        out[i] = {
            "version": children[i].hello["version"],
            "cpu_us_per_turn": statistics.median(per_turn),
            "min": min(per_turn),
            "max": max(per_turn),
            "wall_us_per_turn": statistics.median(r["wall"] / (r["n"] * TURNS) * 1e6 for r in rows),
            "rounds": rows,
        }
    return {
        "benchmark": NAME,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": loadavg_start,
            "loadavg_end": os.getloadavg(),
        },
        "settings": {"rounds": args.rounds, "target_s": args.target, "turns_per_conversation": TURNS},
        "targets": TARGETS,
        "implementations": out,
        "total_s": round(time.perf_counter() - t0, 1),
    }


def markdown(res: dict[str, Any]) -> str:
    impls = res["implementations"]
    m = res["machine"]

    def us(name: str) -> float | None:
        return impls[name]["cpu_us_per_turn"] if name in impls else None

    lines = [
        "## Chat memory: cost of a turn with history",
        "",
        f"`bench/memory.py`, run {res['date']}, {m['cpus']} cores (shared, noisy), Python {m['python']}. A chat "
        'prompt with a history placeholder piped into a fake model answering "ok"; 20-turn conversations in fresh '
        "sessions; CPU time per turn (`time.process_time`), median of "
        f"{res['settings']['rounds']} interleaved rounds, each implementation in its own process. Raw data: "
        f"`bench/results/{NAME}.json`.",
        "",
        "| implementation | µs CPU per turn | overhead of history (µs) |",
        "|---|--:|--:|",
    ]
    labels = {
        "yulian bare": "yulian: chain alone",
        "yulian memory": "yulian: `with_history`, in-memory, whole history",
        "yulian sqlite": "yulian: `with_history`, SQLite file (WAL), window 20",
        "langchain bare": "langchain-core: chain alone",
        "langchain memory": "langchain-core: `RunnableWithMessageHistory`, in-memory",
    }
    for name, label in labels.items():
        if name not in impls:
            continue
        base = us(f"{name.split()[0]} bare")
        overhead = "" if name.endswith("bare") or base is None else f"{impls[name]['cpu_us_per_turn'] - base:,.0f}"
        version = impls[name]["version"]
        lines.append(f"| {label} ({version}) | {impls[name]['cpu_us_per_turn']:,.0f} | {overhead} |")
    rows = []
    yb, ym, ys = us("yulian bare"), us("yulian memory"), us("yulian sqlite")
    if yb is not None and ys is not None:
        over = ys - yb
        ok = over <= res["targets"]["sqlite_overhead_us"]
        rows.append(f"| SQLite file history costs <= 1 ms CPU per turn | {over:,.0f} µs | {_verdict(ok)} |")
    lb, lm = us("langchain bare"), us("langchain memory")
    if None not in (yb, ym, lb, lm):
        assert yb is not None and ym is not None and lb is not None and lm is not None
        ratio = (lm - lb) / max(ym - yb, 1e-9)
        rows.append(
            f"| in-memory history overhead <= LangChain's | {ym - yb:,.0f} vs {lm - lb:,.0f} µs ({ratio:,.1f}x less) "
            f"| {_verdict(ym - yb <= lm - lb)} |"
        )
    lines += ["", "| yulian target | measured | result |", "|---|--:|:-:|", *rows]
    lines += [
        "",
        "Notes:",
        "- The two frameworks' fake models differ, so compare the overhead column, not the bare rows.",
        "- langchain-core 1.8.3 marks `RunnableWithMessageHistory` and `InMemoryChatMessageHistory` deprecated "
        "(in favour of LangGraph persistence); they are still what langchain-core offers for this.",
        f"- Whole run {res['total_s']:.0f} s; load average {m['loadavg_start'][0]:.2f} at start, "
        f"{m['loadavg_end'][0]:.2f} at end.",
        "- Command: `.venv/bin/python bench/memory.py`",
    ]
    return "\n".join(lines) + "\n"


def _verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--target", type=float, default=0.3, help="CPU seconds per measurement (default 0.3)")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.folder)
        return 0
    res = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    text = markdown(res)
    (BENCH / f"BENCHMARKS.{NAME}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
