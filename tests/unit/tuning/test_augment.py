"""Data augmentation: EDA operations (seeded, never empty, names/numbers/negations kept), Chinese word level,
NER label alignment, the epoch ratio, paraphrase caching and filtering, the trainer seam (re-encoded per epoch,
resume reproduces), and `yulian augment`."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from tiny_setup import save_base, sentiment, single_thread

from yulian.tuning.augment import Augmenter, EpochAugmentation, check_augment, detect_lang, parse_augment
from yulian.tuning.augment_paraphrase import Paraphraser, judge_paraphrase
from yulian.tuning.augment_sources import CilinSynonyms, DictSynonyms, WordNetSynonyms, inflect, split_words
from yulian.tuning.data_types import TextExample, TokenExample

pytestmark = pytest.mark.usefixtures("single_thread")
_ = single_thread

SYN = DictSynonyms({"film": ["movie", "picture"], "good": ["fine", "decent"], "quick": ["fast", "rapid"]})
ZH_SYN = DictSynonyms({"喜欢": ["喜爱", "爱好"], "方便": ["便利"], "漂亮": ["美观", "好看"]})


def aug(spec: str, **kw: Any) -> Augmenter:
    return Augmenter(spec, lang=kw.pop("lang", "en"), synonyms=kw.pop("synonyms", {"en": SYN, "zh": ZH_SYN}), **kw)


# ------------------------------------------------------------------------------------------------ spec
def test_spec_parser_options_aliases_and_clear_errors() -> None:
    ops = parse_augment("eda:0.05+rd+paraphrase:n=3,model=tiny,cache=/tmp/c.jsonl")
    assert [(o.name, o.alpha) for o in ops] == [("eda", 0.05), ("delete", 0.1), ("paraphrase", 0.1)]
    assert ops[2].options == {"n": 3, "model": "tiny", "cache": "/tmp/c.jsonl"}
    with pytest.raises(ValueError, match=r"unknown augmentation 'synonim'.*Did you mean 'synonym'"):
        parse_augment("synonim")
    with pytest.raises(ValueError, match=r"swap has no option 'n' .*options: alpha"):
        parse_augment("swap:n=2")
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]"):
        parse_augment("delete:1.5")
    with pytest.raises(ValueError, match="paraphrase option n='x' in 'paraphrase:n=x' must be a whole number"):
        parse_augment("paraphrase:n=x")
    with pytest.raises(ValueError, match=r"TrainConfig.augment_ratio must be in \(0, 1\]"):
        check_augment("eda", 0.0, "auto")
    with pytest.raises(ValueError, match=r"TrainConfig\.augment_lang must be one of auto, en, zh"):
        check_augment("eda", 0.5, "fr")


# ------------------------------------------------------------------------------------------------ EDA, English
def test_same_seed_same_variants_other_seed_other_variants() -> None:
    text = "the quick film was good and the quick story was good too"
    augmenters = [aug("eda", seed=s) for s in (1, 1, 2)]
    runs = [[a.augment(text) for _ in range(12)] for a in augmenters]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert len(set(runs[0])) > 6  # fresh variants call after call
    assert all(v != text for v in runs[0])


def test_each_eda_operation_does_what_it_says() -> None:
    text = "the quick film was good"
    words = text.split()
    rng = random.Random(0)
    synonym = aug("synonym:0.4").augment_text(text, rng)
    assert synonym != text and len(synonym.split()) == 5
    assert all(w in words or w in {"movie", "picture", "fine", "decent", "fast", "rapid"} for w in synonym.split())
    inserted = aug("insert:0.2").augment_text(text, rng)
    assert len(inserted.split()) == 6 and sorted(set(inserted.split()) - set(words)) != []
    swapped = aug("swap:0.2").augment_text(text, rng)
    assert sorted(swapped.split()) == sorted(words) and swapped != text
    deleted = aug("delete:0.3").augment_text(text, rng)
    assert 1 <= len(deleted.split()) < 5 and all(w in words for w in deleted.split())


def test_names_numbers_negations_and_punctuation_are_kept() -> None:
    text = "Yesterday I did not see John Smith in Paris on 3 May, the film was good."
    augmenter = aug("eda:0.5")
    for seed in range(30):
        out = augmenter.augment_text(text, random.Random(seed))
        for kept in ("not", "John", "Smith", "Paris", "3", ",", "."):
            assert kept in out.split() or kept in out, (kept, out)
        assert out.index("John") < out.index("Smith")  # fixed words are not swapped
    pieces = split_words("It's a don't-miss film, isn't it?", "en")
    assert [(w.text, w.fixed) for w in pieces if w.word] == [
        ("It's", False),
        ("a", False),
        ("don't-miss", False),
        ("film", False),
        ("isn't", True),
        ("it", False),
    ]


def test_never_an_empty_text() -> None:
    augmenter = aug("delete:1.0")
    for text in ["good", "the film", "  spaced  ", "!!", "不"]:
        for seed in range(10):
            out = augmenter.augment_text(text, random.Random(seed), "en")
            assert out.strip(), (text, out)
    assert augmenter.augment_text("good", random.Random(0)) == "good"  # one word: nothing may go
    assert augmenter.stats["unchanged"] > 0


def test_wordnet_reader_morphology_and_inflection(tmp_path: Path) -> None:
    folder = tmp_path / "dict"
    folder.mkdir()
    header = "  1 This software and database is being provided to you, the LICENSEE\n"
    (folder / "data.noun").write_text(header + "00000001 06 n 03 movie 0 film 0 motion_picture 0 000 | a movie\n")
    (folder / "index.noun").write_text(header + "movie n 1 0 1 1 00000001  \nfilm n 1 0 1 1 00000001  \n")
    (folder / "data.verb").write_text(header + "00000002 29 v 02 watch 0 observe 0 000 | look\n")
    (folder / "index.verb").write_text(header + "watch v 1 0 1 1 00000002  \nobserve v 1 0 1 1 00000002  \n")
    for pos in ("adj", "adv"):
        (folder / f"data.{pos}").write_text(header)
        (folder / f"index.{pos}").write_text(header)
    source = WordNetSynonyms(folder)
    assert source.synonyms("movie") == ["film", "motion picture"]
    assert source.synonyms("Movies") == ["films"]  # multi-word lemmas are not inflected back
    assert source.synonyms("watched") == ["observed"]
    assert source.synonyms("unknown") == []
    assert [inflect(w, s) for w, s in [("box", "s"), ("try", "s"), ("run", "ing"), ("tie", "ing"), ("hope", "ed")]] == [
        "boxes",
        "tries",
        "running",
        "tying",
        "hoped",
    ]
    with pytest.raises(FileNotFoundError, match="not a WordNet dict folder"):
        WordNetSynonyms(tmp_path)._load()


# ------------------------------------------------------------------------------------------------ Chinese
def test_chinese_word_level_with_jieba_keeps_names_and_numbers() -> None:
    pytest.importorskip("jieba")
    text = "我很喜欢这个上网本，外形漂亮，张三在北京买了3台，不贵。"
    augmenter = aug("eda:0.3", lang="zh")
    outs = {augmenter.augment_text(text, random.Random(seed)) for seed in range(25)}
    assert len(outs) > 5
    for out in outs:
        assert out and "张三" in out and "北京" in out and "3" in out and "不" in out
    replaced = aug("synonym:0.5", lang="zh").augment_text(text, random.Random(0))
    assert any(w in replaced for w in ("喜爱", "爱好", "美观", "好看"))
    words = [w.text for w in split_words(text, "zh")]
    assert "".join(words) == text and "喜欢" in words  # word level, not characters
    assert detect_lang([text]) == "zh" and detect_lang(["a film"]) == "en"


def test_cilin_reader_uses_synonym_rows_only(tmp_path: Path) -> None:
    path = tmp_path / "cilin.txt"
    path.write_text("Aa01A01= 人 士 人物 人士\nAa01A02# 男人 女人\nGb01A01= 喜欢 喜爱 爱好\n", encoding="utf-8")
    source = CilinSynonyms(path)
    assert source.synonyms("喜欢") == ["喜爱", "爱好"]
    assert source.synonyms("人物") == ["人士"]  # single characters are left out (ambiguous)
    assert source.synonyms("男人") == []  # '#' rows are related words, not synonyms
    (tmp_path / "bad.txt").write_text("not a cilin row\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt line 1: not a Cilin row"):
        CilinSynonyms(tmp_path / "bad.txt").synonyms("x")


# ------------------------------------------------------------------------------------------------ examples, epochs
def test_epoch_replaces_exactly_the_ratio_labels_unchanged_fresh_per_epoch() -> None:
    data = sentiment(40)
    augmenter = aug("swap")
    first = augmenter.epoch(data, ratio=0.25, epoch=0)
    changed = [i for i, (a, b) in enumerate(zip(data, first, strict=True)) if a.text != b.text]
    assert len(changed) == 10 == len(augmenter.chosen(40, ratio=0.25, epoch=0))
    assert [e.label for e in first] == [e.label for e in data] and [e.line for e in first] == [e.line for e in data]
    again = aug("swap").epoch(data, ratio=0.25, epoch=0)
    assert [e.text for e in again] == [e.text for e in first]  # deterministic in (seed, epoch)
    later = augmenter.chosen(40, ratio=0.25, epoch=1)
    assert later != augmenter.chosen(40, ratio=0.25, epoch=0)
    assert len(augmenter.chosen(40, ratio=1.0, epoch=3)) == 40


def test_text_pairs_are_augmented_too() -> None:
    example = TextExample("the quick film was good", label="yes", text_pair="a good quick film indeed")
    out = aug("swap").augment_example(example, random.Random(3))
    assert out.label == "yes" and out.text != example.text and out.text_pair != example.text_pair


def test_ner_keeps_tags_aligned_and_refuses_other_operations() -> None:
    data = [
        TokenExample(["John", "Smith", "lives", "in", "Paris", "now"], ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
        TokenExample(["Mary", "went", "to", "New", "York"], ["B-PER", "O", "O", "B-LOC", "I-LOC"]),
        TokenExample(list("张三在北京"), ["B-PER", "E-PER", "O", "B-LOC", "E-LOC"], sep=""),
    ]
    delete = aug("delete:0.9")
    delete.prepare(data[:2])
    for seed in range(10):
        out = delete.augment_example(data[0], random.Random(seed))
        assert len(out.tokens) == len(out.tags) >= 3
        assert [t for t in out.tags if t != "O"] == ["B-PER", "I-PER", "B-LOC"]
        assert out.tokens[:2] == ["John", "Smith"] and "Paris" in out.tokens
    mention = aug("mention:1.0")
    mention.prepare(data[:2])
    out = mention.augment_example(data[0], random.Random(0))
    assert out.tokens != data[0].tokens and len(out.tokens) == len(out.tags)
    assert {(k, " ".join(out.tokens[a:b])) for k, a, b in out.entities} <= {
        ("PER", "John Smith"),
        ("PER", "Mary"),
        ("LOC", "Paris"),
        ("LOC", "New York"),
    }
    bioes = aug("mention:1.0")
    bioes.prepare([data[2], TokenExample(list("李四去上海"), ["B-PER", "E-PER", "O", "B-LOC", "E-LOC"], sep="")])
    swapped = bioes.augment_example(data[2], random.Random(1))
    assert "".join(swapped.tokens) in {"李四在上海", "李四在北京", "张三在上海"} and swapped.tags == data[2].tags
    with pytest.raises(ValueError, match="NER examples keep their tags aligned only with delete and mention"):
        aug("eda").prepare(data)
    with pytest.raises(ValueError, match="mention replacement needs NER examples"):
        aug("mention").prepare(sentiment(4))


# ------------------------------------------------------------------------------------------------ paraphrase
class Rewriter:
    """A fake generator Runnable: replaces 'film' by 'movie' in the prompt's text; records every batch."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def batch(self, prompts: list[str]) -> list[str]:
        self.calls.append(list(prompts))
        return [f"Paraphrase: {p.rsplit(chr(10), 1)[-1].replace('film', 'movie')}" for p in prompts]


