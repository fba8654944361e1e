"""`yulian app support ACTION`: train, chat with, evaluate or serve the customer-service bot.

    $ yulian app support chat                                   # the embedded bilingual demo (built once, cached)
    $ yulian app support chat --message "I lost my card" --json-output
    $ yulian app support train --intents intents.csv --faq faq.jsonl --out runs/apps/support/bot
    $ yulian app support train --config support.yaml --out runs/apps/support/bot
    $ yulian app support chat --bot runs/apps/support/bot --session u42
    $ yulian app support evaluate --bot runs/apps/support/bot --data test.csv
    $ yulian app support serve --port 8000                      # or: chat --serve; page at /apps/support/

Plain function: the signature is the command line, the docstring its help (see `yulian.cli`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

__all__ = ["ACTIONS", "support_command"]

ACTIONS = ("train", "chat", "evaluate", "serve")


def support_command(
    action: str,
    bot: str = "",
    config: str = "",
    intents: str = "",
    faq: str = "",
    out: str = "runs/apps/support/bot",
    session: str = "cli",
    message: str = "",
    data: str = "",
    generator: str = "",
    threshold: float | None = None,
    epochs: int | None = None,
    max_per_intent: int | None = None,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 8000,
    json_output: bool = False,
    progress: bool = True,
) -> int:
    """Customer-service bot: train it on your intents and FAQ, chat with it, evaluate it, or serve its chat page.

    Without --bot, chat, evaluate and serve use the embedded bilingual demo bot (fine-tuned and cached on first
    use: a few minutes on 2 cores).

    Args:
        action: train, chat, evaluate or serve.
        bot: a bot folder written by `train` (default: the embedded demo bot).
        config: a YAML or JSON config (faq, intents, encoders, generator, thresholds...; see SupportConfig).
        intents: labelled utterances, CSV or JSONL with text and intent (overrides the config's).
        faq: FAQ entries, CSV or JSONL with question and answer (overrides the config's).
        out: the folder `train` writes the bot into.
        session: the chat session id (its history is kept in the bot's SQLite memory).
        message: answer this one message and exit (default: read messages from stdin, one per line).
        data: labelled utterances to evaluate on (default for the demo bot: its embedded eval.csv).
        generator: the answer generator: a model name, openai:MODEL, or none for verbatim FAQ answers.
        threshold: the intent probability below which the bot hands off (overrides the config's).
        epochs: fine-tuning epochs (overrides the config's).
        max_per_intent: train on at most this many utterances per intent.
        serve: with chat, serve the API and the chat page instead of chatting in the terminal.
        host: the address to serve on.
        port: the port to serve on.
        json_output: print replies (and evaluation) as JSON.
        progress: show training progress on stderr.
    """
    if action not in ACTIONS:
        import difflib

        close = difflib.get_close_matches(action, ACTIONS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown action {action!r} (actions: {', '.join(ACTIONS)}).{hint}")
    if action == "train":
        return _train(config, intents, faq, out, epochs, max_per_intent, threshold, generator, progress)
    overrides: dict[str, Any] = {}
    if threshold is not None:
        overrides["intent_threshold"] = threshold
    if generator:
        overrides["generator"] = generator
    folder = _bot_folder(bot, progress)
    if action == "evaluate":
        return _evaluate(folder, data, bool(bot), overrides, json_output)
    from yulian.apps.support.bot import SupportBot

    the_bot = SupportBot.load(folder, overrides=overrides)
    if action == "serve" or serve:
        return _serve(the_bot, host, port)
    if message:
        _print_reply(the_bot.chat(session, message), json_output, sys.stdout)
        return 0
    return chat_loop(the_bot, session, sys.stdin, sys.stdout, json_output=json_output)


def _bot_folder(bot: str, progress: bool) -> Path:
    if bot:
        return Path(bot).expanduser()
    from yulian.apps.support.build import demo_bot

    return demo_bot(progress=progress)


def _train(
    config: str,
    intents: str,
    faq: str,
    out: str,
    epochs: int | None,
    max_per_intent: int | None,
    threshold: float | None,
    generator: str,
    progress: bool,
) -> int:
    from yulian.apps.support.build import train_bot
    from yulian.apps.support.config import SupportConfig, load_config

    cfg = load_config(config) if config else SupportConfig()
    changes: dict[str, Any] = {}
    if intents:
        changes["intents"] = str(Path(intents).expanduser().resolve())
    if faq:
        changes["faq"] = str(Path(faq).expanduser().resolve())
    if epochs is not None:
        changes["epochs"] = epochs
    if max_per_intent is not None:
        changes["max_per_intent"] = max_per_intent
    if threshold is not None:
        changes["intent_threshold"] = threshold
    if generator:
        changes["generator"] = generator
    cfg = replace(cfg, **changes) if changes else cfg
    if not cfg.intents or not cfg.faq:
        raise ValueError("train needs --intents FILE and --faq FILE (or both in --config)")
    folder = train_bot(cfg, out, progress=progress)
    print(json.dumps({"bot": str(folder)}))
    return 0


def _evaluate(folder: Path, data: str, custom: bool, overrides: dict[str, Any], json_output: bool) -> int:
    from yulian.apps.support.bot import SupportBot
    from yulian.apps.support.build import DATA_DIR
    from yulian.apps.support.config import read_intents
    from yulian.apps.support.evaluate import evaluate_bot

    if not data:
        if custom:
            raise ValueError("evaluate needs --data FILE (labelled utterances: text, intent)")
        data = str(DATA_DIR / "eval.csv")
    bot = SupportBot.load(folder, overrides={**overrides, "generator": "none"})  # routing only: no generator
    metrics = evaluate_bot(bot, read_intents(data))
    if json_output:
        print(json.dumps(metrics, ensure_ascii=False))
        return 0
    print(f"evaluated {folder} on {data} (intent threshold {metrics['threshold']})")
    rows = [("all", metrics), *sorted(metrics["languages"].items())]
    print(f"{'lang':<6}{'in-scope':>9}{'oos':>5}{'intent acc':>12}{'in-scope acc':>14}{'oos recall':>12}")
    for name, m in rows:
        print(
            f"{name:<6}{m['n_in_scope']:>9}{m['n_out_of_scope']:>5}{_pct(m['intent_accuracy']):>12}"
            f"{_pct(m['in_scope_accuracy']):>14}{_pct(m['oos_recall']):>12}"
        )
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _print_reply(reply: Any, json_output: bool, out: TextIO) -> None:
    if json_output:
        out.write(json.dumps(reply.to_dict(), ensure_ascii=False) + "\n")
        return
    out.write(f"bot> {reply.answer}\n")
    bits = [f"intent {reply.intent} {reply.confidence:.2f}"]
    if reply.handoff:
        bits.append(f"HANDOFF to a human ({reply.reason})")
    cited = [s for s in reply.sources if s["cited"]] or reply.sources[:1]
    if cited:
        bits.append("sources: " + "; ".join(f"{s['question']} ({s['source']})" for s in cited))
    out.write(f"     [{' · '.join(bits)}]\n")
    out.flush()


def chat_loop(bot: Any, session: str, stdin: TextIO, stdout: TextIO, *, json_output: bool = False) -> int:
    """Chat in the terminal: one message per line until end of input or `exit` / `quit` / `退出`."""
    interactive = stdin.isatty()
    if interactive and not json_output:
        stdout.write(f"support chat, session {session!r} (exit to quit)\n")
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text.lower() in ("exit", "quit", "退出"):
            break
        _print_reply(bot.chat(session, text), json_output, stdout)
    return 0


def _serve(bot: Any, host: str, port: int) -> int:
    from yulian._optional import require
    from yulian.apps.support.web import PREFIX, app

    uvicorn = require("uvicorn", extra="serve", purpose="serving the support bot")
    print(f"support bot on http://{host}:{port}{PREFIX}/", file=sys.stderr)
    uvicorn.run(app(bot), host=host, port=port, log_level="warning")
    return 0
