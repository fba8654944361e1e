"""`yulian app monitor ...`: train the sentiment model, run the monitor, replay a data set, serve the dashboard.

    $ yulian app monitor train --lang en --out runs/apps/monitor/en           # FPB; reuses a finished run
    $ yulian app monitor run --input news.jsonl --follow --model runs/apps/monitor/en \\
          --db monitor.sqlite --alerts alerts.jsonl --entities entities.json [--webhook URL] [--serve --port 8000]
    $ tail -f feed.jsonl | yulian app monitor run --input - --model lexicon
    $ yulian app monitor replay --data fpb --model runs/apps/monitor/en --inject-burst ACME@+48h
    $ yulian app monitor serve --db monitor.sqlite --port 8000                 # page at /apps/monitor/
    $ yulian app monitor plot --db monitor.sqlite --out monitor.png

`MONITOR_COMMANDS` maps the sub-command names to these functions (a command group for `yulian.cli`).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "MONITOR_COMMANDS",
    "load_classifier",
    "plot_command",
    "replay_command",
    "run_command",
    "serve_command",
    "train_command",
]

DEFAULT_OUT = "runs/apps/monitor"


def train_command(
    lang: str = "en",
    out: str | None = None,
    base_model: str = "auto",
    epochs: int = 2,
    max_train: int = 2400,
    max_length: int = 64,
    batch_size: int = 32,
    lr: float = 1e-4,
    force: bool = False,
    progress: bool = True,
) -> int:
    """Fine-tune the sentiment classifier (or reuse a finished run with the same settings); print its dev accuracy.

    English: Financial PhraseBank Sentences_50Agree, deduplicated, stratified 80/20 split (seed 0). Chinese: FinFE
    train / eval (deduplicated, eval minus train texts).

    Args:
        lang: en (Financial PhraseBank, minilm-l6) or zh (FinFE, multilingual-e5-small).
        out: the model folder (default: runs/apps/monitor/LANG).
        base_model: a registered model name or folder; auto picks by language.
        epochs: passes over the training texts.
        max_train: at most this many training texts (0: all; fewer train faster on a busy CPU).
        max_length: tokens per text.
        batch_size: texts per step.
        lr: peak learning rate.
        force: train again even if OUT holds a finished run.
        progress: show the progress bar.
    """
    from yulian.apps.monitor.train import train_sentiment

    result = train_sentiment(
        lang,
        out or f"{DEFAULT_OUT}/{lang}",
        force=force,
        progress=progress,
        base_model=base_model,
        epochs=epochs,
        max_train=max_train,
        max_length=max_length,
        batch_size=batch_size,
        lr=lr,
    )
    shown = {k: result[k] for k in ("model", "dev_accuracy", "dev_macro_f1", "train_texts", "dev_texts", "cached")}
    print(json.dumps(shown, ensure_ascii=False))
    return 0


def load_classifier(model: str, batch_size: int = 64, max_length: int = 128) -> Any:
    """`lexicon` (keyword lists, no model) or a fine-tuned model folder (`yulian.models.HFClassifier`)."""
    if model == "lexicon":
        from yulian.apps.monitor.lexicon import KeywordSentiment

        return KeywordSentiment()
    folder = Path(model)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"no trained model in {model}: run `yulian app monitor train --out {model}` first, or use --model lexicon"
        )
    from yulian.models import HFClassifier

    classifier = HFClassifier(str(folder), batch_size=batch_size, max_length=max_length)
    labels = set(classifier.labels)
    if "negative" not in labels:
        raise ValueError(f"{model}: the model has no 'negative' label (labels: {sorted(labels)}); use --negative-label")
    return classifier


def _detector(**options: Any) -> Any:
    from yulian.apps.monitor.detector import DetectorConfig

    return DetectorConfig(**options)


def run_command(
    input: list[str] | None = None,
    follow: bool = False,
    model: str = f"{DEFAULT_OUT}/en",
    db: str = "monitor.sqlite",
    alerts: str = "alerts.jsonl",
    webhook: str | None = None,
    entities: str | None = None,
    tickers: bool = True,
    format: str = "auto",  # the CLI option is --format
    text_field: str = "text",
    time_field: str = "time",
    entity_field: str = "entity",
    source_field: str = "source",
    negative_label: str = "negative",
    window: float = 3600.0,
    baseline: int = 24,
    min_count: int = 8,
    min_baseline_count: int = 40,
    z_threshold: float = 4.0,
    min_delta: float = 0.2,
    cusum_h: float = 8.0,
    cooldown: int = 6,
    batch_size: int = 64,
    poll: float = 0.2,
    idle_exit: float | None = None,
    strict: bool = False,
    keep_texts: bool = True,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int | None = None,
) -> int:
    """Monitor a stream of texts: sentiment + entities -> rolling negative share per entity -> alerts on jumps.

    Texts come from JSONL/CSV/TSV/TXT files (followed as they grow with --follow, surviving truncation and
    rotation; resumed where a previous run stopped), a directory of such files, or `-` (stdin, JSONL). Bad lines
    are reported as FILE:LINE and skipped (--strict stops). Alerts go to --alerts (JSONL), the database and
    --webhook (POST, retried; failures are logged, not fatal).

    Args:
        input: files, a directory, or - for stdin (several allowed).
        follow: keep reading as the files grow (like tail -f); stop with Ctrl-C or --idle-exit.
        model: a fine-tuned model folder (`yulian app monitor train`) or lexicon (keyword lists).
        db: the SQLite database (windows, alerts, texts, read positions).
        alerts: the alerts JSONL file (appended).
        webhook: a URL to POST each alert to as JSON.
        entities: an entity dictionary: JSON {"name": ["alias", ...]} or CSV lines name,alias,...
        tickers: also tag tickers ($AAPL, 600519, 00700.HK).
        format: auto (from the extension), jsonl, csv, tsv or txt.
        text_field: the field holding the text.
        time_field: the field holding the time (ISO 8601 or epoch seconds; missing: time of arrival).
        entity_field: a field of entity names (string, A;B, or list) counted besides the tagger's.
        source_field: a field naming the source.
        negative_label: the model's label for negative texts.
        window: window length in seconds.
        baseline: closed windows in the baseline.
        min_count: texts needed in a window to alert.
        min_baseline_count: texts needed in the baseline to alert.
        z_threshold: z-score over the baseline that raises an alert.
        min_delta: least rise of the negative share over the baseline (absolute) to alert.
        cusum_h: CUSUM threshold for smaller persistent shifts (0: off).
        cooldown: windows without a new alert for the same entity after one.
        batch_size: texts per model call.
        poll: seconds between checks for new lines while following.
        idle_exit: with --follow, stop after this many seconds without new lines.
        strict: stop at the first bad line.
        keep_texts: store every text in the database (the dashboard lists the latest).
        serve: also serve the dashboard while monitoring.
        host: the dashboard's host.
        port: the dashboard's port.
        threads: torch CPU threads.
    """
    from yulian.apps.monitor.alerts import AlertsFile, Webhook
    from yulian.apps.monitor.pipeline import Monitor
    from yulian.apps.monitor.sources import FieldMap, open_source
    from yulian.apps.monitor.store import MonitorStore
    from yulian.apps.monitor.tagger import EntityTagger

    if not input:
        raise ValueError("give --input FILE|DIR|- (several allowed)")
    detector = _detector(
        window=window,
        baseline=baseline,
        min_count=min_count,
        min_baseline_count=min_baseline_count,
        z_threshold=z_threshold,
        min_delta=min_delta,
        cusum_h=cusum_h,
        cooldown=cooldown,
    )
    fields = FieldMap(text=text_field, time=time_field, entity=entity_field, source=source_field)
    source = open_source(input, fields, fmt=format, follow=follow, poll=poll, idle_exit=idle_exit)
    tagger = EntityTagger.load(entities, tickers=tickers) if entities else EntityTagger(tickers=tickers)
    hook = Webhook(webhook) if webhook else None
    if threads:
        from yulian._optional import require

        require("torch", extra="hf").set_num_threads(threads)
    classifier = load_classifier(model, batch_size=batch_size)
    store = MonitorStore(db, window=window, keep_texts=keep_texts)
    for follower in source.followers:
        saved = store.position(str(follower.path))
        if saved is not None:
            follower.seek(*saved)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    monitor = Monitor(
        classifier,
        store,
        tagger,
        detector,
        alerts=AlertsFile(alerts) if alerts else None,
        webhook=hook,
        negative_label=negative_label,
    )
    if serve:
        from yulian.apps.monitor.web import PREFIX
        from yulian.apps.monitor.web import serve as serve_app

        serve_app(store, host=host, port=port, block=False)
        print(f"dashboard: http://{host}:{port}{PREFIX}/", file=sys.stderr)
    try:
        stats = monitor.run(source, batch_size=batch_size, strict=strict, progress=True)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    print(json.dumps({**stats.to_dict(), "db": db, "alerts_file": alerts}, ensure_ascii=False))
    return 0


def replay_command(
    data: str = "fpb",
    model: str = f"{DEFAULT_OUT}/en",
    inject_burst: list[str] | None = None,
    burst_hours: float = 2.0,
    burst_rate: float = 12.0,
    hours: float = 72.0,
    per_hour: float = 60.0,
    seed: int = 0,
    db: str = ":memory:",
    alerts: str | None = None,
    deadline: float = 7200.0,
    window: float = 3600.0,
    baseline: int = 24,
    min_count: int = 8,
    min_baseline_count: int = 40,
    z_threshold: float = 4.0,
    min_delta: float = 0.2,
    cusum_h: float = 8.0,
    cooldown: int = 6,
    json_output: bool = False,
) -> int:
    """Replay a labelled data set as a timed stream over synthetic entities (ACME, BOLT, CRUX, DYNA, EPIC), with
    optional bursts of negative texts, through the monitor; report detections, delays and false alerts.

    The texts are the dev split (not trained on): FPB (fpb) or FinFE eval (finfe). Times start 2026-01-01T00:00Z.

    Args:
        data: fpb or finfe.
        model: a fine-tuned model folder or lexicon.
        inject_burst: ENTITY@TIME bursts (TIME: ISO 8601, epoch seconds or +HOURSh from the start), several allowed.
        burst_hours: how long each burst lasts.
        burst_rate: extra negative texts per hour during a burst.
        hours: length of the replay.
        per_hour: background texts per hour (spread over the five entities).
        seed: the random seed of the stream.
        db: the SQLite database (default: in memory).
        alerts: an alerts JSONL file to append to.
        deadline: seconds after a burst's start within which its alert must come.
        window: window length in seconds.
        baseline: closed windows in the baseline.
        min_count: texts needed in a window to alert.
        min_baseline_count: texts needed in the baseline to alert.
        z_threshold: z-score that raises an alert.
        min_delta: least rise of the negative share over the baseline to alert.
        cusum_h: CUSUM threshold (0: off).
        cooldown: windows without a new alert for the same entity after one.
        json_output: print the full result as JSON.
    """
    from yulian.apps.monitor.alerts import AlertsFile
    from yulian.apps.monitor.data import load_split
    from yulian.apps.monitor.pipeline import Monitor
    from yulian.apps.monitor.replay import build_replay, evaluate_replay, parse_burst
    from yulian.apps.monitor.store import MonitorStore

    langs = {"fpb": "en", "finfe": "zh"}
    if data not in langs:
        raise ValueError(f"--data must be one of {', '.join(langs)}, got {data!r}")
    detector = _detector(
        window=window,
        baseline=baseline,
        min_count=min_count,
        min_baseline_count=min_baseline_count,
        z_threshold=z_threshold,
        min_delta=min_delta,
        cusum_h=cusum_h,
        cooldown=cooldown,
    )
    bursts = [parse_burst(s, duration=burst_hours * 3600, rate=burst_rate) for s in inject_burst or []]
    _, pool = load_split(langs[data])
    stream = build_replay(pool, hours=hours, per_hour=per_hour, bursts=bursts, seed=seed)
    monitor = Monitor(
        load_classifier(model),
        MonitorStore(db, window=window),
        detector=detector,
        alerts=AlertsFile(alerts) if alerts else None,
    )
    result = evaluate_replay(monitor, stream, bursts, deadline=deadline)
    if json_output:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(f"{result['texts']:,} texts, {len(result['alerts'])} alerts, {result['false_alerts']} false")
    for burst in result["bursts"]:
        delay = "not detected" if not burst["detected"] else f"detected after {burst['delay_s'] / 60:.0f} min"
        print(f"  burst {burst['entity']}: {delay}")
    for message in result["false_alert_list"]:
        print(f"  false alert: {message}")
    return 0


def serve_command(db: str = "monitor.sqlite", host: str = "127.0.0.1", port: int = 8000) -> int:
    """Serve the dashboard of a monitor database (page at /apps/monitor/, JSON under /apps/monitor/api/).

    Args:
        db: the monitor's SQLite database.
        host: the host to bind.
        port: the port.
    """
    from yulian.apps.monitor.web import PREFIX, serve

    print(f"dashboard: http://{host}:{port}{PREFIX}/", file=sys.stderr)
    serve(db, host=host, port=port)
    return 0


def plot_command(
    db: str = "monitor.sqlite", out: str = "monitor.png", entity: list[str] | None = None, top: int = 6
) -> int:
    """Export the negative share over time per entity, alerts marked, as a PNG.

    Args:
        db: the monitor's SQLite database.
        out: the PNG file to write.
        entity: the entities to plot (default: the busiest).
        top: how many entities when none is given.
    """
    from yulian.apps.monitor.plot import export_png
    from yulian.apps.monitor.web import _open_existing

    path = export_png(_open_existing(db), out, entity, top=top)
    print(path)
    return 0


MONITOR_COMMANDS = {
    "train": train_command,
    "run": run_command,
    "replay": replay_command,
    "serve": serve_command,
    "plot": plot_command,
}
"""The `yulian app monitor` command group."""
