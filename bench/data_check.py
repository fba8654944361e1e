"""Load every real data set the tuning readers serve and print counts and bad-record counts per file.

A smoke test of `yulian.tuning.data` against the shared data sets (read-only, never copied). Data location:
`$YULIAN_DATASETS`, else `../shared/datasets` from the repository root.

    .venv/bin/python bench/data_check.py            # all files
    .venv/bin/python bench/data_check.py --json bench/results/data_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from yulian.tuning.data import (  # noqa: E402  (after the path set-up, so the script runs without installing)
    DataError,
    LabelMap,
    QAExample,
    TextExample,
    TokenExample,
    detect_scheme,
    read_records,
    split_by_article,
    stratified_split,
)

# (data set, file, reader options, note)
CHECKS: list[tuple[str, str, dict[str, Any], str]] = [
    ("banking77", "train.csv", {"label_field": "category"}, "CSV with quoted multi-line texts"),
    ("glue_sst2", "train.tsv", {"text_field": "sentence"}, ""),
    ("glue_sst2", "dev.tsv", {"text_field": "sentence"}, ""),
    ("chnsenticorp", "train.tsv", {"text_field": "text_a"}, ""),
    ("chnsenticorp", "dev.tsv", {"text_field": "text_a"}, ""),
    ("tnews", "train.tsv", {"fmt": "txt"}, "headerless TSV: text = column 0, label = last"),
    ("afqmc", "dev.txt", {"text_field": 0, "text_pair_field": 1, "label_field": 2}, "sentence pairs"),
    ("financial_phrasebank", "Sentences_AllAgree.txt", {"delimiter": "@"}, "UTF-8"),
    ("financial_phrasebank", "Sentences_50Agree.txt", {"delimiter": "@"}, "expected to fail: Latin-1"),
    ("financial_phrasebank", "Sentences_50Agree.txt", {"delimiter": "@", "encoding": "latin-1"}, ""),
    ("financial_phrasebank", "Sentences_75Agree.txt", {"delimiter": "@", "encoding": "latin-1"}, ""),
    ("fincuge_finfe", "train_list.json", {}, "JSON list of [text, label]"),
    ("fincuge_finfe", "eval_list.json", {}, ""),
    ("conll2003_en", "train.txt", {}, "CoNLL, 4 columns, -DOCSTART-"),
    ("conll2003_en", "valid.txt", {}, ""),
    ("cluener2020", "train.jsonl", {}, "entity spans -> BIO by character"),
    ("cluener2020", "dev.jsonl", {}, ""),
    ("cluener2020", "test.jsonl", {"label_field": None, "task": "token"}, "unlabelled"),
    ("ner_zh_msra_devtest", "dev.ner", {}, "char per line, BMES"),
    ("ner_zh_msra_devtest", "test.ner", {"tag_scheme": "bio"}, "BMES -> BIO while reading"),
    ("ner_zh_weibo", "train.all.bmes", {}, ""),
    ("ner_zh_weibo", "dev.json", {}, "JSON Lines in a .json file: char list + BIOS tags"),
    ("ner_zh_resume", "train.char.bmes", {}, "sentence per line: chars<TAB>tags"),
    ("ner_zh_resume", "dev.char.bmes", {}, ""),
    ("squad_v1.1", "dev-v1.1-part-a.json", {}, "SQuAD v1.1"),
    ("cmrc2018", "squad-style/cmrc2018_dev.json", {"skip_bad": True}, "answer_start -1 and wrong offsets: skipped"),
    ("cmrc2018", "squad-style/cmrc2018_dev.json", {"fix_answer_starts": True, "skip_bad": True}, "offsets fixed"),
    ("drcd", "DRCD_dev.json", {}, "Traditional Chinese, SQuAD-style v1.3"),
]


def datasets_root() -> Path:
    return Path(os.environ.get("YULIAN_DATASETS") or ROOT.parent / "shared" / "datasets")


def extra_facts(records: Any) -> str:
    """A line of facts per task, to see the readers got the content right."""
    examples = records.examples
    if isinstance(examples[0], TextExample):
        labels = LabelMap.from_examples(examples)
        split = stratified_split(examples, 0.1, seed=42)
        pair = " (with text pairs)" if examples[0].text_pair else ""
        return f"{len(labels)} labels{pair}; stratified 10% dev: {len(split.train):,}/{len(split.dev):,}"
    if isinstance(examples[0], TokenExample):
        tags = sorted({t for e in examples for t in e.tags})
        entities = sum(len(e.entities) for e in examples)
        tokens = sum(len(e.tokens) for e in examples)
        scheme = detect_scheme(tags)
        return f"{tokens:,} tokens, {entities:,} entities, {len(tags)} tags ({scheme}); e.g. {examples[0].text[:24]!r}"
    if isinstance(examples[0], QAExample):
        answers = sum(len(e.answers) for e in examples)
        split = split_by_article(examples, 0.2, seed=42)
        articles = len({e.article for e in examples})
        return f"{answers:,} answers, {articles} articles; by-article 20% dev: {len(split.train):,}/{len(split.dev):,}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    root = datasets_root()
    print(f"data sets: {root}")
    results = []
    for name, file, options, note in CHECKS:
        path = root / name / file
        shown = f"{name}/{file}"
        opts = ", ".join(f"{k}={v!r}" for k, v in options.items())
        t0 = time.perf_counter()
        try:
            records = read_records(path, **options)
        except DataError as e:
            seconds = time.perf_counter() - t0
            message = str(e).replace(str(root) + "/", "")
            print(f"- {shown} [{opts}] ERROR ({seconds:.2f} s): {message}" + (f"  <- {note}" if note else ""))
            results.append({"file": shown, "options": options, "error": message, "seconds": seconds})
            continue
        seconds = time.perf_counter() - t0
        bad = records.bad_counts()
        bad_text = f", bad {records.n_bad:,} {bad}" if bad else ", bad 0"
        fixed = f", fixed {records.n_fixed:,}" if records.n_fixed else ""
        print(
            f"- {shown} [{opts}] {records.fmt}/{records.task}: {records.n_good:,} good{bad_text}{fixed} "
            f"({seconds:.2f} s); {extra_facts(records)}" + (f"  <- {note}" if note else "")
        )
        if records.bad:
            print(f"    first bad: {str(records.bad[0]).replace(str(root) + '/', '')}")
        results.append(
            {
                "file": shown,
                "options": options,
                "format": records.fmt,
                "task": records.task,
                "good": records.n_good,
                "bad": records.n_bad,
                "bad_by_kind": bad,
                "fixed": records.n_fixed,
                "seconds": round(seconds, 3),
            }
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
