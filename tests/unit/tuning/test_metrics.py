"""SQuAD exact match / F1 (English and Chinese), seqeval entity scores and perplexity, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from yulian.tuning.metrics import (
    cjk,
    entity_report,
    entity_scores,
    exact_match,
    normalize_answer,
    perplexity,
    qa_f1,
    squad_em_f1,
    zh_segments,
)


def test_normalize_answer_follows_the_official_squad_script() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear; the end.") == "apple pear end"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("Denver Broncos'") == "denver broncos"


def test_exact_match_ignores_case_articles_punctuation_and_takes_the_best_gold() -> None:
    assert exact_match("the Eiffel Tower.", ["Eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel tower"]) == 0.0
    assert exact_match("Denver", ["Broncos", "denver!"]) == 1.0


def test_f1_is_token_overlap_max_over_golds() -> None:
    # pred tokens [cat, sat, on, mat], gold [cat, sat]: P = 2/4, R = 2/2 -> F1 = 2/3
    assert qa_f1("the cat sat on the mat", ["a cat sat"]) == pytest.approx(2 / 3)
    # second gold: [cat, sat, on, mat] exactly -> 1.0 wins
    assert qa_f1("the cat sat on the mat", ["a cat sat", "cat sat on a mat"]) == 1.0
    assert qa_f1("dog", ["a cat"]) == 0.0
    # repeated tokens count with multiplicity: pred [a_, b, b] vs gold [b]: common 1, P = 1/2, R = 1 -> 2/3
    assert qa_f1("b b", ["b"]) == pytest.approx(2 / 3)


def test_unanswerable_questions_score_only_the_empty_answer() -> None:
    assert exact_match("", []) == 1.0
    assert qa_f1("", []) == 1.0
    assert qa_f1("Paris", []) == 0.0
    assert qa_f1("", ["Paris"]) == 0.0


def test_squad_em_f1_averages_over_questions() -> None:
    scores = squad_em_f1(["the Eiffel Tower", "the cat sat on the mat"], [["Eiffel tower"], ["a cat sat"]])
    assert scores["exact_match"] == pytest.approx(0.5)
    assert scores["f1"] == pytest.approx((1.0 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="2 predictions but 1"):
        squad_em_f1(["a", "b"], [["a"]])


def test_chinese_answers_are_scored_by_character_without_punctuation() -> None:
    assert cjk("北京") and not cjk("Beijing")
    assert zh_segments("我在Beijing 2008年！") == ["我", "在", "beijing", "2008", "年"]
    # as in the CMRC 2018 script, punctuation goes before segmenting, so the runs around it join
    assert zh_segments("光荣和ω-Force") == ["光", "荣", "和", "ωforce"]
    # the language is chosen per gold answer: English golds are scored the SQuAD way even for a CJK prediction
    assert exact_match("the Yuán Cháo", ["Yuán Cháo", "元朝"]) == 1.0
    assert qa_f1("木眞; pinyin: Tiěmùzhēn.", ["Tiěmùzhēn"]) == pytest.approx(2 * (1 / 3) / (1 + 1 / 3))
    assert exact_match("天安门！", ["天安门"]) == 1.0
    # CMRC 2018: longest common substring of the segments: 天安门 (3); P = 3/5, R = 3/6 -> F1 = 6/11
    assert qa_f1("北京天安门", ["北京的天安门。"]) == pytest.approx(6 / 11)
    # "2008年" vs "2008年8月": segments [2008, 年] vs [2008, 年, 8, 月]: LCS 2, P = 1, R = 1/2 -> 2/3
    assert qa_f1("2008年", ["2008年8月"]) == pytest.approx(2 / 3)
    assert squad_em_f1(["北京"], [["北京", "中国北京"]]) == {"exact_match": 1.0, "f1": 1.0}


def test_entity_scores_bio_is_lenient_and_bioes_strict() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert entity_scores(gold, gold) == {"f1": 1.0, "precision": 1.0, "recall": 1.0}
    # conlleval: an I- after O starts an entity, so [I-PER, I-PER] matches [B-PER, I-PER]
    lenient = entity_scores(gold, [["I-PER", "I-PER", "O", "O"]], "bio")
    assert lenient["precision"] == 1.0 and lenient["recall"] == 0.5 and lenient["f1"] == pytest.approx(2 / 3)
    # strict IOBES: an entity must be well formed: [I-PER, E-PER] is no entity
    gold_bioes = [["B-PER", "E-PER", "S-LOC"]]
    strict = entity_scores(gold_bioes, [["I-PER", "E-PER", "S-LOC"]], "bioes")
    assert strict == {"f1": pytest.approx(2 / 3), "precision": 1.0, "recall": 0.5}


def test_entity_scores_read_bmes_middles() -> None:
    gold = [["B-NR", "M-NR", "E-NR", "S-NS"]]
    assert entity_scores(gold, gold, "bmes")["f1"] == 1.0
    wrong = entity_scores(gold, [["B-NR", "M-NR", "E-NS", "S-NS"]], "bmes")
    # strict: B-NR M-NR E-NS is no entity, S-NS is right -> P = 1/1, R = 1/2
    assert wrong["precision"] == 1.0 and wrong["recall"] == 0.5
    report = entity_report(gold, gold, "bmes")
    assert "NR" in report and "NS" in report and "support" in report
    with pytest.raises(ValueError, match="unknown tag scheme"):
        entity_scores(gold, gold, "iob3")


def test_perplexity() -> None:
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(5.0)) == pytest.approx(5.0)
    assert perplexity(1e6) == math.inf


def test_a_chinese_data_set_scores_its_english_answers_the_cmrc_way() -> None:
    from yulian.tuning.metrics import qa_language

    assert qa_language(["北京是中国的首都。", "上海在东边。", "Paris is in France."]) == "zh"
    assert qa_language(["Paris is in France.", "成吉思汗 (Genghis Khan) was ..."]) == "en"
    # CMRC 2018 keeps English articles and splits English on spaces: "the BCPL" vs "BCPL": P = 1/2, R = 1
    assert exact_match("the BCPL", ["BCPL"], "zh") == 0.0
    assert qa_f1("the BCPL", ["BCPL"], "zh") == pytest.approx(2 / 3)
    assert squad_em_f1(["the BCPL"], [["BCPL"]], "en") == {"exact_match": 1.0, "f1": 1.0}
    with pytest.raises(ValueError, match="language must be one of"):
        qa_f1("a", ["a"], "fr")
