"""Retriever (single index, hybrid RRF, several indexes) and the RAG chain helper."""

from __future__ import annotations

import asyncio

import pytest

from yulian.core.runnable import runnable
from yulian.retrieval.bm25 import BM25Index
from yulian.retrieval.documents import Document
from yulian.retrieval.faiss_index import FaissIndex
from yulian.retrieval.rag import answer_prompt, cited_sources, format_docs, rag_chain
from yulian.retrieval.retriever import Retriever, rrf
from yulian.testing import FakeChatModel, FakeEmbedder

A, B, C, D = (Document(t, id=t) for t in "abcd")
FAQ = [
    Document("How do I reset my card PIN?", {"source": "faq.md", "line": 3, "lang": "en"}),
    Document("My new card has not arrived yet", {"source": "faq.md", "line": 7, "lang": "en"}),
    Document("What is the exchange rate for euros?", {"source": "fx.md", "lang": "en"}),
    Document("花呗怎么还款", {"source": "zh.md", "lang": "zh"}),
    Document("借呗额度怎么提升", {"source": "zh.md", "lang": "zh"}),
]


def test_rrf_on_a_hand_made_example() -> None:
    fused = rrf([[A, B, C], [C, A, D]], k=60)
    expected = {"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 63}
    assert [d.id for d in fused] == ["a", "c", "b", "d"]  # a = 1/61 + 1/62 > c = 1/61 + 1/63
    for doc in fused:
        assert doc.score == pytest.approx(expected[doc.id])


def test_rrf_weights_limit_duplicates_and_ties() -> None:
    weighted = rrf([[A, B], [B, A]], k=0, weights=[1.0, 3.0])
    assert [d.id for d in weighted] == ["b", "a"]
    assert weighted[0].score == pytest.approx(1 / 2 + 3 / 1) and weighted[1].score == pytest.approx(1 + 3 / 2)
    assert [d.id for d in rrf([[A, A, B]], k=60)] == ["a", "b"]  # a repeat counts once, at its best rank
    assert rrf([[A, A, B]], k=60)[1].score == pytest.approx(1 / 62)
    tie = rrf([[A, B], [B, A]], k=60)  # equal scores and best ranks: first seen wins
    assert [d.id for d in tie] == ["a", "b"] and tie[0].score == pytest.approx(tie[1].score)
    assert len(rrf([[A, B, C, D]], limit=2)) == 2
    with pytest.raises(ValueError, match="2 weights for 1 rankings"):
        rrf([[A]], weights=[1, 2])


def test_single_index_retriever_is_the_index_search() -> None:
    index = FaissIndex.build(FAQ, FakeEmbedder())
    retriever = Retriever(index, k=2)
    assert retriever.invoke("reset card PIN") == index.search("reset card PIN", k=2)
    assert retriever.invoke("reset card PIN")[0].id == FAQ[0].id


def test_hybrid_fuses_dense_and_bm25_with_rrf() -> None:
    index = FaissIndex.build(FAQ, FakeEmbedder())
    retriever = Retriever(index, k=3, hybrid=True, fetch_k=5)
    query = "card PIN reset"
    dense = index.search(query, k=5)
    keyword = BM25Index.build(FAQ).search(query, k=5)
    expected = rrf([dense, keyword], k=60, limit=3)
    got = retriever.invoke(query)
    assert got == expected
    assert got[0].id == FAQ[0].id
    assert len({d.id for d in got}) == len(got)


def test_hybrid_finds_what_only_keywords_find() -> None:
    """A dense index that ranks everything equally (constant vectors) plus BM25: the keyword match wins."""

    class Constant(FakeEmbedder):
        def embed(self, texts: list[str]) -> list[list[float]]:
            return [[1.0] + [0.0] * (self.dim - 1) for _ in texts]  # type: ignore[operator]

    index = FaissIndex.build(FAQ, Constant(8))
    assert Retriever(index, k=1, hybrid=True).invoke("euros exchange")[0].id == FAQ[2].id


def test_bm25_twin_follows_index_changes() -> None:
    index = FaissIndex.build(FAQ[:3], FakeEmbedder())
    retriever = Retriever(index, k=2, hybrid=True)
    assert all(d.id != FAQ[3].id for d in retriever.invoke("花呗怎么还款"))
    index.add(FAQ[3:])
    assert retriever.invoke("花呗怎么还款")[0].id == FAQ[3].id
    index.delete([FAQ[3].id])
    assert all(d.id != FAQ[3].id for d in retriever.invoke("花呗怎么还款"))


def test_explicit_bm25_and_several_indexes() -> None:
    en = FaissIndex.build(FAQ[:3], FakeEmbedder())
    zh = BM25Index.build(FAQ[3:])
    both = Retriever([en, zh], k=2)
    # each source's first hit ties at 1/61; the tie goes to the first source
    assert [d.id for d in both.invoke("花呗怎么还款")][1] == FAQ[3].id
    assert both.invoke("reset card PIN")[0].id == FAQ[0].id
    favour_zh = Retriever([en, zh], k=2, weights=[1.0, 2.0])
    assert favour_zh.invoke("花呗怎么还款")[0].id == FAQ[3].id
    hybrid = Retriever(en, k=2, bm25=BM25Index.build(FAQ[:3]))
    assert hybrid.hybrid and len(hybrid.sources()) == 2


def test_batch_embeds_once_and_matches_invoke() -> None:
    embedder = FakeEmbedder()
    retriever = Retriever(FaissIndex.build(FAQ, embedder), k=2, hybrid=True)
    queries = ["reset card PIN", "花呗还款", "euros"]
    embedder.calls.clear()
    batched = retriever.batch(queries)
    assert len(embedder.calls) == 1 and embedder.calls[0] == queries
    assert batched == [retriever.invoke(q) for q in queries]
    assert asyncio.run(retriever.ainvoke(queries[1])) == batched[1]
    assert asyncio.run(retriever.abatch(queries)) == batched


def test_filter_and_composition() -> None:
    retriever = Retriever(FaissIndex.build(FAQ, FakeEmbedder()), k=5, hybrid=True, filter={"lang": "zh"})
    assert {d.id for d in retriever.invoke("card")} <= {FAQ[3].id, FAQ[4].id}
    chain = retriever | runnable(lambda docs: [d.metadata["source"] for d in docs])
    assert chain.invoke("花呗怎么还款")[0] == "zh.md"


def test_bad_arguments() -> None:
    index = FaissIndex.build(FAQ, FakeEmbedder())
    with pytest.raises(TypeError, match="pick\\('question'\\)"):
        Retriever(index).invoke({"question": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already a BM25Index"):
        Retriever(BM25Index.build(FAQ), hybrid=True)
    with pytest.raises(ValueError, match="k must be"):
        Retriever(index, k=0)
    with pytest.raises(ValueError, match="weights has 1 values, but the retriever has 2 sources"):
        Retriever(index, hybrid=True, weights=[1.0])
    with pytest.raises(TypeError, match="SearchIndex"):
        Retriever(["not an index"])  # type: ignore[list-item]


# ============================================================================================ RAG
def test_format_docs_numbers_and_cites_sources() -> None:
    text = format_docs(FAQ[:3])
    assert text.startswith("[1] How do I reset my card PIN? (source: faq.md, line 3)")
    assert "\n\n[2] My new card has not arrived yet (source: faq.md, line 7)" in text
    assert "[3] What is the exchange rate for euros? (source: fx.md)" in text
    assert "no documents" in format_docs([])


def test_rag_chain_answers_with_numbered_context_and_sources() -> None:
    model = FakeChatModel(["Use the app to reset it [1]."])
    rag = rag_chain(Retriever(FaissIndex.build(FAQ, FakeEmbedder()), k=2), model)
    out = rag.invoke("How do I reset my card PIN?")
    assert out["answer"] == "Use the app to reset it [1]."
    assert out["sources"][0].id == FAQ[0].id and len(out["sources"]) == 2
    assert cited_sources(out) == [out["sources"][0]]
    system, user = model.calls[0]
    assert user.content == "How do I reset my card PIN?"
    assert "[1] How do I reset my card PIN? (source: faq.md, line 3)" in system.content
    assert "[2]" in system.content and "Cite" in system.content


def test_rag_chain_speaks_chinese_to_chinese_questions() -> None:
    model = FakeChatModel(["在花呗页面还款 [1]。"])
    rag = rag_chain(Retriever(FaissIndex.build(FAQ, FakeEmbedder()), k=1), model)
    out = rag.invoke("花呗怎么还款")
    assert "资料" in model.calls[0][0].content and out["sources"][0].id == FAQ[3].id
    assert "Cite" in answer_prompt("en").invoke({"context": "c", "question": "花呗"})[0].content
    with pytest.raises(ValueError, match="lang must be"):
        answer_prompt("fr")  # type: ignore[arg-type]


def test_rag_chain_streams_sources_then_answer_tokens() -> None:
    rag = rag_chain(Retriever(FaissIndex.build(FAQ, FakeEmbedder()), k=2), FakeChatModel(["It is [1] and [2]."]))
    pieces = list(rag.stream("reset PIN"))
    assert list(pieces[0]) == ["sources"] and len(pieces[0]["sources"]) == 2
    answer_pieces = [p["answer"] for p in pieces[1:]]
    assert len(answer_pieces) > 3 and "".join(answer_pieces) == "It is [1] and [2]."
    result = asyncio.run(rag.ainvoke("reset PIN"))
    assert result["answer"] == "It is [1] and [2]."


def test_cited_sources_parses_groups_and_ignores_out_of_range() -> None:
    result = {"answer": "See [2, 1] and [7]; also [2].", "sources": [A, B]}
    assert cited_sources(result) == [B, A]


def test_hybrid_twin_follows_index_changes_incrementally() -> None:
    from yulian.retrieval import FaissIndex, Retriever
    from yulian.testing import FakeEmbedder

    docs = [Document(f"document number {i} about topic {i % 7}") for i in range(50)]
    index = FaissIndex.build(docs, FakeEmbedder())
    retriever = Retriever(index, k=3, hybrid=True)
    retriever.invoke("topic 3")
    twin = retriever.sources()[-1]
    index.add([Document("zebra migration facts")])
    index.delete([docs[0].id])
    found = retriever.invoke("zebra")
    assert retriever.sources()[-1] is twin  # updated in place, not rebuilt
    assert found[0].text == "zebra migration facts"
    assert docs[0].id not in twin
    assert len(twin) == len(index)
