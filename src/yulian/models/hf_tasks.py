"""Task predictors over local transformers models, each a Runnable: classification, NER / slot tagging, QA, embeddings.

    from yulian.models.hf_tasks import HFClassifier, HFTokenClassifier, HFQuestionAnswerer, HFEmbedder
    HFClassifier("models/intent").invoke("我的卡丢了")                 # Prediction(label, score, scores, labels)
    HFTokenClassifier("models/ner").invoke("张三在北京工作")            # [Entity("张三", "PER", 0, 2, 0.98), ...]
    HFQuestionAnswerer("models/qa").invoke({"question": q, "context": c})   # Answer(text, start, end, score)
    HFEmbedder("path/to/minilm").embed(["a", "b"])                   # list[list[float]]

All load lazily (constructors are cheap; `warm_up()` loads now), run under `torch.inference_mode()` with
length-sorted dynamic padding, and pick float32 or bf16 with `dtype="auto"` (see `yulian.models.hf_encoder`).
`batch` makes batched forward passes; `ainvoke` / `abatch` run them in a worker thread. This module holds the
classifier and the token classifier; the question answerer is in `hf_qa`, the embedder in `hf_embed`, both
re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yulian._optional import require
from yulian.models.char_tokens import char_encoding, has_cjk, word_marker_id
from yulian.models.hf_embed import HFEmbedder, HFEmbedderConfig
from yulian.models.hf_encoder import (
    Features,
    HFEncoder,
    HFEncoderConfig,
    Runtime,
    _check_choice,
    _check_float,
    _check_int,
)
from yulian.models.hf_qa import HFQuestionAnswerer, HFQuestionAnswererConfig, QAInput
from yulian.models.predictions import Entity, Prediction

__all__ = [
    "AGGREGATIONS",
    "ClassifierInput",
    "HFClassifier",
    "HFClassifierConfig",
    "HFEmbedder",
    "HFEmbedderConfig",
    "HFQuestionAnswerer",
    "HFQuestionAnswererConfig",
    "HFTokenClassifier",
    "HFTokenClassifierConfig",
    "QAInput",
    "split_tag",
]

ClassifierInput = str | tuple[str, str]
"""A text, or a pair of texts (sentence-pair tasks: matching, entailment) as a 2-tuple."""


# ============================================================================================ classifier
@dataclass(frozen=True)
class HFClassifierConfig(HFEncoderConfig):
    """Options of `HFClassifier` (and those of `HFEncoderConfig`).

    Attributes:
        top_k: keep only the k most probable labels in `Prediction.scores` (None: all labels).
        multi_label: sigmoid per label instead of one softmax (None: from the model's `config.problem_type`).
        threshold: for multi-label models, the probability from which a label is in `Prediction.labels`.
    """

    top_k: int | None = None
    multi_label: bool | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        HFEncoderConfig.__post_init__(self)
        if self.top_k is not None:
            _check_int("HFClassifierConfig", "top_k", self.top_k, 1)
        if self.multi_label is not None and not isinstance(self.multi_label, bool):
            raise ValueError(f"HFClassifierConfig.multi_label must be True, False or None, got {self.multi_label!r}")
        _check_float("HFClassifierConfig", "threshold", self.threshold, 0.0, 1.0)


class HFClassifier(HFEncoder[ClassifierInput, Prediction]):
    """Text (or text-pair) classification with a transformers sequence-classification model.

    `invoke(text)` returns a `Prediction`; labels come from the model's `config.id2label`. Single-label models
    give softmax probabilities (they sum to 1); multi-label models (`config.problem_type ==
    "multi_label_classification"`, or `multi_label=True`) give one sigmoid per label, and `Prediction.labels` lists
    those at or above `threshold`. Texts longer than `max_length` tokens are truncated.
    """

    _auto_class = "AutoModelForSequenceClassification"
    options: HFClassifierConfig

    def __init__(
        self,
        path: str,
        *,
        top_k: int | None = None,
        multi_label: bool | None = None,
        threshold: float = 0.5,
        batch_size: int = 32,
        max_length: int = 256,
        dtype: str = "auto",
        device: str = "cpu",
    ) -> None:
        super().__init__(
            HFClassifierConfig(
                path=path,
                batch_size=batch_size,
                max_length=max_length,
                dtype=dtype,
                device=device,
                top_k=top_k,
                multi_label=multi_label,
                threshold=threshold,
            )
        )

    @property
    def labels(self) -> list[str]:
        """The model's labels in id order (loads the model)."""
        return _labels(self._runtime().model.config)

    @property
    def is_multi_label(self) -> bool:
        """Whether predictions are multi-label (sigmoid per label), from the option or the model's config."""
        return self._multi_label(self._runtime().model.config)

    def _multi_label(self, config: Any) -> bool:
        if self.options.multi_label is not None:
            return self.options.multi_label
        return getattr(config, "problem_type", None) == "multi_label_classification"

    def _check_input(self, input: object, index: int) -> ClassifierInput:
        if isinstance(input, str):
            return input
        if isinstance(input, tuple | list) and len(input) == 2 and all(isinstance(t, str) for t in input):
            return (input[0], input[1])
        if isinstance(input, Mapping) and isinstance(input.get("text"), str):
            pair = input.get("text_pair")
            return input["text"] if pair is None else (input["text"], str(pair))
        raise TypeError(
            f"{self.name} takes a text or a (text, text_pair) tuple, got {type(input).__name__} at position "
            f"{index}: {input!r:.80}"
        )

    def _predict(self, inputs: list[Any]) -> list[Prediction]:
        rt = self._runtime()
        features = _tokenize_texts(rt, inputs, self._max_length(rt))
        labels = _labels(rt.model.config)
        probs = rt.torch.empty((len(inputs), len(labels)), dtype=rt.torch.float32)
        for idx, rows in self._batches(rt, rt.model, features, self._step):
            probs[idx] = rows.cpu()
        multi = self.is_multi_label
        k = self.options.top_k or len(labels)
        out: list[Prediction] = []
        for row in probs.tolist():
            ranked = sorted(range(len(labels)), key=lambda j: -row[j])
            best = ranked[0]
            chosen = tuple(labels[j] for j in ranked if row[j] >= self.options.threshold) if multi else (labels[best],)
            scores = {labels[j]: row[j] for j in ranked[:k]}
            out.append(Prediction(labels[best], row[best], scores, chosen))
        return out

    def _step(self, model: Any, inputs: dict[str, Any]) -> Any:
        torch = require("torch", extra="hf")
        logits = model(**inputs).logits.float()
        return torch.sigmoid(logits) if self._multi_label(model.config) else torch.softmax(logits, dim=-1)

    def _probe_step(self, model: Any, inputs: dict[str, Any]) -> Any:
        return self._step(model, inputs)


def _labels(config: Any) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    count = int(getattr(config, "num_labels", len(id2label)))
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(count)]