def test_paraphrase_cache_hit_miss_and_keys(tmp_path: Path) -> None:
    cache = tmp_path / "para.jsonl"
    gen = Rewriter()
    para = Paraphraser(gen, n=2, cache=cache, generator_id="rewriter", progress=False)
    texts = ["the film was good", "a quick film", "the film was good"]
    stats = para.prepare(texts, "en")
    assert stats["texts"] == 2 and stats["cached"] == 0 and stats["generated"] == 4
    assert sum(len(c) for c in gen.calls) == 4  # 2 unique texts x 2 variants
    assert para.variants("a quick film", "en") == ["a quick movie"]  # cleaned, de-duplicated
    again_gen = Rewriter()
    again = Paraphraser(again_gen, n=2, cache=cache, generator_id="rewriter", progress=False)
    assert again.prepare(texts, "en")["cached"] == 2 and again_gen.calls == []  # a cache hit: no generation
    more = Paraphraser(again_gen, n=3, cache=cache, generator_id="rewriter", progress=False)
    assert more.prepare(texts, "en")["generated"] == 2  # only the missing third variant of each text
    other = Paraphraser(Rewriter(), n=2, cache=cache, generator_id="another model", progress=False)
    assert other.key("a quick film", "en") != para.key("a quick film", "en")
    assert other.prepare(["a quick film"], "en")["generated"] == 2  # another generator: a miss
    with open(cache, "a", encoding="utf-8") as f:
        f.write('{"key": "truncated\n')
    reread = Paraphraser(Rewriter(), n=2, cache=cache, generator_id="rewriter", progress=False)
    assert reread.cached("a quick film", "en") == ["Paraphrase: a quick movie"] * 3
    assert reread.stats["bad cache line"] == 1


