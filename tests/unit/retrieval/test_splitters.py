"""Text splitters: where chunks are cut (Chinese, English, Markdown), sizes in characters and tokens, metadata,
the Runnable interface, and randomised properties (size bound, offsets, coverage, no cut inside numbers/URLs)."""

from __future__ import annotations

import asyncio
import itertools
import random
import re

import pytest

from yulian import runnable
from yulian.retrieval.documents import Document
from yulian.retrieval.splitters import TextSplitter, length_function, split

ZH_ENDS = "。！？；"


def cut_points(text: str, chunks: list[Document]) -> list[int]:
    """Positions where a chunk ends inside the text (not counting the end of the text)."""
    return [c.metadata["end"] for c in chunks if text[c.metadata["end"] :].strip()]


def inside(pos: int, span: tuple[int, int]) -> bool:
    return span[0] < pos < span[1]


# ============================================================================================ Chinese
def test_chinese_chunks_end_at_sentence_ends() -> None:
    sentences = ["今天天气很好。", "我们去公园散步吧！", "你觉得怎么样？", "好的，那就这么定了；", "明天见。"] * 8
    text = "".join(sentences)
    chunks = split(text, size=40, overlap=0, lang="zh")
    assert len(chunks) > 3
    for c in chunks:
        assert len(c.text) <= 40
        assert c.text[-1] in ZH_ENDS, c.text
    assert "".join(c.text for c in chunks) == text


def test_commas_are_used_only_when_a_sentence_is_too_long() -> None:
    short = "我们今天，去了公园，看了花。"  # 14 characters: fits, so its commas are never cut
    long_sentence = "这是一个非常长的句子，它有很多个分句，每一个分句都不短，但是整句超过了上限。"
    text = short * 3 + long_sentence
    chunks = split(text, size=30, overlap=0, lang="zh")
    long_start = len(short) * 3
    cuts = cut_points(text, chunks)
    assert all(text[p - 1] == "。" for p in cuts if p <= long_start)  # short sentences are never cut inside
    long_cuts = [p for p in cuts if p > long_start]
    assert long_cuts and all(text[p - 1] == "，" for p in long_cuts)  # the long one at commas, not mid-clause
    assert max(len(c.text) for c in chunks) <= 30


def test_a_full_chunk_ends_at_its_strongest_boundary() -> None:
    # a sentence end at 16 beats a later comma at 26 (greedy packing would cut at the comma)
    first = "一二三四五六七八九十一二三四五。"
    text = first + "甲乙丙丁戊己庚辛壬，" * 4 + "完。"
    assert split(text, size=30, overlap=0, lang="zh")[0].text == first
    # a paragraph break at 26 beats a later sentence end at 34
    para1 = "段落一的第一句。段落一的第二句。段落一的第三句。"
    text = para1 + "\n\n" + "段落二的一句。" * 5
    assert split(text, size=40, overlap=0, lang="zh")[0].text == para1
    # min_fill: a boundary that would leave the chunk under half full is not taken
    text = "短。" + "甲乙丙丁戊己庚辛壬，" * 4
    assert len(split(text, size=30, overlap=0, lang="zh")[0].text) > 15


def test_never_cuts_inside_numbers_urls_or_emails() -> None:
    protected = ["3.1415926", "1,000,000", "https://example.com/path/to/page?id=42", "help@example.com", "2024-01-01"]
    text = "".join(f"价格约为{p}元左右请注意查看说明书中的第三页内容然后再做决定" for p in protected)
    spans = [(m.start(), m.end()) for p in protected for m in re.finditer(re.escape(p), text)]
    for size in range(40, 80, 3):  # every protected token fits in a chunk (the URL has 38 characters)
        chunks = split(text, size=size, overlap=0, lang="zh")
        assert max(len(c.text) for c in chunks) <= size
        for pos in cut_points(text, chunks):
            assert not any(inside(pos, s) for s in spans), (size, pos, text[pos - 10 : pos + 10])


