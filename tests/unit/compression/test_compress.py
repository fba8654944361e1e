"""ONNX export, quantisation, the artefact format and the fidelity gate, on tiny inline BERT models."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import (
    save_random,
    sentiment,
    single_thread,
    tiny_texts,
    write_jsonl,
    write_texts,
)

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compress")


@pytest.fixture(scope="module")
def dev(root: Path) -> Path:
    return write_jsonl(root / "dev.jsonl", sentiment(60, seed=4))


@pytest.fixture(scope="module")
def encoder(root: Path) -> Path:
    """A random tiny encoder whose Linear output channels have very different scales (as trained models do):
    one scale per matrix (per-tensor) then quantises the small channels coarsely."""
    import torch
    from transformers import BertModel

    folder = save_random(root / "enc", "BertModel", seed=0, num_attention_heads=4)
    model = BertModel.from_pretrained(str(folder))
    torch.manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(torch.exp(1.5 * torch.randn(module.weight.shape[0], 1)))
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def texts_file(root: Path) -> Path:
    return write_texts(root / "texts.txt", tiny_texts())


def _inputs(torch: Any) -> dict[str, Any]:
    ids = torch.tensor(
        [[2, 10, 11, 12, 13, 3, 0, 0, 0], [2, 14, 15, 16, 17, 18, 19, 20, 3], [2, 21, 3, 0, 0, 0, 0, 0, 0]]
    )
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids)}


# ============================================================================================ export
@pytest.mark.parametrize("kind", ["classifier", "encoder"])
def test_onnx_export_matches_torch_on_other_shapes(kind: str, classifier: Path, encoder: Path, tmp_path: Path) -> None:
    import torch

    from yulian.compression.export import export_onnx, load_torch_model
    from yulian.compression.runtime import OrtModel, session

    model, _, found = load_torch_model(classifier if kind == "classifier" else encoder)
    assert found == kind
    model.train()  # export must leave it in eval mode whatever it was before
    file = export_onnx(model, tmp_path / "m.onnx", kind)
    assert not model.training
    ort_model = OrtModel(session(file, threads=1), model.config)
    inputs = _inputs(torch)  # batch 3, length 9: not the export example's shape (2 x 8)
    name = "logits" if kind == "classifier" else "last_hidden_state"
    with torch.no_grad():
        expected = getattr(model(**inputs), name)
    got = getattr(ort_model(**inputs), name)
    assert got.shape == expected.shape
    if kind == "encoder":  # padded positions are free to differ: compare real tokens only
        mask = inputs["attention_mask"].bool()
        expected, got = expected[mask], got[mask]
    assert torch.allclose(got, expected, atol=1e-4), float((got - expected).abs().max())


def test_ort_model_fills_missing_inputs_and_ignores_labels(classifier: Path, tmp_path: Path) -> None:
    import torch

    from yulian.compression.export import export_onnx, load_torch_model
    from yulian.compression.runtime import OrtModel, session

    model, _, _ = load_torch_model(classifier)
    ort_model = OrtModel(session(export_onnx(model, tmp_path / "m.onnx", "classifier")), model.config)
    ids = _inputs(torch)["input_ids"][1:2]
    full = ort_model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids))
    bare = ort_model(input_ids=ids, labels=torch.tensor([1]))
    assert torch.equal(full.logits, bare.logits) and torch.equal(full[0], bare.logits)
    with pytest.raises(AttributeError, match="no output 'start_logits'"):
        _ = bare.start_logits


# ============================================================================================ quantisation
def test_per_channel_int8_keeps_embeddings_closer_than_per_tensor(encoder: Path, texts_file: Path, root: Path) -> None:
    from yulian.compression import Thresholds, compress

    loose = Thresholds(min_cosine=0.0, min_worst_cosine=0.0)
    channel = compress(encoder, "onnx-int8", texts_file, root / "enc-pc", thresholds=loose, progress=False).report
    tensor = compress(
        encoder, "onnx-int8-per-tensor", texts_file, root / "enc-pt", thresholds=loose, progress=False
    ).report
    assert channel.cosine_mean is not None and tensor.cosine_mean is not None
    assert channel.cosine_min is not None and tensor.cosine_min is not None
    assert channel.cosine_mean > tensor.cosine_mean
    assert channel.cosine_min > tensor.cosine_min
    assert channel.cosine_mean > 0.99


def test_torch_int8_and_bf16_artifacts_round_trip(classifier: Path, dev: Path, root: Path) -> None:
    from yulian.compression import compress
    from yulian.models import load

    reference = load(str(classifier), dtype="float32")
    texts = [e.text for e in sentiment(20, seed=9)]
    expected = [p.label for p in reference.batch(texts)]
    for method, dtype, file in (("torch-int8", "int8", "model_int8.pt"), ("bf16", "bfloat16", "model.safetensors")):
        result = compress(classifier, method, dev, root / method, progress=False)
        assert result.report.passed and result.info.dtype == dtype and (root / method / file).is_file()
        assert result.info.sizes["ratio"] < 0.8  # int8 / bf16 weights are smaller than float32
        predictor = load(str(root / method))
        assert type(predictor).__name__ == "CompressedClassifier"
        assert [p.label for p in predictor.batch(texts)] == expected
        assert predictor.runtime_info()["dtype"] == dtype


# ============================================================================================ artefacts
def test_onnx_artifact_round_trip_through_registry_load(classifier: Path, dev: Path, root: Path) -> None:
    from yulian.compression import compress, is_artifact, read_info
    from yulian.models import HFClassifier, load

    out = root / "clf-onnx"
    result = compress(classifier, "onnx", dev, out, progress=False)
    assert result.path == out and is_artifact(out) and not (root / "clf-onnx.partial").exists()
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer.json", "yulian_task.json", "compression.json"} <= names
    assert "model.safetensors" not in names
    info = read_info(out)
    assert info.method == "onnx" and info.kind == "classifier" and info.backend == "onnx" and info.passed
    saved = json.loads((out / "compression.json").read_text())
    assert saved["fidelity"]["original"]["accuracy"] == 1.0 and saved["fidelity"]["agreement"] == 1.0
    assert saved["sizes"]["artifact_bytes"] == (out / "model.onnx").stat().st_size
    predictor = load(str(out))
    assert isinstance(predictor, HFClassifier) and not predictor.loaded  # cheap until first use
    reference = HFClassifier(str(classifier), dtype="float32")
    texts = ["good film", ("this was", "awful"), "a very bad movie"]
    for got, want in zip(predictor.batch(texts), reference.batch(texts), strict=True):
        assert got.label == want.label
        assert got.scores == pytest.approx(want.scores, abs=1e-4)
    assert predictor.invoke("great") == predictor.batch(["great"])[0]
    assert predictor.runtime_info()["backend"] == "onnx"
    with pytest.raises(ValueError, match="serves task 'classify', not 'embed'"):
        load(str(out), task="embed")


def test_eval_and_predict_commands_run_on_an_artifact(
    classifier: Path, dev: Path, root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from yulian.compression import compress
    from yulian.tuning.commands import eval_command, predict_command

    out = root / "clf-int8-eval"
    compress(classifier, "onnx-int8", dev, out, progress=False)
    capsys.readouterr()
    assert eval_command(str(classifier), str(dev), json=True) == 0
    original = json.loads(capsys.readouterr().out)
    assert eval_command(str(out), str(dev), json=True) == 0
    compressed = json.loads(capsys.readouterr().out)
    assert set(compressed) == set(original) and abs(compressed["accuracy"] - original["accuracy"]) <= 0.05
    monkeypatch.setattr(sys, "stdin", io.StringIO("good film\n\na very bad movie\n"))
    assert predict_command(str(out)) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["good film", "a very bad movie"]
    assert all(line["label"] in line["scores"] for line in lines)


def test_embedder_artifact_round_trip(encoder: Path, texts_file: Path, root: Path) -> None:
    import numpy as np

    from yulian.compression import compress
    from yulian.models import HFEmbedder, load

    compress(encoder, "onnx", texts_file, root / "enc-onnx", progress=False)
    embedder = load(str(root / "enc-onnx"))
    assert type(embedder).__name__ == "CompressedEmbedder" and embedder.dim == 32
    texts = tiny_texts()[:5]
    got = embedder.embed_numpy(texts)
    want = HFEmbedder(str(encoder), dtype="float32").embed_numpy(texts)
    assert np.allclose(got, want, atol=1e-4)
    assert embedder.embed(texts[:1])[0] == pytest.approx(got[0].tolist(), abs=1e-6)


def test_bad_artifact_files_get_clear_errors(root: Path, classifier: Path, dev: Path) -> None:
    from yulian.compression import compress, load_artifact, read_info

    with pytest.raises(FileNotFoundError, match=r"compression\.json is missing"):
        read_info(classifier)
    out = compress(classifier, "onnx", dev, root / "clf-bad", progress=False).path
    data = json.loads((out / "compression.json").read_text())
    (out / "compression.json").write_text(json.dumps({**data, "colour": "red"}))
    with pytest.raises(ValueError, match=r"unknown field.*colour"):
        load_artifact(out)
    (out / "compression.json").write_text(json.dumps(data))
    (out / "model.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=r"model file model\.onnx is missing"):
        load_artifact(out).warm_up()


# ============================================================================================ the gate
@pytest.fixture
def broken_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compression that breaks the model: the exported classifier has its two label rows swapped."""
    import torch

    from yulian.compression import export

    real = export.load_torch_model

    def swapped(path: Any, kind: Any = None) -> Any:
        model, tokenizer, found = real(path, kind)
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight.flip(0))
            model.classifier.bias.copy_(model.classifier.bias.flip(0))
        return model, tokenizer, found

    monkeypatch.setattr(export, "load_torch_model", swapped)