@pytest.mark.parametrize(
    ("output", "verdict"),
    [
        ('Paraphrase: "The movie was really good and the actors were great."', "ok"),
        ("Here is a paraphrase:\nThe movie was really good, the actors great.", "ok"),
        ("The paraphrased sentence is: The movie was fine and its actors were superb.", "ok"),
        ("The film was good, and the actors were great!", "copy"),
        ('The original sentence is: "the film was good and the actors were great."', "copy"),
        ("", "empty"),
        ("I'm sorry, I cannot do that.", "refusal"),
        ("这部电影很好看，演员也很棒。", "language"),
        ("Bananas grow near the hills in summer.", "unrelated"),
        ("The film was good and the actors were great. " * 3, "longer"),
        ("good", "shorter"),
    ],
)
def test_paraphrase_filter(output: str, verdict: str) -> None:
    source = "the film was good and the actors were great"
    clean, reason = judge_paraphrase(source, output, "en", prompt="Paraphrase this.\n\n{text}")
    assert reason == verdict and (clean is not None) == (verdict == "ok")
    if verdict == "ok":
        assert clean is not None and clean.startswith("The movie") and '"' not in clean
    assert judge_paraphrase("a good film", "A decent movie.", "en")[1] == "ok"  # short: no overlap required


def test_chinese_paraphrase_filter_drops_an_echoed_prompt() -> None:
    prompt = "请改写下面这句话，意思不变，只回复改写后的句子。\n\n{text}"
    output = "请改写下面这句话，意思不变，只回复改写后的句子。\n酒店的服务很好，房间也很干净。"
    assert judge_paraphrase("酒店服务很好，房间干净。", output, "zh", prompt=prompt) == (
        "酒店的服务很好，房间也很干净。",
        "ok",
    )
    assert judge_paraphrase("酒店服务很好，房间干净。", "The hotel is good.", "zh")[1] == "language"


