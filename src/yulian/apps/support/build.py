"""Build a support bot folder: fine-tune one intent classifier per language, index the FAQ per language.

```python
from yulian.apps.support import SupportConfig, train_bot, SupportBot
folder = train_bot(SupportConfig(faq="faq.jsonl", intents="intents.csv"), "runs/apps/support/bot")
bot = SupportBot.load(folder)
```

The folder holds `bot.json` (the config and, per language, the parts), `intent-<lang>/` (a classifier fine-tuned
with `yulian.tuning.Trainer` from `config.encoders[lang]`: minilm-l6 for English, multilingual-e5-small for
Chinese), `faq-<lang>/` (a FAISS index of the FAQ questions embedded by the same encoder, with the answers in the
metadata) and, once chatting, the SQLite memory. `demo_bot()` builds the bot of the embedded bilingual demo data
once and caches it.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from yulian.apps.support.bot import BOT_FILE
from yulian.apps.support.config import (
    FAQEntry,
    IntentExample,
    SupportConfig,
    SupportDataError,
    read_faq,
    read_intents,
)

__all__ = ["DATA_DIR", "demo_bot", "demo_config", "faq_documents", "train_bot", "train_intents"]

DATA_DIR = Path(__file__).resolve().parent / "data"
"""The embedded bilingual demo data: faq.jsonl, intents.csv and eval.csv."""


def demo_config(**overrides: Any) -> SupportConfig:
    """The config of the embedded demo bot (a bank/shop FAQ and 8 intents, English and Chinese)."""
    return replace(SupportConfig(faq=str(DATA_DIR / "faq.jsonl"), intents=str(DATA_DIR / "intents.csv")), **overrides)


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def faq_documents(entries: list[FAQEntry]) -> list[Any]:
    """FAQ entries as retrieval documents: the question is the searched text; answer, source and intent ride in
    the metadata (the bot puts question + answer in the prompt and cites `source`)."""
    from yulian.retrieval.documents import Document

    return [
        Document(
            e.question,
            {"faq_id": e.id, "question": e.question, "answer": e.answer, "source": e.source, "intent": e.intent},
            id=e.id,
        )
        for e in entries
    ]


def _cap(examples: list[IntentExample], per_intent: int | None, seed: int) -> list[IntentExample]:
    if per_intent is None:
        return examples
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    kept: Counter[str] = Counter()
    out = []
    for e in shuffled:
        if kept[e.intent] < per_intent:
            kept[e.intent] += 1
            out.append(e)
    return out


def _method(base_model: str, train_layers: int | None) -> tuple[str, dict[str, Any]]:
    """("freeze", {embeddings, layers}) training only the top `train_layers` layers and the head, or ("full", {})."""
    if train_layers is None:
        return "full", {}
    from yulian.tuning.tasks.classification import model_path

    try:
        layers = int(json.loads((Path(model_path(base_model)) / "config.json").read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return "full", {}
    frozen = max(0, layers - train_layers)
    return "freeze", ({"embeddings": True, "layers": frozen} if frozen else {"embeddings": True})


def train_intents(
    examples: list[IntentExample],
    base_model: str,
    out: str | Path,
    config: SupportConfig,
    *,
    dev: list[IntentExample] | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Fine-tune a sequence classifier on `examples` from `base_model` into `out` (full fine-tuning, bf16 where
    the CPU has it, length-grouped batches); returns the trainer's metrics (before/after on `dev` when given)."""
    from yulian.tuning.data import TextExample
    from yulian.tuning.tasks import get_task
    from yulian.tuning.tasks.base import TaskConfig
    from yulian.tuning.trainer import TrainConfig, Trainer

    labels = sorted({e.intent for e in examples})
    if len(labels) < 2:
        raise SupportDataError(f"intent data needs at least 2 intents to learn from, got {labels}")
    train = [TextExample(e.text, label=e.intent, line=e.line) for e in examples]
    dev_set = [TextExample(e.text, label=e.intent, line=e.line) for e in dev] if dev else None
    task = get_task("classification", TaskConfig(max_length=config.max_length))
    method, options = _method(base_model, config.train_layers)
    train_config = TrainConfig(
        method=method,
        method_options=options,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        dropout=config.dropout,
        warmup=0.1,
        seed=config.seed,
        max_steps=max_steps,
        threads=threads,
        progress=progress,
        artifacts=False,  # no checkpoints (an e5 checkpoint with its optimiser is ~1.4 GB): the model only
    )
    result = Trainer(task, train_config, out).fit(train, dev_set, base_model)
    return dict(result.metrics)


