"""`HFQuestionAnswerer`: extractive question answering over long contexts with a transformers QA model.

    qa = HFQuestionAnswerer("models/qa")
    qa.invoke({"question": "Where is the office?", "context": long_text})   # Answer(text, start, end, score)
    qa.answers({"question": ..., "context": ...}, k=5)                      # the n-best, best first

A context longer than `max_length` tokens (question included) is read in overlapping windows (`stride` tokens
shared by neighbours); candidate spans from every window compete, and offsets always point into the original
context. Scores follow transformers' question-answering pipeline: within a window, softmax over the context
tokens for the start and for the end, span score = p(start) x p(end), spans at most `max_answer_len` tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yulian._optional import require
from yulian.models.hf_encoder import (
    PROBE_TEXTS,
    Features,
    HFEncoder,
    HFEncoderConfig,
    Runtime,
    _check_int,
)
from yulian.models.predictions import Answer

__all__ = ["HFQuestionAnswerer", "HFQuestionAnswererConfig", "QAInput"]

QAInput = Mapping[str, str] | tuple[str, str]
"""`{"question": ..., "context": ...}`, or a `(question, context)` tuple."""

_CANDIDATES = 20
"""Spans kept per window before the windows' candidates are merged (at least; more when k asks for more)."""

_PROBE_QUESTIONS = (
    "What does the fox jump over?",
    "银行卡丢了怎么办？",
    "Where did Apple open a new office?",
    "How is the film?",
    "北京是哪个国家的首都？",
)


@dataclass(frozen=True)
class HFQuestionAnswererConfig(HFEncoderConfig):
    """Options of `HFQuestionAnswerer` (and those of `HFEncoderConfig`).

    Attributes:
        max_length: tokens per window, question and special tokens included.
        stride: context tokens shared by consecutive windows.
        max_answer_len: the longest answer, in tokens.
        handle_unanswerable: allow the empty answer (SQuAD 2.0-style models): it wins when the model's
            no-answer score (start and end on the first token, lowest over the windows) beats every span.
        align_to_words: widen answers to whole words (a span never ends inside a word).
    """

    max_length: int = 384
    stride: int = 128
    max_answer_len: int = 30
    handle_unanswerable: bool = False
    align_to_words: bool = True

    def __post_init__(self) -> None:
        HFEncoderConfig.__post_init__(self)
        _check_int("HFQuestionAnswererConfig", "stride", self.stride, 0)
        _check_int("HFQuestionAnswererConfig", "max_answer_len", self.max_answer_len, 1)
        if self.stride >= self.max_length - 4:
            raise ValueError(
                f"HFQuestionAnswererConfig.stride ({self.stride}) must be smaller than max_length - 4 "
                f"({self.max_length - 4})"
            )
        for name in ("handle_unanswerable", "align_to_words"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"HFQuestionAnswererConfig.{name} must be True or False, got {getattr(self, name)!r}")


