"""FaissIndex: exact and HNSW search, metrics, deletes, filters, persistence and corruption detection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yulian.retrieval import faiss_index as faiss_module
from yulian.retrieval.documents import Document
from yulian.retrieval.faiss_index import FaissConfig, FaissIndex
from yulian.retrieval.index import IndexCorruptError
from yulian.testing import FakeEmbedder

FAQ = [
    Document("How do I reset my card PIN?", {"lang": "en", "topic": "card", "tags": ["pin", "security"]}),
    Document("My new card has not arrived yet", {"lang": "en", "topic": "card"}),
    Document("What is the exchange rate for euros?", {"lang": "en", "topic": "fx"}),
    Document("花呗怎么还款", {"lang": "zh", "topic": "loan"}),
    Document("借呗额度怎么提升", {"lang": "zh", "topic": "loan"}),
    Document("Why was my transfer declined?", {"lang": "en", "topic": "transfer"}),
]


def random_docs(n: int, dim: int, seed: int = 0) -> tuple[list[Document], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    docs = [Document(f"doc {i}", {"group": i % 5, "lang": "zh" if i % 100 == 7 else "en"}) for i in range(n)]
    return docs, vectors


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_exact_text_match_ranks_first(kind: str, metric: str) -> None:
    index = FaissIndex.build(FAQ, FakeEmbedder(128), kind=kind, metric=metric)  # type: ignore[arg-type]
    for doc in FAQ:
        hits = index.search(doc.text, k=3)
        assert hits[0].id == doc.id
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(index) == len(FAQ)


def test_scores_follow_the_metric() -> None:
    docs, vectors = random_docs(50, 8)
    query = vectors[3] * 2.5
    cosine = FaissIndex(metric="cosine")
    cosine.add(docs, vectors)
    top = cosine.search_vectors(query[None], k=1)[0][0]
    assert top.id == docs[3].id and top.score == pytest.approx(1.0, abs=1e-5)  # scale does not matter
    ip = FaissIndex(metric="ip")
    ip.add(docs, vectors)
    hit = ip.search_vectors(query, k=1)[0][0]
    best = int(np.argmax(vectors @ query))
    assert hit.id == docs[best].id and hit.score == pytest.approx(float(vectors[best] @ query), rel=1e-4)
    l2 = FaissIndex(metric="l2")
    l2.add(docs, vectors)
    hits = l2.search_vectors(query, k=2)[0]
    dist = ((vectors - query) ** 2).sum(axis=1)
    assert [h.id for h in hits] == [docs[i].id for i in np.argsort(dist)[:2]]
    assert hits[0].score == pytest.approx(-float(dist.min()), rel=1e-4)


def test_hnsw_agrees_with_flat_on_small_data() -> None:
    docs, vectors = random_docs(600, 32)
    queries = np.random.default_rng(1).standard_normal((40, 32)).astype(np.float32)
    flat, hnsw = FaissIndex(), FaissIndex(kind="hnsw", ef_search=128)
    flat.add(docs, vectors)
    hnsw.add(docs, vectors)
    exact = flat.search_vectors(queries, k=10)
    approx = hnsw.search_vectors(queries, k=10)
    found = sum(len({d.id for d in a} & {d.id for d in e}) for a, e in zip(approx, exact, strict=True))
    assert found / (10 * len(queries)) >= 0.98
    assert [a[0].id for a in approx] == [e[0].id for e in exact]


def test_search_many_embeds_all_queries_in_one_call() -> None:
    embedder = FakeEmbedder()
    index = FaissIndex.build(FAQ, embedder)
    embedder.calls.clear()
    results = index.search_many(["reset PIN", "花呗还款", "euros"], k=1)
    assert embedder.calls == [["reset PIN", "花呗还款", "euros"]]
    assert [r[0].id for r in results] == [FAQ[0].id, FAQ[3].id, FAQ[2].id]


def test_empty_index_returns_nothing_without_loading_the_embedder() -> None:
    embedder = FakeEmbedder()
    index = FaissIndex(embedder)
    assert index.search("anything") == []
    assert embedder.calls == []


def test_delete_removes_and_readd_replaces() -> None:
    index = FaissIndex.build(FAQ, FakeEmbedder())
    assert index.delete([FAQ[0].id, "no-such-id"]) == 1
    assert len(index) == len(FAQ) - 1 and FAQ[0].id not in index
    assert all(h.id != FAQ[0].id for h in index.search(FAQ[0].text, k=len(FAQ)))
    assert len(index.search(FAQ[0].text, k=10)) == len(FAQ) - 1
    # re-adding the same id replaces the document instead of duplicating it
    changed = Document("Card PIN reset steps", {"lang": "en"}, id=FAQ[1].id)
    index.add([changed])
    assert len(index) == len(FAQ) - 1
    assert index.get([FAQ[1].id])[0].text == "Card PIN reset steps"
    assert [d.id for d in index.search(FAQ[1].text, k=10)].count(FAQ[1].id) == 1


def test_mass_delete_compacts_and_keeps_results_right() -> None:
    docs, vectors = random_docs(1000, 16)
    index = FaissIndex()
    index.add(docs, vectors)
    index.delete(d.id for d in docs[:700])
    assert len(index) == 300 and len(index._docs) == 300  # dead rows were dropped
    hits = index.search_vectors(vectors[850], k=3)[0]
    assert hits[0].id == docs[850].id
    live = vectors[700:] / np.linalg.norm(vectors[700:], axis=1, keepdims=True)
    expected = np.argsort(-(live @ (vectors[850] / np.linalg.norm(vectors[850]))))[:3] + 700
    assert [h.id for h in hits] == [docs[i].id for i in expected]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_filters(kind: str) -> None:
    index = FaissIndex.build(FAQ, FakeEmbedder(), kind=kind)  # type: ignore[arg-type]
    zh = index.search("card PIN", k=4, filter={"lang": "zh"})
    assert {d.id for d in zh} == {FAQ[3].id, FAQ[4].id}
    many = index.search("card", k=10, filter={"topic": ["fx", "transfer"]})
    assert {d.id for d in many} == {FAQ[2].id, FAQ[5].id}
    tagged = index.search("card", k=10, filter={"tags": "security"})  # a list-valued field matches any element
    assert [d.id for d in tagged] == [FAQ[0].id]
    call = index.search("card", k=10, filter=lambda m: m.get("topic") == "card")
    assert {d.id for d in call} == {FAQ[0].id, FAQ[1].id}
    assert index.search("card", k=10, filter={"lang": "fr"}) == []
    with pytest.raises(TypeError, match="filter must be"):
        index.search("card", filter=["lang"])  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "exact_limit"), [("flat", 4096), ("hnsw", 4096), ("hnsw", 2)])
def test_selective_filter_still_returns_k_matches(kind: str, exact_limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faiss_module, "EXACT_LIMIT", exact_limit)  # 2: the HNSW + bitmap path
    scans: list[int] = []
    restricted = FaissIndex._search_allowed
    monkeypatch.setattr(
        FaissIndex, "_search_allowed", lambda self, q, k, pred: scans.append(len(q)) or restricted(self, q, k, pred)
    )
    docs, vectors = random_docs(2000, 8)  # over-fetching stops at 1,024 candidates, short of all 2,000
    docs = [d.with_metadata(rare=i % 400 == 7) for i, d in enumerate(docs)]
    index = FaissIndex(kind=kind)  # type: ignore[arg-type]
    index.add(docs, vectors)
    hits = index.search_vectors(vectors[:2], k=5, filter={"rare": True})
    assert scans == [2]  # over-fetching found too few: one restricted search for both queries
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [i for i in range(2000) if i % 400 == 7]
    for query, found in enumerate(hits):
        assert len(found) == 5 and all(h.metadata["rare"] for h in found)
        best = sorted(rows, key=lambda r: -float(unit[r] @ unit[query]))[:5]
        if kind == "flat" or exact_limit > 2:
            assert [h.id for h in found] == [docs[r].id for r in best]


def test_moderate_filter_is_served_by_over_fetching(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FaissIndex, "_search_allowed", None)  # must not be needed
    docs, vectors = random_docs(3000, 8)
    index = FaissIndex()
    index.add(docs, vectors)
    hits = index.search_vectors(vectors[:20], k=10, filter={"group": 3})  # one in five passes
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for query, found in enumerate(hits):
        best = sorted((r for r in range(3000) if r % 5 == 3), key=lambda r: -float(unit[r] @ unit[query]))[:10]
        assert [h.id for h in found] == [docs[r].id for r in best]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_gives_identical_results(tmp_path: Path, kind: str) -> None:
    embedder = FakeEmbedder()
    index = FaissIndex.build(FAQ, embedder, kind=kind, metric="cosine")  # type: ignore[arg-type]
    index.delete([FAQ[2].id])
    assert index.save(tmp_path / "faq.index") is index
    loaded = FaissIndex.load(tmp_path / "faq.index", embedder)
    assert len(loaded) == len(index) and loaded.kind == kind
    for query in ["reset PIN", "花呗", "transfer declined", "euros"]:
        assert loaded.search(query, k=5) == index.search(query, k=5)
    assert loaded.search("card", filter={"lang": "en"}) == index.search("card", filter={"lang": "en"})
    manifest = json.loads((tmp_path / "faq.index" / "manifest.json").read_text())
    assert manifest["count"] == len(FAQ) - 1 and manifest["dim"] == 64 and manifest["kind"] == kind
    # saving again over the index replaces it atomically, with no temporary directories left behind
    loaded.add([Document("new doc about savings accounts")])
    loaded.save(tmp_path / "faq.index")
    assert len(FaissIndex.load(tmp_path / "faq.index", embedder)) == len(FAQ)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faq.index"]


def test_save_refuses_to_replace_an_unrelated_directory(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a saved index"):
        FaissIndex.build(FAQ, FakeEmbedder()).save(tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "precious"


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "faq.index"
    FaissIndex.build(FAQ, FakeEmbedder()).save(path)
    return path


def test_missing_file_is_named(saved: Path) -> None:
    (saved / "vectors.faiss").unlink()
    with pytest.raises(IndexCorruptError, match=r"vectors\.faiss is missing"):
        FaissIndex.load(saved, FakeEmbedder())


def test_changed_file_fails_its_checksum(saved: Path) -> None:
    text = (saved / "docs.jsonl").read_text(encoding="utf-8")
    (saved / "docs.jsonl").write_text(text.replace("PIN", "pin"), encoding="utf-8")  # same size, other bytes
    with pytest.raises(IndexCorruptError, match=r"docs\.jsonl does not match its checksum"):
        FaissIndex.load(saved, FakeEmbedder())


def test_truncated_file_is_detected(saved: Path) -> None:
    data = (saved / "vectors.faiss").read_bytes()
    (saved / "vectors.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexCorruptError, match=r"vectors\.faiss has \d+ bytes"):
        FaissIndex.load(saved, FakeEmbedder())


def test_garbage_vectors_fail_even_without_checksums(saved: Path) -> None:
    size = (saved / "vectors.faiss").stat().st_size
    (saved / "vectors.faiss").write_bytes(b"\x00" * size)
    with pytest.raises(IndexCorruptError, match="not a readable FAISS index"):
        FaissIndex.load(saved, FakeEmbedder(), verify=False)


def test_bad_manifest_is_reported(saved: Path) -> None:
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptError, match=r"manifest\.json is not valid JSON"):
        FaissIndex.load(saved)
    (saved / "manifest.json").unlink()
    with pytest.raises(IndexCorruptError, match=r"manifest\.json is missing"):
        FaissIndex.load(saved)


def test_counts_that_disagree_with_the_manifest_are_reported(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["count"] = 99
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="6 live documents, but the manifest records 99"):
        FaissIndex.load(saved)


def test_load_checks_kind_embedder_and_path(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dimension 64"):
        FaissIndex.load(saved, FakeEmbedder(dim=32))
    with pytest.raises(FileNotFoundError, match="no saved index"):
        FaissIndex.load(tmp_path / "nowhere")
    from yulian.retrieval.bm25 import BM25Index

    with pytest.raises(IndexCorruptError, match=r"format is 'yulian\.faiss_index'"):
        BM25Index.load(saved)


def test_bad_input_gets_clear_errors() -> None:
    with pytest.raises(ValueError, match="metric must be one of cosine, ip, l2"):
        FaissConfig(metric="dot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be one of flat, hnsw"):
        FaissIndex(kind="ivf")  # type: ignore[arg-type]
    index = FaissIndex(FakeEmbedder(8))
    with pytest.raises(ValueError, match="NaN"):
        index.add([Document("a")], np.full((1, 8), np.nan))
    with pytest.raises(ValueError, match="dimension 4, but the embedder's vectors have 8"):
        index.add([Document("a")], np.ones((1, 4)))
    with pytest.raises(TypeError, match="list of Documents"):
        index.add("just a string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        index.search("x", k=0)
    with pytest.raises(ValueError, match="has no embedder"):
        FaissIndex.build(FAQ)


def test_constructing_and_importing_stay_light() -> None:
    code = (
        "import sys\n"
        "import yulian.retrieval.faiss_index as f, yulian.retrieval.bm25, yulian.retrieval.retriever, "
        "yulian.retrieval.rag\n"
        "f.FaissIndex(); yulian.retrieval.bm25.BM25Index()\n"
        "print(','.join(m for m in ['numpy', 'faiss', 'jieba', 'torch'] if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_queries_and_passages_are_embedded_as_such() -> None:
    """An e5-style embedder prefixes queries and passages differently: the index must use the right side."""

    class Prefixed(FakeEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.sides: list[str] = []

        def embed_numpy(self, texts: list[str], *, query: bool = False) -> np.ndarray:
            self.sides.append("query" if query else "passage")
            return np.asarray(self.embed([("query: " if query else "passage: ") + t for t in texts]), np.float32)

    class QueriesMethod(FakeEmbedder):
        def embed_queries(self, texts: list[str]) -> list[list[float]]:
            self.calls.append(["<queries>", *texts])
            return self.embed(texts)

    prefixed = Prefixed()
    index = FaissIndex.build(FAQ, prefixed)
    index.search_many(["reset PIN", "euros"])
    assert prefixed.sides == ["passage", "query"]
    assert prefixed.calls[-1] == ["query: reset PIN", "query: euros"]
    plain = QueriesMethod()
    index = FaissIndex.build(FAQ, plain)
    assert index.search("reset card PIN", k=1)[0].id == FAQ[0].id
    assert plain.calls[0] == [d.text for d in FAQ] and plain.calls[1][0] == "<queries>"


def test_searches_and_changes_from_many_threads() -> None:
    """Adds, deletes (with compaction) and searches interleave safely: every hit is a live document of the index."""
    import threading

    docs, vectors = random_docs(1200, 8)
    index = FaissIndex(kind="hnsw")
    index.add(docs[:400], vectors[:400])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for start in range(400, 1200, 100):
                index.add(docs[start : start + 100], vectors[start : start + 100])
                index.delete(d.id for d in docs[start - 400 : start - 300])
        except BaseException as e:
            errors.append(e)

    def reader() -> None:
        try:
            for i in range(60):
                for hit in index.search_vectors(vectors[i], k=5)[0]:
                    row = int(hit.text.split()[1])  # the score must be this document's own: rows never mix up
                    assert hit.score == pytest.approx(float(unit[row] @ unit[i]), abs=1e-4)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(index) == 400 and len(index.search_vectors(vectors[1100], k=3)[0]) == 3
