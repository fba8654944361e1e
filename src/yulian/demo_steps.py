"""The steps of the end-to-end demo after the chain: fine-tune, compress behind the gate, serve, call.

Each step writes into one folder under the demo's `--out` and a `demo_step.json` marker holding the fingerprint of
its inputs (data, settings, the previous step's marker); a re-run whose inputs did not change reuses the folder.

    trained = train_classifier("runs/demo")              # LoRA on MiniLM, the embedded intent data
    packed = compress_classifier("runs/demo", trained)   # ONNX Runtime int8 per-channel, gated on dev
    with DemoServer("runs/demo", packed["model"]) as server:
        call_server(server)                              # openai client, /v1/classify, a chain, a 401

Everything is offline; the step functions take the base model and data as arguments, so tests run them on tiny
random models.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from yulian.core.messages import Message
from yulian.core.runnable import Runnable
from yulian.models.base import ChatModel, GenerationConfig

__all__ = [
    "ANSWERS",
    "DATA_FILE",
    "DemoServer",
    "TrainSettings",
    "accuracy_by_language",
    "call_server",
    "compress_classifier",
    "load_data",
    "support_bot",
    "support_chain",
    "train_classifier",
]

DATA_FILE = Path(__file__).with_name("demo_data") / "intents.jsonl"
"""The embedded labelled set: 320 short banking questions (en + zh), 5 intents."""

MARKER = "demo_step.json"

ANSWERS = {
    "card_lost": "Freeze the card at once in the app under Cards > Freeze, then order a replacement.",
    "reset_pin": "Open the app, go to Cards > Security > Reset PIN, and confirm with your password.",
    "transfer_time": "Transfers between our accounts are instant; other banks take one working day.",
    "close_account": "Withdraw your balance, then choose Settings > Close account in the app.",
    "check_balance": "Your balance is on the app's home screen; pull down to refresh it.",
}
"""The support bot's answer for each intent of the embedded data."""


def say(message: str) -> None:
    """A step message on stdout (flushed: the demo is watched live)."""
    print(message, flush=True)


# ============================================================================================ reuse
def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _reusable(folder: Path, fingerprint: str) -> dict[str, Any] | None:
    """The marker of a finished step in `folder` made from the same inputs, else None."""
    marker = folder / MARKER
    try:
        saved: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return saved if saved.get("fingerprint") == fingerprint else None


