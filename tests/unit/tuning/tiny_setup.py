"""Shared helpers of the trainer tests: a tiny random BERT saved to disk, and a tiny separable data set."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from tiny_hf import save_random, single_thread

__all__ = ["save_base", "sentiment", "single_thread", "write_jsonl"]

_POS = ["good", "great"]
_NEG = ["bad", "awful"]
_FILL = ["the", "film", "movie", "this", "was", "very", "quick", "a", "of", "it", "now"]


def save_base(folder: Path, seed: int = 0) -> Path:
    """A tiny untrained BertModel (hidden 32, 2 layers, dropout 0.1) and its tokenizer in `folder`."""
    return save_random(folder, "BertModel", seed=seed, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def sentiment(n: int, seed: int = 0, *, multi: bool = False) -> list[Any]:
    """`n` texts whose label is given by one sentiment word among fillers (linearly separable)."""
    from yulian.tuning.data import TextExample

    rng = random.Random(seed)
    out = []
    for i in range(n):
        positive = i % 2 == 0
        words = [rng.choice(_FILL) for _ in range(rng.randint(2, 8))]
        words.insert(rng.randint(0, len(words)), rng.choice(_POS if positive else _NEG))
        label = "pos" if positive else "neg"
        if multi:
            labels = [label] + (["long"] if len(words) > 5 else [])
            out.append(TextExample(" ".join(words), labels=labels, line=i + 1))
        else:
            out.append(TextExample(" ".join(words), label=label, line=i + 1))
    return out


def write_jsonl(path: Path, examples: list[Any]) -> Path:
    """Write TextExamples as {"text", "label"} lines."""
    path.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in examples))
    return path