def _tokenize_texts(rt: Runtime, inputs: Sequence[ClassifierInput], max_length: int) -> list[Features]:
    """Features for texts and text pairs (pairs get token type ids), in input order."""
    features: list[Features | None] = [None] * len(inputs)
    singles = [i for i, x in enumerate(inputs) if isinstance(x, str)]
    pairs = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
    if singles:
        enc = rt.tokenizer([inputs[i] for i in singles], truncation=True, max_length=max_length)
        for i, ids in zip(singles, enc["input_ids"], strict=True):
            features[i] = Features(ids)
    if pairs:
        firsts = [inputs[i][0] for i in pairs]
        seconds = [inputs[i][1] for i in pairs]
        enc = rt.tokenizer(firsts, seconds, truncation=True, max_length=max_length)
        types = enc.get("token_type_ids")
        for n, (i, ids) in enumerate(zip(pairs, enc["input_ids"], strict=True)):
            features[i] = Features(ids, types[n] if types is not None else None)
    return [f for f in features if f is not None]


# ============================================================================================ token classifier
AGGREGATIONS = ("simple", "first", "average", "max", "none")
"""How token tags become entities. "simple": merge consecutive tokens by their BIO/BIOES tags; "first" / "max" /
"average": first decide one tag per word (its first token's, its most confident token's, or the average of its
tokens' probabilities), then merge words; "none": one entity per token, typed by its raw tag."""

_OPENING = {"B", "S", "U"}
_CLOSING = {"E", "L", "S", "U"}
_PREFIXES = {"B", "I", "E", "S", "M", "L", "U"}


