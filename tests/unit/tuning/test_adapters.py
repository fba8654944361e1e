"""The adapter lifecycle on tiny models: several adapters on one base with per-call switching, merging to a plain
transformers folder, the predictors and `yulian eval/predict` on adapter folders, the CLI's method options, and
`yulian adapters info|list|merge`."""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from tiny_chat_lm import build as build_llama
from tiny_hf import save_random, single_thread  # noqa: F401
from tiny_setup import sentiment, write_jsonl

from yulian.cli import build_parser, main
from yulian.tuning.adapters import (
    AdapterModel,
    adapter_info,
    adapters_command,
    is_adapter_folder,
    load_adapter,
    load_model,
    merge,
)
from yulian.tuning.commands import eval_command, method_options_of, predict_command, train_command
from yulian.tuning.data import ChatExample, TextExample
from yulian.tuning.tasks import TaskConfig, get_task
from yulian.tuning.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")
COMMANDS: dict[str, Callable[..., Any]] = {
    "train": train_command,
    "eval": eval_command,
    "predict": predict_command,
    "adapters": adapters_command,
}
CLS = "AutoModelForSequenceClassification"


def _flipped(examples: list[TextExample]) -> list[TextExample]:
    """The same texts with the opposite labels: an adapter trained on them must disagree with the first."""
    swap = {"pos": "neg", "neg": "pos"}
    return [TextExample(e.text, label=swap[e.label or ""], line=e.line) for e in examples]


def _train(base: Path, out: Path, examples: list[Any], method: str = "lora", **options: Any) -> Path:
    task = get_task("classification", TaskConfig(max_length=32, stride=8))
    config = TrainConfig(
        epochs=4,
        batch_size=8,
        lr=3e-2,
        precision="fp32",
        dropout=0.0,
        progress=False,
        method=method,
        method_options=options,
    )
    Trainer(task, config, out).fit(examples, examples[:16], base)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    base = save_random(root / "base", "BertModel", initializer_range=0.2)
    data = list(sentiment(48))
    return {
        "base": base,
        "a": _train(base, root / "a", data),
        "b": _train(base, root / "b", _flipped(data)),
    }


def _logits(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    import torch

    model.eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


TEXTS = ["this was a great film", "very bad movie", "the quick film of it now"]


def test_several_adapters_on_one_base_switch_per_call(trained: dict[str, Path]) -> None:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(trained["a"]))
    alone_a = _logits(load_model(CLS, trained["a"]), tokenizer, TEXTS)
    alone_b = _logits(load_model(CLS, trained["b"]), tokenizer, TEXTS)
    assert not torch.allclose(alone_a, alone_b, atol=1e-2)  # trained on opposite labels: they disagree

    multi = AdapterModel().add_adapter("a", trained["a"]).add_adapter("b", trained["b"])
    assert set(multi.adapters) == {"a", "b"} and multi.active == "a"
    assert torch.allclose(_logits(multi.model, tokenizer, TEXTS), alone_a, atol=1e-4)
    with multi.use_adapter("b") as same:
        assert same is multi and multi.active == "b"
        assert torch.allclose(_logits(multi.model, tokenizer, TEXTS), alone_b, atol=1e-4)
    assert multi.active == "a"  # the block restored the previous adapter
    assert torch.allclose(_logits(multi.model, tokenizer, TEXTS), alone_a, atol=1e-4)
    multi.use_adapter("b")  # a plain call switches until further notice
    assert multi.active == "b"

    # a Runnable: classify with the active adapter; batch works; metadata per adapter
    predictions = multi.batch(TEXTS)
    expected = ["neg", "pos"][int(alone_b[0].argmax())]
    assert predictions[0].label == expected and set(predictions[0].scores) == {"neg", "pos"}
    assert abs(sum(predictions[0].scores.values()) - 1) < 1e-5
    with multi.use_adapter("a"):
        assert multi.invoke(TEXTS[0]).label == ["neg", "pos"][int(alone_a[0].argmax())]
    info = multi.adapters["a"]
    assert info.task == "classification" and info.labels == ["neg", "pos"] and info.method == "lora"
    assert "accuracy" in info.metrics and info.size_bytes > 0
    with pytest.raises(ValueError, match=r"no adapter named 'c' \(adapters: a, b\)"):
        multi.use_adapter("c")
    with pytest.raises(ValueError, match="already loaded"):
        multi.add_adapter("a", trained["a"])


def test_merge_writes_a_plain_transformers_folder(trained: dict[str, Path], tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = merge(trained["a"], tmp_path / "merged")
    assert not is_adapter_folder(out)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "yulian_task.json", "metrics.json"):
        assert (out / name).is_file(), name
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    plain = AutoModelForSequenceClassification.from_pretrained(str(out))  # no peft involved
    unmerged = load_adapter(trained["a"])
    assert torch.allclose(_logits(plain, tokenizer, TEXTS), _logits(unmerged, tokenizer, TEXTS), atol=1e-4)
    assert plain.config.id2label == {0: "neg", 1: "pos"}


