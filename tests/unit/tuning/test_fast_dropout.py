"""SFC64 dropout: the right drop rate and scale, exact gradients, seeded masks, attention equal to SDPA's, and a
model that is exactly as it was after the block."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_setup import save_base, single_thread

from yulian.tuning.fast_dropout import attention, dropout_mask, fast_dropout, fast_dropout_training

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread


def test_drop_rate_scale_and_gradient() -> None:
    import torch

    torch.manual_seed(0)
    x = torch.ones(200, 500, requires_grad=True)
    y = fast_dropout(x, 0.1)
    dropped = float((y == 0).float().mean())
    assert dropped == pytest.approx(0.1, abs=0.005)
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(sum y)/dx = keep * scale = y for x = 1
    assert fast_dropout(x, 0.1, training=False) is x and fast_dropout(x, 0.0) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        fast_dropout(x, 1.0)


def test_masks_follow_torch_seed_and_differ_between_calls() -> None:
    import torch

    torch.manual_seed(1)
    a, b = dropout_mask((64, 64), 0.5), dropout_mask((64, 64), 0.5)
    torch.manual_seed(1)
    assert torch.equal(a, dropout_mask((64, 64), 0.5))
    assert not torch.equal(a, b)
    assert float(a.float().mean()) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("masked", [False, True])
def test_attention_without_drops_equals_sdpa(masked: bool) -> None:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 4, 7, 8) for _ in range(3))
    mask = None
    if masked:
        mask = torch.ones(2, 1, 7, 7, dtype=torch.bool)
        mask[1, :, :, 5:] = False
    module = torch.nn.Module()
    module.is_causal = False
    module.train()
    ours, _ = attention(module, q, k, v, mask, dropout=1e-9)  # rounds to p = 0: the math path keeps everything
    sdpa, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0)
    assert torch.allclose(ours, sdpa, atol=1e-5)
    module.is_causal = True
    ours_causal, _ = attention(module, q, k, v, None, dropout=1e-9)
    sdpa_causal, _ = sdpa_attention_forward(module, q, k, v, None, dropout=0.0, is_causal=True)
    assert torch.allclose(ours_causal, sdpa_causal, atol=1e-5)


@pytest.mark.parametrize("mask_kind", ["bool", "float", "causal"])
@pytest.mark.parametrize("kv_heads", [6, 2])
def test_training_attention_by_products_matches_sdpa_with_gradients(mask_kind: str, kv_heads: int) -> None:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(4)
    leaves = [
        torch.randn(3, 6, 9, 8, requires_grad=True),
        torch.randn(3, kv_heads, 9, 8, requires_grad=True),
        torch.randn(3, kv_heads, 9, 8, requires_grad=True),
    ]
    allowed = (
        torch.ones(9, 9, dtype=torch.bool).tril()[None, None]
        & (torch.arange(9) < torch.tensor([[9], [6], [3]]))[:, None, None, :]
    )
    mask = {"bool": allowed, "float": torch.zeros(allowed.shape).masked_fill(~allowed, -1e9), "causal": None}[mask_kind]
    module = torch.nn.Module()
    module.is_causal = True
    module.num_key_value_groups = 6 // kv_heads
    module.train()
    weights = torch.randn(3, 9, 6, 8)
    results = []
    for function in (attention, sdpa_attention_forward):
        out, _ = function(module, *leaves, mask, dropout=0.0, scaling=0.3)
        grads = torch.autograd.grad((out * weights).sum(), leaves)
        results.append((out, grads))
    (ours, our_grads), (sdpa, sdpa_grads) = results
    assert ours.shape == sdpa.shape == (3, 9, 6, 8)
    assert torch.allclose(ours, sdpa, atol=1e-5)
    for mine, theirs in zip(our_grads, sdpa_grads, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)


def test_more_keys_than_queries_and_float_masks_match_sdpa() -> None:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(6)
    q = torch.randn(2, 4, 5, 8, requires_grad=True)
    k, v = (torch.randn(2, 2, 9, 8, requires_grad=True) for _ in range(2))
    allowed = torch.ones(2, 1, 5, 9, dtype=torch.bool)  # four always-visible columns in front, as prefix tuning's
    allowed[:, :, :, 4:] = torch.ones(5, 5, dtype=torch.bool).tril()
    allowed[1, :, :, 7:] = False
    module = torch.nn.Module()
    module.num_key_value_groups = 2
    module.train()
    for mask in (allowed, torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))):
        ours, _ = attention(module, q, k, v, mask)
        sdpa, _ = sdpa_attention_forward(module, q, k, v, mask)
        assert torch.allclose(ours, sdpa, atol=1e-5)
    nothing = torch.full((2, 1, 5, 9), float("-inf"))  # fully masked rows: finite, no NaN spreading to the grads
    out, _ = attention(module, q, k, v, nothing)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all()


def test_arguments_it_does_not_implement_go_to_sdpa_and_no_grad_keeps_dropout() -> None:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(7)
    q, k, v = (torch.randn(1, 2, 6, 8, requires_grad=True) for _ in range(3))
    bias = torch.randn(1, 2, 6, 6)
    module = torch.nn.Module()
    module.is_causal = False
    module.train()
    ours, _ = attention(module, q, k, v, None, position_bias=bias)  # T5's relative positions: not dropped
    sdpa, _ = sdpa_attention_forward(module, q, k, v, None, position_bias=bias)
    plain, _ = sdpa_attention_forward(module, q, k, v, None)
    assert torch.allclose(ours, sdpa, atol=1e-6) and not torch.allclose(ours, plain, atol=1e-3)
    with torch.no_grad():  # a training-mode forward without gradients (reentrant checkpointing) still drops out
        dropped, _ = attention(module, q, k, v, None, dropout=0.5)
        kept, _ = attention(module, q, k, v, None)
    assert not torch.allclose(dropped, kept)


def test_eager_only_models_keep_their_attention() -> None:
    import torch

    class Config:
        _attn_implementation = "eager"

    model = torch.nn.Module()
    model.config = Config()
    model._supports_sdpa = False
    with fast_dropout_training(model):
        assert model.config._attn_implementation == "eager"
    model._supports_sdpa = True
    with fast_dropout_training(model):
        assert model.config._attn_implementation == "yulian_cpu_dropout"
    assert model.config._attn_implementation == "eager"


def test_attention_hands_long_sequences_and_inference_to_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers.integrations import sdpa_attention

    calls: list[int] = []
    original = sdpa_attention.sdpa_attention_forward

    def counting(module: object, query: torch.Tensor, *args: object, **kwargs: object) -> object:
        calls.append(query.shape[-2])
        return original(module, query, *args, **kwargs)

    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", counting)
    module = torch.nn.Module()
    module.is_causal = True
    module.train()
    for length in (16, 400):
        q, k, v = (torch.randn(1, 2, length, 8, requires_grad=True) for _ in range(3))
        attention(module, q, k, v, None)
    assert calls == [400]  # short: products; long: SDPA's kernel
    with torch.no_grad():
        attention(module, q[:, :, :16], k[:, :, :16], v[:, :, :16], None)
    module.eval()
    attention(module, q[:, :, :16], k[:, :, :16], v[:, :, :16], None)
    assert calls == [400, 16, 16]


def test_a_model_drops_out_inside_the_block_and_is_restored_after(tmp_path: Path) -> None:
    import torch
    import transformers

    base = save_base(tmp_path / "base")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=2)
    ids = torch.tensor([[2, 5, 6, 7, 8, 3], [2, 9, 10, 3, 0, 0]])
    mask = (ids != 0).long()
    model.eval()
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask).logits
    before = [type(m) for m in model.modules()]
    with fast_dropout_training(model) as swapped:
        assert swapped >= 5  # embeddings + 2 per layer x 2 layers + classifier
        assert model.config._attn_implementation == "yulian_cpu_dropout"
        with torch.no_grad():
            assert torch.allclose(model(input_ids=ids, attention_mask=mask).logits, reference, atol=1e-6)
            model.train()
            torch.manual_seed(3)
            one = model(input_ids=ids, attention_mask=mask).logits
            torch.manual_seed(3)
            same = model(input_ids=ids, attention_mask=mask).logits
            other = model(input_ids=ids, attention_mask=mask).logits
        assert torch.equal(one, same) and not torch.allclose(one, other)
    assert [type(m) for m in model.modules()] == before
    assert model.config._attn_implementation == "sdpa" and model.training


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_output_and_gradient_are_x_times_mask_times_scale_to_the_bit(dtype: str) -> None:
    import torch

    x = torch.randn(4, 7, 24, dtype=getattr(torch, dtype), requires_grad=True)
    torch.manual_seed(5)
    y = fast_dropout(x, 0.1)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    torch.manual_seed(5)
    keep = dropout_mask(tuple(x.shape), 0.1)
    assert torch.equal(y, x.detach() * keep * (1 / 0.9))
    assert torch.equal(x.grad, upstream * keep * (1 / 0.9))
