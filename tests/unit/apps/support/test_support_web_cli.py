"""The support bot's HTTP routes (FastAPI TestClient), the `yulian app support` command and the config/data
readers' errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))

from support_fakes import make_bot, write_faq
from tiny_hf import save_random, single_thread  # type: ignore[import-not-found]  # noqa: F401

from yulian.apps.support import SupportBot, SupportConfig, SupportDataError, train_bot
from yulian.apps.support.commands import support_command
from yulian.apps.support.config import load_config, read_faq, read_intents
from yulian.apps.support.evaluate import intent_metrics, mrr_at_k
from yulian.cli import main
from yulian.testing import FakeChatModel


# ============================================================================================ HTTP
def test_router_chat_history_info_and_page(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from yulian.apps.support.web import app

    bot = make_bot(tmp_path, FakeChatModel(["Freeze it [1]."]))
    client = TestClient(app(bot))
    page = client.get("/apps/support/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<form" in page.text and "/chat" in page.text
    r = client.post("/apps/support/chat", json={"session": "web-1", "message": "I lost my card"})
    assert r.status_code == 200
    body = r.json()
    assert body["answer"] == "Freeze it [1]." and body["intent"] == "card_lost" and body["handoff"] is False
    assert body["sources"][0]["cited"] is True and body["session"] == "web-1"
    handoff = client.post("/apps/support/chat", json={"session": "web-1", "message": "weather today?"}).json()
    assert handoff["handoff"] is True and handoff["reason"] == "out_of_scope"
    history = client.get("/apps/support/history/web-1").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[3]["handoff"] is True
    info = client.get("/apps/support/info").json()
    assert info["languages"] == ["en", "zh"] and info["intent_threshold"] == 0.3
    assert client.get("/").status_code == 200  # redirected to the page


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"session": "s", "message": ""}, "message"), ({"session": "", "message": "hi"}, "session"), ({}, "message")],
)
def test_router_rejects_bad_requests_clearly(tmp_path: Path, payload: dict[str, Any], field: str) -> None:
    from fastapi.testclient import TestClient

    from yulian.apps.support.web import app

    r = TestClient(app(make_bot(tmp_path))).post("/apps/support/chat", json=payload)
    assert r.status_code == 422 and field in r.json()["detail"]


# ============================================================================================ the command
@pytest.fixture(scope="module")
def tiny_bot(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> Path:  # noqa: F811
    """A bot folder trained for 2 steps on tiny random BERTs (no generator): exercises train_bot and load."""
    root = tmp_path_factory.mktemp("support")
    base = save_random(root / "base")
    intents = root / "intents.csv"
    intents.write_text(
        "text,intent\n"
        + "".join(
            f"{t},{i}\n"
            for t, i in [
                ("i lost my card", "card_lost"),
                ("card is gone", "card_lost"),
                ("the film was good", "refund"),
                ("bad movie", "refund"),
                ("我的卡丢了", "card_lost"),
                ("北京天气", "oos"),
            ]
        ),
        encoding="utf-8",
    )
    config = SupportConfig(
        faq=str(write_faq(root)),
        intents=str(intents),
        encoders={"en": str(base), "zh": str(base)},
        generator="none",
        epochs=1,
        batch_size=4,
        max_length=16,
        intent_threshold=0.0,
        retrieval_threshold={},
    )
    return train_bot(config, root / "bot", progress=False, max_steps=2)


def test_train_bot_writes_a_loadable_bot(tiny_bot: Path) -> None:
    manifest = json.loads((tiny_bot / "bot.json").read_text())
    assert set(manifest["languages"]) == {"en", "zh"}
    assert manifest["languages"]["en"]["intents"] == ["card_lost", "refund"]
    assert manifest["languages"]["zh"]["faq_entries"] == 2
    bot = SupportBot.load(tiny_bot, generator=FakeChatModel(["ok [1]"]), overrides={"generate_langs": ["en"]})
    reply = bot.chat("t", "i lost my card")
    assert reply.intent in ("card_lost", "refund") and 0 < reply.confidence <= 1
    assert reply.answer == "ok [1]" and len(reply.sources) == 3  # k=3 of the 3 English entries
    assert (tiny_bot / "support.db").is_file()  # memory next to the bot


def test_command_chat_one_message_as_json(tiny_bot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["support", "chat", "--bot", str(tiny_bot), "--message", "我的卡丢了", "--session", "c1", "--json-output"],
        commands={"support": support_command},
    )
    assert code == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["lang"] == "zh" and reply["session"] == "c1"
    assert reply["answer"].endswith("[1]") and reply["sources"][0]["cited"]  # no generator: the FAQ answer


def test_command_chat_reads_stdin(tiny_bot: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("i lost my card\n\nquit\nnot read\n"))
    assert main(["support", "chat", "--bot", str(tiny_bot)], commands={"support": support_command}) == 0
    out = capsys.readouterr().out
    assert out.count("bot> ") == 1 and "intent " in out


def test_command_evaluate_and_errors(tiny_bot: Path, tmp_path: Path, capsys: Any) -> None:
    data = tmp_path / "test.csv"
    data.write_text("text,intent\ni lost my card,card_lost\nbad movie,refund\n北京天气,oos\n", encoding="utf-8")
    args = ["support", "evaluate", "--bot", str(tiny_bot), "--data", str(data), "--json-output"]
    assert main(args, commands={"support": support_command}) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_in_scope"] == 2 and metrics["n_out_of_scope"] == 1
    assert set(metrics["languages"]) == {"en", "zh"}
    assert main(["support", "chatt"], commands={"support": support_command}) == 1
    assert "Did you mean 'chat'" in capsys.readouterr().err
    assert main(["support", "train", "--out", str(tmp_path / "b")], commands={"support": support_command}) == 1
    assert "--intents" in capsys.readouterr().err
    assert main(["support", "chat", "--bot", str(tmp_path)], commands={"support": support_command}) == 1
    assert "not a support bot folder" in capsys.readouterr().err


# ============================================================================================ config and data
def test_config_file_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    good = tmp_path / "support.yaml"
    good.write_text("faq: faq.jsonl\nintents: data/intents.csv\nintent_threshold: 0.6\nk: 2\n", encoding="utf-8")
    cfg = load_config(good)
    assert cfg.faq == str(tmp_path / "faq.jsonl") and cfg.intents == str(tmp_path / "data" / "intents.csv")
    assert cfg.intent_threshold == 0.6 and cfg.k == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"intent_treshold": 0.5}), encoding="utf-8")
    with pytest.raises(SupportDataError, match=r"bad\.json: unknown key 'intent_treshold'.*'intent_threshold'"):
        load_config(bad)
    bad.write_text(json.dumps({"retrieval_threshold": {"fr": 0.5}}), encoding="utf-8")
    with pytest.raises(SupportDataError, match=r"unknown language 'fr'"):
        load_config(bad)
    with pytest.raises(SupportDataError, match="intent_threshold must be in"):
        SupportConfig(intent_threshold=1.5)


def test_data_errors_name_file_line_and_field(tmp_path: Path) -> None:
    intents = tmp_path / "intents.csv"
    intents.write_text("utterance,labl\nhello,greet\n", encoding="utf-8")
    with pytest.raises(SupportDataError, match=r"intents\.csv has no field 'intent'.*fields: utterance, labl"):
        read_intents(intents)
    faq = tmp_path / "faq.jsonl"
    faq.write_text('{"question": "a?", "answer": "b"}\n{"question": "c?", "answer": ""}\n', encoding="utf-8")
    with pytest.raises(SupportDataError, match=r"faq\.jsonl line 2: field 'answer' is empty"):
        read_faq(faq)
    faq.write_text('{"question": "a?", "answer": "b"}\n{"question": oops}\n', encoding="utf-8")
    with pytest.raises(SupportDataError, match=r"faq\.jsonl line 2: not valid JSON"):
        read_faq(faq)
    ok = read_intents(
        _write(tmp_path / "i.jsonl", '{"text": "我的卡丢了", "label": "card"}\n{"text": "hi", "label": "x"}')
    )
    assert [(e.lang, e.intent, e.line) for e in ok] == [("zh", "card", 1), ("en", "x", 2)]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_intent_metrics_and_mrr() -> None:
    gold = ["a", "a", "b", "oos", "oos"]
    predicted = [("a", 0.9), ("a", 0.4), ("a", 0.9), ("oos", 0.8), ("b", 0.3)]
    m = intent_metrics(gold, predicted, threshold=0.5, oos_labels=["oos"])
    assert m["intent_accuracy"] == pytest.approx(2 / 3)  # a, a right; b wrong
    assert m["in_scope_accuracy"] == pytest.approx(1 / 3)  # the second a is below the threshold
    assert m["oos_recall"] == 1.0  # one predicted oos, one rejected by the threshold
    assert mrr_at_k([["x", "y"], ["y", "x"], ["z"]], ["y", "y", "q"], k=10) == pytest.approx((0.5 + 1 + 0) / 3)
    assert mrr_at_k([["x", "y"]], ["y"], k=1) == 0.0


def test_command_serve_runs_uvicorn_on_the_routes(tiny_bot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    args = ["support", "chat", "--serve", "--bot", str(tiny_bot), "--port", "8123"]
    assert main(args, commands={"support": support_command}) == 0
    assert seen["port"] == 8123 and seen["host"] == "127.0.0.1"
    from fastapi.testclient import TestClient

    assert TestClient(seen["app"]).get("/apps/support/info").json()["generator"] == "none"  # the bot's routes


def test_importing_the_app_stays_light() -> None:
    import subprocess

    code = (
        "import sys, yulian.apps.support, yulian.apps.support.commands; "
        "print([m for m in ('torch', 'transformers', 'numpy', 'faiss', 'jieba', 'fastapi', 'pydantic', 'yaml') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_cached_bot_is_rebuilt_only_when_training_inputs_change(tmp_path: Path) -> None:
    from yulian.apps.support.build import demo_config, fingerprint

    base = fingerprint(demo_config())
    assert fingerprint(demo_config(intent_threshold=0.9, generator="none", k=5)) == base
    assert fingerprint(demo_config(epochs=2)) != base
    faq = write_faq(tmp_path)
    assert fingerprint(demo_config(faq=str(faq))) != base
    faq.write_text(faq.read_text(encoding="utf-8") + '{"question": "new?", "answer": "yes"}\n', encoding="utf-8")
    assert fingerprint(demo_config(faq=str(faq))) != fingerprint(demo_config(faq=str(write_faq(tmp_path))))


def test_the_shipped_example_config_is_the_demo_config() -> None:
    from yulian.apps.support.build import DATA_DIR, demo_config

    assert load_config(DATA_DIR / "config.example.yaml") == demo_config()


def test_command_train_from_a_config_file(tmp_path: Path, single_thread: None) -> None:  # noqa: F811
    base = save_random(tmp_path / "base")
    (tmp_path / "intents.jsonl").write_text(
        "".join(
            json.dumps({"text": t, "intent": i}) + "\n"
            for t, i in [
                ("i lost my card", "card"),
                ("card is gone", "card"),
                ("bad movie", "film"),
                ("good film", "film"),
            ]
        ),
        encoding="utf-8",
    )
    write_faq(tmp_path)
    config = tmp_path / "support.yaml"
    config.write_text(
        f"faq: faq.jsonl\nintents: intents.jsonl\nencoders: {{en: {base}, zh: {base}}}\ngenerator: none\n"
        "epochs: 1\nbatch_size: 4\nmax_length: 16\n",
        encoding="utf-8",
    )
    out = tmp_path / "bot"
    args = ["support", "train", "--config", str(config), "--out", str(out), "--no-progress"]
    assert main(args, commands={"support": support_command}) == 0
    manifest = json.loads((out / "bot.json").read_text())
    assert manifest["languages"]["en"]["intents"] == ["card", "film"]
    assert manifest["languages"]["zh"]["classifier"] is None and manifest["languages"]["zh"]["index"] == "faq-zh"
    reply = SupportBot.load(out).chat("s", "我的卡丢了")  # zh borrows the en classifier, answers from the zh FAQ
    assert reply.lang == "zh" and reply.sources[0]["source"].startswith("faq.jsonl:")
