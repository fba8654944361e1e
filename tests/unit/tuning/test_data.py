"""Readers of yulian.tuning.data: every format, every bad-record kind and its exact message, skip_bad counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yulian.tuning.data import (
    ChatExample,
    DataConfig,
    DataError,
    LabelMap,
    QAExample,
    TextExample,
    TokenExample,
    read_records,
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # messages show paths as given: relative names read like the user stories


def write(name: str, text: str, encoding: str = "utf-8") -> str:
    Path(name).write_bytes(text.encode(encoding))
    return name


def jsonl(name: str, rows: list[object]) -> str:
    return write(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# ------------------------------------------------------------------------------------------- classification
def test_jsonl_classification_labels_pairs_and_lines() -> None:
    path = jsonl(
        "d.jsonl",
        [
            {"text": " good ", "label": "pos", "q": "x"},
            {"text": "bad", "label": 0, "q": "y"},
            {"text": "so", "label": 1.0, "q": "z"},
        ],
    )
    records = read_records(path, text_pair_field="q")
    assert (records.fmt, records.task, records.n_good, records.n_bad) == ("jsonl", "classification", 3, 0)
    first = records.of(TextExample)[0]
    assert (first.text, first.label, first.text_pair, first.line) == ("good", "pos", "x", 1)
    assert [e.label for e in records] == ["pos", "0", "1"]
    assert records.labels() == ["0", "1", "pos"]
    assert not records.multi_label


def test_multi_label_as_list_or_separated_string() -> None:
    records = read_records(jsonl("m.jsonl", [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": ["z"]}]))
    assert records[0].labels == ["x", "y"] and records[0].label is None and records.multi_label
    csv_path = write("m.csv", "text,tags\nfirst,x| y\nsecond,\nthird,z\n")
    records = read_records(csv_path, label_field="tags", label_sep="|")
    assert [e.labels for e in records] == [["x", "y"], [], ["z"]]
    assert records[1].targets == []


def test_malformed_json_message_matches_the_user_story() -> None:
    rows = "".join(json.dumps({"text": f"t{i}", "label": "a"}) + "\n" for i in range(1203))
    bad = '{"text": "hello", "label": "a" "extra": 1}\n'
    path = write("broken.jsonl", rows + bad + '{"text": "last", "label": "b"}\n')
    with pytest.raises(DataError) as info:
        read_records(path)
    column = bad.index('"extra"') + 1
    assert str(info.value) == (
        f"broken.jsonl line 1,204: not valid JSON (Expecting ',' delimiter: column {column}). "
        "Use --skip-bad to skip bad lines."
    )
    assert (info.value.path, info.value.line) == ("broken.jsonl", 1204)
    records = read_records(path, skip_bad=True)
    assert (records.n_good, records.n_bad, records.n_read) == (1204, 1, 1205)
    assert records.bad[0].line == 1204 and records.bad[0].kind == "json"
    assert "1 bad skipped (json 1)" in records.summary()


def test_csv_missing_column_says_did_you_mean() -> None:
    path = write("data.csv", "text,label\nhello,a\n")
    with pytest.raises(DataError) as info:
        read_records(path, label_field="labl")
    assert str(info.value) == "data.csv has no column 'labl' (columns: text, label). Did you mean 'label'?"
    assert info.value.field == "labl" and info.value.line is None
    with pytest.raises(DataError, match=r"^data.csv has no column 'zzz' \(columns: text, label\)$"):
        read_records(path, text_field="zzz")


def test_jsonl_missing_field_in_first_record_is_fatal_later_is_a_bad_record() -> None:
    with pytest.raises(
        DataError, match=r"^f.jsonl has no field 'labl' \(fields: text, label\). Did you mean 'label'\?$"
    ):
        read_records(jsonl("f.jsonl", [{"text": "a", "label": "x"}]), label_field="labl")
    path = jsonl("g.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}, {"text": "c", "label": "y"}])
    with pytest.raises(DataError, match=r"^g.jsonl line 2: no field 'label'. Use --skip-bad to skip bad lines.$"):
        read_records(path)
    records = read_records(path, skip_bad=True)
    assert [e.text for e in records] == ["a", "c"]
    assert (records.bad[0].line, records.bad[0].kind, records.bad[0].field) == (2, "missing_field", "label")


def test_every_classification_bad_record_kind_with_skip_counts() -> None:
    rows: list[object] = [
        {"text": "ok", "label": "a"},
        {"text": "   ", "label": "a"},  # 2 empty text
        {"text": "x", "label": ""},  # 3 empty label
        {"text": "x", "label": "c"},  # 4 unknown label
        [1, 2],  # 5 not an object
        {"text": 5, "label": "a"},  # 6 text not a string
        {"text": "x", "label": None},  # 7 null label
        {"text": "fine", "label": "b"},
    ]
    path = jsonl("k.jsonl", rows)
    labels = LabelMap(["a", "b"])
    records = read_records(path, label_map=labels, skip_bad=True)
    assert [e.text for e in records] == ["ok", "fine"]
    assert [(b.line, b.kind) for b in records.bad] == [
        (2, "empty_text"),
        (3, "empty_label"),
        (4, "unknown_label"),
        (5, "json"),
        (6, "type"),
        (7, "missing_field"),
    ]
    assert str(records.bad[2]) == "k.jsonl line 4: unknown label 'c' (labels: a, b)"
    assert str(records.bad[3]) == "k.jsonl line 5: expected a JSON object, found a list"
    assert records.bad_counts()["empty_text"] == 1
    with pytest.raises(DataError, match=r"^k.jsonl line 2: empty text. Use --skip-bad to skip bad lines.$"):
        read_records(path, label_map=labels)


def test_unknown_label_suggests_the_close_one() -> None:
    path = write("u.csv", "text,label\nhi,postive\n")
    with pytest.raises(DataError) as info:
        read_records(path, label_map=LabelMap(["negative", "positive"]))
    assert str(info.value) == (
        "u.csv line 2: unknown label 'postive' (labels: negative, positive). Did you mean 'positive'? "
        "Use --skip-bad to skip bad lines."
    )


def test_csv_quoted_multiline_records_keep_physical_line_numbers() -> None:
    path = write("q.csv", 'text,label\n"two\nlines",a\n"say ""hi""",b\n,c\nlast,d\n')
    records = read_records(path, skip_bad=True)
    assert [(e.text, e.line) for e in records] == [("two\nlines", 2), ('say "hi"', 4), ("last", 6)]
    assert (records.bad[0].line, records.bad[0].kind) == (5, "empty_text")


