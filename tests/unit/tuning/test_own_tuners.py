"""Our own peft tuners (`yulian.tuning.tuners`): Houlsby/Pfeiffer bottleneck adapters and P-tuning v2 prefixes,
on tiny inline BERT and Llama models.

Bottleneck adapters start as the identity and only they (and the head) train; prefixes extend keys and masks so a
padded row equals the row alone, and cached generation equals the uncached forward; both train through the real
Trainer, save the standard PEFT folder, reload through `peft.PeftModel.from_pretrained`, switch between several
adapters on one base, and refuse to merge with a clear reason.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from tiny_hf import save_random, single_thread
from tiny_setup import sentiment

from yulian.tuning.tasks import TaskConfig, get_task
from yulian.tuning.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread


def _bert_config(attn: str = "sdpa", **overrides: Any) -> Any:
    from transformers import BertConfig

    settings: dict[str, Any] = {
        "vocab_size": 60,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.2,  # 0.02 makes a tiny random BERT's outputs nearly input-independent
        "attn_implementation": attn,
    }
    settings.update(overrides)
    return BertConfig(**settings)


def _llama_config(attn: str = "sdpa") -> Any:
    import transformers

    return transformers.LlamaConfig(
        vocab_size=60,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        initializer_range=0.2,
        attn_implementation=attn,
    )


def _model(arch: str, attn: str = "sdpa", head: str = "cls", seed: int = 0) -> Any:
    import torch
    import transformers

    torch.manual_seed(seed)
    models: Any = transformers
    if arch == "bert":
        return models.BertForSequenceClassification(_bert_config(attn)).eval()
    cls = models.LlamaForSequenceClassification if head == "cls" else models.LlamaForCausalLM
    return cls(_llama_config(attn)).eval()


def _batch(seed: int = 1) -> dict[str, Any]:
    """Two rows; the second is padded after 4 tokens (pad id 0)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (2, 7), generator=gen)
    mask = torch.ones_like(ids)
    ids[1, 4:], mask[1, 4:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


def _logits(model: Any, batch: dict[str, Any]) -> Any:
    import torch

    with torch.no_grad():
        return model(**batch).logits


def _perturb(model: Any, seed: int) -> None:
    """Move every trainable parameter away from its initial value (as training would)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn(param.shape, generator=gen))


def _bottleneck(kind: str, **kw: Any) -> Any:
    from yulian.tuning.tuners import BottleneckConfig

    return BottleneckConfig(kind=kind, task_type="SEQ_CLS", **{"reduction_factor": 4, **kw})


def _prefix(**kw: Any) -> Any:
    from yulian.tuning.tuners import KVPrefixConfig

    return KVPrefixConfig(num_virtual_tokens=kw.pop("n", 3), task_type=kw.pop("task_type", "SEQ_CLS"), **kw)


# ------------------------------------------------------------------------------------------ bottleneck adapters
@pytest.mark.parametrize("arch", ["bert", "llama"])
@pytest.mark.parametrize("kind", ["houlsby", "pfeiffer"])
def test_bottleneck_starts_as_identity_and_only_adapters_and_head_train(kind: str, arch: str) -> None:
    from peft import get_peft_model

    from yulian.tuning.tuners import BottleneckLayer

    base = _model(arch)
    batch = _batch()
    before = _logits(base, batch)
    model = get_peft_model(base, _bottleneck(kind))
    assert _logits(model, batch).equal(before)  # zero up projection: exactly the base model

    wrapped = [n for n, m in model.named_modules() if isinstance(m, BottleneckLayer)]
    expected = {
        ("bert", "houlsby"): ("attention.output.dense", "output.dense"),
        ("bert", "pfeiffer"): ("output.dense",),
        ("llama", "houlsby"): ("self_attn.o_proj", "mlp.down_proj"),
        ("llama", "pfeiffer"): ("mlp.down_proj",),
    }[(arch, kind)]
    found = {re.fullmatch(r".*\.(?:layer|layers)\.(\d+)\.(.+)", n).groups() for n in wrapped}  # type: ignore[union-attr]
    assert found == {(str(i), suffix) for i in range(2) for suffix in expected}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(("bottleneck_" in n) or ("modules_to_save" in n) for n in trainable)
    assert any("modules_to_save" in n for n in trainable)  # the fresh head trains and is saved


@pytest.mark.parametrize(("method", "limit"), [("houlsby", 0.012), ("pfeiffer", 0.006), ("prefix", 0.004)])
def test_trainable_share_on_a_minilm_shaped_model(method: str, limit: float) -> None:
    import torch
    from peft import get_peft_model
    from transformers import BertForSequenceClassification

    config = _bert_config(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    config.vocab_size = 30522
    with torch.device("meta"):  # shapes only: no memory, no init time
        base = BertForSequenceClassification(config)
        peft_config = _prefix(n=16) if method == "prefix" else _bottleneck(method, reduction_factor=16)
        model = get_peft_model(base, peft_config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert 22_000_000 < total < 23_500_000
    assert 0 < trainable / total < limit, trainable / total


# ------------------------------------------------------------------------------------------------- prefixes
@pytest.mark.parametrize("arch", ["bert", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prefix_extends_keys_and_mask_padding_does_not_leak(arch: str, attn: str) -> None:
    from peft import get_peft_model

    n = 3
    model = get_peft_model(_model(arch, attn), _prefix(n=n))
    batch = _batch()
    padded = _logits(model, batch)
    alone = _logits(model, {k: v[1:, :4] for k, v in batch.items()})
    assert padded.shape == (2, 2)
    assert (padded[1] - alone[0]).abs().max() < 1e-5  # the padded row equals the row alone
    with model.disable_adapter():
        plain = _logits(model, batch)
    assert (padded - plain).abs().max() > 1e-3  # the prefix is used
    if attn == "eager":  # the attention really sees num_virtual_tokens more keys
        import torch

        with torch.no_grad():
            out = model(**batch, output_attentions=True)
        assert out.attentions[0].shape[-1] == n + batch["input_ids"].shape[1]
        assert out.attentions[0][1, :, :, n + 4 :].abs().max() == 0  # padded keys get no attention


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prefix_cached_generation_equals_the_uncached_forward(attn: str) -> None:
    import torch
    from peft import get_peft_model

    model = get_peft_model(_model("llama", attn, head="lm"), _prefix(n=2, task_type="CAUSAL_LM"))
    prompt = _batch()["input_ids"][:1]
    with torch.no_grad():
        seq = prompt
        for _ in range(4):  # greedy, recomputing everything each step (no cache)
            nxt = model(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
        generated = model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=4,
            do_sample=False,
            eos_token_id=None,
        )
        with model.disable_adapter():
            plain = model(input_ids=seq, use_cache=False).logits
        prefixed = model(input_ids=seq, use_cache=False).logits
    assert generated.tolist() == seq.tolist()
    assert (plain - prefixed).abs().max() > 1e-3


def test_prefix_projection_folds_into_identical_prefixes(tmp_path: Path) -> None:
    from peft import PeftModel, get_peft_model
    from safetensors import safe_open

    from yulian.tuning.tuners import fold_prefixes

    model = get_peft_model(_model("bert"), _prefix(prefix_projection=8))
    assert any("kv_prefix_mlp" in n for n, p in model.named_parameters() if p.requires_grad)
    batch = _batch()
    before = _logits(model, batch)
    assert fold_prefixes(model) == 2  # one per layer
    assert _logits(model, batch).equal(before)
    model.save_pretrained(str(tmp_path))
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "KV_PREFIX" and saved["prefix_projection"] == 0
    with safe_open(str(tmp_path / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("mlp" in k or "embedding" in k for k in keys)
    reloaded = PeftModel.from_pretrained(_model("bert"), str(tmp_path))
    assert (_logits(reloaded, batch) - before).abs().max() < 1e-6


# ----------------------------------------------------------------------------------- through the real Trainer
@pytest.fixture(scope="module")
def bert_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder: Path = save_random(tmp_path_factory.mktemp("bert"), "BertModel", initializer_range=0.2)
    return folder


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("adapter", {"kind": "houlsby"}),
        ("adapter", {"kind": "pfeiffer", "non_linearity": "swish"}),
        ("prefix", {"num_virtual_tokens": 4}),
        ("prefix", {"num_virtual_tokens": 4, "projection": 16}),
    ],
)
def test_trains_saves_and_reloads_through_peft(
    method: str, options: dict[str, Any], bert_base: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    examples = sentiment(8)
    task = get_task("classification", TaskConfig(max_length=32, stride=8))
    config = TrainConfig(  # one batch of 8 seen 10 times, no dropout: the loss must fall
        epochs=10, batch_size=8, lr=2e-2, precision="fp32", dropout=0.0, progress=False, method=method,
        method_options=options,
    )  # fmt: skip
    trainer = Trainer(task, config, tmp_path)
    result = trainer.fit(examples, None, bert_base)
    losses = result.losses
    assert len(losses) == 10 and losses[-1] < 0.9 * losses[0] and losses[-1] < min(losses[:5]), losses

    for name in ("adapter_config.json", "adapter_model.safetensors", "yulian_adapter.json"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "model.safetensors").exists()
    meta = json.loads((tmp_path / "yulian_adapter.json").read_text())
    assert meta["method"] == method and meta["can_merge"] is False

    features = task.encode(examples[:4], trainer.tokenizer)
    batch = {k: v for k, v in task.collate(features, trainer.tokenizer).items() if k != "labels"}
    trained = _logits(trainer.model.eval(), batch)
    with trainer.model.disable_adapter():  # the adapter itself trained, not just the head
        assert (_logits(trainer.model, batch) - trained).abs().max() > 1e-3
    plain = AutoModelForSequenceClassification.from_pretrained(str(bert_base), num_labels=2)
    reloaded = PeftModel.from_pretrained(plain, str(tmp_path))
    assert torch.allclose(_logits(reloaded, batch), trained, atol=1e-5)


# ------------------------------------------------------------------------------ several adapters, switching, merge
@pytest.mark.parametrize("arch", ["bert", "llama"])
@pytest.mark.parametrize("tuner", ["bottleneck", "prefix"])
def test_two_adapters_on_one_base_switch(tuner: str, arch: str, tmp_path: Path) -> None:
    from peft import PeftModel, get_peft_model

    batch = _batch()
    own = {}
    configs = {"one": _bottleneck("houlsby"), "two": _bottleneck("pfeiffer", non_linearity="gelu")}
    if tuner == "prefix":
        configs = {"one": _prefix(n=3), "two": _prefix(n=5)}
    for i, (name, peft_config) in enumerate(configs.items()):
        model = get_peft_model(_model(arch), peft_config)
        _perturb(model, seed=10 + i)
        own[name] = _logits(model, batch)
        model.save_pretrained(str(tmp_path / name))
    assert (own["one"] - own["two"]).abs().max() > 1e-3

    multi = PeftModel.from_pretrained(_model(arch), str(tmp_path / "one"), adapter_name="one")
    multi.load_adapter(str(tmp_path / "two"), adapter_name="two")
    for name in ("two", "one", "two"):
        multi.set_adapter(name)
        assert (_logits(multi, batch) - own[name]).abs().max() < 1e-5, name
    with multi.disable_adapter():
        assert (_logits(multi, batch) - _logits(_model(arch), batch)).abs().max() < 1e-5


@pytest.mark.parametrize("tuner", ["bottleneck", "prefix"])
def test_merge_is_not_defined_and_says_why_unload_restores_the_base(tuner: str) -> None:
    import torch
    from peft import get_peft_model

    batch = _batch()
    with torch.no_grad():
        base_hidden = _model("bert").bert(**batch).last_hidden_state
    model = get_peft_model(_model("bert"), _bottleneck("houlsby") if tuner == "bottleneck" else _prefix())
    _perturb(model, seed=3)
    why = "non-linearity" if tuner == "bottleneck" else "not a change of any weight"
    with pytest.raises(ValueError, match=f"cannot be merged.*{why}"):
        model.merge_and_unload()
    with pytest.raises(ValueError, match="cannot be merged"):
        model.merge_adapter()
    with torch.no_grad():
        assert (model.base_model.model.bert(**batch).last_hidden_state - base_hidden).abs().max() > 1e-3
    plain = model.unload()  # drops the adapters; the encoder is the base model again
    assert type(plain).__name__ == "BertForSequenceClassification"
    assert not any("bottleneck_" in n or "kv_prefix_" in n for n, _ in plain.named_parameters())
    with torch.no_grad():
        assert plain.bert(**batch).last_hidden_state.equal(base_hidden)


@pytest.mark.parametrize(("arch", "std"), [("bert", 1.0), ("llama", 0.1)])
def test_prefix_init_scale_defaults_per_architecture_and_can_be_set(arch: str, std: float) -> None:
    import torch
    from peft import get_peft_model

    from yulian.tuning.methods import get_method

    torch.manual_seed(0)
    for config, expected in ((_prefix(n=64), std), (_prefix(n=64, init_std=0.5), 0.5)):
        model = get_peft_model(_model(arch), config)
        prefixes = [p for n, p in model.named_parameters() if "kv_prefix_kv" in n]
        assert prefixes
        measured = float(torch.cat([p.detach().flatten() for p in prefixes]).std())
        assert measured == pytest.approx(expected, rel=0.1)
    check = get_method("prefix").OPTIONS["init_std"].check
    assert check("prefix", "init_std", "auto") is None and check("prefix", "init_std", "0.3") == 0.3


# ------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("adapter", {"kind": "lora"}, "adapter option kind must be one of houlsby, pfeiffer"),
        ("adapter", {"non_linearity": "tanh"}, "adapter option non_linearity must be one of relu, gelu, swish"),
        ("adapter", {"reduction_factor": 0}, "adapter option reduction_factor must be in"),
        ("adapter", {"reduction": 8}, r"unknown adapter option\(s\) reduction .*Did you mean 'reduction_factor'"),
        ("prefix", {"num_virtual_tokens": 0}, "prefix option num_virtual_tokens must be in"),
        ("prefix", {"projection": "big"}, "prefix option projection must be a number"),
        ("prefix", {"init_std": "wide"}, "prefix option init_std must be a number"),
    ],
)
def test_bad_options_name_the_option(method: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(method=method, method_options=options)


def test_bad_configs_and_unknown_architectures_are_clear_errors() -> None:
    import torch
    from peft import get_peft_model

    from yulian.tuning.tuners import BottleneckConfig, KVPrefixConfig

    with pytest.raises(ValueError, match="bottleneck kind must be one of houlsby, pfeiffer"):
        BottleneckConfig(kind="parallel")
    with pytest.raises(ValueError, match="prefix num_virtual_tokens must be a whole number >= 1"):
        KVPrefixConfig(num_virtual_tokens=0)
    toy = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"cannot find the attention-output and FFN-output .*supported: bert-family"):
        get_peft_model(toy, BottleneckConfig())
    with pytest.raises(ValueError, match=r"cannot find the self-attention modules .*supported: bert-family"):
        get_peft_model(torch.nn.Sequential(torch.nn.Linear(4, 4)), KVPrefixConfig())