def test_predictors_eval_and_predict_on_an_adapter_folder(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from yulian.models import HFClassifier
    from yulian.tuning.tasks import Task

    merged = merge(trained["a"], tmp_path / "merged")
    on_adapter = HFClassifier(str(trained["a"]), dtype="float32").batch(TEXTS)
    on_merged = HFClassifier(str(merged), dtype="float32").batch(TEXTS)
    assert [p.label for p in on_adapter] == [p.label for p in on_merged]
    for x, y in zip(on_adapter, on_merged, strict=True):
        assert abs(x.score - y.score) < 1e-4
    assert Task.from_dir(trained["a"]).predictor(trained["a"]).invoke(TEXTS[0]).label == on_merged[0].label

    data = write_jsonl(tmp_path / "test.jsonl", list(sentiment(16, seed=3)))
    assert main(["eval", str(trained["a"]), str(data), "--json"], COMMANDS) == 0
    from_adapter = json.loads(capsys.readouterr().out)
    assert main(["eval", str(merged), str(data), "--json"], COMMANDS) == 0
    assert json.loads(capsys.readouterr().out) == from_adapter

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(TEXTS) + "\n"))
    assert main(["predict", str(trained["a"])], COMMANDS) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == [p.label for p in on_merged]


def test_chat_model_on_an_sft_adapter(tmp_path: Path) -> None:
    from yulian.models.hf_chat import HFChatModel

    base = build_llama(tmp_path / "lm")
    chats = [ChatExample([{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}])] * 8
    task = get_task("sft", TaskConfig(max_length=64, stride=8))
    config = TrainConfig(epochs=4, batch_size=4, lr=2e-2, precision="fp32", progress=False, method="lora")
    Trainer(task, config, tmp_path / "sft").fit(chats, None, base)
    merged = merge(tmp_path / "sft", tmp_path / "merged")
    options: dict[str, Any] = {"max_tokens": 5, "temperature": 0.0}
    on_adapter = HFChatModel(str(tmp_path / "sft"), dtype="float32", **options).invoke("hello")
    on_merged = HFChatModel(str(merged), dtype="float32", **options).invoke("hello")
    assert on_adapter.content and on_adapter.content == on_merged.content