def test_csv_wrong_column_count_and_bom_and_crlf() -> None:
    path = write("w.csv", "\ufefftext,label\r\na,x\r\nb,y,extra\r\nc\r\n")
    records = read_records(path, skip_bad=True)
    assert [e.text for e in records] == ["a"]
    assert [str(b) for b in records.bad] == [
        "w.csv line 3: expected 2 columns, found 3",
        "w.csv line 4: expected 2 columns, found 1",
    ]


def test_tsv_keeps_quotes_and_column_numbers_select_fields() -> None:
    path = write("s.tsv", 'sentence\tlabel\nit \'s "great"\t1\nno\t0\n')
    records = read_records(path, text_field="sentence")
    assert records[0].text == 'it \'s "great"' and records[0].label == "1"
    by_number = read_records(path, text_field=0, label_field="-1")
    assert [e.label for e in by_number] == ["1", "0"]
    # headerless (AFQMC, TNEWS): with column numbers a first row whose label labels later rows is data
    bare = write("afqmc.tsv", "q1\tq2\t0\nq3\tq4\t1\nq5\tq6\t0\n")
    assert [e.text for e in read_records(bare, text_field=0, text_pair_field=1, label_field=2)] == ["q1", "q3", "q5"]
    assert [e.text for e in read_records(bare, text_field=0, label_field=2, header=True)] == ["q3", "q5"]


