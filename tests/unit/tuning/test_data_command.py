"""`yulian data` through the CLI machinery: the user stories' error lines, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yulian.cli import main
from yulian.tuning.data_commands import data_command

COMMANDS = {"data": data_command}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_user_story_errors(capsys: pytest.CaptureFixture[str]) -> None:
    Path("data.csv").write_text("text,label\nhello,a\n")
    assert main(["data", "data.csv", "--label-field", "labl"], COMMANDS) == 1
    assert capsys.readouterr().err == (
        "error: data.csv has no column 'labl' (columns: text, label). Did you mean 'label'?\n"
    )
    rows = [json.dumps({"text": f"t{i}", "label": "a"}) for i in range(1203)] + ['{"text": "x" "label": "a"}']
    Path("broken.jsonl").write_text("\n".join(rows) + "\n")
    assert main(["data", "broken.jsonl"], COMMANDS) == 1
    assert capsys.readouterr().err == (
        "error: broken.jsonl line 1,204: not valid JSON (Expecting ',' delimiter: column 14). "
        "Use --skip-bad to skip bad lines.\n"
    )
    assert main(["data", "broken.jsonl", "--skip-bad"], COMMANDS) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "broken.jsonl: 1,203 classification examples, 1 bad skipped (json 1) (jsonl)"
    assert "labels: a 1,203" in out and "  bad: broken.jsonl line 1,204: not valid JSON" in out


def test_json_report_with_labels_file_and_tags(capsys: pytest.CaptureFixture[str]) -> None:
    Path("labels.json").write_text(json.dumps({"labels": ["neg", "pos"]}))
    Path("d.tsv").write_text("text\tlabel\ngood\tpos\nbad\tneg\nmeh\tneutral\n")
    assert main(["data", "d.tsv", "--labels", "labels.json", "--skip-bad", "--json-output"], COMMANDS) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["examples"], report["bad"], report["labels"]) == (2, 1, {"pos": 1, "neg": 1})
    assert report["first_bad"] == ["d.tsv line 4: unknown label 'neutral' (labels: neg, pos)"]
    Path("t.bmes").write_text("北 B-NS\n京 E-NS\n很 O\n\n上 B-NS\n海 E-NS\n")
    assert main(["data", "t.bmes", "--tag-scheme", "bio"], COMMANDS) == 0
    assert capsys.readouterr().out.splitlines() == ["t.bmes: 2 token examples (conll)", "entities: NS 2"]
    Path("u.jsonl").write_text('{"text": "no label here"}\n')
    assert main(["data", "u.jsonl", "--label-field", "none"], COMMANDS) == 0