class HFQuestionAnswerer(HFEncoder[QAInput, Answer]):
    """Extractive QA: `{"question", "context"}` -> the best `Answer` span of the context.

    With `handle_unanswerable=False` (the default) there is always an answer (empty only for an empty context).
    `answers(input, k)` returns the n-best list.
    """

    _auto_class = "AutoModelForQuestionAnswering"
    _needs_fast_tokenizer = True
    options: HFQuestionAnswererConfig

    def __init__(
        self,
        path: str,
        *,
        max_length: int = 384,
        stride: int = 128,
        max_answer_len: int = 30,
        handle_unanswerable: bool = False,
        align_to_words: bool = True,
        batch_size: int = 32,
        dtype: str = "auto",
        device: str = "cpu",
    ) -> None:
        super().__init__(
            HFQuestionAnswererConfig(
                path=path,
                batch_size=batch_size,
                max_length=max_length,
                dtype=dtype,
                device=device,
                stride=stride,
                max_answer_len=max_answer_len,
                handle_unanswerable=handle_unanswerable,
                align_to_words=align_to_words,
            )
        )

    def answers(self, input: QAInput, k: int = 5) -> list[Answer]:
        """The `k` best answers to one question, best first (distinct spans)."""
        _check_int(self.name, "k", k, 1)
        return self._nbest([self._check_input(input, 0)], k)[0]

    # ----------------------------------------------------------------------------------------- internals
    def _check_input(self, input: object, index: int) -> tuple[str, str]:
        if isinstance(input, Mapping):
            missing = [key for key in ("question", "context") if not isinstance(input.get(key), str)]
            if missing:
                raise ValueError(
                    f"{self.name} input at position {index} needs text under {' and '.join(map(repr, missing))} "
                    f"(keys given: {', '.join(map(repr, input)) or 'none'})"
                )
            pair = (input["question"], input["context"])
        elif isinstance(input, tuple | list) and len(input) == 2 and all(isinstance(t, str) for t in input):
            pair = (input[0], input[1])
        else:
            raise TypeError(
                f"{self.name} takes {{'question': ..., 'context': ...}} or a (question, context) tuple, got "
                f"{type(input).__name__} at position {index}: {input!r:.80}"
            )
        if not pair[0].strip():
            raise ValueError(f"{self.name} input at position {index}: the question is empty")
        return pair

    def _predict(self, inputs: list[Any]) -> list[Answer]:
        return [found[0] for found in self._nbest(inputs, 1)]

    def _encode(self, rt: Runtime, pairs: list[tuple[str, str]]) -> Any:
        questions = [q for q, _ in pairs]
        specials = rt.tokenizer.num_special_tokens_to_add(pair=True)
        lengths = [len(ids) for ids in rt.tokenizer(questions, add_special_tokens=False)["input_ids"]]
        for i, n in enumerate(lengths):
            room = self._max_length(rt) - specials - n
            if room <= self.options.stride:
                raise ValueError(
                    f"{self.name} input at position {i}: the question has {n} tokens, which leaves {room} for the "
                    f"context in windows of max_length={self._max_length(rt)}, not more than stride="
                    f"{self.options.stride}: shorten the question or raise max_length"
                )
        return rt.tokenizer(
            questions,
            [c for _, c in pairs],
            truncation="only_second",
            max_length=self._max_length(rt),
            stride=self.options.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )

    def _nbest(self, pairs: list[tuple[str, str]], k: int) -> list[list[Answer]]:
        rt = self._runtime()
        torch = rt.torch
        enc = self._encode(rt, pairs)
        types = enc.get("token_type_ids")
        features = [Features(ids, types[w] if types is not None else None) for w, ids in enumerate(enc["input_ids"])]
        logits: list[Any] = [None] * len(features)
        for idx, rows in self._batches(rt, rt.model, features, _logits_step):
            rows = rows.cpu()
            for r, w in enumerate(idx):
                logits[w] = rows[r, : len(features[w].ids)]
        found: list[dict[tuple[int, int], float]] = [{} for _ in pairs]
        null = [float("inf")] * len(pairs)
        for w, sample in enumerate(enc["overflow_to_sample_mapping"]):
            spans, null_score = self._window_spans(torch, enc, w, logits[w], pairs[sample][1], max(k, _CANDIDATES))
            null[sample] = min(null[sample], null_score)
            for span, score in spans:
                if score > found[sample].get(span, -1.0):
                    found[sample][span] = score
        results: list[list[Answer]] = []
        for sample, (_, context) in enumerate(pairs):
            answers = [Answer(context[s:e], s, e, score) for (s, e), score in found[sample].items()]
            if self.options.handle_unanswerable and null[sample] != float("inf"):
                answers.append(Answer("", 0, 0, null[sample]))
            answers.sort(key=lambda a: (-a.score, a.end - a.start, a.start))  # ties: the shorter, then the earlier
            results.append(answers[:k] or [Answer("", 0, 0, 0.0)])
        return results

    def _window_spans(
        self, torch: Any, enc: Any, w: int, logits: Any, context: str, k: int
    ) -> tuple[list[tuple[tuple[int, int], float]], float]:
        """Top-k (char span, score) candidates of one window, and its no-answer score."""
        sequence = enc.sequence_ids(w)
        offsets = enc["offset_mapping"][w]
        words = enc.word_ids(w)
        is_context = torch.tensor([s == 1 for s in sequence])
        allowed = is_context.clone()
        cls = 0
        if self.options.handle_unanswerable:
            allowed[cls] = True
        start = torch.softmax(logits[:, 0].masked_fill(~allowed, -10000.0), dim=0)
        end = torch.softmax(logits[:, 1].masked_fill(~allowed, -10000.0), dim=0)
        null_score = float(start[cls] * end[cls]) if self.options.handle_unanswerable else float("inf")
        start = start.masked_fill(~is_context, 0.0)
        end = end.masked_fill(~is_context, 0.0)
        scores = torch.triu(start[:, None] * end[None, :])
        scores = torch.tril(scores, diagonal=self.options.max_answer_len - 1)
        top = torch.topk(scores.flatten(), min(k, scores.numel()))
        spans: list[tuple[tuple[int, int], float]] = []
        length = scores.shape[1]
        for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            s, e = divmod(flat, length)
            if value <= 0.0 or not (is_context[s] and is_context[e]):
                continue
            if self.options.align_to_words and words[s] is not None and words[e] is not None:
                char_start = min(offsets[j][0] for j in range(len(words)) if words[j] == words[s] and sequence[j] == 1)
                char_end = max(offsets[j][1] for j in range(len(words)) if words[j] == words[e] and sequence[j] == 1)
            else:
                char_start, char_end = offsets[s][0], offsets[e][1]
            spans.append(((char_start, char_end), value))
        return spans, null_score

    # ----------------------------------------------------------------------------------------- dtype check
    def _probe_features(self, tokenizer: Any, max_length: int) -> list[Features]:
        enc = tokenizer(list(_PROBE_QUESTIONS), list(PROBE_TEXTS), truncation="only_second", max_length=max_length)
        types = enc.get("token_type_ids")
        return [Features(ids, types[i] if types is not None else None) for i, ids in enumerate(enc["input_ids"])]

    def _probe_step(self, model: Any, inputs: dict[str, Any]) -> Any:
        torch = require("torch", extra="hf")
        logits = _logits_step(model, inputs)
        padding = (inputs["attention_mask"] == 0).unsqueeze(-1)
        return torch.softmax(logits.masked_fill(padding, float("-inf")), dim=1)


def _logits_step(model: Any, inputs: dict[str, Any]) -> Any:
    """(batch, tokens, 2) float32 start and end logits."""
    torch = require("torch", extra="hf")
    out = model(**inputs)
    return torch.stack((out.start_logits.float(), out.end_logits.float()), dim=-1)
