"""Extractive question answering (SQuAD v1.1 / v2.0, CMRC 2018) as a fine-tuning task, registered as "qa".

Features: `tokenizer(question, context, truncation="only_second", max_length, stride,
return_overflowing_tokens=True, return_offsets_mapping=True)`: a long context becomes several windows, consecutive
windows sharing `stride` tokens. Training targets are the token positions of the first gold answer's first and
last characters; a window that does not hold the whole answer, and every window of an unanswerable question,
points at the [CLS] token (the "no answer" position).

Post-processing (`postprocess`): in every window the `n_best` highest start and end logits are paired into spans
inside the context, with end >= start and at most `max_answer_len` tokens; a span scores start + end logit; the
best span over all windows wins. With `handle_unanswerable`, the no-answer score ([CLS] start + end logit,
lowest over the windows) wins when it beats the best span, and the prediction is "".

Metrics: "f1" and "exact_match" as the official SQuAD v1.1 script defines them; for a Chinese data set (most
contexts hold CJK ideographs) as the CMRC 2018 script does, character-level; see `yulian.tuning.metrics`.
The deployed predictor is `yulian.models.HFQuestionAnswerer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from yulian._optional import require
from yulian.tuning.data import QAExample, read_records
from yulian.tuning.metrics import qa_language, squad_em_f1
from yulian.tuning.tasks._hf import (
    batches,
    device_of,
    eval_mode,
    load_pretrained,
    model_folder,
    pad_features,
    require_fast,
)
from yulian.tuning.tasks.base import Feature, Task

__all__ = ["QATask", "postprocess"]


def postprocess(
    contexts: Sequence[str],
    features: Sequence[Feature],
    start_logits: Sequence[Sequence[float]],
    end_logits: Sequence[Sequence[float]],
    *,
    n_best: int = 20,
    max_answer_len: int = 30,
    handle_unanswerable: bool = False,
) -> list[str]:
    """The answer text of each context from the logits of its windows (see the module docstring).

    `features[i]` needs `example` (index into `contexts`), `offsets` (per token `(start, end)` in the context,
    None outside it) and `cls` (the no-answer token's position); `start_logits[i]` / `end_logits[i]` are its
    logits, one per token (padding beyond `len(offsets)` is ignored).
    """
    best: list[tuple[float, int, int] | None] = [None] * len(contexts)
    null: list[float] = [float("inf")] * len(contexts)
    for f, starts, ends in zip(features, start_logits, end_logits, strict=True):
        offsets: list[Any] = f["offsets"]
        n = len(offsets)
        starts, ends = list(starts[:n]), list(ends[:n])
        sample = f["example"]
        cls = f.get("cls", 0)
        null[sample] = min(null[sample], starts[cls] + ends[cls])
        top_starts = sorted(range(n), key=lambda i: -starts[i])[:n_best]
        top_ends = sorted(range(n), key=lambda i: -ends[i])[:n_best]
        for s in top_starts:
            if offsets[s] is None:
                continue
            for e in top_ends:
                if offsets[e] is None or e < s or e - s + 1 > max_answer_len:
                    continue
                score = starts[s] + ends[e]
                current = best[sample]
                if current is None or score > current[0]:
                    best[sample] = (score, offsets[s][0], offsets[e][1])
    answers = []
    for sample, context in enumerate(contexts):
        found = best[sample]
        if found is None or (handle_unanswerable and null[sample] > found[0]):
            answers.append("")
        else:
            answers.append(context[found[1] : found[2]])
    return answers


class QATask(Task):
    """Fine-tune an extractive reader (`AutoModelForQuestionAnswering`) on SQuAD-format data."""

    name: ClassVar[str] = "qa"
    metrics: ClassVar[tuple[str, ...]] = ("f1", "exact_match")

    # data --------------------------------------------------------------------------------------------------
    def read(self, path: str | Path, *, skip_bad: bool = False, encoding: str = "utf-8") -> Sequence[QAExample]:
        """Questions from a SQuAD JSON file (v1.1 or v2.0) or JSONL with question/context/answers."""
        return read_records(path, task="qa", skip_bad=skip_bad, encoding=encoding).of(QAExample)

    def setup(self, train_examples: Sequence[Any], base_model: str | Path) -> None:
        """Nothing to derive: the head is start/end logits. Checks the examples are `QAExample`s."""
        _qa_examples(train_examples)

    # model -------------------------------------------------------------------------------------------------
    def build_model(self, base_model: str | Path) -> tuple[Any, Any]:
        """The base encoder with a fresh span head, and its (fast) tokenizer."""
        transformers = require("transformers", extra="hf", purpose="fine-tuning")
        folder = model_folder(base_model)
        tokenizer = require_fast(transformers.AutoTokenizer.from_pretrained(folder), self.name)
        model = load_pretrained("AutoModelForQuestionAnswering", folder)
        return model, tokenizer

    def encode(self, examples: Sequence[Any], tokenizer: Any) -> list[Feature]:
        """Windows with `start_positions`/`end_positions`, plus `example`, `offsets` (None off the context) and
        `cls` for post-processing."""
        require_fast(tokenizer, self.name)
        examples = _qa_examples(examples)
        if not examples:
            return []
        self._check_room(examples, tokenizer)
        enc = tokenizer(
            [ex.question.lstrip() for ex in examples],
            [ex.context for ex in examples],
            truncation="only_second",
            max_length=self.config.max_length,
            stride=self.config.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        features: list[Feature] = []
        for w, sample in enumerate(enc["overflow_to_sample_mapping"]):
            ex = examples[sample]
            ids: list[int] = enc["input_ids"][w]
            sequence = enc.sequence_ids(w)
            offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][w], sequence, strict=True)]
            cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
            start = end = cls
            if ex.answers and not ex.is_impossible:
                answer = ex.answers[0]
                a, b = answer["start"], answer["start"] + len(answer["text"])
                inside = [i for i, o in enumerate(offsets) if o is not None]
                if inside and offsets[inside[0]][0] <= a and offsets[inside[-1]][1] >= b:  # type: ignore[index]
                    start = next(i for i in inside if offsets[i][1] > a)  # type: ignore[index]
                    end = next(i for i in reversed(inside) if offsets[i][0] < b)  # type: ignore[index]
            feature: Feature = {"input_ids": ids, "attention_mask": enc["attention_mask"][w]}
            if "token_type_ids" in enc:
                feature["token_type_ids"] = enc["token_type_ids"][w]
            feature.update(start_positions=start, end_positions=end, example=sample, offsets=offsets, cls=cls)
            features.append(feature)
        return features

    def collate(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, Any]:
        """Right-padded ids, masks and token types, and the start/end targets."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        pads = {"input_ids": pad, "attention_mask": 0, "token_type_ids": 0, "start_positions": 0, "end_positions": 0}
        return pad_features(features, pads)

    # evaluation --------------------------------------------------------------------------------------------
    def predict(self, model: Any, tokenizer: Any, examples: Sequence[Any], *, batch_size: int = 64) -> list[str]:
        """The predicted answer text of each example ("" for no answer)."""
        examples = _qa_examples(examples)
        features = self.encode(examples, tokenizer)
        starts: list[list[float]] = []
        ends: list[list[float]] = []
        with eval_mode(model):
            device = device_of(model)
            for chunk in batches(features, batch_size):
                batch = self.collate(chunk, tokenizer)
                batch.pop("start_positions", None)
                batch.pop("end_positions", None)
                out = model(**{k: v.to(device) for k, v in batch.items()})
                starts.extend(out.start_logits.float().cpu().tolist())
                ends.extend(out.end_logits.float().cpu().tolist())
        return postprocess(
            [ex.context for ex in examples],
            features,
            starts,
            ends,
            n_best=self.config.n_best,
            max_answer_len=self.config.max_answer_len,
            handle_unanswerable=self.config.handle_unanswerable,
        )

    def evaluate(
        self, model: Any, tokenizer: Any, examples: Sequence[Any], *, batch_size: int = 64
    ) -> dict[str, float]:
        """`{"f1", "exact_match"}` of the predictions against the gold answers (unanswerable: gold is "")."""
        examples = _qa_examples(examples)
        predictions = self.predict(model, tokenizer, examples, batch_size=batch_size)
        golds = [[] if ex.is_impossible else [a["text"] for a in ex.answers] for ex in examples]
        return squad_em_f1(predictions, golds, qa_language([ex.context for ex in examples]))

    def report(self, model: Any, tokenizer: Any, examples: Sequence[Any]) -> str:
        """Exact match and F1 on answerable and unanswerable questions separately."""
        examples = _qa_examples(examples)
        predictions = self.predict(model, tokenizer, examples)
        lines = []
        for title, keep in (("answerable", False), ("unanswerable", True)):
            picked = [(p, ex) for p, ex in zip(predictions, examples, strict=True) if ex.is_impossible == keep]
            if not picked:
                continue
            golds = [[] if ex.is_impossible else [a["text"] for a in ex.answers] for _, ex in picked]
            scores = squad_em_f1([p for p, _ in picked], golds, qa_language([ex.context for ex in examples]))
            lines.append(
                f"{title:>12}: {len(picked):6d} questions  exact_match {scores['exact_match']:.4f}  "
                f"f1 {scores['f1']:.4f}"
            )
        return "\n".join(lines)

    def predictor(self, model_dir: str | Path) -> Any:
        """`yulian.models.HFQuestionAnswerer` over the trained model, with this task's window and answer options."""
        from yulian.models.hf_qa import HFQuestionAnswerer

        max_length = max(self.config.max_length, 16)
        return HFQuestionAnswerer(
            str(model_dir),
            max_length=max_length,
            stride=min(self.config.stride, max_length - 5),
            max_answer_len=self.config.max_answer_len,
            handle_unanswerable=self.config.handle_unanswerable,
        )

    def _check_room(self, examples: Sequence[QAExample], tokenizer: Any) -> None:
        specials = tokenizer.num_special_tokens_to_add(pair=True)
        lengths = tokenizer([ex.question.lstrip() for ex in examples], add_special_tokens=False)["input_ids"]
        for ex, ids in zip(examples, lengths, strict=True):
            room = self.config.max_length - specials - len(ids)
            if room <= self.config.stride:
                raise ValueError(
                    f"question {ex.id!r} (line {ex.line}) has {len(ids)} tokens, which leaves {room} context tokens "
                    f"per window of max_length={self.config.max_length}, not more than stride={self.config.stride}: "
                    "raise max_length or lower stride"
                )


def _qa_examples(examples: Sequence[Any]) -> list[QAExample]:
    for i, ex in enumerate(examples):
        if not isinstance(ex, QAExample):
            raise TypeError(f"the qa task takes QAExample records; item {i} is a {type(ex).__name__}")
    return list(examples)
