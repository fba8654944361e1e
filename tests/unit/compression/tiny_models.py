"""Tiny models for the compression tests: a random encoder, and a tiny classifier fine-tuned with yulian's Trainer
on a separable sentiment set (so accuracy is high and a broken artefact shows a real drop)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tuning"))

from tiny_hf import save_random, single_thread
from tiny_setup import save_base, sentiment, write_jsonl

__all__ = ["save_random", "sentiment", "single_thread", "train_classifier", "write_jsonl", "write_texts"]


def train_classifier(folder: Path, steps: int = 20) -> Path:
    """A tiny BERT classifier (pos/neg) trained in a plain loop on `sentiment` examples, saved like `yulian train`
    output (model, tokenizer, yulian_task.json); dev accuracy is 1.0, so a broken artefact shows a real drop."""
    import torch

    from yulian.tuning.tasks import get_task

    base = save_base(folder.parent / (folder.name + "-base"))
    task = get_task("classification")
    train = sentiment(160, seed=1)
    task.setup(train, str(base))
    torch.manual_seed(0)
    model, tokenizer = task.build_model(str(base))
    features = task.encode(train, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for step in range(steps):
        start = (step * 32) % len(features)
        batch = task.collate(features[start : start + 32], tokenizer)
        loss = task.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    task.save(folder)
    return folder


def write_texts(path: Path, texts: list[str]) -> Path:
    """One text a line."""
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def tiny_texts() -> list[str]:
    """Dev texts for the embedder tests, in the tiny vocabulary."""
    return [e.text for e in sentiment(40, seed=3)] + ["张三在北京工作", "who lives in paris ?"]


def any_model(folder: Path) -> Any:
    """A random tiny BertModel (an 'encoder') in `folder`."""
    return save_random(folder, "BertModel", seed=0, num_attention_heads=4)
