"""The end-to-end demo behind `make demo` / `yulian demo`, offline, on the embedded defaults, in a few minutes.

1. chain: a prompt | model | parser chain shown through invoke, batch, stream, async, retry and tracing (a fake
   model: instant);
2. train: a LoRA intent classifier fine-tuned on MiniLM with yulian's Trainer on the embedded 320 banking
   questions (en + zh, `yulian/demo_data/intents.jsonl`), evaluated before/after (report.md, curves.png);
3. compress: the adapter merged, then ONNX Runtime int8 (per-channel) behind the fidelity gate;
4. serve: the classifier, a support-bot chat model and a chain behind an API key (uvicorn on 127.0.0.1), called
   with the `openai` client and httpx, and refused without the key (401);
5. rag: MiniLM retrieval + SmolLM2 answers over a small FAQ, streamed.

Everything lands in one folder (`--out`, default runs/demo); a re-run reuses the steps whose inputs did not change.

    python -m yulian.demo [--out DIR] [--steps chain,train,compress,serve,rag] [--no-real] [--fresh]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yulian import JsonlTracer, MemoryTracer, RunConfig, Runnable, assign, error_path, passthrough, runnable
from yulian.prompts import ChatPrompt, JsonParser, TextParser
from yulian.testing import FakeChatModel

__all__ = ["STEPS", "main", "run"]

STEPS = ("chain", "train", "compress", "serve", "rag")
"""The demo's steps, in order; `--steps` picks some (the steps they need run too, reused when done)."""

ANSWERS = [
    "A language chain links a prompt, a model and a parser so each step feeds the next.",
    "语链把提示词、模型和解析器串在一起，每一步的输出就是下一步的输入。",
]


def _title(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 66 - len(text)))


FAQ = [
    (
        "How do I reset my card PIN?",
        "Open the app, go to Cards > Security > Reset PIN, and confirm with your password.",
    ),
    (
        "My card was lost or stolen.",
        "Freeze the card at once in the app under Cards > Freeze, then order a replacement.",
    ),
    ("How long does a transfer take?", "Transfers between our accounts are instant; other banks take one working day."),
    ("How do I close my account?", "Withdraw your balance, then choose Settings > Close account in the app."),
    ("信用卡丢了怎么办？", "请立即在 App 中冻结卡片（卡片 > 冻结），然后申请补卡。"),
    ("转账多久到账？", "本行账户之间实时到账，跨行转账一个工作日内到账。"),
]


def run_real_models(question: str = "How do I reset my PIN?") -> None:
    """RAG on the embedded defaults: MiniLM retrieval over a small FAQ, SmolLM2 writes the answer, streamed."""
    from transformers.utils import logging as hf_logging

    from yulian.models import load
    from yulian.retrieval import Document, FaissIndex, Retriever, rag_chain

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers' own weight-loading bars: noise at this size

    _title("real packaged models: MiniLM retrieval + SmolLM2 answer")
    print("(the first run converts the packaged SmolLM2 GGUF once, 20-150 s; later runs load it in ~1 s)")
    docs = [Document(f"Q: {q}\nA: {a}", {"source": f"faq#{i}"}) for i, (q, a) in enumerate(FAQ, 1)]
    index = FaissIndex.build(docs, embedder=load("minilm-l6"))
    llm = load("smollm2-135m-instruct", max_tokens=60, extra={"repetition_penalty": 1.15})
    rag = rag_chain(Retriever(index, k=2), llm, lang="en")
    print(f"question: {question}")
    sources: list[Document] = []
    print("answer:   ", end="", flush=True)
    for piece in rag.stream(question):
        sources = piece.get("sources", sources)
        print(piece.get("answer", ""), end="", flush=True)
    print()
    for i, doc in enumerate(sources, 1):
        print(f"  [{i}] {doc.metadata['source']} (score {doc.score:.3f}): {doc.text.splitlines()[0]}")


