"""Integrated-gradients explanations on a tiny random classifier: completeness, the label's sign, words and
Chinese characters, HTML/PNG/JSON outputs, the command and its errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from tiny_hf import save_random, single_thread  # noqa: F401

from yulian.cli import main
from yulian.tuning.explain import Explainer, explain_command

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clf")
    labels = {0: "negative", 1: "positive"}
    saved: Path = save_random(
        folder, "BertForSequenceClassification", seed=3, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    return saved


def test_attributions_add_up_to_the_probability_change_and_flip_with_the_label(classifier: Path) -> None:
    explainer = Explainer(classifier, steps=64)
    text = "the quick fox works at apple"
    exp = explainer.explain(text)
    assert exp.label == max(exp.probabilities, key=lambda k: exp.probabilities[k])
    assert [w.text for w in exp.words] == text.split()
    assert all(text[w.start : w.end] == w.text for w in exp.words)
    total = sum(w.score for w in exp.words)
    assert total == pytest.approx(exp.score - exp.baseline_score, abs=abs(exp.delta) + 1e-4)
    assert abs(exp.delta) < 0.02
    other = "negative" if exp.label == "positive" else "positive"
    flipped = explainer.explain(text, target=other)
    # p(other) = 1 - p(label): every attribution changes sign
    for a, b in zip(exp.words, flipped.words, strict=True):
        assert b.score == pytest.approx(-a.score, abs=1e-4)


def test_sub_words_sum_into_words_and_chinese_is_explained_by_character(classifier: Path) -> None:
    explainer = Explainer(classifier, steps=16)
    exp = explainer.explain("parisian 张三 在北京")  # "parisian" is two word pieces
    assert [w.text for w in exp.words] == ["parisian", "张", "三", "在", "北", "京"]


def test_outputs_and_the_command(classifier: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html, png = tmp_path / "why.html", tmp_path / "why.png"
    args = [
        "explain",
        "a good film",
        "--model",
        str(classifier),
        "--steps",
        "8",
        "--html",
        str(html),
        "--png",
        str(png),
    ]
    assert main(args, commands={"explain": explain_command}) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert [w["text"] for w in data["words"]] == ["a", "good", "film"]
    assert "<span title=" in html.read_text(encoding="utf-8") and "good" in html.read_text(encoding="utf-8")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["explain", "x", "--model", str(classifier), "--target", "neutral"], {"explain": explain_command}) == 1
    assert "unknown target label 'neutral' (labels: negative, positive)" in capsys.readouterr().err
    assert main(["explain", "x", "--model", str(tmp_path / "none")], {"explain": explain_command}) == 1
    assert "no such model folder" in capsys.readouterr().err
