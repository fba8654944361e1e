"""BM25Index: tokenisation (jieba for Chinese), Okapi scores, updates, filters and persistence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from yulian.retrieval.bm25 import BM25Config, BM25Index, tokenize
from yulian.retrieval.documents import Document
from yulian.retrieval.index import IndexCorruptError

ZH = [
    Document("如何修改银行卡密码", {"lang": "zh"}),
    Document("花呗怎么还款", {"lang": "zh"}),
    Document("借呗额度怎么提升", {"lang": "zh"}),
    Document("信用卡账单什么时候出", {"lang": "zh"}),
]
EN = [
    Document("the cat sat on the mat", {"n": 0}),
    Document("the dog sat on the log", {"n": 1}),
    Document("cats and dogs and cats", {"n": 2}),
    Document("a bird in the hand", {"n": 3}),
]


def test_tokenize_words_and_chinese() -> None:
    assert tokenize("Hello, WORLD! It's 2024.") == ["hello", "world", "it", "s", "2024"]
    assert tokenize("ＦＵＬＬ－ｗｉｄｔｈ") == ["full", "width"]  # NFKC folds full-width forms
    words = tokenize("银行卡密码忘了怎么办？", chinese="words")
    assert "银行卡" in words and "密码" in words and "怎么办" in words  # jieba words, not characters
    assert "卡" not in words
    assert tokenize("My bill 怎么还款?", chinese="words") == ["my", "bill", "怎么", "还款"]
    assert tokenize("My bill 怎么还款?") == ["my", "bill", "怎么", "还款", "怎", "么", "还", "款"]
    assert tokenize("My bill 怎么还款?", chinese="chars") == ["my", "bill", "怎", "么", "还", "款"]
    assert tokenize("") == []


@pytest.mark.parametrize("mode", ["words+chars", "words", "chars"])
def test_chinese_query_finds_the_chinese_doc(mode: str) -> None:
    index = BM25Index.build(ZH, chinese=mode)
    assert index.search("银行卡密码忘了怎么办", k=1)[0].id == ZH[0].id
    assert index.search("借呗的额度能提升吗", k=1)[0].id == ZH[2].id


def test_jieba_words_outrank_shared_characters() -> None:
    docs = [Document("银行卡密码", id="words"), Document("行密银码卡", id="chars")]  # same characters, no words
    words_only = BM25Index.build(docs, chinese="words")
    assert [d.id for d in words_only.search("银行卡密码")] == ["words"]
    both = BM25Index.build(docs)
    hits = both.search("银行卡密码")
    assert [d.id for d in hits] == ["words", "chars"] and hits[0].score > hits[1].score
    chars_only = BM25Index.build(docs, chinese="chars")
    scores = chars_only.scores("银行卡密码")
    assert scores["words"] == pytest.approx(scores["chars"])  # characters alone cannot tell them apart


def test_scores_are_okapi_bm25() -> None:
    k1, b = 1.2, 0.75
    index = BM25Index.build(EN, k1=k1, b=b, tokenizer=str.split)
    docs = [d.text.split() for d in EN]
    avgdl = sum(map(len, docs)) / len(docs)

    def expected(query: list[str], doc: list[str]) -> float:
        total = 0.0
        for term in set(query):
            df = sum(term in d for d in docs)
            tf = doc.count(term)
            if tf:
                idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
                total += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        return total

    query = "cats sat on the mat"
    scores = index.scores(query)
    for doc, tokens in zip(EN, docs, strict=True):
        assert scores.get(doc.id, 0.0) == pytest.approx(expected(query.split(), tokens), rel=1e-5)
    hits = index.search(query, k=4)
    assert [h.id for h in hits] == sorted(scores, key=lambda i: -scores[i])[:4]
    assert hits[0].id == EN[0].id and hits[0].score == pytest.approx(scores[EN[0].id], rel=1e-6)


def test_term_frequency_and_rarity_matter() -> None:
    index = BM25Index.build(EN)
    assert index.search("cats", k=1)[0].id == EN[2].id  # tf 2 beats tf 0 ("cat" is another word)
    assert index.search("bird the", k=1)[0].id == EN[3].id  # the rare term outweighs the common one


def test_no_shared_term_returns_nothing() -> None:
    index = BM25Index.build(EN)
    assert index.search("zebra") == []
    assert index.search("") == []
    assert BM25Index().search("anything") == []


def test_delete_and_upsert_update_the_statistics() -> None:
    index = BM25Index.build(EN)
    assert index.delete([EN[2].id, "unknown"]) == 1
    fresh = BM25Index.build([EN[0], EN[1], EN[3]])
    assert index.scores("cats sat the") == fresh.scores("cats sat the")  # idf and avgdl as if never added
    index.add([Document("zebra crossing", id=EN[0].id)])
    assert len(index) == 3
    assert index.search("zebra")[0].id == EN[0].id and index.search("mat") == []


def test_filter() -> None:
    index = BM25Index.build(EN)
    hits = index.search("the", k=4, filter={"n": [1, 3]})
    assert {h.id for h in hits} == {EN[1].id, EN[3].id}
    assert index.search("the", filter=lambda m: m["n"] == 0)[0].id == EN[0].id


def test_save_load_identical(tmp_path: Path) -> None:
    index = BM25Index.build(ZH + EN, k1=1.2, b=0.6, chinese="words")
    index.delete([EN[1].id])
    index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert len(loaded) == len(index) and loaded.config == BM25Config(1.2, 0.6, "words")
    for query in ["花呗怎么还款", "the cat", "银行卡密码", "dog"]:
        assert loaded.search(query, k=5) == index.search(query, k=5)


def test_custom_tokenizer_must_be_given_back(tmp_path: Path) -> None:
    BM25Index.build(EN, tokenizer=str.split).save(tmp_path / "bm25")
    with pytest.raises(ValueError, match="tokenizer"):
        BM25Index.load(tmp_path / "bm25")
    assert BM25Index.load(tmp_path / "bm25", tokenizer=str.split).search("cats")[0].id == EN[2].id


def test_corrupt_docs_file(tmp_path: Path) -> None:
    BM25Index.build(EN).save(tmp_path / "bm25")
    docs = tmp_path / "bm25" / "docs.jsonl"
    docs.write_text(docs.read_text().replace('"cat"', '"cot"'))
    with pytest.raises(IndexCorruptError, match=r"docs\.jsonl does not match its checksum"):
        BM25Index.load(tmp_path / "bm25")
    lines = docs.read_text().splitlines()
    lines[1] = "{broken".ljust(len(lines[1].encode()))  # same size: only the checksum could tell
    docs.write_text("\n".join(lines) + "\n")
    with pytest.raises(IndexCorruptError, match=r"docs\.jsonl line 2: not valid JSON"):
        BM25Index.load(tmp_path / "bm25", verify=False)


def test_row_count_mismatch(tmp_path: Path) -> None:
    BM25Index.build(EN).save(tmp_path / "bm25")
    manifest = tmp_path / "bm25" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["rows"] = 5
    manifest.write_text(json.dumps(data))
    with pytest.raises(IndexCorruptError, match="4 rows"):
        BM25Index.load(tmp_path / "bm25")


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="b must be a number in"):
        BM25Index(b=1.5)
    with pytest.raises(ValueError, match="k1 must be"):
        BM25Config(k1=-1)
    with pytest.raises(ValueError, match="chinese must be one of words\\+chars, words, chars"):
        BM25Index(chinese="bigrams")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tokenizer must be"):
        BM25Index(tokenizer="jieba")  # type: ignore[arg-type]


def test_latin_or_digits_next_to_chinese_are_separate_tokens() -> None:
    from yulian.retrieval.bm25 import tokenize

    assert tokenize("我的iPhone手机坏了", "chars") == ["我", "的", "iphone", "手", "机", "坏", "了"]
    assert tokenize("支付宝2024年账单", "chars")[:5] == ["支", "付", "宝", "2024", "年"]
    index = BM25Index.build([Document("iPhone手机坏了怎么办"), Document("手机怎么充值")], chinese="chars")
    assert len(index.search("手机", k=2)) == 2
