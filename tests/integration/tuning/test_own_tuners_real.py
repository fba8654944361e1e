"""Our own tuners on the real packaged all-MiniLM-L6-v2: bottleneck adapters start as the identity, prefixes keep
padded rows equal to the rows alone, both round-trip through `peft.PeftModel.from_pretrained`, and the trainable
share stays around 1% or less."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def minilm() -> str:
    from yulian.models.registry import resolve

    return str(resolve("minilm-l6").path)


def _fresh(path: str) -> Any:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)  # the same fresh head every time
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).eval()


def _batch(path: str) -> dict[str, Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = ["my card was stolen yesterday", "how do I top up?"]
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def _logits(model: Any, batch: dict[str, Any]) -> Any:
    import torch

    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("kind", ["houlsby", "pfeiffer", "prefix"])
def test_real_minilm_identity_padding_share_and_round_trip(kind: str, minilm: str, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel, get_peft_model

    from yulian.tuning.tuners import BottleneckConfig, KVPrefixConfig

    batch = _batch(minilm)
    base_logits = _logits(_fresh(minilm), batch)
    if kind == "prefix":
        config: Any = KVPrefixConfig(num_virtual_tokens=16, task_type="SEQ_CLS")
    else:
        config = BottleneckConfig(kind=kind, reduction_factor=16, task_type="SEQ_CLS")
    model = get_peft_model(_fresh(minilm), config).eval()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert trainable / total < 0.011

    logits = _logits(model, batch)
    if kind == "prefix":
        short = batch["attention_mask"][1].sum()
        alone = _logits(model, {k: v[1:, :short] for k, v in batch.items()})
        assert (logits[1] - alone[0]).abs().max() < 1e-4
        assert (logits - base_logits).abs().max() > 1e-4
    else:
        assert torch.allclose(logits, base_logits, atol=1e-6)

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=gen))
    trained = _logits(model, batch)
    model.save_pretrained(str(tmp_path))
    reloaded = PeftModel.from_pretrained(_fresh(minilm), str(tmp_path)).eval()
    assert torch.allclose(_logits(reloaded, batch), trained, atol=1e-5)
