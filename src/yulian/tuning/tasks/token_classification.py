"""Token classification (NER, slot filling, Chinese word segmentation) as a fine-tuning task, registered as "ner".

Examples are `TokenExample`s: words (English) or characters (Chinese) with one tag each, in BIO, BIOES or BMES.
The task trains in `config.tag_scheme` (tags are converted through entity spans) or, when that is None, in the
scheme the training file is written in. The label set holds every prefix of every entity type the training data
has (`B-`/`I-` for BIO; `B-`/`I-`/`E-`/`S-` for BIOES; `B-`/`M-`/`E-`/`S-` for BMES), `O` first.

Alignment: words are tokenised with `is_split_into_words=True` by a fast tokenizer and mapped back with its word
ids. The first sub-word of a word carries the word's tag; the other sub-words get -100 (ignored by the loss)
unless `config.label_all_tokens`. A Chinese character is one word, so features align with characters 1:1
(SentencePiece tokenizers such as XLM-R's spell a lone character as "▁" + character: the bare "▁" is dropped,
see `yulian.models.char_tokens`, so a character still takes one token rather than two).

Long sentences are cut into overlapping windows of `max_length` tokens (special tokens included), consecutive
windows sharing `stride` tokens, so no word is lost. At evaluation each word takes the prediction of its first
sub-word in the window where that sub-word is farthest from a window edge. A word with no tokens at all (a
character the tokenizer drops) is predicted "O".

Metrics are entity-level (seqeval): "f1", "precision", "recall"; strict IOBES matching for BIOES/BMES, the
conlleval-style default for BIO. The deployed predictor is `yulian.models.HFTokenClassifier`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from yulian._optional import require
from yulian.models.char_tokens import drop_char_markers, word_marker_id
from yulian.tuning.data import DataError, LabelMap, TokenExample, convert_tags, detect_scheme, read_records, split_tag
from yulian.tuning.metrics import entity_report, entity_scores
from yulian.tuning.tasks._hf import (
    batches,
    device_of,
    eval_mode,
    load_pretrained,
    model_folder,
    pad_features,
    require_fast,
)
from yulian.tuning.tasks.base import Feature, Task, TaskConfig

__all__ = ["TokenClassificationTask", "window_starts"]

_PREFIXES = {"bio": ("B", "I"), "bioes": ("B", "I", "E", "S"), "bmes": ("B", "M", "E", "S")}


def window_starts(n_tokens: int, room: int, stride: int) -> list[int]:
    """Start positions of windows of `room` tokens over `n_tokens`, consecutive windows sharing `stride`."""
    if n_tokens <= room:
        return [0]
    step = max(1, room - stride)
    starts = list(range(0, n_tokens - room, step))
    starts.append(n_tokens - room)
    return starts


class TokenClassificationTask(Task):
    """Fine-tune a token classifier (`AutoModelForTokenClassification`) on tagged words or characters."""

    name: ClassVar[str] = "ner"
    metrics: ClassVar[tuple[str, ...]] = ("f1", "precision", "recall")

    def __init__(self, config: TaskConfig | None = None) -> None:
        super().__init__(config)
        self.scheme: str | None = self.config.tag_scheme
        self.labels: LabelMap | None = None

    # data --------------------------------------------------------------------------------------------------
    def read(self, path: str | Path, *, skip_bad: bool = False, encoding: str = "utf-8") -> Sequence[TokenExample]:
        """Tagged sentences from a CoNLL/BMES file (or JSONL with tokens/tags, or CLUENER spans)."""
        records = read_records(path, task="token", skip_bad=skip_bad, encoding=encoding)
        return records.of(TokenExample)

    def setup(self, train_examples: Sequence[Any], base_model: str | Path) -> None:
        """Choose the tag scheme and build the label map from the entity types of the training data."""
        examples = _token_examples(train_examples)
        if self.scheme is None:
            self.scheme = detect_scheme([t for ex in examples for t in ex.tags])
        kinds = sorted({split_tag(t)[1] for ex in examples for t in ex.tags if t != "O"})
        if not kinds:
            raise ValueError("the training data has no entity tags (every tag is 'O'): nothing to learn")
        prefixes = _PREFIXES[self.scheme]
        self.labels = LabelMap(["O", *(f"{p}-{k}" if k else p for k in kinds for p in prefixes)])

    def tags(self, example: TokenExample) -> list[str]:
        """The example's tags in the task's scheme."""
        return convert_tags(example.tags, to=self._scheme())

    # model -------------------------------------------------------------------------------------------------
    def build_model(self, base_model: str | Path) -> tuple[Any, Any]:
        """The base encoder with a fresh token-classification head over the task's labels, and its tokenizer."""
        transformers = require("transformers", extra="hf", purpose="fine-tuning")
        labels = self._labels()
        folder = model_folder(base_model)
        tokenizer = require_fast(transformers.AutoTokenizer.from_pretrained(folder), self.name)
        model = load_pretrained(
            "AutoModelForTokenClassification",
            folder,
            num_labels=len(labels),
            id2label=labels.id2label,
            label2id=labels.label2id,
            ignore_mismatched_sizes=True,
        )
        return model, tokenizer

    def encode(self, examples: Sequence[Any], tokenizer: Any) -> list[Feature]:
        """Windows of sub-word ids with labels (see `_encode`); a tag outside the label set is a `DataError`."""
        return self._encode(examples, tokenizer, labelled=True)

    def _encode(self, examples: Sequence[Any], tokenizer: Any, *, labelled: bool) -> list[Feature]:
        """Windows of sub-word ids with labels on first sub-words; bookkeeping for evaluation.

        Each feature: `input_ids`, `labels`, `example` (index in `examples`), `start` (position of its first
        content token in the example's sub-words), `offset` (special tokens before the content), `word_ids` (the
        word of each content token, None if none) and `first` (whether a content token is its word's first).
        """
        require_fast(tokenizer, self.name)
        examples = _token_examples(examples)
        labels = self._labels()
        prefix, suffix = _special_layout(tokenizer)
        room = self.config.max_length - len(prefix) - len(suffix)
        if room <= self.config.stride:
            raise ValueError(
                f"max_length={self.config.max_length} leaves {room} tokens per window after special tokens, not more "
                f"than stride={self.config.stride}: raise max_length or lower stride"
            )
        features: list[Feature] = []
        if not examples:
            return features
        enc = tokenizer([ex.tokens for ex in examples], is_split_into_words=True, add_special_tokens=False)
        marker = word_marker_id(tokenizer)
        for index, ex in enumerate(examples):
            ids: list[int] = enc["input_ids"][index]
            words: list[int | None] = enc.word_ids(index)
            if marker is not None:
                ids, words = drop_char_markers(ids, words, ex.tokens, marker)
            tag_ids = None
            if labelled and ex.tags:
                try:
                    tag_ids = labels.encode(self.tags(ex))
                except DataError as e:
                    where = f"sentence on line {ex.line}: " if ex.line else ""
                    message = f"{where}{e.message} (the labels come from the training data)"
                    raise DataError(message, line=ex.line, field="tags") from None
            token_labels = _align(words, tag_ids, self.config.label_all_tokens)
            firsts = [w is not None and (i == 0 or words[i - 1] != w) for i, w in enumerate(words)]
            for start in window_starts(len(ids), room, self.config.stride):
                end = min(start + room, len(ids))
                features.append(
                    {
                        "input_ids": prefix + ids[start:end] + suffix,
                        "labels": [-100] * len(prefix) + token_labels[start:end] + [-100] * len(suffix),
                        "example": index,
                        "start": start,
                        "word_ids": words[start:end],
                        "first": firsts[start:end],
                        "offset": len(prefix),
                    }
                )
        return features

    def collate(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, Any]:
        """Right-padded `input_ids`, `attention_mask` and `labels` (-100 on padding)."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return pad_features(features, {"input_ids": pad, "attention_mask": 0, "labels": -100})

    # evaluation --------------------------------------------------------------------------------------------
    def predict_tags(
        self, model: Any, tokenizer: Any, examples: Sequence[Any], *, batch_size: int = 64
    ) -> list[list[str]]:
        """The predicted tag of every word of every example (windows merged; see the module docstring)."""
        examples = _token_examples(examples)
        labels = self._labels()
        features = self._encode(examples, tokenizer, labelled=False)
        # word -> (distance to the window edge, predicted id), per example
        best: list[dict[int, tuple[int, int]]] = [{} for _ in examples]
        with eval_mode(model):
            device = device_of(model)
            for chunk in batches(features, batch_size):
                batch = self.collate(chunk, tokenizer)
                batch.pop("labels", None)
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
                predicted = logits.argmax(-1).tolist()
                for f, row in zip(chunk, predicted, strict=True):
                    words, offset, seen = f["word_ids"], f["offset"], best[f["example"]]
                    for j, (word, first) in enumerate(zip(words, f["first"], strict=True)):
                        if not first or word is None:
                            continue
                        margin = min(j, len(words) - 1 - j)
                        if word not in seen or margin > seen[word][0]:
                            seen[word] = (margin, row[offset + j])
        out = []
        for ex, seen in zip(examples, best, strict=True):
            out.append([labels.label(seen[w][1]) if w in seen else "O" for w in range(len(ex.tokens))])
        return out

    def evaluate(
        self, model: Any, tokenizer: Any, examples: Sequence[Any], *, batch_size: int = 64
    ) -> dict[str, float]:
        """Entity-level `{"f1", "precision", "recall"}` on labelled examples."""
        examples = _token_examples(examples)
        predicted = self.predict_tags(model, tokenizer, examples, batch_size=batch_size)
        return entity_scores([self.tags(ex) for ex in examples], predicted, self._scheme())

    def report(self, model: Any, tokenizer: Any, examples: Sequence[Any]) -> str:
        """seqeval's per-entity-type classification report."""
        examples = _token_examples(examples)
        predicted = self.predict_tags(model, tokenizer, examples)
        return entity_report([self.tags(ex) for ex in examples], predicted, self._scheme())

    def predictor(self, model_dir: str | Path) -> Any:
        """`yulian.models.HFTokenClassifier` over the trained model (entities with character offsets)."""
        from yulian.models.hf_tasks import HFTokenClassifier

        max_length = max(self.config.max_length, 16)
        return HFTokenClassifier(str(model_dir), max_length=max_length, stride=min(self.config.stride, max_length - 3))

    # persistence -------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The tag scheme and the labels in id order."""
        return {"scheme": self.scheme, "labels": list(self.labels.labels) if self.labels else None}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the tag scheme and labels."""
        self.scheme = state.get("scheme") or self.scheme
        if state.get("labels"):
            self.labels = LabelMap(state["labels"], sort=False)

    # internals ---------------------------------------------------------------------------------------------
    def _labels(self) -> LabelMap:
        if self.labels is None:
            raise RuntimeError("TokenClassificationTask.setup(train_examples, base_model) must run first")
        return self.labels

    def _scheme(self) -> str:
        if self.scheme is None:
            raise RuntimeError("TokenClassificationTask.setup(train_examples, base_model) must run first")
        return self.scheme


def _token_examples(examples: Sequence[Any]) -> list[TokenExample]:
    for i, ex in enumerate(examples):
        if not isinstance(ex, TokenExample):
            raise TypeError(f"the ner task takes TokenExample records; item {i} is a {type(ex).__name__}")
    return list(examples)


def _special_layout(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special-token ids the tokenizer puts before and after a single sequence (e.g. [CLS] / [SEP])."""
    bare: list[int] = tokenizer("a", add_special_tokens=False)["input_ids"]
    full: list[int] = tokenizer("a")["input_ids"]
    for at in range(len(full) - len(bare) + 1):
        if full[at : at + len(bare)] == bare:
            return full[:at], full[at + len(bare) :]
    raise ValueError(f"cannot tell where {type(tokenizer).__name__} puts its special tokens")


def _align(words: Sequence[int | None], tag_ids: Sequence[int] | None, label_all: bool) -> list[int]:
    """Label of each sub-word: its word's tag id on the first sub-word (all sub-words if `label_all`), else -100."""
    out: list[int] = []
    previous: int | None = None
    for word in words:
        if word is None or tag_ids is None:
            out.append(-100)
        elif word != previous or label_all:
            out.append(tag_ids[word])
        else:
            out.append(-100)
        previous = word
    return out
