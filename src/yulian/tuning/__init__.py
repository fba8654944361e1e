"""Fine-tuning: data readers and validation, tasks, methods and the trainer."""

from yulian.tuning.adapters import AdapterModel, adapter_info, load_adapter
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
from yulian.tuning.methods import METHODS, get_method
from yulian.tuning.trainer import TrainConfig, Trainer, TrainResult

__all__ = [  # noqa: RUF022 - plain sorted(), as tests/unit/test_public_api.py checks
    "AdapterModel",
    "ChatExample",
    "DataConfig",
    "DataError",
    "LabelMap",
    "METHODS",
    "PadCollator",
    "QAExample",
    "RecordSet",
    "TextExample",
    "TokenExample",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "adapter_info",
    "convert_tags",
    "get_method",
    "length_grouped_batches",
    "load_adapter",
    "read_records",
    "split_by_article",
    "stratified_split",
    "tokenize_cached",
    "train_dev_split",
]