def test_headerless_text_lines_with_a_delimiter_and_pairs() -> None:
    path = write("fpb.txt", "Profit rose .@positive\nSales fell .@negative\n")
    records = read_records(path, delimiter="@")
    assert (records.fmt, [(e.text, e.label) for e in records]) == (
        "txt",
        [("Profit rose .", "positive"), ("Sales fell .", "negative")],
    )
    pairs = write("pairs.txt", "q1\tq2\t1\nq3\tq4\t0\n")
    records = read_records(pairs, text_field=0, text_pair_field=1, label_field=2)
    assert (records[1].text, records[1].text_pair, records[1].label) == ("q3", "q4", "0")
    with pytest.raises(DataError, match=r"pairs.txt has no header row, so --text-field must be a column number"):
        read_records(pairs, text_field="question")
    with pytest.raises(DataError, match=r"^pairs.txt has no column 7 \(it has 3 columns\)$"):
        read_records(pairs, label_field=7)
    with pytest.raises(DataError, match=r"cannot tell how plain\.txt is laid out"):
        read_records(write("plain.txt", "just some text\nmore text\n"))


def test_json_arrays_of_rows_and_of_objects() -> None:
    rows = write("rows.json", json.dumps([["钼已成粥", 1], ["补仓", 0], ["short"]], ensure_ascii=False))
    records = read_records(rows, skip_bad=True)
    assert [(e.text, e.label) for e in records] == [("钼已成粥", "1"), ("补仓", "0")]
    assert str(records.bad[0]) == "rows.json item 3: expected 2 values, found 1"
    objects = write("objs.json", json.dumps([{"text": "a", "label": "x"}, {"text": "", "label": "x"}]))
    with pytest.raises(DataError, match=r"^objs.json item 2: empty text. Use --skip-bad to skip bad items.$"):
        read_records(objects)
    with pytest.raises(DataError, match=r"^bad.json line 2: not valid JSON \(Expecting value: column 9\)$"):
        read_records(write("bad.json", '[\n  {"a": }\n]'))
    with pytest.raises(DataError, match="expected a list of records, or SQuAD"):
        read_records(write("obj.json", '{"train": []}'))


def test_json_lines_in_a_dot_json_file() -> None:
    path = write("dev.json", '{"text": ["口", "腔"], "label": ["B-X", "E-X"]}\n{"text": ["好"], "label": ["O"]}\n')
    records = read_records(path)
    assert (records.fmt, records.task, records.n_good) == ("jsonl", "token", 2)


# ------------------------------------------------------------------------------------------- encodings
def test_gbk_file_read_as_utf8_points_at_the_byte_and_suggests_gbk() -> None:
    text = "text,label\n好的,pos\n很差劲,neg\n"
    path = write("zh.csv", text, encoding="gbk")
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(info.value) == (
        "zh.csv line 2: not valid UTF-8 at byte 11; pass --encoding gbk if the file is GBK. "
        "Use --skip-bad to skip bad lines."
    )
    assert [e.text for e in read_records(path, encoding="gbk")] == ["好的", "很差劲"]
    mixed = write("mixed.jsonl", "")
    Path(mixed).write_bytes(
        b'{"text": "ok", "label": "a"}\n{"text": "\xba\xc3", "label": "a"}\n{"text": "\xe5\xa5\xbd", "label": "b"}\n'
    )
    records = read_records(mixed, skip_bad=True)
    assert [e.text for e in records] == ["ok", "好"]
    assert (
        str(records.bad[0]) == "mixed.jsonl line 2: not valid UTF-8 at byte 39; pass --encoding gbk if the file is GBK"
    )


