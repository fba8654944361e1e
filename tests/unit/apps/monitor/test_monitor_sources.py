"""Reading the monitor's inputs: parsing, bad lines with file:line, following growing / truncated / rotated files,
directories and stdin."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

from yulian.apps.monitor.sources import BadLine, FieldMap, FileFollower, Record, open_source, parse_time


def write(path: Path, lines: list[str], mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def texts(items: list) -> list[str]:
    return [i.text for i in items if isinstance(i, Record)]


def test_parse_time_formats() -> None:
    assert parse_time("2026-01-01T00:00:00Z") == 1_767_225_600.0
    assert parse_time("2026-01-01 08:00:00+08:00") == 1_767_225_600.0
    assert parse_time("2026-01-01") == 1_767_225_600.0  # naive: UTC
    assert parse_time(1_767_225_600) == parse_time("1767225600") == parse_time(1_767_225_600_000)  # ms
    for bad in ("yesterday", True, float("nan")):
        with pytest.raises(ValueError, match="time"):
            parse_time(bad)


def test_jsonl_records_and_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    write(
        path,
        [
            json.dumps(
                {"headline": "Profit up", "at": "2026-01-01T00:00:00Z", "ticker": ["ACME", "BOLT"], "feed": "x"}
            ),
            "{not json",
            json.dumps({"title": "no headline"}),
            json.dumps({"headline": "bad time", "at": "soon"}),
            "",
            json.dumps([1, 2]),
            json.dumps({"headline": "  ", "at": 1}),
            json.dumps({"headline": "Loss widens", "ticker": "CRUX;DYNA"}),
        ],
    )
    fields = FieldMap(text="headline", time="at", entity="ticker", source="feed")
    items = FileFollower(path, "auto", fields).read()
    good = [i for i in items if isinstance(i, Record)]
    bad = {i.line: str(i) for i in items if isinstance(i, BadLine)}
    assert good[0] == Record("Profit up", 1_767_225_600.0, ("ACME", "BOLT"), "x", str(path), 1)
    assert good[1].entities == ("CRUX", "DYNA") and good[1].line == 8
    assert abs(good[1].time - time.time()) < 60  # no time field: the time of arrival
    assert set(bad) == {2, 3, 4, 6, 7}
    assert bad[2].startswith(f"{path}:2: not valid JSON")
    assert "no field 'headline' (fields: title)" in bad[3]
    assert "field 'at'" in bad[4] and "soon" in bad[4]
    assert "expected a JSON object" in bad[6]
    assert "empty" in bad[7]


def test_csv_header_and_cell_count(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    write(path, ["time,text,entity", '2026-01-01,"Sales fell, sharply",ACME', "2026-01-02,only two"])
    items = FileFollower(path, "auto", FieldMap()).read()
    assert texts(items) == ["Sales fell, sharply"]
    assert isinstance(items[1], BadLine) and items[1].line == 3 and "2 cells" in items[1].message
    wrong = tmp_path / "wrong.csv"
    write(wrong, ["title,time", "x,1"])
    first = FileFollower(wrong, "auto", FieldMap()).read()[0]
    assert isinstance(first, BadLine) and "no column 'text'" in first.message and "title, time" in first.message


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(ValueError, match="unknown extension"):
        open_source(tmp_path / "x.xml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_source(tmp_path / "missing.jsonl")


def test_invalid_utf8_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"good line\n\xff\xfe bad\nlast line without newline")
    items = FileFollower(path, "txt", FieldMap()).read()
    assert texts(items) == ["good line", "last line without newline"]
    assert isinstance(items[1], BadLine) and items[1].line == 2 and "UTF-8" in items[1].message


def test_follows_a_file_that_grows_while_read(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    write(path, [json.dumps({"text": "t0"})], mode="w")
    source = open_source(path, follow=True, poll=0.02, idle_exit=1.0)

    def writer() -> None:
        for i in range(1, 6):
            time.sleep(0.05)
            with open(path, "a", encoding="utf-8") as f:  # a line written in two pieces: held until complete
                f.write('{"text": ')
                f.flush()
                time.sleep(0.03)
                f.write(f'"t{i}"}}\n')

    thread = threading.Thread(target=writer)
    thread.start()
    got: list = []
    for batch in source.batches(10):
        got += batch
    thread.join()
    assert texts(got) == [f"t{i}" for i in range(6)]
    assert not any(isinstance(i, BadLine) for i in got)


def test_truncated_file_restarts_from_the_top(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    write(path, [json.dumps({"text": f"old {i}"}) for i in range(5)], mode="w")
    follower = FileFollower(path, "auto", FieldMap(), follow=True)
    assert len(follower.read()) == 5
    write(path, [json.dumps({"text": "new 0"})], mode="w")  # truncated and rewritten, shorter
    items = follower.read()
    assert texts(items) == ["new 0"] and items[0].line == 1 and follower.truncations == 1


def test_rotation_reads_the_old_files_tail_first(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    write(path, [json.dumps({"text": "a"})], mode="w")
    follower = FileFollower(path, "auto", FieldMap(), follow=True)
    follower.read()
    write(path, [json.dumps({"text": "b"})])
    os.rename(path, tmp_path / "old.jsonl")
    write(path, [json.dumps({"text": "c"}), json.dumps({"text": "d"})], mode="w")
    items = follower.read()
    assert texts(items) == ["b", "c", "d"] and follower.rotations == 1
    assert [i.line for i in items] == [2, 1, 2]  # line numbers restart in the new file


def test_resume_at_a_saved_position(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    write(path, ["text,time", "a,1", "b,2"], mode="w")
    first = FileFollower(path, "auto", FieldMap())
    assert texts(first.read()) == ["a", "b"]
    write(path, ["c,3"])
    second = FileFollower(path, "auto", FieldMap())
    second.seek(first.inode, first.offset, first.line)
    items = second.read()
    assert texts(items) == ["c"] and items[0].line == 4 and items[0].time == 3.0


def test_directory_picks_up_new_files(tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl", [json.dumps({"text": "a1"})], mode="w")
    write(tmp_path / "b.csv", ["text", "b1"], mode="w")
    (tmp_path / "notes.md").write_text("ignored")
    source = open_source(tmp_path, follow=True, poll=0.02, idle_exit=0.6)
    got: list = []
    for n, batch in enumerate(source.batches(10)):
        got += batch
        if n == 0:
            write(tmp_path / "c.txt", ["c1"], mode="w")
    assert sorted(texts(got)) == ["a1", "b1", "c1"]


def test_stdin_lines(tmp_path: Path) -> None:
    source = open_source([], fmt="jsonl")
    source.stdin = io.BytesIO(b'{"text": "x"}\nnot json\n{"text": "y", "entity": "ACME"}\n')
    got = [i for batch in source.batches(10) for i in batch]
    assert texts(got) == ["x", "y"]
    assert str(got[1]) == "<stdin>:2: not valid JSON (Expecting value: column 1)"
    assert got[2].entities == ("ACME",)