def test_url_at_sentence_end_keeps_its_full_stop_out() -> None:
    text = "详情见 https://example.com/faq. 谢谢！" * 4
    chunks = split(text, size=30, overlap=0, lang="zh")
    assert all("https://example.com/faq" in c.text for c in chunks if "https" in c.text)


def test_text_without_punctuation_is_cut_between_characters() -> None:
    text = "甲乙丙丁戊己庚辛壬癸" * 10
    chunks = split(text, size=25, overlap=0)
    assert [len(c.text) for c in chunks] == [25, 25, 25, 25]
    assert "".join(c.text for c in chunks) == text


def test_chinese_rules_take_half_width_punctuation_before_chinese() -> None:
    text = "真的吗?好的!我们走吧.然后呢?" * 3
    zh = split(text, size=12, overlap=0, lang="zh")
    assert all(c.text[-1] in "?!." for c in zh)


# ============================================================================================ English
def test_english_cuts_at_sentences_not_abbreviations() -> None:
    text = (
        "Mr. Smith paid $1,000.50 on Jan. 5. He said e.g. that it was fine. "
        "Dr. Jones disagreed strongly. The U.S. office was closed. "
    ) * 3
    chunks = split(text, size=70, overlap=0, lang="en")
    for c in chunks:
        assert len(c.text) <= 70
        assert not c.text.endswith(("Mr.", "Dr.", "e.g.", "Jan.")), c.text
        assert not c.text.startswith(("Smith", "Jones", "that")), c.text


def test_list_markers_and_initials_are_not_sentence_ends() -> None:
    zh = "国防部负责下列事务：1.适时提供建议；2.审核国防预算。" * 4
    for c in split(zh, size=30, overlap=0, lang="zh"):
        assert not re.search(r"\d\.$", c.text), c.text  # never 1.|审核
    en = "The paper by George W. Bush and J. K. Rowling is not in P. Because of that we stop. " * 4
    cuts = cut_points(en, split(en, size=60, overlap=0, lang="en"))
    assert cuts and all(not en[:p].rstrip().endswith(("W.", "J.", "K.")) for p in cuts)
    assert any(en[:p].rstrip().endswith("P.") for p in cuts)  # a capital after a lowercase word ends a sentence


def test_english_words_are_never_cut() -> None:
    words = ["internationalization", "accessibility", "interoperability", "characteristically"]
    text = " ".join(words[i % 4] for i in range(40))  # no punctuation at all
    vocabulary = set(words)
    for size in (30, 47, 64):
        for c in split(text, size=size, overlap=0):
            assert len(c.text) <= size
            assert set(c.text.split()) <= vocabulary, c.text


def test_a_token_longer_than_a_chunk_is_cut_to_size() -> None:
    url = "https://example.com/" + "a" * 200
    chunks = split(f"see {url} now", size=50, overlap=0)
    assert max(len(c.text) for c in chunks) <= 50
    assert "".join(c.text for c in chunks).replace(" ", "") == f"see{url}now"


# ============================================================================================ Markdown
MARKDOWN = """# Guide

Intro paragraph.

## Install

Run the installer. Then restart.

```bash
# this is a comment, not a heading
pip install yulian
```

## Use
### Basics

Call split() on your documents.

Setext title
------------

Body under a setext heading.
"""


def test_markdown_splits_at_headings_and_keeps_the_path() -> None:
    chunks = split(Document(MARKDOWN, {"source": "guide.md"}), size=200, overlap=0)
    paths = [c.metadata["headings"] for c in chunks]
    assert paths == [["Guide"], ["Guide", "Install"], ["Guide", "Use", "Basics"], ["Guide", "Setext title"]]
    assert "# this is a comment" in chunks[1].text  # inside a code fence: not a heading
    assert chunks[2].text.startswith("## Use\n### Basics")  # a heading-only section joins the next one
    assert all(c.metadata["source"] == "guide.md" for c in chunks)


def test_markdown_is_detected_and_can_be_turned_off() -> None:
    assert "headings" in split(MARKDOWN, size=200, overlap=0)[0].metadata
    plain = split(MARKDOWN, size=1000, overlap=0, markdown=False)
    assert len(plain) == 1 and "headings" not in plain[0].metadata
    assert "headings" in split(Document("no heading here", {"source": "a.md"}), size=100)[0].metadata


