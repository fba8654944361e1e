"""`yulian split`: the command function, run through the CLI machinery, writes one JSON chunk per line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yulian.cli import main
from yulian.retrieval.split_commands import split_command


def test_split_command_writes_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "faq").mkdir()
    (tmp_path / "faq" / "a.txt").write_text("退款需要3到5个工作日。请联系客服。" * 10, encoding="utf-8")
    (tmp_path / "faq" / "b.jsonl").write_text('{"question": "怎么退款？", "id": 1}\n', encoding="utf-8")
    status = main(
        [
            "split",
            str(tmp_path / "faq"),
            "--size",
            "40",
            "--overlap",
            "0",
            "--lang",
            "zh",
            "--text-field",
            "question",
        ],
        commands={"split": split_command},
    )
    assert status == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(len(r["text"]) <= 40 and r["text"].endswith(("。", "？")) for r in rows)
    assert rows[-1] == {
        "id": rows[-1]["id"],
        "text": "怎么退款？",
        "metadata": {
            "source": (tmp_path / "faq" / "b.jsonl").as_posix(),
            "line": 1,
            "id": 1,
            "chunk": 0,
            "start": 0,
            "end": 5,
            "parent_id": rows[-1]["metadata"]["parent_id"],
        },
    }


def test_split_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data.csv").write_text("text,label\na,b\n", encoding="utf-8")
    status = main(["split", str(tmp_path / "data.csv"), "--text-field", "txt"], commands={"split": split_command})
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "data.csv has no column 'txt' (columns: text, label)" in err
    assert main(["split", str(tmp_path / "data.csv"), "--size", "10"], commands={"split": split_command}) == 1
    assert "overlap (50) must be smaller than size (10)" in capsys.readouterr().err