def test_cli_trains_lora_with_named_and_generic_options(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(Path("train.jsonl"), list(sentiment(24)))
    args = ["train", "--model", str(trained["base"]), "--train", "train.jsonl", "--out", "run", "--no-progress"]
    fast = ["--epochs", "1", "--batch-size", "8", "--precision", "fp32", "--max-length", "32"]
    lora = ["--method", "lora", "--lora-r", "4", "--lora-alpha", "8", "--target-modules", "query,key,value"]
    assert main([*args, *fast, *lora, "--method-option", "bias=lora_only", "use_rslora=true"], COMMANDS) == 0
    saved = json.loads(Path("run/adapter_config.json").read_text())
    assert (saved["r"], saved["lora_alpha"], saved["bias"], saved["use_rslora"]) == (4, 8, "lora_only", True)
    assert set(saved["target_modules"]) == {"query", "key", "value"}
    metrics = json.loads(Path("run/metrics.json").read_text())
    assert metrics["method"] == "lora" and metrics["config"]["method_options"]["r"] == 4

    Path("run.yaml").write_text(
        f"model: {trained['base']}\ntrain: train.jsonl\nout: run2\nepochs: 1\nprogress: false\nmax_length: 32\n"
        "method: adalora\nmethod_option:\n  init_r: 6\n  target_r: 2\n  tinit: 0\n  tfinal: 0\n"
    )
    assert main(["train", "--config", "run.yaml"], COMMANDS) == 0
    saved = json.loads(Path("run2/adapter_config.json").read_text())
    assert saved["peft_type"] == "ADALORA" and (saved["init_r"], saved["target_r"]) == (6, 2)

    capsys.readouterr()
    assert main([*args, "--lora-r", "4"], COMMANDS) == 1
    assert "--lora-r is an option of lora/adalora/ia3, not of method 'full'" in capsys.readouterr().err
    assert main([*args, "--method", "ia3", "--lora-r", "4"], COMMANDS) == 1
    assert "unknown ia3 option(s) r (options: target_modules, feedforward_modules" in capsys.readouterr().err
    assert main([*args, "--method", "lora", "--method-option", "r"], COMMANDS) == 1
    assert "--method-option takes KEY=VALUE, got 'r'" in capsys.readouterr().err
    assert main([*args, "--method", "lora", "--quantize", "4bit"], COMMANDS) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_method_options_of() -> None:
    flags = {"lora_r": 16, "target_modules": "all-linear", "method_option": ["dropout=0", "use_dora=yes"]}
    assert method_options_of("lora", flags) == {
        "dropout": 0.0,
        "use_dora": True,
        "r": 16,
        "target_modules": "all-linear",
    }
    assert method_options_of("full", {}) == {}


def test_help_lists_methods_and_their_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser(COMMANDS).parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for word in ("lora", "adalora", "ia3", "init_r", "target_r", "feedforward_modules", "--lora-r", "--method-option"):
        assert word in text, word


def test_adapters_command_info_list_merge(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["adapters", "info", str(trained["a"]), "--json"], COMMANDS) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["method"] == "lora" and info["task"] == "classification" and info["labels"] == ["neg", "pos"]
    assert info["peft_type"] == "LORA" and info["can_merge"] is True
    assert main(["adapters", "list", str(trained["a"].parent), "--json"], COMMANDS) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {Path(r["folder"]).name for r in rows} == {"a", "b"}
    assert main(["adapters", "merge", str(trained["b"]), "--out", str(tmp_path / "m")], COMMANDS) == 0
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert main(["adapters", "merge", str(trained["b"])], COMMANDS) == 1
    assert "adapters merge needs --out DIR" in capsys.readouterr().err
    assert main(["adapters", "info", str(trained["base"])], COMMANDS) == 1
    assert "is not an adapter folder: adapter_config.json is missing" in capsys.readouterr().err


def test_a_moved_base_model_is_named_and_can_be_given(trained: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    import torch
    from transformers import AutoTokenizer

    moved = tmp_path / "adapter"
    shutil.copytree(trained["a"], moved, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    meta = json.loads((moved / "yulian_adapter.json").read_text())
    meta["base_model"] = str(tmp_path / "gone")
    (moved / "yulian_adapter.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match=r"its base model .*gone.* cannot be found .*pass base=PATH"):
        load_adapter(moved)
    tokenizer = AutoTokenizer.from_pretrained(str(moved))
    given = load_adapter(moved, base=trained["base"])
    original = load_adapter(trained["a"])
    assert torch.allclose(_logits(given, tokenizer, TEXTS), _logits(original, tokenizer, TEXTS))
    assert adapter_info(moved).base_model.endswith("gone")


def test_a_registered_base_is_found_by_name_when_its_folder_moved(
    trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import torch
    from transformers import AutoTokenizer

    from yulian.models import registry
    from yulian.tuning.methods._peft import registered_name

    monkeypatch.setitem(
        registry._REGISTRY, "tiny-bert-test", registry.ModelSpec("tiny-bert-test", "encoder", path=str(trained["base"]))
    )
    assert registered_name(str(trained["base"])) == "tiny-bert-test"
    assert registered_name(str(tmp_path)) is None
    moved = tmp_path / "adapter"
    shutil.copytree(trained["a"], moved, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    meta = json.loads((moved / "yulian_adapter.json").read_text())
    meta.update(base_model=str(tmp_path / "gone"), base_name="tiny-bert-test")
    (moved / "yulian_adapter.json").write_text(json.dumps(meta))
    tokenizer = AutoTokenizer.from_pretrained(str(moved))
    by_name = _logits(load_adapter(moved), tokenizer, TEXTS)
    assert torch.allclose(by_name, _logits(load_adapter(trained["a"]), tokenizer, TEXTS))


def test_the_server_shares_one_base_model_between_adapters(trained: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from yulian.serving import KeyConfig, ModelConfig, ServeConfig, hash_key
    from yulian.serving.adapters import AdapterPredictor
    from yulian.serving.app import create_app

    config = ServeConfig(
        models=[
            ModelConfig(name="a", source=str(trained["a"])),
            ModelConfig(name="b", source=str(trained["b"])),
        ],
        keys=[KeyConfig(id="t", sha256=hash_key("yl-k"), models=("*",))],
        audit_log=str(tmp_path / "audit.jsonl"),
    )
    app = create_app(config)
    alone = {name: AdapterModel().add_adapter(name, trained[name]) for name in ("a", "b")}
    with TestClient(app) as client:
        for _ in range(500):  # the models warm up in the background; wait until ready
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.02)
        state = app.state.yulian
        served = [state.models[n].obj for n in ("a", "b")]
        assert all(isinstance(s, AdapterPredictor) for s in served) and state.models["a"].task == "classify"
        assert state.adapters.groups == 1 and served[0].group is served[1].group  # one base in memory
        for name in ("a", "b", "a"):  # switching back and forth gives each adapter's own predictions
            r = client.post(
                "/v1/classify", headers={"Authorization": "Bearer yl-k"}, json={"model": name, "input": TEXTS}
            )
            assert r.status_code == 200, r.text
            got = [d["label"] for d in r.json()["data"]]
            assert got == [p.label for p in alone[name].batch(TEXTS)]
            scores = r.json()["data"][0]["scores"]
            assert scores == pytest.approx(alone[name].invoke(TEXTS[0]).scores, abs=1e-4)
        base = served[0].group.model.model
        assert sorted(base.peft_config) == ["a", "b"]


def test_a_non_classification_adapter_is_refused_in_the_server(tmp_path: Path) -> None:
    from yulian.serving.adapters import AdapterPool

    folder = tmp_path / "ner-lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "task_type": "TOKEN_CLS"}))
    with pytest.raises(ValueError, match="TOKEN_CLS adapter: only classification adapters share a base"):
        AdapterPool().group(folder)