def run_chain(question: str = "What is a language chain?", stream: bool = True, trace: Path | None = None) -> None:
    """Build a small chain and show every way of calling it (offline, a fake model); the trace goes to `trace`."""
    prompt = ChatPrompt([("system", "Answer in one sentence."), ("user", "{question}")])

    def make_chain() -> Runnable[Any, Any]:  # a fresh fake model answers ANSWERS in order
        return prompt | FakeChatModel(responses=ANSWERS) | TextParser()

    chain = make_chain()

    _title("the chain")
    print(chain.describe())

    _title("invoke")
    print(chain.invoke({"question": question}))

    _title("batch (max_concurrency=4)")
    questions = ["What is a language chain?", "什么是语链？"]
    answers = make_chain().batch([{"question": q} for q in questions], max_concurrency=4)
    for q, answer in zip(questions, answers, strict=True):
        print(f"{q} -> {answer}")

    if stream:
        _title("stream (pieces separated by |)")
        for piece in make_chain().stream({"question": question}):
            print(piece, end="|", flush=True)
            time.sleep(0.01)
        print()

    _title("async: ainvoke and astream")

    async def use_async() -> None:
        print(await chain.ainvoke({"question": question}))
        pieces = [p async for p in chain.astream({"question": "中文？"})]
        print(f"{len(pieces)} pieces: {''.join(pieces)}")

    asyncio.run(use_async())

    _title("parallel branches, assign and a JSON parser")
    json_model = FakeChatModel(responses=['Sure! ```json\n{"sentiment": "positive", "score": 0.93,}\n```'])
    analyse = {"text": passthrough(), "length": len} | assign(
        analysis=runnable(lambda d: d["text"]) | json_model | JsonParser()
    )
    print(analyse.invoke("这家银行的服务很好"))

    _title("retry, fallback and an error that names its step")
    flaky_calls = {"n": 0}

    def flaky(text: str) -> str:
        flaky_calls["n"] += 1
        if flaky_calls["n"] < 3:
            raise ConnectionError("endpoint busy")
        return text.upper()

    print(
        runnable(flaky).with_retry(attempts=3, backoff=0.01).invoke("third time lucky"), f"({flaky_calls['n']} tries)"
    )

    def endpoint_down(text: str) -> str:
        raise TimeoutError("primary endpoint timed out")

    print(runnable(endpoint_down).with_fallbacks([str.title]).invoke("answered by the fallback"))
    broken = make_chain() | JsonParser()
    try:
        broken.invoke({"question": question})
    except ValueError as e:
        print(f"error at {error_path(e)}: {str(e).splitlines()[0]}")

    _title("tracing")
    memory = MemoryTracer()
    with tempfile.TemporaryDirectory() as tmp:
        path = trace or Path(tmp) / "trace.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with JsonlTracer(path) as jsonl:
            chain.invoke({"question": question}, RunConfig(callbacks=[memory, jsonl], tags=("demo",)))
        lines = path.read_text(encoding="utf-8").splitlines()
    print(memory.tree())
    print(f"({len(lines)} JSONL spans written{f' to {trace}' if trace else ''})")


# ============================================================================================ the whole story
def _parse_steps(steps: str | Sequence[str]) -> list[str]:
    names = [s.strip() for s in (steps.split(",") if isinstance(steps, str) else steps) if s.strip()]
    if names in (["all"], []):
        return list(STEPS)
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"unknown demo step {unknown[0]!r} (steps: {', '.join(STEPS)}, or all)")
    return [s for s in STEPS if s in names]