def test_latin1_file_gets_the_latin1_hint() -> None:
    path = write("fpb.txt", "ok line@neutral\nSepp\u00e4l\u00e4 rose@positive\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"line 2: not valid UTF-8 at byte 20; pass --encoding latin-1"):
        read_records(path, delimiter="@")
    assert read_records(path, delimiter="@", encoding="latin-1")[1].text == "Seppälä rose"


def test_undecodable_bytes_in_conll_and_json_documents() -> None:
    Path("g.bmes").write_bytes("好 O\n\n".encode() + b"\xba\xc3 O\n\n" + "坏 O\n".encode())
    records = read_records("g.bmes", skip_bad=True)
    assert [e.text for e in records] == ["好", "坏"]
    assert str(records.bad[0]) == "g.bmes line 3: not valid UTF-8 at byte 7; pass --encoding gbk if the file is GBK"
    Path("d.json").write_bytes(b'[{"text": "ok", "label": "a"},\n {"text": "\xba\xc3", "label": "b"}]')
    with pytest.raises(DataError, match=r"^d.json line 2: not valid UTF-8 at byte 42; pass --encoding gbk"):
        read_records("d.json", skip_bad=True)  # one JSON document: no line can be skipped


def test_explicit_format_task_and_header() -> None:
    path = write("data.dat", "a\tx\nb\ty\n")
    assert [e.label for e in read_records(path, fmt="tsv", header=False)] == ["x", "y"]
    conll = write("tags.txt", "a O\nb B-X\n")
    assert read_records(conll, fmt="txt", task="token").task == "token"
    qa_rows = [{"question": "Who?", "context": "Ann ran.", "answers": [{"text": "Ann", "answer_start": 0}]}]
    assert read_records(write("qa.json", json.dumps(qa_rows)), task="qa")[0].answers == [{"text": "Ann", "start": 0}]
    with pytest.raises(DataError, match=r"is SQuAD JSON \(question answering\), not classification data"):
        read_records(write("sq.json", json.dumps({"data": [{"paragraphs": []}]})), task="classification")


# ------------------------------------------------------------------------------------------- token classification
def test_conll_file_docstart_columns_and_lines() -> None:
    text = (
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
    )
    records = read_records(write("train.conll", text))
    assert (records.fmt, records.task, records.n_good) == ("conll", "token", 2)
    first = records.of(TokenExample)[0]
    assert first.tokens == ["EU", "rejects", "German"] and first.tags == ["B-ORG", "O", "B-MISC"] and first.line == 3
    assert first.text == "EU rejects German" and first.offsets == [(0, 2), (3, 10), (11, 17)]
    assert records[1].char_entities() == [("PER", 0, 15, "Peter Blackburn")]
    assert read_records(write("train.txt", text)).fmt == "conll"  # .txt sniffed as CoNLL


def test_chinese_char_per_line_bmes_and_scheme_conversion() -> None:
    text = "中 B-NT\n共 E-NT\n致 O\n\n北 B-NS\n京 M-NS\n市 E-NS\n"
    records = read_records(write("msra.ner", text))
    first = records.of(TokenExample)[0]
    assert first.sep == "" and first.text == "中共致" and first.char_entities() == [("NT", 0, 2, "中共")]
    assert first.offsets == [(0, 1), (1, 2), (2, 3)]
    bio = read_records("msra.ner", tag_scheme="bio")
    assert bio[1].tags == ["B-NS", "I-NS", "I-NS"]
    assert read_records("msra.ner", tag_scheme="bioes")[1].tags == ["B-NS", "I-NS", "E-NS"]


def test_sentence_per_line_bmes_and_tag_count_mismatch() -> None:
    text = "吴 重 阳 ，\tB-NAME M-NAME E-NAME O\n高 勇\tS-NAME\n中 国\tB-LOC E-LOC\n"
    with pytest.raises(
        DataError, match=r"^r.char.bmes line 2: 2 tokens but 1 tags. Use --skip-bad to skip bad sentences.$"
    ):
        read_records(write("r.char.bmes", text))
    records = read_records("r.char.bmes", skip_bad=True)
    assert [e.text for e in records] == ["吴重阳，", "中国"] and records.bad[0].kind == "tag_count"


def test_conll_missing_tag_and_unknown_tag_report_the_exact_line() -> None:
    text = "a O\nb B-X\n\nc O\nd\ne O\n\nf B-Y\n"
    path = write("t.bio", text)
    with pytest.raises(DataError, match=r"^t.bio line 5: expected a token and a tag, found one column \('d'\)"):
        read_records(path)
    records = read_records(path, skip_bad=True, label_map=LabelMap(["O", "B-X", "I-X"]))
    assert [e.tokens for e in records] == [["a", "b"]]
    assert [(b.line, b.kind) for b in records.bad] == [(5, "columns"), (8, "unknown_label")]
    assert str(records.bad[1]) == "t.bio line 8: unknown tag 'B-Y' (tags: O, B-X, I-X). Did you mean 'B-X'?"


def test_wide_space_token_in_char_files() -> None:
    records = read_records(write("w.bmes", "你 O\n\u3000 O\n好 O\n"))
    assert records[0].tokens == ["你", "\u3000", "好"]


def test_cluener_spans_become_bio_by_character() -> None:
    rows = [
        {"text": "浙商银行叶老桂说", "label": {"company": {"浙商银行": [[0, 3]]}, "name": {"叶老桂": [[4, 6]]}}},
        {"text": "abc", "label": {"name": {"xyz": [[0, 2]]}}},
        {"text": "abcd", "label": {"a": {"abc": [[0, 2]]}, "b": {"bc": [[1, 2]]}}},
        {"text": "没有实体", "label": {}},
    ]
    records = read_records(jsonl("c.jsonl", rows), skip_bad=True)
    first = records.of(TokenExample)[0]
    assert first.tags == ["B-company", "I-company", "I-company", "I-company", "B-name", "I-name", "I-name", "O"]
    assert first.sep == "" and records[1].tags == ["O"] * 4
    assert [str(b) for b in records.bad] == [
        "c.jsonl line 2: entity 'xyz' (name) does not match the text at 0-2 ('abc')",
        "c.jsonl line 3: entities a 0-2 and b 1-2 overlap",
    ]
    assert read_records("c.jsonl", skip_bad=True, tag_scheme="bmes")[0].tags[:4] == [
        "B-company",
        "M-company",
        "M-company",
        "E-company",
    ]


def test_token_jsonl_tag_count_mismatch() -> None:
    path = jsonl("tok.jsonl", [{"text": ["a", "b"], "label": ["O"]}])
    with pytest.raises(DataError, match=r"^tok.jsonl line 1: 2 tokens but 1 tags. Use --skip-bad"):
        read_records(path)


# ------------------------------------------------------------------------------------------- QA
def squad(version: str = "1.1") -> dict[str, object]:
    context = "Paris is the capital of France. Paris is big."
    return {
        "version": version,
        "data": [
            {
                "title": "France",
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {"id": "q1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}]},
                            {
                                "id": "q2",
                                "question": "Which country?",
                                "answers": [
                                    {"text": "France", "answer_start": -1},
                                    {"text": "France", "answer_start": 24},
                                ],
                            },
                            {"id": "q3", "question": "Big?", "answers": [{"text": "big", "answer_start": 3}]},
                            {"id": "q4", "question": "Moon?", "answers": [], "is_impossible": True},
                            {"id": "q5", "question": " ", "answers": [{"text": "Paris", "answer_start": 0}]},
                        ],
                    }
                ],
            },
            {
                "title": "Other",
                "paragraphs": [
                    {
                        "context": "Tea is hot.",
                        "qas": [{"id": "q6", "question": "Hot?", "answers": [{"text": "hot", "answer_start": 7}]}],
                    }
                ],
            },
        ],
    }


