"""Fixtures shared by the compression tests: one tiny fine-tuned classifier per session (about 2 s to train)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import train_classifier


@pytest.fixture(scope="session")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT pos/neg classifier folder (model, tokenizer, yulian_task.json), dev accuracy 1.0."""
    return train_classifier(tmp_path_factory.mktemp("tiny-classifier") / "clf")
