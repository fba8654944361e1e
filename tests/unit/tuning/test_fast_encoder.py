"""Fused Q/K/V and the first-token last layer: the same logits and gradients as the original code, in training mode
only, for BERT and RoBERTa heads and under LoRA; the model is exactly as it was after the block."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from tiny_setup import single_thread

from yulian.tuning.fast_encoder import fast_encoder_training, first_token_head

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread


def _model(kind: str = "bert", seed: int = 0) -> Any:
    import torch
    import transformers

    torch.manual_seed(seed)
    options: dict[str, Any] = {
        "vocab_size": 120,
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "num_labels": 3,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "attn_implementation": "sdpa",
    }
    if kind == "bert":
        return transformers.BertForSequenceClassification(transformers.BertConfig(**options))
    return transformers.RobertaForSequenceClassification(transformers.RobertaConfig(pad_token_id=1, **options))


def _batch(seed: int = 0) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (4, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding: the mask must reach the cut last layer
    mask[3, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 2, 1, 2])}


def _loss_and_grads(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_same_logits_and_gradients_as_the_original(kind: str) -> None:
    import torch

    model = _model(kind)
    model.train()
    batch = _batch()
    logits, grads = _loss_and_grads(model, batch)
    calls: list[int] = []
    model.base_model.encoder.layer[0].attention.self.query.register_forward_hook(lambda *_: calls.append(1))
    with fast_encoder_training(model, first_token_only=True) as counts:
        assert counts == {"fused": 2, "first_token": 1, "fused_mlp": 0}
        fast_logits, fast_grads = _loss_and_grads(model, batch)
        assert not calls  # the fused product ran instead of the query module
        encoder = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        assert encoder.last_hidden_state.shape[1] == 1  # the cut layer ran: position 0 only
    assert torch.allclose(fast_logits, logits, atol=1e-5)
    assert fast_grads.keys() == grads.keys()  # every parameter still gets its gradient (the last query too)
    for name, grad in grads.items():
        assert torch.allclose(fast_grads[name], grad, atol=1e-5, rtol=1e-4), name


def test_under_bf16_autocast_the_logits_match() -> None:
    import torch

    model = _model()
    model.train()
    batch = _batch(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(**batch).logits.float()
        with fast_encoder_training(model, first_token_only=True):
            fast = model(**batch).logits.float()
    assert torch.allclose(fast, logits, atol=2e-2)


def test_the_last_layer_is_cut_only_for_first_token_heads() -> None:
    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_labels=3
    )
    tagger = transformers.BertForTokenClassification(config)
    assert not first_token_head(tagger) and first_token_head(_model())
    tagger.train()
    ids = torch.randint(0, 50, (2, 5))
    with fast_encoder_training(tagger, first_token_only=True) as counts:
        assert counts == {"fused": 2, "first_token": 0, "fused_mlp": 0}
        assert tagger(input_ids=ids).logits.shape == (2, 5, 3)  # every position still tagged
    with fast_encoder_training(_model(), first_token_only=False) as counts:
        assert counts == {"fused": 3, "first_token": 0, "fused_mlp": 0}


def test_evaluation_inside_the_block_runs_the_original_and_the_model_is_restored() -> None:
    import torch

    model = _model()
    batch = _batch(2)
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    with fast_encoder_training(model, first_token_only=True):
        layer = model.bert.encoder.layer[-1]
        assert "forward" in vars(layer)
        with torch.no_grad():
            hidden = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        assert hidden.last_hidden_state.shape[1] == 9  # eval mode: all positions, as before
    assert all("forward" not in vars(m) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, before)


@pytest.mark.parametrize(
    ("targets", "dropout", "bias"),
    [
        (["query", "value"], 0.0, False),
        (["query", "key", "value"], 0.0, False),
        (["query", "value"], 0.1, False),
        (["query", "value"], 0.0, True),
    ],
)
@pytest.mark.parametrize("autocast", [False, True])
def test_lora_projections_are_fused_with_their_updates_and_still_match(
    autocast: bool, targets: list[str], dropout: float, bias: bool
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from yulian.tuning.fast_encoder import FrozenCast

    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules=targets, task_type="SEQ_CLS", lora_bias=bias
    )
    model = get_peft_model(_model(), config)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)  # a non-zero adapter: its path must be in the outputs
    model.train()
    batch = _batch(3)
    frozen = FrozenCast(model, torch.bfloat16)
    torch.manual_seed(11)  # the same LoRA dropout masks, drawn in the same order, on both sides
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits, grads = _loss_and_grads(model, batch)
    first = not dropout  # (the first-token layer draws the query's LoRA dropout for one position only)
    with fast_encoder_training(model, first_token_only=first) as counts:
        assert counts == {"fused": 3 - first, "first_token": int(first), "fused_mlp": 0}
        for _ in range(2):  # the second step reuses the concatenated frozen weights
            torch.manual_seed(11)
            with (
                frozen.applied() if autocast else contextlib.nullcontext(),
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
            ):
                fast_logits, fast_grads = _loss_and_grads(model, batch)
            tolerance = 2e-2 if autocast else 1e-5
            assert torch.allclose(fast_logits.float(), logits.float(), atol=tolerance)
            assert fast_grads.keys() == grads.keys()
            for name, grad in grads.items():
                assert torch.allclose(fast_grads[name], grad, atol=tolerance, rtol=1e-2 if autocast else 1e-4), name


def test_ia3_and_adalora_layers_keep_their_own_forward() -> None:
    from peft import IA3Config, get_peft_model

    model = get_peft_model(
        _model(),
        IA3Config(
            target_modules=["key", "value", "intermediate.dense"],
            feedforward_modules=["intermediate.dense"],
            task_type="SEQ_CLS",
        ),
    )
    model.train()
    with fast_encoder_training(model, first_token_only=True) as counts:
        assert counts == {"fused": 0, "first_token": 1, "fused_mlp": 0}


def test_eager_attention_keeps_the_original_code() -> None:
    import torch

    model = _model()
    model.config._attn_implementation = "eager"
    model.train()
    batch = _batch(4)
    logits, _ = _loss_and_grads(model, batch)
    with fast_encoder_training(model, first_token_only=True):
        fast, _ = _loss_and_grads(model, batch)
    assert torch.equal(fast, logits)


def test_frozen_cast_gives_the_same_step_and_restores_the_weights() -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from yulian.tuning.fast_encoder import FrozenCast

    model = get_peft_model(
        _model(), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS")
    )
    model.train()
    batch = _batch(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, grads = _loss_and_grads(model, batch)
    frozen = FrozenCast(model, torch.bfloat16)
    base = model.base_model.model.bert.encoder.layer[0].attention.self.key.weight
    assert len(frozen) > 0 and base.dtype == torch.float32
    with frozen.applied():
        assert base.dtype == torch.bfloat16  # cast once, held for the whole step (forward and backward)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast_logits, cast_grads = _loss_and_grads(model, batch)
    assert base.dtype == torch.float32
    assert torch.equal(cast_logits, logits)  # autocast's own cast gives the same bf16 numbers
    for name, grad in grads.items():
        assert torch.equal(cast_grads[name], grad), name
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in trainable)  # only frozen weights are cast


@pytest.mark.parametrize("lora", [False, True])
def test_llama_attention_and_gated_mlp_are_fused_exactly(lora: bool) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=120,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        num_labels=3,
        pad_token_id=0,
        attn_implementation="sdpa",
    )
    model: Any = transformers.LlamaForSequenceClassification(config)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS"))
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.1)
    model.train()
    batch = _batch(6)
    logits, grads = _loss_and_grads(model, batch)
    calls: list[int] = []
    base = model.get_base_model() if lora else model
    base.model.layers[0].mlp.gate_proj.register_forward_hook(lambda *_: calls.append(1))
    base.model.layers[0].self_attn.k_proj.register_forward_hook(lambda *_: calls.append(2))
    with fast_encoder_training(model, first_token_only=True) as counts:
        assert counts == {"fused": 2, "first_token": 0, "fused_mlp": 2}
        fast_logits, fast_grads = _loss_and_grads(model, batch)
        assert not calls  # the fused Q/K/V and gate/up products ran
    assert torch.allclose(fast_logits, logits, atol=1e-5)
    assert fast_grads.keys() == grads.keys()
    for name, grad in grads.items():
        assert torch.allclose(fast_grads[name], grad, atol=1e-5, rtol=1e-4), name


def test_look_alike_modules_keep_their_own_forward() -> None:
    import torch
    import transformers
    from transformers.models.llama.modeling_llama import LlamaMLP

    class ScaledMLP(LlamaMLP):  # the same attributes, another computation: must not be fused
        def forward(self, x: Any) -> Any:
            return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x)) * 2.0

    config = transformers.LlamaConfig(
        hidden_size=16, intermediate_size=24, num_attention_heads=2, num_key_value_heads=2
    )
    holder = torch.nn.Module()
    holder.mlp = ScaledMLP(config)
    holder.train()
    with fast_encoder_training(holder) as counts:
        assert counts["fused_mlp"] == 0
    holder.mlp = LlamaMLP(config)
    with fast_encoder_training(holder) as counts:
        assert counts["fused_mlp"] == 1


def test_no_cut_when_the_last_layer_is_wrapped() -> None:
    import torch

    model = _model()

    class Wrapped(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.inner(*args, **kwargs)

    layers = model.bert.encoder.layer
    layers[-1].attention.output = Wrapped(layers[-1].attention.output)
    model.train()
    with fast_encoder_training(model, first_token_only=True) as counts:
        assert counts["first_token"] == 0  # not the layer before it either
        out = model.bert(**{k: v for k, v in _batch().items() if k != "labels"})
        assert out.last_hidden_state.shape[1] == 9


def test_frozen_cast_leaves_weights_tied_to_an_embedding_alone() -> None:
    import torch

    from yulian.tuning.fast_encoder import FrozenCast

    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(10, 4)
    model.head = torch.nn.Linear(4, 10, bias=False)
    model.head.weight = model.embed.weight  # tied, as in SmolLM2
    model.other = torch.nn.Linear(4, 4)
    for p in model.parameters():
        p.requires_grad_(False)
    frozen = FrozenCast(model, torch.bfloat16)
    with frozen.applied():
        assert model.embed.weight.dtype == torch.float32
        assert model.other.weight.dtype == torch.bfloat16
