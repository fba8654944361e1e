"""The data layer of fine-tuning: read, validate, split, tokenise (cached) and batch training data.

```python
from yulian.tuning.data import read_records, LabelMap, stratified_split

records = read_records("intents.csv", label_field="intent", skip_bad=True)
print(records.summary())             # intents.csv: 10,003 classification examples, 2 bad skipped (empty_text 2)
labels = LabelMap.from_examples(records)
split = stratified_split(records.of(TextExample), dev_fraction=0.1, seed=42)
```

Formats: JSONL, JSON (records, rows or SQuAD), CSV/TSV/delimited text with field mapping, CoNLL and BMES (token
per line, or Resume-style sentence per line). Tasks: classification (single, multi-label, text pairs), token
classification (BIO/BIOES/BMES, Chinese by character, CLUENER spans), extractive QA (SQuAD v1.1/v2) and chat
SFT (messages, ShareGPT, prompt/response, Alpaca). Every problem is a `DataError` naming the file and line.

This module and everything it imports use the standard library only; numpy/torch load when the tokenisation
cache or tensor batches are used.
"""

from __future__ import annotations

import os
import typing

from yulian.tuning.data_batching import PadCollator, length_grouped_batches, pad_sequences, padding_efficiency
from yulian.tuning.data_cache import TokenCache, cache_root, texts_digest, tokenize_cached, tokenizer_fingerprint
from yulian.tuning.data_formats import FORMATS, TASKS, DataConfig
from yulian.tuning.data_labels import LABELS_FILE, LabelMap
from yulian.tuning.data_splits import Split, random_split, split_by_article, stratified_split, train_dev_split
from yulian.tuning.data_tags import SCHEMES, Span, convert_tags, detect_scheme, spans_to_tags, split_tag, tags_to_spans
from yulian.tuning.data_types import (
    BadRecord,
    ChatExample,
    DataError,
    Example,
    QAAnswer,
    QAExample,
    RecordSet,
    TextExample,
    TokenExample,
)

__all__ = [  # noqa: RUF022  (plain sorted(), as tests/unit/test_public_api.py checks)
    "BadRecord",
    "ChatExample",
    "DataConfig",
    "DataError",
    "Example",
    "FORMATS",
    "LABELS_FILE",
    "LabelMap",
    "PadCollator",
    "QAAnswer",
    "QAExample",
    "RecordSet",
    "SCHEMES",
    "Span",
    "Split",
    "TASKS",
    "TextExample",
    "TokenCache",
    "TokenExample",
    "cache_root",
    "convert_tags",
    "detect_scheme",
    "length_grouped_batches",
    "pad_sequences",
    "padding_efficiency",
    "random_split",
    "read_records",
    "spans_to_tags",
    "split_by_article",
    "split_tag",
    "stratified_split",
    "tags_to_spans",
    "texts_digest",
    "tokenize_cached",
    "tokenizer_fingerprint",
    "train_dev_split",
]


def read_records(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    task: str | None = None,
    encoding: str = "utf-8",
    text_field: str | int = "text",
    label_field: str | int | None = "label",
    text_pair_field: str | int | None = None,
    label_sep: str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    messages_field: str = "messages",
    prompt_field: str = "prompt",
    response_field: str = "response",
    tag_scheme: str | None = None,
    label_map: LabelMap | None = None,
    fix_answer_starts: bool = False,
    skip_bad: bool = False,
) -> RecordSet[typing.Any]:
    """Read and validate one data file; the options are `DataConfig`'s (see there).

    The format comes from the extension (`.jsonl .json .csv .tsv .txt .conll .bmes .bio .ner`) unless `fmt` is
    given; the task from the format and the first record unless `task` is given. A bad record (empty text,
    missing field, unknown label, malformed JSON, undecodable bytes, tag/token count mismatch, answer not at its
    answer_start) raises `DataError` naming file and line, or with `skip_bad=True` is skipped and listed in
    `.bad`. Returns a `RecordSet`: the examples, `.bad`, counts and `.summary()`.
    """
    config = DataConfig(
        fmt=fmt,
        task=task,
        encoding=encoding,
        text_field=text_field,
        label_field=label_field,
        text_pair_field=text_pair_field,
        label_sep=label_sep,
        delimiter=delimiter,
        header=header,
        messages_field=messages_field,
        prompt_field=prompt_field,
        response_field=response_field,
        tag_scheme=tag_scheme,
        label_map=label_map,
        fix_answer_starts=fix_answer_starts,
        skip_bad=skip_bad,
    )
    return config.read(path)
