"""Document loaders: every format with its metadata, folders and globs, and the errors people see."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from yulian.retrieval import loaders
from yulian.retrieval.documents import Document
from yulian.retrieval.loaders import LoaderError, iter_docs, load_docs, register_loader
from yulian.retrieval.splitters import split


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page (correct xref offsets)."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]  # the page tree is filled in below
    font = 3
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (content, font)
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# ============================================================================================ formats
def test_text_and_markdown_files_are_one_document(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "纯文本内容。\n第二行。")
    write(tmp_path / "b.md", "intro\n\n# 常见问题\n\n内容。")
    a, b = load_docs(tmp_path)
    assert a == Document("纯文本内容。\n第二行。", {"source": (tmp_path / "a.txt").as_posix()})
    assert b.metadata == {"source": (tmp_path / "b.md").as_posix(), "title": "常见问题"}


def test_utf8_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    write(tmp_path / "bom.txt", "\ufeff你好")
    (tmp_path / "bom.csv").write_bytes("\ufefftext,label\n好,正面\n".encode())
    assert load_docs(tmp_path / "bom.txt")[0].text == "你好"
    assert load_docs(tmp_path / "bom.csv")[0].metadata["label"] == "正面"  # header is 'text', not '\ufefftext'


def test_jsonl_one_document_per_line(tmp_path: Path) -> None:
    rows = [{"text": "问题一", "id": 7, "tags": ["a"]}, {"text": "问题二", "id": 8}]
    write(tmp_path / "faq.jsonl", json.dumps(rows[0], ensure_ascii=False) + "\n\n" + json.dumps(rows[1]) + "\n")
    docs = load_docs(tmp_path / "faq.jsonl")
    source = (tmp_path / "faq.jsonl").as_posix()
    assert [d.text for d in docs] == ["问题一", "问题二"]
    assert docs[0].metadata == {"source": source, "line": 1, "id": 7, "tags": ["a"]}
    assert docs[1].metadata["line"] == 3  # the blank line counts
    only = load_docs(tmp_path / "faq.jsonl", metadata_fields=["tags"], id_field="id")
    assert only[0].metadata == {"source": source, "line": 1, "tags": ["a"]}
    assert [d.id for d in only] == ["7", "8"]


def test_jsonl_field_mapping(tmp_path: Path) -> None:
    write(tmp_path / "qa.jsonl", '{"question": "怎么退款？", "answer": "联系客服"}\n')
    (doc,) = load_docs(tmp_path / "qa.jsonl", text_field="question")
    assert doc.text == "怎么退款？" and doc.metadata["answer"] == "联系客服"


def test_json_array(tmp_path: Path) -> None:
    write(tmp_path / "items.json", json.dumps([{"text": "a", "k": 1}, {"text": "b", "k": 2}]))
    docs = load_docs(tmp_path / "items.json")
    assert [(d.text, d.metadata["index"], d.metadata["k"]) for d in docs] == [("a", 0, 1), ("b", 1, 2)]


def test_csv_and_tsv_one_document_per_row(tmp_path: Path) -> None:
    write(tmp_path / "data.csv", 'text,label\n"好,很好",正面\n\n太差了,负面\n')
    write(tmp_path / "data.tsv", "label\ttext\n正面\t不错\n")
    docs = load_docs(tmp_path / "data.csv")
    assert [(d.text, d.metadata["label"], d.metadata["row"]) for d in docs] == [
        ("好,很好", "正面", 1),
        ("太差了", "负面", 2),
    ]
    (tsv,) = load_docs(tmp_path / "data.tsv")
    assert tsv.text == "不错" and tsv.metadata["label"] == "正面"
    write(tmp_path / "semi.csv", "text;label\na;b\n")
    assert load_docs(tmp_path / "semi.csv", delimiter=";")[0].metadata["label"] == "b"


def test_html_keeps_only_visible_text(tmp_path: Path) -> None:
    html = """<html><head><title>帮助中心</title><style>p {color: red}</style></head><body>
    <script>var secret = 1;</script><h1>标题</h1><p>第一段<b>加粗</b>文字。</p><!-- a comment -->
    <div hidden>隐藏</div><p style="display: none">也隐藏</p><ul><li>一</li><li>二</li></ul>
    <p>换行<br>之后</p></body></html>"""
    write(tmp_path / "page.html", html)
    (doc,) = load_docs(tmp_path / "page.html")
    assert doc.metadata["title"] == "帮助中心"
    assert doc.text == "标题\n\n第一段加粗文字。\n\n一\n\n二\n\n换行\n之后"
    for hidden in ("secret", "color", "comment", "隐藏", "帮助中心"):
        assert hidden not in doc.text


def test_pdf_one_document_per_page(tmp_path: Path) -> None:
    (tmp_path / "manual.pdf").write_bytes(make_pdf(["Hello page one", "Second page 3.14"]))
    docs = load_docs(tmp_path / "manual.pdf")
    assert [d.text.strip() for d in docs] == ["Hello page one", "Second page 3.14"]
    assert [(d.metadata["page"], d.metadata["pages"]) for d in docs] == [(1, 2), (2, 2)]
    assert docs[0].metadata["source"] == (tmp_path / "manual.pdf").as_posix()


# ============================================================================================ folders, globs
def test_folder_loading_is_sorted_recursive_and_skips_hidden_and_unknown(tmp_path: Path) -> None:
    for name in ["b.txt", "a.txt", "sub/c.md", "sub/deeper/d.txt", ".hidden.txt", ".git/e.txt", "img.png"]:
        write(tmp_path / name, name)
    names = [Path(d.metadata["source"]).relative_to(tmp_path).as_posix() for d in load_docs(tmp_path)]
    assert names == ["a.txt", "b.txt", "sub/c.md", "sub/deeper/d.txt"]
    flat = [Path(d.metadata["source"]).name for d in load_docs(tmp_path, recursive=False)]
    assert flat == ["a.txt", "b.txt"]
    only_md = [Path(d.metadata["source"]).name for d in load_docs(tmp_path, suffixes=["md"])]
    assert only_md == ["c.md"]


def test_globs_and_lists(tmp_path: Path) -> None:
    write(tmp_path / "x1.txt", "1")
    write(tmp_path / "x2.txt", "2")
    write(tmp_path / "y.md", "3")
    assert [d.text for d in load_docs(str(tmp_path / "x*.txt"))] == ["1", "2"]
    assert [d.text for d in load_docs([tmp_path / "y.md", tmp_path / "x1.txt"])] == ["3", "1"]
    assert [d.text for d in iter_docs(str(tmp_path / "**" / "*.md"))] == ["3"]


def test_register_a_new_format(tmp_path: Path) -> None:
    def load_upper(path: Path, source: str, options: loaders.LoadOptions):  # type: ignore[no-untyped-def]
        yield Document(path.read_text(encoding=options.encoding).upper(), {"source": source})

    register_loader(".shout", load_upper)
    try:
        write(tmp_path / "a.shout", "hi")
        assert load_docs(tmp_path / "a.shout")[0].text == "HI"
    finally:
        loaders._LOADERS.pop(".shout")


def test_user_story_load_then_split(tmp_path: Path) -> None:
    faq = "退款需要3到5个工作日。详情请访问https://example.com/refund了解！如有问题请发邮件到help@example.com。" * 6
    write(tmp_path / "faq" / "refund.txt", faq)
    docs = split(load_docs(tmp_path / "faq"), size=60, lang="zh", overlap=0)
    assert all(d.text[-1] in "。！" for d in docs)
    assert all(d.metadata["source"].endswith("refund.txt") for d in docs)


# ============================================================================================ errors
def test_missing_file_names_it_and_suggests(tmp_path: Path) -> None:
    write(tmp_path / "faq.jsonl", "{}")
    with pytest.raises(FileNotFoundError, match=r"no such file or folder: .*faq\.json\b.*did you mean .*faq\.jsonl"):
        load_docs(tmp_path / "faq.json")
    with pytest.raises(FileNotFoundError, match="no loadable files match"):
        load_docs(str(tmp_path / "*.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no loadable files below .*empty"):
        load_docs(tmp_path / "empty")


def test_unreadable_file_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "secret.txt", "x")

    def denied(p: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(loaders, "_read_bytes", denied)
    with pytest.raises(PermissionError, match=r"permission denied: cannot read .*secret\.txt"):
        load_docs(path)


def test_wrong_encoding_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path / "gbk.txt", "第一行\n中文内容", encoding="gbk")
    with pytest.raises(LoaderError, match=r"gbk\.txt line 1: not valid utf-8 .*encoding='gb18030'") as info:
        load_docs(path)
    assert info.value.path == path.as_posix() and info.value.line == 1
    assert load_docs(path, encoding="gb18030")[0].text == "第一行\n中文内容"
    jsonl = write(tmp_path / "gbk.jsonl", '{"text": "好"}\n{"text": "坏"}\n', encoding="gbk")
    with pytest.raises(LoaderError, match=r"gbk\.jsonl line 1: not valid utf-8.*gb18030"):
        load_docs(jsonl)
    with pytest.raises(ValueError, match="unknown encoding 'utf-9'"):
        load_docs(path, encoding="utf-9")


def test_unsupported_extension_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "deck.pptx", "x")
    with pytest.raises(LoaderError, match=r"deck\.pptx: unsupported file type '\.pptx' \(supported: .*\.csv"):
        load_docs(path)


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(
        tmp_path / "broken.jsonl", '{"text": "ok"}\n{"text": "a" "b"}\n[1, 2]\n{"txt": "typo"}\n{"text": "fine"}\n'
    )
    with pytest.raises(LoaderError, match=r"broken\.jsonl line 2: not valid JSON .*skip_bad=True") as info:
        load_docs(path)
    assert info.value.line == 2
    with caplog.at_level(logging.WARNING, logger="yulian.retrieval.loaders"):
        docs = load_docs(path, skip_bad=True)
    assert [d.text for d in docs] == ["ok", "fine"]
    assert len(caplog.records) == 3
    assert "line 4: no field 'text' (fields: txt). Did you mean 'txt'?" in caplog.text


def test_csv_errors_name_file_column_and_row(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", "text,label\nfine,正面\nbad,row,extra\n")
    with pytest.raises(
        LoaderError, match=r"data\.csv has no column 'labl' \(columns: text, label\)\. Did you mean 'label'\?"
    ):
        load_docs(path, metadata_fields=["labl"])
    with pytest.raises(LoaderError, match=r"data\.csv row 2 \(line 3\): 3 fields, the header has 2") as info:
        load_docs(path)
    assert info.value.line == 3
    assert [d.text for d in load_docs(path, skip_bad=True)] == ["fine"]


def test_damaged_pdf_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    with pytest.raises(LoaderError, match=r"broken\.pdf: not a readable PDF"):
        load_docs(path)


def test_password_protected_pdf_names_the_file(tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter()
    writer.add_blank_page(100, 100)
    writer.encrypt("secret", algorithm="RC4-128")
    path = tmp_path / "locked.pdf"
    with path.open("wb") as f:
        writer.write(f)
    with pytest.raises(LoaderError, match=r"locked\.pdf: the PDF is encrypted with a password"):
        load_docs(path)