def test_markdown_chunks_never_cross_sections() -> None:
    text = "# A\n\n" + "甲乙丙。" * 30 + "\n\n# B\n\n" + "丁戊己。" * 30
    for c in split(text, size=50, overlap=10):
        assert not ("甲" in c.text and "丁" in c.text)
        assert c.metadata["headings"] == (["A"] if "甲" in c.text else ["B"])


# ============================================================================================ overlap
def test_overlap_repeats_the_end_of_the_previous_chunk() -> None:
    text = "".join(f"第{i}句话的内容在这里。" for i in range(30))
    chunks = split(text, size=60, overlap=20, lang="zh")
    for prev, nxt in itertools.pairwise(chunks):
        shared = prev.metadata["end"] - nxt.metadata["start"]
        assert 0 < shared <= 20
        assert prev.text.endswith(nxt.text[:shared])
    assert all(len(c.text) <= 60 for c in chunks)


def test_english_overlap_starts_at_a_word() -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho " * 4
    words = set(text.split())
    chunks = split(text, size=60, overlap=15, lang="en")
    for c in chunks:
        assert set(c.text.split()) <= words
    assert any(b.metadata["start"] < a.metadata["end"] for a, b in itertools.pairwise(chunks))


# ============================================================================================ tokens
def tiny_bert_tokenizer():  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list("abcdefghijklmnopqrstuvwxyz0123456789.,!?。，！？我们的产品价格是元总计件今天好")
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab += ["hello", "world", "this", "is", "english", "text"]
    return transformers.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


def test_token_unit_with_a_hugging_face_tokenizer() -> None:
    tok = tiny_bert_tokenizer()
    count = length_function(tok)
    text = "我们的产品价格是3.14元。今天好！" * 10 + " hello world, this is english text. " * 5
    chunks = split(text, size=24, overlap=4, unit="tokens", tokenizer=tok)
    assert len(chunks) > 3
    assert all(count(c.text) <= 24 for c in chunks)
    assert all(c.text == text[c.metadata["start"] : c.metadata["end"]] for c in chunks)
    # a whole English word is one token here: a token chunk holds much more English than a character chunk
    english = " hello world, this is english text. " * 6
    assert len(split(english, size=24, overlap=0, unit="tokens", tokenizer=tok)) * 3 <= len(
        split(english, size=24, overlap=0)
    )


def test_token_unit_with_a_function() -> None:
    words = lambda s: len(s.split())  # noqa: E731 - one "token" per word
    text = "one two three four five six seven eight nine ten. " * 6
    chunks = TextSplitter(size=12, overlap=3, unit="tokens", tokenizer=words).split(text)
    assert all(words(c.text) <= 12 for c in chunks)
    assert chunks[0].text == "one two three four five six seven eight nine ten."


def test_token_unit_with_an_encode_only_tokenizer() -> None:
    class Encoding:  # like tiktoken: encode(text) without transformers' keyword arguments
        def encode(self, text: str) -> list[str]:
            return text.split()

    text = "alpha beta gamma delta. " * 20
    chunks = split(text, size=10, overlap=2, unit="tokens", tokenizer=Encoding())
    assert chunks and all(len(c.text.split()) <= 10 for c in chunks)
    assert length_function(Encoding())("a b c") == 3


# ============================================================================================ metadata, API
def test_metadata_offsets_and_ids() -> None:
    docs = [Document("第一段。\n\n第二段。" * 20, {"source": "a.txt", "lang": "zh"}), "plain text. " * 30]
    chunks = split(docs, size=40, overlap=5)
    parents = {c.metadata["parent_id"] for c in chunks}
    assert len(parents) == 2
    a = [c for c in chunks if c.metadata.get("source") == "a.txt"]
    assert [c.metadata["chunk"] for c in a] == list(range(len(a)))
    assert all(c.metadata["lang"] == "zh" for c in a)
    assert all(c.text == docs[0].text[c.metadata["start"] : c.metadata["end"]] for c in a)
    assert len({c.id for c in chunks}) == len(chunks)
    assert split(docs, size=40, overlap=5) == chunks  # deterministic