@pytest.mark.usefixtures("broken_head")
def test_gate_refuses_a_broken_artifact_with_report_and_exit_3(
    classifier: Path, dev: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from yulian.compression import compress_command, load_artifact

    out = root / "broken"
    status = compress_command(model=str(classifier), method="onnx-int8", data=str(dev), out=str(out), json=True)
    assert status == 3
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False
    assert report["original"]["accuracy"] == 1.0 and report["compressed"]["accuracy"] == 0.0
    assert report["drop"] == 100.0 and report["agreement"] == 0.0
    assert any("accuracy fell 100.00 points (max_drop 0.5)" in r for r in report["reasons"])
    assert not out.exists()  # nothing deployable under the requested name
    refused = root / "broken.refused"
    assert report["out"] == str(refused)
    with pytest.raises(ValueError, match=r"refused by the fidelity gate.*accuracy fell"):
        load_artifact(refused)
    assert load_artifact(refused, allow_refused=True).invoke("good film").label == "neg"  # the swapped head


@pytest.mark.usefixtures("broken_head")
def test_gate_text_report_and_force(
    classifier: Path, dev: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from yulian.compression import compress_command, read_info

    status = compress_command(model=str(classifier), method="onnx", data=str(dev), out=str(root / "b2"), max_drop=200)
    assert status == 0  # a threshold nobody can cross lets it through
    assert read_info(root / "b2").fidelity["drop"] == 100.0
    status = compress_command(
        model=str(classifier), method="onnx", data=str(dev), out=str(root / "b3"), min_agreement=0.9, max_drop=200
    )
    err = capsys.readouterr().err
    assert status == 3 and "REFUSED: predictions agree on 0.0000 of examples (min_agreement 0.9)" in err
    assert "fidelity on 60 dev examples (classifier): REFUSED" in err
    forced = compress_command(model=str(classifier), method="onnx", data=str(dev), out=str(root / "b4"), force=True)
    assert forced == 3 and read_info(root / "b4").passed is False  # kept, but marked refused


def test_gate_on_embeddings_refuses_low_cosine(encoder: Path, texts_file: Path, root: Path) -> None:
    from yulian.compression import CompressionRefused, Thresholds, compress

    with pytest.raises(CompressionRefused) as caught:
        compress(
            encoder,
            "onnx-int8-per-tensor",
            texts_file,
            root / "enc-strict",
            thresholds=Thresholds(min_cosine=0.99999),
            progress=False,
        )
    report = caught.value.report
    assert not report.passed and report.cosine_mean is not None and report.cosine_mean < 0.99999
    assert "mean embedding cosine" in report.reasons[0] and caught.value.path.name == "enc-strict.refused"


def test_command_input_errors(classifier: Path, dev: Path, root: Path) -> None:
    from yulian.compression import Thresholds, compress_command

    with pytest.raises(ValueError, match="needs --data, --out"):
        compress_command(model=str(classifier))
    with pytest.raises(ValueError, match=r"unknown compression method .onnx-int4.*onnx-int8"):
        compress_command(model=str(classifier), method="onnx-int4", data=str(dev), out=str(root / "x"))
    with pytest.raises(FileExistsError, match="not a compressed artefact"):
        compress_command(model=str(classifier), data=str(dev), out=str(classifier))
    with pytest.raises(ValueError, match="max_drop"):
        Thresholds(max_drop=-1)


def test_cli_parses_the_command(classifier: Path, dev: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`yulian compress` as the lead registers it: {"compress": compress_command} in yulian.cli.all_commands."""
    from yulian.cli import main
    from yulian.compression import compress_command

    out = root / "cli"
    argv = ["compress", "--model", str(classifier), "--method", "onnx-int8", "--data", str(dev), "--out", str(out)]
    status = main([*argv, "--max-drop", "1.5", "--min-agreement", "0.9", "--json"], {"compress": compress_command})
    result = json.loads(capsys.readouterr().out)
    assert status == 0 and result["passed"] is True and result["out"] == str(out)
    assert result["thresholds"] == {"max_drop": 1.5, "min_agreement": 0.9, "min_cosine": 0.99, "min_worst_cosine": 0.9}
    assert main(["compress", "--model", str(classifier), "--method", "int3"], {"compress": compress_command}) == 1
    assert "needs --data, --out" in capsys.readouterr().err


def test_fp32_ffn_output_keeps_those_matmuls_in_float(encoder: Path, texts_file: Path, root: Path) -> None:
    import onnx

    from yulian.compression import Thresholds, compress

    loose = Thresholds(min_cosine=0.0, min_worst_cosine=0.0)
    kept = compress(
        encoder,
        "onnx-int8-per-tensor",
        texts_file,
        root / "ffn32",
        thresholds=loose,
        fp32_ffn_output=True,
        progress=False,
    )
    plain = compress(encoder, "onnx-int8-per-tensor", texts_file, root / "ffn8", thresholds=loose, progress=False)
    assert kept.info.options["fp32_ffn_output"] is True
    nodes = onnx.load(str(root / "ffn32" / "model.onnx")).graph.node
    float_matmuls = sorted(n.name for n in nodes if n.op_type == "MatMul" and "/dense/" in n.name)
    assert float_matmuls == [f"/inner/encoder/layer.{i}/output/dense/MatMul" for i in range(2)]
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in nodes)
    assert kept.report.cosine_mean is not None and plain.report.cosine_mean is not None
    assert kept.report.cosine_mean > plain.report.cosine_mean


def test_tagger_and_qa_artifacts_without_a_task_gate_on_agreement(root: Path) -> None:
    from yulian.compression import compress
    from yulian.compression.fidelity import UNLABELLED_MIN_AGREEMENT
    from yulian.models import HFQuestionAnswerer, HFTokenClassifier, load

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tagger = save_random(
        root / "tagger", "BertForTokenClassification", seed=3, num_labels=5, id2label=dict(enumerate(labels))
    )
    texts = ["john smith lives in paris", "张三在北京工作", "who lives in new york ?"]
    result = compress(tagger, "onnx", write_texts(root / "ner.txt", texts), root / "tagger-onnx", progress=False)
    report = result.report
    assert report.kind == "token-classifier" and report.metric is None and report.agreement == 1.0
    assert report.thresholds["min_agreement"] is None and report.passed  # UNLABELLED_MIN_AGREEMENT applied
    predictor = load(str(root / "tagger-onnx"))
    assert type(predictor).__name__ == "CompressedTokenClassifier"
    got_entities = predictor.batch(texts)
    want_entities = HFTokenClassifier(str(tagger), dtype="float32").batch(texts)
    assert any(got_entities)
    for got_row, want_row in zip(got_entities, want_entities, strict=True):
        assert [(e.text, e.type, e.start, e.end) for e in got_row] == [
            (e.text, e.type, e.start, e.end) for e in want_row
        ]
        assert [e.score for e in got_row] == pytest.approx([e.score for e in want_row], abs=1e-5)

    qa = save_random(root / "qa", "BertForQuestionAnswering", seed=4, max_position_embeddings=512)
    records = [{"question": "who lives in paris ?", "context": "john smith lives in paris . 张三在北京工作"}]
    data = root / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert compress(qa, "onnx", data, root / "qa-onnx", progress=False).report.agreement == 1.0
    answerer = load(str(root / "qa-onnx"))
    got, want = answerer.invoke(records[0]), HFQuestionAnswerer(str(qa), dtype="float32").invoke(records[0])
    assert (got.start, got.end, got.text) == (want.start, want.end, want.text)
    assert got.score == pytest.approx(want.score, abs=1e-4) and UNLABELLED_MIN_AGREEMENT == 0.98
