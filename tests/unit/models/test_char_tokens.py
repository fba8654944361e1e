"""Chinese through a SentencePiece tokenizer, one token per character: the encoding and the deployed tagger."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_hf import SP_PIECES, sentencepiece_tokenizer, single_thread, tiny_config  # noqa: F401

from yulian.models import HFTokenClassifier
from yulian.models.char_tokens import char_encoding, has_cjk, word_marker_id

pytestmark = pytest.mark.usefixtures("single_thread")


def test_char_encoding_gives_each_character_one_token_with_its_offsets() -> None:
    sp = sentencepiece_tokenizer()
    marker = word_marker_id(sp)
    assert marker == SP_PIECES.index("\u2581")
    text = "张三 在北京"
    assert len(sp(list(text.replace(" ", "")), is_split_into_words=True)["input_ids"]) > len(text) + 1  # doubled
    enc = char_encoding(sp, [text, ""], marker)
    assert sp.convert_ids_to_tokens(enc["input_ids"][0]) == ["<s>", "张", "三", "\u2581在", "北", "京", "</s>"]
    assert enc["offset_mapping"][0][1:-1] == [(0, 1), (1, 2), (3, 4), (4, 5), (5, 6)]
    assert enc["special_tokens_mask"][0] == [1, 0, 0, 0, 0, 0, 1]
    assert enc.word_ids(0) == [None, 0, 1, 2, 3, 4, None]
    assert enc["input_ids"][1] == [1, 2]  # an empty text keeps its special tokens
    assert has_cjk("abc 北") and not has_cjk("abc")


def test_the_tagger_reads_chinese_character_by_character_with_a_sentencepiece_tokenizer(tmp_path: Path) -> None:
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(0)
    labels = ["O", "B-PER", "I-PER"]
    config = tiny_config(vocab_size=len(SP_PIECES), id2label=dict(enumerate(labels)), label2id={})
    BertForTokenClassification(config).eval().save_pretrained(str(tmp_path))
    sentencepiece_tokenizer(tmp_path)
    text = "张三 在北京"
    units = HFTokenClassifier(str(tmp_path), dtype="float32", aggregation="none", ignore_labels=()).invoke(text)
    assert [(u.start, u.end, u.text) for u in units] == [
        (0, 1, "张"),
        (1, 2, "三"),
        (3, 4, "在"),
        (4, 5, "北"),
        (5, 6, "京"),
    ]
    assert all(u.type in labels for u in units)
