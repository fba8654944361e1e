"""`yulian index` / `yulian search` as plain functions run through the CLI machinery (BM25: no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yulian.cli import main
from yulian.retrieval.commands import index, search

COMMANDS = {"index": index, "search": search}


@pytest.fixture
def faq(tmp_path: Path) -> Path:
    path = tmp_path / "faq.jsonl"
    rows = [
        {"question": "How do I reset my card PIN?", "answer": "In the app."},
        {"question": "花呗怎么还款", "answer": "在支付宝里。"},
        {"question": "What is the exchange rate for euros?", "answer": "See rates."},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_index_then_search(faq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "faq.bm25"
    assert main(["index", str(faq), str(out), "--kind", "bm25", "--text-field", "question"], COMMANDS) == 0
    assert "indexed 3 documents" in capsys.readouterr().err
    assert main(["search", str(out), "花呗还款", "--k", "1", "--json-output"], COMMANDS) == 0
    hit = json.loads(capsys.readouterr().out)
    assert hit["text"] == "花呗怎么还款" and hit["metadata"]["answer"] == "在支付宝里。" and hit["score"] > 0
    assert main(["search", str(out), "reset PIN"], COMMANDS) == 0
    assert capsys.readouterr().out.startswith("[1] ")


def test_errors_are_one_line(faq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(faq), str(tmp_path / "x"), "--kind", "ivf"], COMMANDS) == 1
    assert "--kind must be one of flat, hnsw, bm25" in capsys.readouterr().err
    out = tmp_path / "faq.bm25"
    main(["index", str(faq), str(out), "--kind", "bm25", "--text-field", "question"], COMMANDS)
    (out / "docs.jsonl").write_text("tampered\n")
    capsys.readouterr()
    assert main(["search", str(out), "PIN"], COMMANDS) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "docs.jsonl has 9 bytes" in err and "Traceback" not in err
