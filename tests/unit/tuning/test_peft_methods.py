"""The parameter-efficient methods, one parametrised matrix (method x task) on tiny inline models: each trains a
few steps through the real Trainer and its loss goes down; the saved adapter folder reloads to identical outputs
(through yulian's loader, through the task, and through `peft.PeftModel.from_pretrained` itself); merging gives the
unmerged adapter's outputs within 1e-4. `prefix` and `adapter` slot in by name once their modules exist."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from tiny_chat_lm import build as build_llama
from tiny_hf import save_random, single_thread  # noqa: F401
from tiny_setup import sentiment

from yulian.tuning.adapters import adapter_info, is_adapter_folder, load_adapter, load_model
from yulian.tuning.data import ChatExample, QAExample, TokenExample
from yulian.tuning.methods import METHODS, get_method
from yulian.tuning.tasks import Task, TaskConfig, get_task
from yulian.tuning.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")

PEFT_METHODS = ["lora", "adalora", "ia3", "prefix", "adapter"]
"""Every parameter-efficient method; `prefix` and `adapter` are skipped (with the reason) until they exist."""

NER = [
    TokenExample(list("张三丰在北京工作"), ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"], sep=""),
    TokenExample(["john", "smith", "lives", "in", "paris"], ["B-PER", "I-PER", "O", "O", "B-LOC"]),
] * 4
QA = [
    QAExample(f"q{i}", "where is it?", "john smith lives in new york .", [{"text": "new york", "start": 20}])
    for i in range(8)
]
CHATS = [ChatExample([{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}])] * 8


def _bert(folder: Path) -> Path:
    return save_random(folder, "BertModel", initializer_range=0.2)  # varied features: a head alone can learn


# task name -> (task, examples, base builder, transformers auto class)
CASES: dict[str, tuple[Callable[[], Task], list[Any], Callable[[Path], Path], str]] = {
    "classification": (
        lambda: get_task("classification", TaskConfig(max_length=32, stride=8)),
        list(sentiment(32)),
        _bert,
        "AutoModelForSequenceClassification",
    ),
    "ner": (
        lambda: get_task("ner", TaskConfig(max_length=32, stride=8)),
        list(NER),
        _bert,
        "AutoModelForTokenClassification",
    ),
    "qa": (
        lambda: get_task("qa", TaskConfig(max_length=32, stride=8)),
        list(QA),
        _bert,
        "AutoModelForQuestionAnswering",
    ),
    "sft": (
        lambda: get_task("sft", TaskConfig(max_length=64, stride=8)),
        list(CHATS),
        build_llama,
        "AutoModelForCausalLM",
    ),
    "llama-classification": (
        lambda: get_task("classification", TaskConfig(max_length=32, stride=8)),
        list(sentiment(32)),
        build_llama,
        "AutoModelForSequenceClassification",
    ),
}


def _method_or_skip(name: str) -> Any:
    try:
        return get_method(name)
    except ValueError as e:
        pytest.skip(f"method {name!r} is not built yet: {e}")


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    return {"bert": _bert(root / "bert"), "llama": build_llama(root / "llama")}


def _base_for(case: str, bases: dict[str, Path]) -> Path:
    return bases["llama"] if CASES[case][2] is build_llama else bases["bert"]


def _probe(task: Task, tokenizer: Any, examples: list[Any]) -> dict[str, Any]:
    features = task.encode(examples[:4], tokenizer)
    batch = task.collate(features, tokenizer)
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _outputs(model: Any, batch: dict[str, Any]) -> Any:
    import torch

    model.eval()
    with torch.no_grad():
        out = model(**batch)
    if hasattr(out, "start_logits") and out.start_logits is not None:
        return torch.cat([out.start_logits, out.end_logits], dim=-1)
    return out.logits


@pytest.mark.filterwarnings("ignore:The following rank_pattern keys:RuntimeWarning")  # peft 0.21, AdaLoRA reload
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method_name", PEFT_METHODS)
def test_method_matrix(method_name: str, case: str, bases: dict[str, Path], tmp_path: Path) -> None:
    import peft
    import torch
    import transformers

    method = _method_or_skip(method_name)
    make_task, examples, _, auto_class = CASES[case]
    base = _base_for(case, bases)
    task = make_task()
    config = TrainConfig(  # one batch of 8, seen 12 times without dropout: the loss must fall
        epochs=12, batch_size=8, lr=2e-2, precision="fp32", dropout=0.0, progress=False, method=method_name
    )
    out = tmp_path / "out"
    trainer = Trainer(task, config, out)
    result = trainer.fit(examples[:8], examples[:8], base)

    # it trains: the loss goes down; only a small share of the parameters trains
    losses = result.losses
    assert len(losses) == 12 and losses[-1] < 0.95 * losses[0], losses
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    assert 0 < trainable < 0.5 * total

    # the standard PEFT folder, plus yulian's metadata
    assert is_adapter_folder(out)
    for name in ("adapter_config.json", "adapter_model.safetensors", "yulian_adapter.json", "yulian_task.json"):
        assert (out / name).is_file(), name
    assert not (out / "model.safetensors").exists()
    info = adapter_info(out)
    assert info.method == method_name and info.task == task.name
    assert Path(info.base_model).resolve() == base.resolve()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base.resolve())

    tokenizer = trainer.tokenizer
    batch = _probe(task, tokenizer, examples)
    trained = _outputs(trainer.model, batch)

    # save -> load: identical outputs (unmerged), through yulian's loader and through the task
    reloaded = load_adapter(out)
    assert torch.allclose(_outputs(reloaded, batch), trained, atol=1e-5)
    loaded_task = Task.from_dir(out)
    net, _ = loaded_task.build_model(out)
    assert torch.allclose(_outputs(net, batch), trained, atol=1e-4)

    # the task's predictor (yulian.models) runs on the adapter folder
    predictor = loaded_task.predictor(out)
    if task.name == "sft":
        assert isinstance(predictor.bind(max_tokens=2).invoke("hello").content, str)
    elif task.name == "qa":
        assert predictor.invoke({"question": "where is it?", "context": QA[0].context}) is not None
    else:
        sample = "john smith lives in paris" if task.name == "ner" else "a great film"
        assert predictor.invoke(sample) is not None

    # a PEFT-format round trip through peft itself
    head = {k: v for k, v in info.head_config.items() if k != "pad_token_id"}
    plain = getattr(transformers, auto_class).from_pretrained(str(base), **head)
    if "pad_token_id" in info.head_config:
        plain.config.pad_token_id = info.head_config["pad_token_id"]
    via_peft = peft.PeftModel.from_pretrained(plain, str(out))
    assert torch.allclose(_outputs(via_peft, batch), trained, atol=1e-5)

    # merge-and-unload gives the unmerged adapter's outputs
    if getattr(method, "can_merge", True):
        merged = load_model(auto_class, out, merge=True)
        assert not isinstance(merged, peft.PeftModel)
        assert torch.allclose(_outputs(merged, batch), trained, atol=1e-4)
    else:
        from yulian.tuning.adapters import merge

        with pytest.raises(ValueError, match="cannot be merged"):
            merge(out, tmp_path / "merged")


def test_every_registered_peft_method_is_in_the_matrix() -> None:
    assert {"lora", "adalora", "ia3", "prefix", "adapter"} <= set(METHODS)
    assert set(PEFT_METHODS) == set(METHODS) - {"full", "freeze"}


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("lora", {"alhpa": 8}, r"unknown lora option\(s\) alhpa \(options: r, alpha, .*Did you mean 'alpha'"),
        ("lora", {"r": 0}, "lora option r must be in"),
        ("lora", {"r": "eight"}, "lora option r must be a number"),
        ("lora", {"bias": "some"}, "lora option bias must be one of none, all, lora_only"),
        ("lora", {"dropout": 1.5}, "lora option dropout must be in"),
        ("lora", {"use_dora": "maybe"}, "lora option use_dora must be true or false"),
        ("adalora", {"init_r": 4, "target_r": 8}, r"target_r \(8\) must not exceed init_r \(4\)"),
        ("adalora", {"tinit": 0.6, "tfinal": 0.5}, "tinit \\+ tfinal"),
        ("ia3", {"feedforward_modules": "output.dense"}, "needs target_modules"),
        ("ia3", {"target_modules": "key", "feedforward_modules": "output.dense"}, "subset of target_modules"),
        ("lora", {"quantize": "3bit"}, "lora option quantize must be one of 4bit, 8bit"),
    ],
)
def test_bad_options_name_the_option(method: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(method=method, method_options=options)


def test_string_options_from_the_cli_are_converted() -> None:
    method = get_method("lora")
    converted = method.normalize_options({"r": "4", "alpha": "8", "target_modules": "query, key,value"})  # type: ignore[attr-defined]
    assert converted == {"r": 4, "alpha": 8.0, "target_modules": ["query", "key", "value"]}
    assert method.normalize_options({"target_modules": "all-linear", "use_rslora": "true"}) == {  # type: ignore[attr-defined]
        "target_modules": "all-linear",
        "use_rslora": True,
    }


def test_quantize_on_cpu_stops_with_a_clear_message() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: quantised training may run here")
    from yulian.tuning.methods._peft import QuantizeUnavailableError

    with pytest.raises(QuantizeUnavailableError, match=r"quantize=4bit .* needs a CUDA GPU"):
        TrainConfig(method="lora", method_options={"quantize": "4bit"})


def test_adalora_gets_its_schedule_and_reallocates(bases: dict[str, Path], tmp_path: Path) -> None:
    task = get_task("classification", TaskConfig(max_length=32, stride=8))
    options = {"init_r": 6, "target_r": 2, "tinit": 2, "tfinal": 2, "deltaT": 2}
    config = TrainConfig(
        max_steps=12, batch_size=4, lr=2e-2, precision="fp32", progress=False, method="adalora", method_options=options
    )
    trainer = Trainer(task, config, tmp_path)
    trainer.fit(sentiment(48), sentiment(8, seed=1), bases["bert"])
    peft_config = trainer.model.peft_config["default"]
    assert (peft_config.total_step, peft_config.tinit, peft_config.tfinal) == (12, 2, 2)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    ranks = [sum(mask) for mask in saved["rank_pattern"].values()]
    assert ranks and sum(ranks) / len(ranks) <= 2.0 + 1e-9 and max(ranks) <= 6  # budget: average target_r


def test_adalora_schedule_too_long_for_the_run() -> None:
    method = get_method("adalora")
    method.options = method.resolve_options({"tinit": 5, "tfinal": 5})  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="leave no budgeting phase in 10 steps"):
        method.schedule(10)  # type: ignore[attr-defined]


def test_lora_options_reach_peft(bases: dict[str, Path], tmp_path: Path) -> None:
    task = get_task("classification", TaskConfig(max_length=32, stride=8))
    options = {"r": 4, "alpha": 8, "target_modules": ["query", "key", "value", "dense"], "use_rslora": True}
    config = TrainConfig(
        max_steps=2, batch_size=8, precision="fp32", progress=False, method="lora", method_options=options
    )
    Trainer(task, config, tmp_path).fit(sentiment(16), None, bases["bert"])
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["r"] == 4 and saved["lora_alpha"] == 8 and saved["use_rslora"] is True
    assert set(saved["target_modules"]) == {"query", "key", "value", "dense"}
    assert saved["task_type"] == "SEQ_CLS" and "classifier" in saved["modules_to_save"]


class Kill(Exception):
    """Stands for a kill -9 in the middle of a step."""


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_resume_after_kill(
    method: str, bases: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed mid-run and resumed, LoRA and AdaLoRA (killed inside its final phase: its rank allocation and
    importance averages travel in the checkpoint) continue with exactly the losses of an uninterrupted run."""
    options = {"tinit": 2, "tfinal": 6, "deltaT": 1} if method == "adalora" else {}

    def config() -> TrainConfig:
        return TrainConfig(
            epochs=4,
            batch_size=8,
            lr=2e-2,
            precision="fp32",
            progress=False,
            eval_every=4,
            method=method,
            method_options=options,
        )

    def fresh() -> Task:
        return get_task("classification", TaskConfig(max_length=32, stride=8))

    train, dev = list(sentiment(32)), list(sentiment(8, seed=1))
    whole = Trainer(fresh(), config(), tmp_path / "whole").fit(train, dev, bases["bert"])
    killed = fresh()
    calls = {"n": 0}
    real_loss = killed.loss

    def dying_loss(model: Any, batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 13:  # dies during step 14; the last checkpoint is step 12, inside AdaLoRA's final phase
            raise Kill
        return real_loss(model, batch)

    monkeypatch.setattr(killed, "loss", dying_loss)
    with pytest.raises(Kill):
        Trainer(killed, config(), tmp_path / "killed").fit(train, dev, bases["bert"])
    resumed = Trainer(fresh(), config(), tmp_path / "killed").fit(train, dev, bases["bert"], resume=True)
    assert len(resumed.losses) == len(whole.losses) == 16
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-6)
    if method == "adalora":
        saved = [json.loads((tmp_path / run / "adapter_config.json").read_text()) for run in ("whole", "killed")]
        assert saved[0]["rank_pattern"] == saved[1]["rank_pattern"] and saved[0]["rank_pattern"]