def test_empty_and_blank_texts_give_no_chunks() -> None:
    assert split(["", "  \n\n "], size=10, overlap=0) == []
    assert TextSplitter(size=10, overlap=0).split_text("abc") == ["abc"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, "size must be an int >= 1"),
        ({"size": 30}, r"overlap \(50\) must be smaller than size \(30\)"),
        ({"unit": "words"}, "unit must be 'chars' or 'tokens'"),
        ({"lang": "fr"}, "lang must be 'auto', 'zh' or 'en'"),
        ({"unit": "tokens"}, "needs a tokenizer"),
        ({"tokenizer": len}, "pass unit='tokens'"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextSplitter(**kwargs)  # type: ignore[arg-type]


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="item 1 must be a str or a Document"):
        split(["ok", 3], size=10, overlap=0)  # type: ignore[list-item]


def test_splitter_is_a_runnable_in_a_chain() -> None:
    splitter = TextSplitter(size=20, overlap=0)
    load = runnable(lambda name: [Document("一二三四五。六七八九十。" * 3, {"source": name})])
    chain = load | splitter
    chunks = chain.invoke("x.txt")
    assert [c.text for c in chunks] == ["一二三四五。六七八九十。一二三四五。", "六七八九十。一二三四五。六七八九十。"]
    assert chain.batch(["a", "b"])[1][0].metadata["source"] == "b"
    assert asyncio.run(chain.ainvoke("y"))[0].metadata["source"] == "y"
    assert list(splitter.stream("短文本。")) == [split("短文本。", size=20, overlap=0)]


# ============================================================================================ properties
FRAGMENTS = [
    "今天的天气",
    "非常好",
    "我们一起去",
    "。",
    "！",
    "？",
    "，",
    "、",
    "\n",
    "\n\n",
    " ",
    "hello",
    "world",
    "tokenization",
    "3.14",
    "1,000",
    "12:30",
    "https://example.com/a/b?c=1",
    "user@example.org",
    ". ",
    ", ",
    "Mr. ",
]
UNBREAKABLE = [
    "tokenization",
    "3.14",
    "1,000",
    "12:30",
    "https://example.com/a/b?c=1",
    "user@example.org",
    "hello",
    "world",
]


def random_text(rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for _ in range(rng.randint(1, 120)):
        piece = rng.choice(FRAGMENTS)
        if piece in UNBREAKABLE:  # keep unbreakable tokens apart from letters so they stay one token
            parts.append(" ")
            pos += 1
            spans.append((pos, pos + len(piece)))
        parts.append(piece)
        pos += len(piece)
    return "".join(parts), spans


@pytest.mark.parametrize("seed", range(12))
def test_random_texts_keep_the_invariants(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        text, spans = random_text(rng)
        size = rng.randint(30, 120)
        overlap = rng.choice([0, 0, size // 5])
        chunks = split(text, size=size, overlap=overlap, lang=rng.choice(["auto", "zh", "en"]))
        covered = [False] * len(text)
        previous_end = -1
        previous_start = -1
        for c in chunks:
            start, end = c.metadata["start"], c.metadata["end"]
            assert c.text == text[start:end] and c.text == c.text.strip() and c.text
            assert len(c.text) <= size
            assert start > previous_start and end > previous_end
            if overlap == 0:
                assert start >= previous_end and not text[max(previous_end, 0) : start].strip()
            for i in range(start, end):
                covered[i] = True
            previous_start, previous_end = start, end
        assert all(covered[i] or text[i].isspace() for i in range(len(text)))
        for c in chunks:
            for pos in (c.metadata["start"], c.metadata["end"]):
                assert not any(inside(pos, s) for s in spans), (text, pos)
        if overlap == 0:  # the chunks and the whitespace between them rebuild the text
            rebuilt, last = "", 0
            for c in chunks:
                rebuilt += text[last : c.metadata["start"]] + c.text
                last = c.metadata["end"]
            assert rebuilt + text[last:] == text
