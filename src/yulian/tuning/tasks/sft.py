"""Supervised fine-tuning of a causal language model on conversations, registered as "sft".

Each `ChatExample` is rendered with the tokenizer's chat template (a tokenizer without one gets the
"System: / User: / Assistant:" transcript `HFChatModel` falls back to) and tokenised once. With
`answer_only_loss` (the default) the labels are the token ids of the assistant turns (their content and the
template's end-of-turn tokens) and -100 everywhere else, so the loss covers only what the model should say;
otherwise every token is a label. The assistant turns are found by rendering the conversation up to each
assistant turn (with and without the generation prompt) and mapping the characters between to tokens through the
offset mapping; a template that does not render conversations as prefixes of each other is an error.

Too long conversations: `config.extra["truncation"]` is "left" (the default: keep the last `max_length` tokens,
i.e. the end of the conversation, where the answer is) or "drop" (leave the example out). An example left with
no assistant token after truncation is dropped; `dropped` counts them.

Metrics on the dev set: "loss" (mean cross-entropy per label token), "perplexity" (its exponential) and
"token_accuracy" (greedy next-token accuracy on label tokens); lower loss is better (`greater_is_better` False).
The deployed predictor is `yulian.models.HFChatModel`. Base models: a folder, or a registered name such as the
packaged "smollm2-135m-instruct" (converted from GGUF once and cached).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from yulian._optional import require
from yulian.tuning.data import ChatExample, read_records
from yulian.tuning.metrics import perplexity
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

__all__ = ["SFTTask"]

TRUNCATIONS = ("left", "drop")


class SFTTask(Task):
    """Fine-tune a causal LM (`AutoModelForCausalLM`) on chat conversations."""

    name: ClassVar[str] = "sft"
    metrics: ClassVar[tuple[str, ...]] = ("loss", "perplexity", "token_accuracy")
    greater_is_better: ClassVar[bool] = False

    def __init__(self, config: TaskConfig | None = None) -> None:
        super().__init__(config)
        self.truncation = str(self.config.extra.get("truncation", "left"))
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"extra['truncation'] must be one of {', '.join(TRUNCATIONS)}, got {self.truncation!r}")
        self.dropped = 0
        """Examples the last `encode` left out (too long with truncation "drop", or no assistant token left)."""

    # data --------------------------------------------------------------------------------------------------
    def read(self, path: str | Path, *, skip_bad: bool = False, encoding: str = "utf-8") -> Sequence[ChatExample]:
        """Conversations from JSONL/JSON (messages, ShareGPT, prompt/response, Alpaca) or CSV."""
        return read_records(path, task="chat", skip_bad=skip_bad, encoding=encoding).of(ChatExample)

    def setup(self, train_examples: Sequence[Any], base_model: str | Path) -> None:
        """Nothing to derive; checks every example is a `ChatExample` with an assistant turn."""
        for ex in _chat_examples(train_examples):
            if not any(m.get("role") == "assistant" for m in ex.messages):
                raise ValueError(f"conversation on line {ex.line} has no assistant turn: nothing to learn")

    # model -------------------------------------------------------------------------------------------------
    def build_model(self, base_model: str | Path) -> tuple[Any, Any]:
        """The causal LM and its tokenizer (pad token set to EOS when the tokenizer has none)."""
        transformers = require("transformers", extra="hf", purpose="fine-tuning")
        folder = model_folder(base_model)
        tokenizer = require_fast(transformers.AutoTokenizer.from_pretrained(folder), self.name)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = load_pretrained("AutoModelForCausalLM", folder)
        return model, tokenizer

    def encode(self, examples: Sequence[Any], tokenizer: Any) -> list[Feature]:
        """`input_ids` and `labels` (-100 outside the assistant turns when `answer_only_loss`), truncated."""
        require_fast(tokenizer, self.name)
        features: list[Feature] = []
        self.dropped = 0
        limit = self.config.max_length
        for ex in _chat_examples(examples):
            text, spans = _render(tokenizer, ex)
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids: list[int] = enc["input_ids"]
            if self.config.answer_only_loss:
                labels = [
                    token if any(a <= s < b for a, b in spans) else -100
                    for token, (s, _) in zip(ids, enc["offset_mapping"], strict=True)
                ]
            else:
                labels = list(ids)
            if len(ids) > limit:
                if self.truncation == "drop":
                    self.dropped += 1
                    continue
                ids, labels = ids[-limit:], labels[-limit:]
            if all(label == -100 for label in labels[1:]):  # the first label never counts: nothing predicts it
                self.dropped += 1
                continue
            features.append({"input_ids": ids, "labels": labels})
        if self.dropped:
            warnings.warn(
                f"sft: {self.dropped} of {len(examples)} conversations dropped (longer than max_length={limit} "
                f"with truncation={self.truncation!r}, or no assistant token left)",
                stacklevel=2,
            )
        return features

    def collate(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, Any]:
        """Right-padded `input_ids`, `attention_mask` and `labels` (-100 on padding)."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return pad_features(features, {"input_ids": pad or 0, "attention_mask": 0, "labels": -100})

    # evaluation --------------------------------------------------------------------------------------------
    def evaluate(
        self, model: Any, tokenizer: Any, examples: Sequence[Any], *, batch_size: int = 64
    ) -> dict[str, float]:
        """`{"loss", "perplexity", "token_accuracy"}` over the label tokens of `examples` (token-weighted)."""
        torch = require("torch", extra="hf")
        features = self.encode(examples, tokenizer)
        total, correct, count = 0.0, 0, 0
        with eval_mode(model):
            device = device_of(model)
            for chunk in batches(features, batch_size):
                batch = {k: v.to(device) for k, v in self.collate(chunk, tokenizer).items()}
                labels = batch.pop("labels")
                logits = model(**batch).logits[:, :-1].float()
                targets = labels[:, 1:]
                total += float(
                    torch.nn.functional.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
                    )
                )
                mask = targets != -100
                correct += int(((logits.argmax(-1) == targets) & mask).sum())
                count += int(mask.sum())
        if count == 0:
            return {"loss": math.nan, "perplexity": math.nan, "token_accuracy": math.nan}
        loss = total / count
        return {"loss": loss, "perplexity": perplexity(loss), "token_accuracy": correct / count}

    def predictor(self, model_dir: str | Path) -> Any:
        """`yulian.models.HFChatModel` over the trained model."""
        from yulian.models.hf_chat import HFChatModel

        return HFChatModel(str(model_dir))