def test_squad_bad_answers_are_reported_with_question_and_id() -> None:
    path = write("dev.json", json.dumps(squad("v2.0")))
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(info.value) == (
        "dev.json question 2: answer 1 'France' has answer_start -1 (the text occurs at 24) (id q2). "
        "Use --skip-bad to skip bad questions."
    )
    records = read_records(path, skip_bad=True)
    assert (records.fmt, records.task) == ("squad", "qa")
    assert [e.id for e in records.of(QAExample)] == ["q1", "q2", "q4", "q6"]  # q2 keeps its good answer
    assert records[1].answers == [{"text": "France", "start": 24}]
    assert records[2].is_impossible and records[2].answers == []
    assert [str(b) for b in records.bad][1:] == [
        "dev.json question 3: answer 1 'big' not found at answer_start 3 "
        "(the context has 'is ' there; the text occurs at 41) (id q3)",
        "dev.json question 5: empty question (id q5)",
    ]
    assert records[0].article == "France" and records[3].article == "Other"


def test_fix_answer_starts_moves_to_the_nearest_occurrence() -> None:
    path = write("dev.json", json.dumps(squad()))
    records = read_records(path, fix_answer_starts=True, skip_bad=True)
    assert records.n_fixed == 2 and records.n_bad == 1  # q5 only
    by_id = {e.id: e for e in records.of(QAExample)}
    assert by_id["q2"].answers == [{"text": "France", "start": 24}, {"text": "France", "start": 24}]
    assert by_id["q3"].answers == [{"text": "big", "start": 41}]
    for example in records.of(QAExample):
        assert all(example.context[a["start"] :].startswith(a["text"]) for a in example.answers)