def _quiet_transformers() -> None:
    """Weight-loading bars and load reports of transformers are noise at this size."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    warnings.filterwarnings("ignore", category=FutureWarning)


def _metrics(m: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, float))


def run(
    question: str = "What is a language chain?",
    stream: bool = True,
    real: bool = True,
    out: str | Path = "runs/demo",
    steps: str | Sequence[str] = "all",
    fresh: bool = False,
) -> dict[str, Any]:
    """The demo: the chain, then (with `real`) fine-tune, compress, serve and call, and RAG on real models.

    Args:
        question: the question the demo chain answers.
        stream: also show the answer streamed piece by piece.
        real: run the steps on the real packaged models; False runs only the chain step (instant, offline).
        out: the folder every artefact goes to.
        steps: comma-separated steps to run (`STEPS`) or "all"; steps needed by a chosen one run (or are reused).
        fresh: delete `out` first (no reuse).

    Returns the summary also written to `out`/demo_summary.json (artefact paths, metrics, timings).
    """
    chosen = _parse_steps(steps) if real else ["chain"]
    for step, needs in (("serve", "compress"), ("compress", "train")):  # a step runs (or reuses) what it needs
        if step in chosen and needs not in chosen:
            chosen.insert(chosen.index(step), needs)
    root = Path(out).resolve()  # every path the demo prints is absolute
    if fresh and root.exists():
        if any(root.iterdir()) and not (root / "demo_summary.json").is_file():
            raise ValueError(f"--fresh deletes the output folder, and {root} does not look like a demo's: choose --out")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(root), "steps": {}}
    started = time.perf_counter()
    total = len(chosen) + 1
    number = iter(range(1, total + 1))

    def header(text: str) -> float:
        print(f"\n##### [{next(number)}/{total}] {text} {'#' * max(0, 56 - len(text))}".rstrip(), flush=True)
        return time.perf_counter()

    def done(name: str, t0: float, info: dict[str, Any]) -> None:
        seconds = round(time.perf_counter() - t0, 1)
        summary["steps"][name] = {**info, "step_seconds": seconds}
        reused = " (reused from the last run: inputs unchanged)" if info.get("reused") else ""
        print(f"-> {name} done in {seconds:.1f} s{reused}", flush=True)

    if "chain" in chosen:
        t0 = header("build a chain and call it every way")
        trace = root / "chain" / "trace.jsonl"
        run_chain(question, stream, trace)
        done("chain", t0, {"trace": str(trace)})
    if "train" in chosen:
        _quiet_transformers()
        from yulian import demo_steps

        t0 = header("fine-tune a LoRA intent classifier (MiniLM, embedded en+zh data)")
        trained = demo_steps.train_classifier(root)
        print(f"before -> after fine-tuning (dev, {trained['dev_examples']} questions):")
        print(f"  before: {_metrics(trained['before'])}\n  after:  {_metrics(trained['after'])}")
        print(f"  {trained['trainable']}; report {trained['report']}; curves {trained['curves']}")
        done("train", t0, trained)
        if "compress" in chosen:
            t0 = header("compress: ONNX Runtime int8 (per-channel) behind the fidelity gate")
            packed = demo_steps.compress_classifier(root, trained)
            print(packed["verdict"])
            sizes = packed.get("sizes") or {}
            if sizes:
                print(f"  size {sizes['source_bytes'] / 1e6:.1f} MB -> {sizes['artifact_bytes'] / 1e6:.1f} MB")
            speed = packed.get("texts_per_second") or {}
            if len(speed) == 2:
                ratio = speed["int8"] / speed["fp32"] if speed["fp32"] else float("nan")
                print(f"  speed (dev texts/s, batch 32): fp32 {speed['fp32']}, int8 {speed['int8']} ({ratio:.2f}x)")
            if not packed["passed"]:
                print(f"  the gate refused the int8 model: serving the merged fp32 model {packed['merged']}")
            by_lang = demo_steps.accuracy_by_language(packed["model"])
            print(f"  served model's dev accuracy by language: {by_lang} (MiniLM is an English model)")
            done("compress", t0, {**packed, "accuracy_by_language": by_lang})
            if "serve" in chosen:
                t0 = header("serve chain + models with an API key; call them with the openai client")
                with demo_steps.DemoServer(root, packed["model"]) as server:
                    print(f"serving {server.url} (config {server.config_file}; key {server.key[:12]}...)")
                    calls = demo_steps.call_server(server)
                done(
                    "serve",
                    t0,
                    {"config": str(server.config_file), "audit_log": str(server.audit_log), "calls": calls},
                )
    if "rag" in chosen:
        t0 = header("RAG on the real packaged models")
        run_real_models()
        done("rag", t0, {})
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (root / "demo_summary.json").write_text(
        json.dumps(summary, indent=1, ensure_ascii=False, default=str), encoding="utf-8"
    )
    header("where everything is")
    _print_artefacts(summary, root)
    return summary


def _print_artefacts(summary: dict[str, Any], root: Path) -> None:
    steps = summary["steps"]
    rows: list[tuple[str, Any]] = [("out dir", summary["out"])]
    if "chain" in steps:
        rows.append(("chain trace", steps["chain"]["trace"]))
    if "train" in steps:
        t = steps["train"]
        rows += [
            ("base model", t["base_model"]),
            ("LoRA adapter", t["adapter"]),
            ("report", t["report"]),
            ("curves PNG", t["curves"]),
            ("metrics", t["metrics"]),
        ]
    if "compress" in steps:
        c = steps["compress"]
        rows += [("merged model", c["merged"]), ("compressed (int8)", c["artifact"] or f"refused: {c['refused']}")]
    if "serve" in steps:
        rows += [("server config", steps["serve"]["config"]), ("audit log", steps["serve"]["audit_log"])]
    rows.append(("summary", root / "demo_summary.json"))
    width = max(len(name) for name, _ in rows)
    for name, path in rows:
        print(f"  {name:<{width}}  {path}")
    print(f"total {summary['seconds']:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m yulian.demo`: the options of `run` on the command line."""
    parser = argparse.ArgumentParser(prog="python -m yulian.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="What is a language chain?", help="the question the chain answers")
    parser.add_argument("--out", default="runs/demo", help="the folder every artefact goes to")
    parser.add_argument("--steps", default="all", help=f"comma-separated: {','.join(STEPS)} (default all)")
    parser.add_argument("--no-real", dest="real", action="store_false", help="only the chain step (instant)")
    parser.add_argument("--no-stream", dest="stream", action="store_false", help="skip the streaming section")
    parser.add_argument("--fresh", action="store_true", help="delete --out first: no reuse of finished steps")
    args = parser.parse_args(argv)
    try:
        _parse_steps(args.steps)
    except ValueError as e:
        parser.error(str(e))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the demo uses is local
    run(args.question, args.stream, args.real, args.out, args.steps, args.fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