def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER"; handles BIO, BIOES/BMES, BILOU (also "B_PER"); ("O", "") for "O".

    A tag without a prefix ("PER") counts as a continuation ("I"), as in transformers' pipelines.
    """
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in _PREFIXES:
        return tag[0], tag[2:]
    return "I", tag


@dataclass(frozen=True)
class HFTokenClassifierConfig(HFEncoderConfig):
    """Options of `HFTokenClassifier` (and those of `HFEncoderConfig`).

    Attributes:
        aggregation: how token tags become entities (see `AGGREGATIONS`).
        stride: tokens shared by consecutive windows when a text is longer than `max_length`; each token's tag
            comes from the window in which it is farthest from an edge.
        ignore_labels: tags (or entity types) never reported.
    """

    aggregation: str = "simple"
    stride: int = 32
    ignore_labels: tuple[str, ...] = ("O",)

    def __post_init__(self) -> None:
        HFEncoderConfig.__post_init__(self)
        _check_choice("HFTokenClassifierConfig", "aggregation", self.aggregation, AGGREGATIONS)
        _check_int("HFTokenClassifierConfig", "stride", self.stride, 0)
        if self.stride >= self.max_length - 2:
            raise ValueError(
                f"HFTokenClassifierConfig.stride ({self.stride}) must be smaller than max_length - 2 "
                f"({self.max_length - 2})"
            )
        given: object = self.ignore_labels
        if isinstance(given, str) or not all(isinstance(t, str) for t in self.ignore_labels):
            raise ValueError(f"HFTokenClassifierConfig.ignore_labels must be a tuple of tags, got {given!r}")
        object.__setattr__(self, "ignore_labels", tuple(self.ignore_labels))


@dataclass
class _Unit:
    """A token or a word with its decided tag: what entity merging works on."""

    tag: str
    score: float
    start: int
    end: int


class HFTokenClassifier(HFEncoder[str, list[Entity]]):
    """Named entities (or slots) with character offsets, from a transformers token-classification model.

    `invoke(text)` returns `Entity`s in text order, with `text[e.start:e.end] == e.text`. Chinese text takes one
    token per character, as training tagged it: BERT-family tokenizers do so by themselves; with SentencePiece
    (XLM-R, multilingual-e5) a batch with Chinese in it is tokenised character by character
    (`yulian.models.char_tokens`). Texts longer than `max_length` are cut into overlapping
    windows (`stride`) and every token keeps the tags of the window where it has the most context.
    """

    _auto_class = "AutoModelForTokenClassification"
    _needs_fast_tokenizer = True
    options: HFTokenClassifierConfig

    def __init__(
        self,
        path: str,
        *,
        aggregation: str = "simple",
        stride: int = 32,
        ignore_labels: Sequence[str] = ("O",),
        batch_size: int = 32,
        max_length: int = 256,
        dtype: str = "auto",
        device: str = "cpu",
    ) -> None:
        super().__init__(
            HFTokenClassifierConfig(
                path=path,
                batch_size=batch_size,
                max_length=max_length,
                dtype=dtype,
                device=device,
                aggregation=aggregation,
                stride=stride,
                ignore_labels=tuple(ignore_labels),
            )
        )

    @property
    def labels(self) -> list[str]:
        """The model's tags in id order (loads the model)."""
        return _labels(self._runtime().model.config)

    def _check_input(self, input: object, index: int) -> str:
        if not isinstance(input, str):
            raise TypeError(f"{self.name} takes text, got {type(input).__name__} at position {index}: {input!r:.80}")
        return input

    def _predict(self, inputs: list[Any]) -> list[list[Entity]]:
        rt = self._runtime()
        marker = word_marker_id(rt.tokenizer)
        if marker is not None and any(has_cjk(text) for text in inputs):
            # Chinese through a SentencePiece tokenizer: one token per character, as `yulian train` tags it
            enc: Any = char_encoding(rt.tokenizer, inputs, marker)
        else:
            enc = rt.tokenizer(
                inputs, return_offsets_mapping=True, return_special_tokens_mask=True, truncation=False, verbose=False
            )
        windows: list[tuple[int, int, int, int]] = []  # (text index, content start, content end, prefix length)
        features: list[Features] = []
        for t in range(len(inputs)):
            ids, special = enc["input_ids"][t], enc["special_tokens_mask"][t]
            content = [j for j, s in enumerate(special) if not s]
            if not content:
                continue
            first, last = content[0], content[-1] + 1
            prefix, suffix, body = ids[:first], ids[last:], ids[first:last]
            room = self._max_length(rt) - len(prefix) - len(suffix)
            if room <= self.options.stride:
                raise ValueError(
                    f"{self.name}: stride {self.options.stride} leaves no room in windows of {room} tokens "
                    f"(max_length {self._max_length(rt)}): lower stride or raise max_length"
                )
            start = 0
            while True:
                end = min(start + room, len(body))
                windows.append((t, start, end, len(prefix)))
                features.append(Features(prefix + body[start:end] + suffix))
                if end == len(body):
                    break
                start = end - self.options.stride
        probs: list[Any] = [None] * len(windows)
        for idx, rows in self._batches(rt, rt.model, features, _softmax_step):
            rows = rows.cpu()
            for r, w in enumerate(idx):
                _, start, end, skip = windows[w]
                probs[w] = rows[r, skip : skip + end - start]
        merged = _merge_windows(rt, windows, probs, enc, len(inputs))
        labels = _labels(rt.model.config)
        return [self._entities(inputs[t], merged[t], enc, t, labels) for t in range(len(inputs))]

    def _entities(self, text: str, probs: Any, enc: Any, t: int, labels: list[str]) -> list[Entity]:
        if probs is None:
            return []
        special = enc["special_tokens_mask"][t]
        content = [j for j, s in enumerate(special) if not s]
        offsets = [enc["offset_mapping"][t][j] for j in content]
        words = enc.word_ids(t)
        word_ids = [words[j] for j in content]
        how = self.options.aggregation
        best_p, best_i = probs.max(dim=-1)
        tokens = [
            _Unit(labels[i], p, s, e) for i, p, (s, e) in zip(best_i.tolist(), best_p.tolist(), offsets, strict=True)
        ]
        if how == "none":
            return [
                Entity(text[u.start : u.end], u.tag, u.start, u.end, u.score)
                for u in tokens
                if u.tag not in self.options.ignore_labels and u.end > u.start
            ]
        units = tokens if how == "simple" else _words(tokens, probs, word_ids, labels, how)
        return _group(units, text, self.options.ignore_labels)


