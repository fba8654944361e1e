"""`yulian embed` (yulian.models.embed_commands): stdin lines -> JSON vectors, streamed batch by batch."""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_hf import save_random, single_thread  # noqa: F401 - fixture

from yulian.cli import main
from yulian.models import hf_encoder
from yulian.models.embed_commands import embed, embed_lines, load_embedder
from yulian.models.hf_embed import HFEmbedder

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random(tmp_path_factory.mktemp("embed_cli"), "BertModel")


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> HFEmbedder:
    return HFEmbedder(str(model_dir), dtype="float32")


def test_one_json_vector_per_line(embedder: HFEmbedder) -> None:
    lines = ["the quick brown fox\n", "我的卡丢了\r\n", "dog"]
    out = io.StringIO()
    assert embed_lines(embedder, [line.encode() for line in lines], out, batch_size=2) == 3
    vectors = [json.loads(row) for row in out.getvalue().splitlines()]
    expected = embedder.embed(["the quick brown fox", "我的卡丢了", "dog"])
    assert len(vectors) == 3
    for got, want in zip(vectors, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-7)  # 9 significant digits: float32 round-trips


def test_empty_line_is_an_error_after_the_lines_before_it(embedder: HFEmbedder) -> None:
    out = io.StringIO()
    with pytest.raises(ValueError, match="stdin line 3 is empty"):
        embed_lines(embedder, [b"dog\n", b"fox\n", b"  \n", b"cat\n"], out, batch_size=8)
    assert len(out.getvalue().splitlines()) == 2
    skipped = io.StringIO()
    assert embed_lines(embedder, [b"dog\n", b"\n", b"fox\n"], skipped, skip_empty=True) == 2


def test_invalid_utf8_names_the_line(embedder: HFEmbedder) -> None:
    with pytest.raises(ValueError, match="line 2 is not valid UTF-8"):
        embed_lines(embedder, [b"dog\n", b"\xff\xfe\n"], io.StringIO())


def test_output_streams_before_input_ends(embedder: HFEmbedder) -> None:
    """Input is produced slowly by a generator; the first vectors must be written before it is exhausted."""
    produced = 0
    seen_at_first_write: list[int] = []
    release = threading.Event()

    def lines() -> Iterator[bytes]:
        nonlocal produced
        for i in range(40):
            if i == 20:
                release.wait(timeout=10)  # hold back the second half until output has appeared
            produced += 1
            yield f"line {i}\n".encode()

    class Out(io.StringIO):
        def write(self, s: str) -> int:
            if not seen_at_first_write:
                seen_at_first_write.append(produced)
                release.set()
            return super().write(s)

    out = Out()
    assert embed_lines(embedder, lines(), out, batch_size=4) == 40
    assert seen_at_first_write[0] <= 20
    assert len(out.getvalue().splitlines()) == 40


def test_cli_function_with_a_model_directory(
    model_dir: Path, embedder: HFEmbedder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(hf_encoder, "native_bf16", lambda torch, device: False)  # float32 on every machine
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("dog\n北京\n".encode())))
    embed(model=str(model_dir), batch_size=1, normalize=False)
    rows = [json.loads(r) for r in capsys.readouterr().out.splitlines()]
    raw = embedder.with_options(normalize=False).embed(["dog", "北京"])
    assert rows == [pytest.approx(v, abs=1e-6) for v in raw]
    assert sum(x * x for x in rows[0]) != pytest.approx(1.0, abs=1e-3)


def test_command_line_and_its_errors(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = {"embed": embed}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"dog\nfox\ncat\n")))
    assert main(["embed", "--model", str(model_dir), "--batch-size", "2"], commands=commands) == 0
    assert [len(json.loads(r)) for r in capsys.readouterr().out.splitlines()] == [32, 32, 32]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"dog\n\nfox\n")))
    assert main(["embed", "--model", str(model_dir)], commands=commands) == 1
    captured = capsys.readouterr()
    assert "stdin line 2 is empty" in captured.err and len(captured.out.splitlines()) == 1
    assert main(["embed", "--model", str(model_dir / "nope")], commands=commands) == 1
    with pytest.raises(SystemExit):
        main(["embed", "--help"], commands=commands)
    assert "--skip-empty" in capsys.readouterr().out


def test_load_embedder_for_a_directory(model_dir: Path) -> None:
    emb = load_embedder(str(model_dir), batch_size=3, normalize=False)
    assert isinstance(emb, HFEmbedder) and emb.options.batch_size == 3 and not emb.options.normalize
