"""The "ner" task on tiny BERT models built here: sub-word alignment, Chinese characters, windows, schemes,
entity-level evaluation against a hand-crafted tagger, and a plain training loop that lowers the loss."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from tiny_hf import (  # noqa: F401
    save_crafted_tagger,
    save_random,
    save_tokenizer,
    sentencepiece_tokenizer,
    single_thread,
)

from yulian.models.char_tokens import drop_char_markers
from yulian.tuning.data import DataError, TokenExample
from yulian.tuning.tasks import Task, TaskConfig, get_task
from yulian.tuning.tasks.token_classification import TokenClassificationTask, window_starts

pytestmark = pytest.mark.usefixtures("single_thread")

EN = TokenExample(["John", "Smiths", "lives", "in", "Parisian"], ["B-PER", "I-PER", "O", "O", "B-LOC"])
ZH = TokenExample(list("张三丰在北京工作"), ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"], sep="")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return save_tokenizer(tmp_path_factory.mktemp("tok"))


def _task(examples: list[TokenExample], **config: Any) -> TokenClassificationTask:
    task = get_task("ner", TaskConfig(**config))
    assert isinstance(task, TokenClassificationTask)
    task.setup(examples, "unused")
    return task


def test_labels_go_on_first_subwords_only(tokenizer: Any) -> None:
    task = _task([EN])
    [feature] = task.encode([EN], tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(feature["input_ids"])
    assert tokens == ["[CLS]", "john", "smith", "##s", "lives", "in", "paris", "##ian", "[SEP]"]
    labels = [None if i == -100 else task.labels.label(i) for i in feature["labels"]]  # type: ignore[union-attr]
    assert labels == [None, "B-PER", "I-PER", None, "O", "O", "B-LOC", None, None]

    every = _task([EN], label_all_tokens=True)
    [feature] = every.encode([EN], tokenizer)
    labels = [None if i == -100 else every.labels.label(i) for i in feature["labels"]]  # type: ignore[union-attr]
    assert labels == [None, "B-PER", "I-PER", "I-PER", "O", "O", "B-LOC", "B-LOC", None]


def test_chinese_characters_align_one_to_one(tokenizer: Any) -> None:
    task = _task([ZH])
    [feature] = task.encode([ZH], tokenizer)
    ids, labels = feature["input_ids"][1:-1], feature["labels"][1:-1]
    assert tokenizer.convert_ids_to_tokens(ids) == ZH.tokens
    assert [task.labels.label(i) for i in labels] == ZH.tags  # type: ignore[union-attr]
    assert feature["labels"][0] == feature["labels"][-1] == -100


def test_sentencepiece_word_markers_are_dropped_so_characters_align_one_to_one() -> None:
    sp = sentencepiece_tokenizer()
    plain = sp(ZH.tokens, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert len(plain) > len(ZH.tokens)  # "▁" + character: the doubling the task must undo
    task = _task([ZH])
    [feature] = task.encode([ZH], sp)
    tokens = sp.convert_ids_to_tokens(feature["input_ids"])
    assert tokens == ["<s>", "张", "三", "丰", "\u2581在", "北", "京", "工", "作", "</s>"]
    assert [task.labels.label(i) for i in feature["labels"][1:-1]] == ZH.tags  # type: ignore[union-attr]
    # words longer than one character keep all their pieces (English through the same tokenizer)
    assert drop_char_markers([4, 9, 4, 10], [0, 0, 1, 1], ["ab", "c"], 4) == ([4, 9, 10], [0, 0, 1])


def test_schemes_convert_and_label_sets_cover_every_prefix(tokenizer: Any) -> None:
    bmes = TokenExample(list("张三丰在北京"), ["B-NR", "M-NR", "E-NR", "O", "B-NS", "E-NS"], sep="")
    found = _task([bmes])
    assert found.scheme == "bmes"
    assert found.labels.labels == (  # type: ignore[union-attr]
        "O", "B-NR", "B-NS", "E-NR", "E-NS", "M-NR", "M-NS", "S-NR", "S-NS",
    )  # fmt: skip
    as_bio = _task([bmes], tag_scheme="bio")
    assert as_bio.tags(bmes) == ["B-NR", "I-NR", "I-NR", "O", "B-NS", "I-NS"]
    assert as_bio.labels.labels == ("O", "B-NR", "B-NS", "I-NR", "I-NS")  # type: ignore[union-attr]
    assert _task([EN], tag_scheme="bioes").tags(EN) == ["B-PER", "E-PER", "O", "O", "S-LOC"]
    with pytest.raises(ValueError, match="no entity tags"):
        _task([TokenExample(["a"], ["O"])])
    unseen = TokenExample(["John", "works", "at", "Apple"], ["B-PER", "O", "O", "B-ORG"], line=7)
    with pytest.raises(DataError, match=r"line 7: unknown label 'B-PER'"):
        as_bio.encode([unseen], tokenizer)
    with pytest.raises(ValueError, match="stride=6"):
        _task([EN], max_length=8, stride=6).encode([EN], tokenizer)
    with pytest.raises(RuntimeError, match="setup"):
        TokenClassificationTask().encode([EN], tokenizer)


def test_long_sentences_are_windowed_with_stride(tokenizer: Any) -> None:
    assert window_starts(5, 6, 2) == [0]
    assert window_starts(12, 6, 2) == [0, 4, 6]
    long = TokenExample(list("张三丰在北京工作我在上海工作"), ["O"] * 14, sep="")
    long.tags[0:3] = ["B-PER", "I-PER", "I-PER"]
    long.tags[9:11] = ["B-LOC", "I-LOC"]
    task = _task([long], max_length=8, stride=2)
    features = task.encode([long], tokenizer)
    assert len(features) == 3 and all(len(f["input_ids"]) <= 8 for f in features)
    covered = sorted({f["start"] + j for f in features for j in range(len(f["word_ids"]))})
    assert covered == list(range(14))
    for f in features:  # every window's labels are the gold tags of its characters
        tags = [task.labels.label(i) for i in f["labels"][1:-1]]  # type: ignore[union-attr]
        assert tags == long.tags[f["start"] : f["start"] + len(tags)]


def test_evaluate_merges_windows_and_scores_entities(tmp_path: Path) -> None:
    sentence = TokenExample(list("张三丰在北京工作我在上海工作"), ["O"] * 14, sep="")
    sentence.tags[0:3] = ["B-PER", "I-PER", "I-PER"]
    sentence.tags[4:6] = ["B-LOC", "I-LOC"]
    sentence.tags[10:12] = ["B-LOC", "I-LOC"]
    task = _task([sentence], max_length=8, stride=3)
    labels = list(task.labels.labels)  # type: ignore[union-attr]
    tags = {"张": "B-PER", "三": "I-PER", "丰": "I-PER", "北": "B-LOC", "京": "I-LOC", "上": "B-LOC", "海": "I-LOC"}
    folder = save_crafted_tagger(tmp_path / "tagger", labels, tags)
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert task.predict_tags(model, tokenizer, [sentence]) == [sentence.tags]
    assert task.evaluate(model, tokenizer, [sentence]) == {"f1": 1.0, "precision": 1.0, "recall": 1.0}
    # gold without the last LOC: the model's extra entity costs precision only
    fewer = TokenExample(sentence.tokens, sentence.tags[:10] + ["O"] * 4, sep="")
    scores = task.evaluate(model, tokenizer, [fewer])
    assert scores["recall"] == 1.0 and scores["precision"] == pytest.approx(2 / 3)
    assert "LOC" in task.report(model, tokenizer, [fewer])
    # a dev entity type the training data never had is scored (missed), not an error
    unseen = TokenExample(sentence.tokens, [*sentence.tags[:6], "B-ORG", "I-ORG", *sentence.tags[8:]], sep="")
    assert task.evaluate(model, tokenizer, [unseen])["recall"] == pytest.approx(3 / 4)
    # deployment: the saved task round-trips and its predictor reads the model folder
    task.save(folder)
    loaded = Task.from_dir(folder)
    assert isinstance(loaded, TokenClassificationTask) and loaded.labels == task.labels and loaded.scheme == "bio"
    entities = loaded.predictor(folder).invoke("张三丰在北京工作")
    assert [(e.text, e.type) for e in entities] == [("张三丰", "PER"), ("北京", "LOC")]


def test_a_plain_training_loop_lowers_the_loss(tmp_path: Path) -> None:
    import torch

    base = save_random(tmp_path / "base", "BertModel")
    data = [EN, ZH, TokenExample(["the", "fox", "works", "at", "apple"], ["O", "O", "O", "O", "B-ORG"])]
    task = _task(data)
    model, tokenizer = task.build_model(base)
    assert model.config.id2label == task.labels.id2label  # type: ignore[union-attr]
    batch = task.collate(task.encode(data, tokenizer), tokenizer)
    assert batch["labels"].shape == batch["input_ids"].shape == batch["attention_mask"].shape
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(20):
        loss = task.loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert task.evaluate(model, tokenizer, data)["f1"] > 0.5
    assert model.training  # evaluate restores the training mode