def test_paraphrase_operation_falls_back_when_no_variant_passes(tmp_path: Path) -> None:
    from yulian.testing import FakeChatModel

    model = FakeChatModel()  # echoes the prompt: every output is a copy
    para = Paraphraser(model, n=1, cache=tmp_path / "c.jsonl", progress=False)
    augmenter = aug("paraphrase+swap", paraphraser=para)
    data = [TextExample("the quick film was good", label="pos")]
    augmenter.prepare(data)
    assert model.calls and model.call_options[0].seed == 0 and model.call_options[0].temperature == 0.8
    outs = {augmenter.augment_text(data[0].text, random.Random(s)) for s in range(6)}
    assert data[0].text not in outs  # the swap operation stood in
    assert para.stats["copy"] == 1 and para.acceptance() == 0.0


def test_paraphrase_with_a_tiny_random_llama(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from tiny_chat_lm import build

    from yulian.models import HFChatModel

    model = HFChatModel(str(build(tmp_path / "lm")), dtype="float32")
    para = Paraphraser(model, n=2, cache=tmp_path / "c.jsonl", progress=False)
    stats = para.prepare(["the quick brown fox", "hello world"], "en")
    assert stats["generated"] == 4
    records = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(len(r["outputs"]) == 2 for r in records)
    assert para.prepare(["hello world"], "en")["generated"] == 0
    assert isinstance(para.variants("hello world", "en"), list)  # random weights: whatever passes the filter


# ------------------------------------------------------------------------------------------------ trainer seam


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_base(tmp_path_factory.mktemp("base"))


def _config(**overrides: Any) -> Any:
    from yulian.tuning.trainer import TrainConfig

    settings: dict[str, Any] = {
        "epochs": 3,
        "batch_size": 8,
        "lr": 1e-2,
        "precision": "fp32",
        "progress": False,
        "eval_every": 5,
        "augment": "swap",
        "augment_ratio": 0.5,
    }
    return TrainConfig(**{**settings, **overrides})


def _task() -> Any:
    from yulian.tuning.tasks import TaskConfig, get_task

    return get_task("classification", TaskConfig(max_length=32, stride=8))


class Kill(Exception):
    pass


def test_trainer_reencodes_each_epoch_and_resume_reproduces(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yulian.tuning.trainer import Trainer

    train, dev = sentiment(48), sentiment(10, seed=1)
    spied = _task()
    encoded: list[list[str]] = []
    real_encode = spied.encode

    def encode(examples: list[Any], tokenizer: Any) -> Any:
        if len(examples) != len(dev):  # not an evaluation
            encoded.append([e.text for e in examples])
        return real_encode(examples, tokenizer)

    monkeypatch.setattr(spied, "encode", encode)
    whole = Trainer(spied, _config(), tmp_path / "whole").fit(train, dev, base)
    assert [len(batch) for batch in encoded] == [48, 24, 24, 24]  # the data once, then half of it each epoch
    assert encoded[1] != encoded[2] != encoded[3] and not set(encoded[1]) <= {e.text for e in train}
    plain = Trainer(_task(), _config(augment=None), tmp_path / "plain").fit(train, dev, base)
    assert len(plain.losses) == len(whole.losses) == 18 and plain.losses != whole.losses
    assert json.loads((tmp_path / "whole" / "metrics.json").read_text())["config"]["augment"] == "swap"

    killed = _task()
    calls = {"n": 0}
    real_loss = killed.loss

    def dying_loss(model: Any, batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 12:  # dies in step 13 (epoch 3); the last checkpoint is step 10 (epoch 2)
            raise Kill
        return real_loss(model, batch)

    monkeypatch.setattr(killed, "loss", dying_loss)
    with pytest.raises(Kill):
        Trainer(killed, _config(), tmp_path / "killed").fit(train, dev, base)
    resumed = Trainer(_task(), _config(), tmp_path / "killed").fit(train, dev, base, resume=True)
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-6)


def test_trainer_config_validates_augmentation() -> None:
    with pytest.raises(ValueError, match=r"TrainConfig\.augment: unknown augmentation 'edaa'"):
        _config(augment="edaa")
    with pytest.raises(ValueError, match=r"TrainConfig\.augment_ratio"):
        _config(augment_ratio=1.5)


def test_whole_epoch_is_reencoded_when_examples_give_several_features() -> None:
    class Windows:
        def encode(self, examples: list[Any], tokenizer: Any) -> list[dict[str, Any]]:
            return [{"text": e.text, "window": w} for e in examples for w in (0, 1)]

    class Config:
        augment, augment_ratio, augment_lang, seed, progress = "swap", 0.5, "en", 0, False

    class Single:
        is_main = True

        def barrier(self) -> None:
            pass

    data = sentiment(10)
    seam = EpochAugmentation.for_training(Config(), data, Windows().encode(data, None), lambda m: None, Single())
    assert seam is not None
    features = seam.features(2, Windows(), None)
    assert len(features) == 20 and seam.epoch == 2
    changed = {f["text"] for f in features} - {e.text for e in data}
    assert 1 <= len(changed) <= 5


# ------------------------------------------------------------------------------------------------ command
def test_augment_command_writes_originals_and_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from yulian.tuning.augment_commands import augment_command
    from yulian.tuning.data import read_records

    src = tmp_path / "train.tsv"
    src.write_text("sentence\tlabel\nthe quick film was good\t1\na bad slow film\t0\n", encoding="utf-8")
    out = tmp_path / "aug.jsonl"
    assert augment_command(str(src), str(out), spec="swap", n=3, text_field="sentence", progress=False) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == 8 and report["lang"] == "en"
    back = list(read_records(out, text_field="sentence"))
    assert [e.label for e in back] == ["1"] * 4 + ["0"] * 4
    assert back[0].text == "the quick film was good" and len({e.text for e in back[:4]}) > 1
    with pytest.raises(ValueError, match="nothing to do"):
        augment_command(str(src), None, spec="swap", text_field="sentence")
