"""Fine-tuning: data readers and validation (more to come: task heads, the trainer, methods, reports)."""

from yulian.tuning.data import (
    ChatExample,
    DataConfig,
    DataError,
    LabelMap,
    PadCollator,
    QAExample,
    RecordSet,
    TextExample,
    TokenExample,
    convert_tags,
    length_grouped_batches,
    read_records,
    split_by_article,
    stratified_split,
    tokenize_cached,
    train_dev_split,
)

__all__ = [
    "ChatExample",
    "DataConfig",
    "DataError",
    "LabelMap",
    "PadCollator",
    "QAExample",
    "RecordSet",
    "TextExample",
    "TokenExample",
    "convert_tags",
    "length_grouped_batches",
    "read_records",
    "split_by_article",
    "stratified_split",
    "tokenize_cached",
    "train_dev_split",
]