def _softmax_step(model: Any, inputs: dict[str, Any]) -> Any:
    torch = require("torch", extra="hf")
    return torch.softmax(model(**inputs).logits.float(), dim=-1)


def _merge_windows(
    rt: Runtime, windows: list[tuple[int, int, int, int]], probs: list[Any], enc: Any, count: int
) -> list[Any]:
    """Per text, one (tokens, labels) probability matrix: each token from the window where it is most central."""
    by_text: dict[int, list[int]] = {}
    for w, (t, _, _, _) in enumerate(windows):
        by_text.setdefault(t, []).append(w)
    merged: list[Any] = [None] * count
    for t, ws in by_text.items():
        if len(ws) == 1:
            merged[t] = probs[ws[0]]
            continue
        total = windows[ws[-1]][2]
        out = rt.torch.empty((total, probs[ws[0]].shape[-1]), dtype=rt.torch.float32)
        best = [-1] * total
        for w in ws:
            _, start, end, _ = windows[w]
            for j in range(start, end):
                left = j - start if start > 0 else total
                right = end - 1 - j if end < total else total
                if min(left, right) > best[j]:
                    best[j] = min(left, right)
                    out[j] = probs[w][j - start]
        merged[t] = out
    return merged


def _words(tokens: list[_Unit], probs: Any, word_ids: list[int | None], labels: list[str], how: str) -> list[_Unit]:
    """One unit per word: tokens of the same word agree on one tag (first / max / average strategy)."""
    groups: list[list[int]] = []
    for j, w in enumerate(word_ids):
        if groups and w is not None and word_ids[groups[-1][0]] == w:
            groups[-1].append(j)
        else:
            groups.append([j])
    units: list[_Unit] = []
    for g in groups:
        if how == "first":
            tag, score = tokens[g[0]].tag, tokens[g[0]].score
        elif how == "max":
            top = max(g, key=lambda j: tokens[j].score)
            tag, score = tokens[top].tag, tokens[top].score
        else:
            mean = probs[g].mean(dim=0)
            i = int(mean.argmax())
            tag, score = labels[i], float(mean[i])
        units.append(_Unit(tag, score, tokens[g[0]].start, tokens[g[-1]].end))
    return units


def _group(units: list[_Unit], text: str, ignore: tuple[str, ...]) -> list[Entity]:
    """Merge tagged units into entities following BIO / BIOES / BMES / BILOU rules."""
    entities: list[Entity] = []
    current: list[_Unit] = []
    kind = ""

    def close() -> None:
        if current:
            start, end = current[0].start, current[-1].end
            score = sum(u.score for u in current) / len(current)
            entities.append(Entity(text[start:end], kind, start, end, score))
            current.clear()

    for unit in units:
        prefix, typ = split_tag(unit.tag)
        if prefix == "O" or unit.tag in ignore or typ in ignore or unit.end <= unit.start:
            close()
            continue
        if prefix in _OPENING or not current or typ != kind:
            close()
            kind = typ
        current.append(unit)
        if prefix in _CLOSING:
            close()
    close()
    return entities