def _finish(folder: Path, summary: dict[str, Any]) -> dict[str, Any]:
    (folder / MARKER).write_text(json.dumps(summary, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return summary


# ============================================================================================ data
def load_data(path: str | Path = DATA_FILE, dev_size: int = 100) -> tuple[list[Any], list[Any]]:
    """(train, dev) TextExamples from a JSONL file of {"text", "label"}; the last `dev_size` lines are dev."""
    from yulian.tuning.data_types import TextExample

    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            record = json.loads(line)
            rows.append(TextExample(text=record["text"], label=record["label"], line=n))
    if len(rows) <= dev_size:
        raise ValueError(f"{path}: {len(rows)} examples, need more than dev_size={dev_size}")
    return rows[:-dev_size], rows[-dev_size:]


def accuracy_by_language(model: str | Path, data: str | Path = DATA_FILE, dev_size: int = 100) -> dict[str, float]:
    """Dev accuracy of the classifier in `model` per `lang` field of the data ("en", "zh")."""
    rows = [json.loads(x) for x in Path(data).read_text(encoding="utf-8").splitlines() if x.strip()][-dev_size:]
    predictions = _classifier(str(model)).batch([r["text"] for r in rows])
    hits: dict[str, list[bool]] = {}
    for row, prediction in zip(rows, predictions, strict=True):
        hits.setdefault(str(row.get("lang", "all")), []).append(prediction.label == row["label"])
    return {lang: round(sum(h) / len(h), 4) for lang, h in sorted(hits.items())}


def _write_jsonl(path: Path, examples: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps({"text": e.text, "label": e.label}, ensure_ascii=False) for e in examples)
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return path


# ============================================================================================ fine-tune
@dataclass(frozen=True)
class TrainSettings:
    """The demo's fine-tuning: small and fast (LoRA r=8 on MiniLM, 4 epochs of 220 texts, 32 tokens).

    Attributes:
        epochs / batch_size / max_length / lr: the Trainer's settings.
        dev_size: the last lines of the data that form the dev set.
        rank: LoRA rank. seed: the random seed. threads: torch threads (None: leave).
    """

    epochs: int = 4
    batch_size: int = 16
    max_length: int = 32
    lr: float = 5e-3
    dev_size: int = 100
    rank: int = 8
    seed: int = 42
    threads: int | None = None


def train_classifier(
    out: str | Path,
    *,
    base_model: str | Path | None = None,
    data: str | Path = DATA_FILE,
    settings: TrainSettings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune a LoRA intent classifier into `out`/classifier with yulian's Trainer (or reuse a finished run).

    Returns the step summary: `adapter` (the LoRA folder), `dev` (the dev file), `before` / `after` metrics,
    `report`, `curves`, `metrics`, `seconds`, `reused`.
    """
    from yulian.models.registry import resolve

    settings = settings or TrainSettings()
    root = Path(out)
    folder = root / "classifier"
    base = str(resolve(str(base_model or "minilm-l6")).path)
    train, dev = load_data(data, settings.dev_size)
    dev_file = _write_jsonl(root / "data" / "dev.jsonl", dev)
    fingerprint = _digest(Path(data).read_bytes(), asdict(settings), base)
    paths = {
        "adapter": str(folder),
        "dev": str(dev_file),
        "report": str(folder / "report.md"),
        "curves": str(folder / "curves.png"),
        "metrics": str(folder / "metrics.json"),
    }
    saved = _reusable(folder, fingerprint)
    if saved is not None:  # the paths as they are now (the folder may have moved)
        return {**saved, **paths, "reused": True}
    from yulian.tuning.tasks import TaskConfig, get_task
    from yulian.tuning.trainer import TrainConfig, Trainer

    shutil.rmtree(folder, ignore_errors=True)
    task = get_task("classification", TaskConfig(max_length=settings.max_length))
    config = TrainConfig(
        method="lora",
        method_options={"r": settings.rank},
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        warmup=0.1,
        dropout=0.0,
        seed=settings.seed,
        threads=settings.threads,
        progress=progress,
        eval_batch_size=100,
    )
    started = time.perf_counter()
    result = Trainer(task, config, folder).fit(train, dev, base)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # resume state: not needed once finished
    metrics = result.metrics
    return _finish(
        folder,
        {
            "fingerprint": fingerprint,
            **paths,
            "base_model": base,
            "train_examples": len(train),
            "dev_examples": len(dev),
            "before": metrics.get("before", {}),
            "after": metrics.get("after", {}),
            "trainable": metrics.get("trainable"),
            "seconds": round(time.perf_counter() - started, 1),
            "reused": False,
        },
    )


# ============================================================================================ compress
def compress_classifier(
    out: str | Path, trained: dict[str, Any], *, max_drop: float = 1.0, min_agreement: float = 0.95
) -> dict[str, Any]:
    """Merge the LoRA adapter, then compress it to ONNX Runtime int8 (per-channel) behind the fidelity gate, which
    refuses it when dev accuracy falls by more than `max_drop` points or fewer than `min_agreement` of the dev
    predictions stay the same.

    Returns the step summary: `merged` (the fp32 model), `artifact` (the int8 folder, or None when refused),
    `model` (what to serve: the artefact, or the merged model when the gate refused it), `fidelity` (the gate's
    report as a dict), `passed`, `sizes`, `reused`.
    """
    from yulian.compression import CompressionRefused, Thresholds, compress
    from yulian.tuning.adapters import merge

    root = Path(out)
    folder = root / "compressed"
    fingerprint = _digest(trained["fingerprint"], max_drop, min_agreement)
    merged, artifact = folder / "merged-fp32", folder / "int8"
    refused_dir = artifact.with_name(artifact.name + ".refused")

    def paths(passed: bool) -> dict[str, Any]:
        return {
            "merged": str(merged),
            "artifact": str(artifact) if passed else None,
            "refused": None if passed else str(refused_dir),
            "model": str(artifact if passed else merged),
        }

    saved = _reusable(folder, fingerprint)
    if saved is not None:  # the paths as they are now (the folder may have moved)
        return {**saved, **paths(bool(saved.get("passed"))), "reused": True}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    say(f"merging the LoRA adapter into its base model -> {merged}")
    merge(trained["adapter"], merged)
    thresholds = Thresholds(max_drop=max_drop, min_agreement=min_agreement)
    say(f"exporting to ONNX, quantising to int8, then checking fidelity on {trained['dev']}")
    speed: dict[str, float] = {}
    try:
        result = compress(merged, "onnx-int8", trained["dev"], artifact, thresholds=thresholds, progress=False)
        report, passed, sizes = result.report, True, result.info.sizes
        speed = _speed({"fp32": merged, "int8": artifact}, trained["dev"])
    except CompressionRefused as refused:
        report, passed, sizes = refused.report, False, {}
    return _finish(
        folder,
        {
            "fingerprint": fingerprint,
            **paths(passed),
            "passed": passed,
            "fidelity": report.to_dict(),
            "verdict": report.format(),
            "sizes": sizes,
            "texts_per_second": speed,
            "seconds": round(time.perf_counter() - started, 1),
            "reused": False,
        },
    )


def _speed(models: dict[str, Path], dev: str | Path, rounds: int = 3) -> dict[str, float]:
    """Texts per second of each model classifying the dev texts in batches of 32 (rounds interleaved A B A B,
    median kept): a rough side-by-side number, not a benchmark."""
    import statistics

    from yulian.models import load

    texts = [json.loads(x)["text"] for x in Path(dev).read_text(encoding="utf-8").splitlines() if x.strip()]
    loaded = {name: load(str(path), "classify", batch_size=32) for name, path in models.items()}
    for model in loaded.values():
        model.batch(texts[:8])  # load and warm up
    times: dict[str, list[float]] = {name: [] for name in loaded}
    for _ in range(rounds):
        for name, model in loaded.items():
            t0 = time.perf_counter()
            model.batch(texts)
            times[name].append(time.perf_counter() - t0)
    return {name: round(len(texts) / statistics.median(t), 1) for name, t in times.items()}


# ============================================================================================ served things
@functools.lru_cache(maxsize=4)
def _classifier(path: str) -> Any:
    """One predictor per model folder, shared by the bot and the chain of a server."""
    from yulian.models import load

    return load(path, "classify")


def _answer(prediction: Any) -> dict[str, Any]:
    label = str(prediction.label)
    return {"intent": label, "confidence": round(float(prediction.score), 4), "answer": ANSWERS.get(label, "")}


def support_chain(classifier: str) -> Runnable[Any, Any]:
    """The served chain: a question -> the fine-tuned classifier -> `{"intent", "confidence", "answer"}`."""
    from yulian import runnable

    chain: Runnable[Any, Any] = _classifier(str(classifier)) | runnable(_answer)
    return chain


class SupportBot(ChatModel):
    """A chat model for `/v1/chat/completions` whose replies come from the support chain: the last user message
    is classified and answered with that intent's canned answer."""

    def __init__(self, classifier: str, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.classifier = str(classifier)

    def _generate(self, messages: list[Message], options: GenerationConfig) -> Message:
        question = next((m.content for m in reversed(messages) if m.role == "user"), "")
        result = _answer(_classifier(self.classifier).invoke(question))
        text = f"{result['answer']} (intent {result['intent']}, confidence {result['confidence']:.2f})"
        return Message("assistant", text, metadata={"finish_reason": "stop"})


def support_bot(classifier: str) -> ChatModel:
    """The served chat model (a `SupportBot` over the classifier folder)."""
    return SupportBot(classifier)


# ============================================================================================ serve
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_config(out: str | Path, model: str | Path, key_hash: str, port: int = 0) -> dict[str, Any]:
    """The server configuration (plain data, as in a `yulian serve --config` YAML file)."""
    root = Path(out).resolve()
    return {
        "models": [
            {"name": "intent", "source": str(Path(model).resolve()), "task": "classify"},
            {
                "name": "support-bot",
                "factory": "yulian.demo_steps:support_bot",
                "task": "chat",
                "options": {"classifier": str(Path(model).resolve())},
            },
        ],
        "chains": [
            {
                "name": "support",
                "factory": "yulian.demo_steps:support_chain",
                "options": {"classifier": str(Path(model).resolve())},
            }
        ],
        "keys": [{"id": "demo", "sha256": key_hash, "models": ["*"]}],
        "audit_log": str(root / "server" / "audit.jsonl"),
        "port": port,
    }


class DemoServer:
    """`yulian.serving.create_app` on uvicorn in a background thread, on 127.0.0.1 and a free port.

    Writes `out`/server/serve.yaml (the key only as its hash; the key itself is new each run and only printed
    shortened). Use as a context manager: entering waits for `/readyz`, leaving stops the server.
    """

    def __init__(self, out: str | Path, model: str | Path, *, ready_timeout: float = 120.0) -> None:
        from yulian.serving import hash_key

        self.key = "yl-demo-" + secrets.token_urlsafe(24)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = Path(out) / "server"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_file = self.folder / "serve.yaml"
        self.data = serve_config(out, model, hash_key(self.key), self.port)
        self.audit_log = Path(self.data["audit_log"])
        self.ready_timeout = ready_timeout
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DemoServer:
        import httpx
        import uvicorn
        import yaml  # type: ignore[import-untyped]

        from yulian.serving import create_app, load_config

        self.config_file.write_text(yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        config = load_config(self.config_file)  # the file written is the configuration served
        uv = uvicorn.Config(create_app(config), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(uv)
        self._thread = threading.Thread(target=self._server.run, name="yulian-demo-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError(f"the demo server stopped while starting (config {self.config_file})")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise TimeoutError(f"the demo server at {self.url} was not ready within {self.ready_timeout:.0f} s")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)


def call_server(server: DemoServer, questions: list[str] | None = None) -> dict[str, Any]:
    """Call the served bot with the `openai` client, `/v1/classify` and the chain with httpx, and show that a
    request without the key gets 401. Returns what came back (for the report and the tests)."""
    import httpx
    import openai

    questions = questions or ["I lost my credit card yesterday", "转账多久到账？"]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    auth = {"authorization": f"Bearer {server.key}"}
    results: dict[str, Any] = {}
    say(f"openai client -> {server.url}/v1/chat/completions (model support-bot)")
    replies = []
    for q in questions:
        reply = client.chat.completions.create(model="support-bot", messages=[{"role": "user", "content": q}])
        replies.append(reply.choices[0].message.content)
        say(f"  user: {q}\n  bot:  {replies[-1]}")
    results["chat"] = replies
    say("httpx -> /v1/classify (model intent)")
    response = httpx.post(server.url + "/v1/classify", json={"model": "intent", "input": questions}, headers=auth)
    response.raise_for_status()
    results["classify"] = response.json()["data"]
    for q, item in zip(questions, results["classify"], strict=True):
        say(f"  {q!r} -> {item['label']} ({item['score']:.3f})")
    say("httpx -> /v1/chains/support/invoke")
    response = httpx.post(
        server.url + "/v1/chains/support/invoke", json={"input": "how do I reset my PIN"}, headers=auth
    )
    response.raise_for_status()
    results["chain"] = response.json()["output"]
    say(f"  {results['chain']}")
    say("without the key:")
    try:
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong-key", max_retries=0).models.list()
        results["unauthorised"] = None
    except openai.AuthenticationError as e:
        results["unauthorised"] = e.status_code
        say(f"  openai client with a wrong key -> {e.status_code} ({type(e).__name__})")
    bare = httpx.post(server.url + "/v1/classify", json={"model": "intent", "input": "hi"})
    results["no_key_status"] = bare.status_code
    say(f"  httpx with no key -> {bare.status_code}")
    return results


def audit_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The audit log's records (for the summary)."""
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)