def train_bot(
    config: SupportConfig,
    out: str | Path,
    *,
    progress: bool = True,
    max_steps: int | None = None,
    threads: int | None = None,
) -> Path:
    """Fine-tune the intent classifiers and index the FAQ into folder `out`; returns `out`.

    Languages come from the data (a `lang` column, or detected per row); each language found needs an entry in
    `config.encoders`. A language with FAQ entries but no intents (or the reverse) borrows the other language's
    part at chat time.
    """
    if not config.intents:
        raise SupportDataError("no intent data: set 'intents' in the config (or --intents FILE)")
    if not config.faq:
        raise SupportDataError("no FAQ: set 'faq' in the config (or --faq FILE)")
    root = Path(out).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    intents = read_intents(config.intents)
    faq = read_faq(config.faq)
    by_lang: dict[str, list[IntentExample]] = defaultdict(list)
    for e in intents:
        by_lang[e.lang].append(e)
    faq_by_lang: dict[str, list[FAQEntry]] = defaultdict(list)
    for f in faq:
        faq_by_lang[f.lang].append(f)
    for lang in sorted(set(by_lang) | set(faq_by_lang)):
        if lang not in config.encoders:
            raise SupportDataError(
                f"the data has {lang} text but config.encoders has no {lang!r} model "
                f"(encoders: {', '.join(config.encoders)})"
            )
    languages: dict[str, dict[str, Any]] = {}
    for lang in sorted(set(by_lang) | set(faq_by_lang)):
        encoder = config.encoders[lang]
        parts: dict[str, Any] = {"encoder": encoder, "classifier": None, "index": None}
        if lang in by_lang:
            examples = _cap(by_lang[lang], config.max_per_intent, config.seed)
            start = time.perf_counter()
            _log(
                progress,
                f"[support] fine-tuning the {lang} intent classifier on {len(examples)} utterances ({encoder})",
            )
            train_intents(
                examples,
                encoder,
                root / f"intent-{lang}",
                config,
                progress=progress,
                max_steps=max_steps,
                threads=threads,
            )
            parts["classifier"] = f"intent-{lang}"
            parts["train_examples"] = len(examples)
            parts["intents"] = sorted({e.intent for e in examples})
            parts["train_seconds"] = round(time.perf_counter() - start, 1)
        if lang in faq_by_lang:
            from yulian.models.embed_commands import load_embedder
            from yulian.retrieval.faiss_index import FaissIndex

            _log(progress, f"[support] indexing {len(faq_by_lang[lang])} {lang} FAQ entries ({encoder})")
            FaissIndex.build(faq_documents(faq_by_lang[lang]), load_embedder(encoder)).save(root / f"faq-{lang}")
            parts["index"] = f"faq-{lang}"
            parts["faq_entries"] = len(faq_by_lang[lang])
        languages[lang] = parts
    manifest = {"config": config.to_dict(), "languages": languages, "fingerprint": fingerprint(config)}
    (root / BOT_FILE).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    _log(progress, f"[support] bot written to {root}")
    return root


TRAINING_FIELDS = (
    "faq",
    "intents",
    "encoders",
    "epochs",
    "batch_size",
    "lr",
    "max_length",
    "max_per_intent",
    "seed",
    "train_layers",
    "dropout",
)
"""The config fields a built bot depends on; the others (thresholds, generator, k...) apply at chat time."""


def fingerprint(config: SupportConfig) -> str:
    """A hash of the training fields of the config and the bytes of its data files: a cached bot is rebuilt when
    either changes (not when only a threshold or the generator does)."""
    values = config.to_dict()
    digest = hashlib.sha256(json.dumps({k: values[k] for k in TRAINING_FIELDS}, sort_keys=True).encode())
    for path in (config.faq, config.intents):
        if path and Path(path).is_file():
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def demo_bot(folder: str | Path | None = None, *, progress: bool = True, **overrides: Any) -> Path:
    """The folder of the embedded demo bot, built the first time (a few minutes on 2 cores: two small fine-tunings)
    and then cached under `cache_dir()/apps/support/demo` (or `folder`); rebuilt only when its training inputs
    change (`fingerprint`), while newer chat-time settings are written into the cached manifest."""
    config = demo_config(**overrides)
    if folder is None:
        from yulian.models.registry import cache_dir

        folder = cache_dir() / "apps" / "support" / "demo"
    root = Path(folder).expanduser()
    manifest = root / BOT_FILE
    if manifest.is_file():
        try:
            built = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            built = {}
        if built.get("fingerprint") == fingerprint(config):
            if built.get("config") != config.to_dict():  # same models, newer chat-time settings: take them
                built["config"] = config.to_dict()
                manifest.write_text(json.dumps(built, ensure_ascii=False, indent=2), encoding="utf-8")
            return root
    _log(progress, f"[support] building the demo bot once into {root} (fine-tuning 2 small classifiers)")
    return train_bot(config, root, progress=progress)