def _chat_examples(examples: Sequence[Any]) -> list[ChatExample]:
    for i, ex in enumerate(examples):
        if not isinstance(ex, ChatExample):
            raise TypeError(f"the sft task takes ChatExample records; item {i} is a {type(ex).__name__}")
    return list(examples)


def _render(tokenizer: Any, ex: ChatExample) -> tuple[str, list[tuple[int, int]]]:
    """The conversation's text and the character spans of its assistant turns."""
    messages = [{"role": m["role"], "content": m["content"]} for m in ex.messages]
    template = getattr(tokenizer, "chat_template", None)

    def render(upto: int, prompt: bool) -> str:
        if template is None:  # HFChatModel's fallback transcript, EOS closing each assistant turn
            eos = tokenizer.eos_token or ""
            lines = [
                f"{m['role'].capitalize()}: {m['content']}" + (eos if m["role"] == "assistant" else "")
                for m in messages[:upto]
            ]
            return "\n\n".join([*lines, "Assistant:"] if prompt else lines)
        out: str = tokenizer.apply_chat_template(messages[:upto], tokenize=False, add_generation_prompt=prompt)
        return out

    full = render(len(messages), False)
    spans: list[tuple[int, int]] = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before, through = render(k, True), render(k + 1, False)
        if not (full.startswith(through) and through.startswith(before)):
            raise ValueError(
                f"conversation on line {ex.line}: the chat template does not render the conversation up to turn "
                f"{k + 1} as a prefix of the whole, so the assistant tokens cannot be located"
            )
        spans.append((len(before), len(through)))
    return full, spans