def test_flat_qa_jsonl_records() -> None:
    rows = [
        {"id": "a", "question": "Who?", "context": "Ann ran.", "answers": {"text": ["Ann"], "answer_start": [0]}},
        {"id": "b", "question": "What?", "context": "Ann ran.", "answers": [{"text": "walked", "answer_start": 4}]},
    ]
    records = read_records(jsonl("qa.jsonl", rows), skip_bad=True)
    assert records.task == "qa" and records[0].answers == [{"text": "Ann", "start": 0}]
    assert str(records.bad[0]) == "qa.jsonl line 2: answer 1 'walked' does not occur in the context (id b)"


# ------------------------------------------------------------------------------------------- chat
def test_chat_layouts_and_bad_messages() -> None:
    messages = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
            ]
        },
        {"messages": [{"role": "human", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]},
        {"messages": []},
    ]
    records = read_records(jsonl("chat.jsonl", messages), skip_bad=True)
    assert records.task == "chat" and records.of(ChatExample)[0].messages[0] == {
        "role": "system",
        "content": "Be brief.",
    }
    assert [b.reason for b in records.bad] == [
        "message 1 has unknown role 'human' (roles: system, user, assistant, tool). Did you mean 'user'?",
        "no assistant message to learn from",
        "message 1 (user) has empty content",
        "messages is an empty list, not a list of messages",
    ]
    pr = read_records(jsonl("pr.jsonl", [{"prompt": "2+2?", "response": "4", "system": "Math."}]))
    assert pr[0].messages == [
        {"role": "system", "content": "Math."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    alpaca = read_records(jsonl("al.jsonl", [{"instruction": "Translate", "input": "猫", "output": "cat"}]))
    assert alpaca[0].messages[0]["content"] == "Translate\n\n猫"
    share = read_records(
        jsonl("sg.jsonl", [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}])
    )
    assert [m["role"] for m in share[0].messages] == ["user", "assistant"]
    csv_chat = read_records(write("c.csv", "prompt,response\nHi,Hello\n"))
    assert csv_chat.task == "chat" and csv_chat[0].messages[1]["content"] == "Hello"


# ------------------------------------------------------------------------------------------- whole-file problems
def test_config_and_file_errors() -> None:
    with pytest.raises(DataError, match=r"^unknown format 'jsnl' \(formats: .*\). Did you mean 'jsonl'\?$"):
        DataConfig(fmt="jsnl")
    with pytest.raises(DataError, match="unknown encoding 'utf-9'"):
        DataConfig(encoding="utf-9")
    with pytest.raises(DataError, match=r"unknown task 'clasification'.*Did you mean 'classification'"):
        DataConfig(task="clasification")
    with pytest.raises(DataError, match="csv files cannot hold token data"):
        DataConfig(fmt="csv", task="token")
    assert DataConfig(fmt="BMES", task="ner").fmt == "conll"
    with pytest.raises(DataError, match=r"^missing.csv: no such file$"):
        read_records("missing.csv")
    with pytest.raises(DataError, match=r"cannot tell the format of data.xyz from its extension '.xyz'"):
        read_records(write("data.xyz", "a"))
    with pytest.raises(DataError, match=r"^empty.jsonl: no records found"):
        read_records(write("empty.jsonl", "\n\n"))
    all_bad = jsonl("allbad.jsonl", [{"text": "", "label": "a"}, {"text": "", "label": "b"}])
    with pytest.raises(
        DataError, match=r"^allbad.jsonl: no valid records \(2 bad; the first: allbad.jsonl line 1: empty text\)$"
    ):
        read_records(all_bad, skip_bad=True)


def test_record_set_of_checks_the_kind() -> None:
    records = read_records(jsonl("k.jsonl", [{"text": "a", "label": "x"}]))
    assert records.of(TextExample)[0].text == "a"
    with pytest.raises(DataError, match=r"k.jsonl holds TextExamples \(classification data\), not TokenExamples"):
        records.of(TokenExample)
