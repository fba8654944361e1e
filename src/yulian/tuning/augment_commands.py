"""`yulian augment`: write augmented copies of a data file, or pre-generate the paraphrases of one.

$ yulian augment train.tsv --out train.aug.jsonl --spec eda --n 4 --text-field sentence
$ yulian augment train.tsv --spec paraphrase:n=2 --paraphrase-cache runs/para.jsonl --text-field sentence
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

__all__ = ["augment_command"]


def _record(example: Any, text_field: str, label_field: str, pair_field: str | None) -> dict[str, Any]:
    from yulian.tuning.data_types import TokenExample

    if isinstance(example, TokenExample):
        return {text_field: example.tokens, label_field: example.tags}
    record: dict[str, Any] = {text_field: example.text}
    if example.text_pair is not None:
        record[pair_field or "text_pair"] = example.text_pair
    if example.labels is not None:
        record[label_field] = example.labels
    elif example.label is not None:
        record[label_field] = example.label
    return record


def augment_command(
    data: str,
    out: str | None = None,
    spec: str = "eda",
    n: int = 1,
    lang: str = "auto",
    keep_original: bool = True,
    task: str | None = None,
    text_field: str = "text",
    label_field: str = "label",
    text_pair_field: str | None = None,
    label_sep: str | None = None,
    format: str | None = None,  # the CLI option is --format
    encoding: str = "utf-8",
    skip_bad: bool = False,
    seed: int = 42,
    paraphrase_cache: str | None = None,
    progress: bool = True,
) -> int:
    """Write augmented copies of a data file as JSON Lines: each example, then N augmented variants of it.

    Labels never change; NER data allows only delete (O tokens) and mention (same-type entity replacement).
    Without --out, only generates the paraphrases the cache lacks (for --spec with paraphrase), so that training
    with --augment paraphrase later starts at once.

    Args:
        data: the data file (jsonl, json, csv, tsv, txt, conll...).
        out: the JSON Lines file to write (fields named as in the input); none: only pre-generate paraphrases.
        spec: the augmentation: eda, synonym, insert, swap, delete, paraphrase, mention (NER), joined with +,
            options after a colon (synonym:0.2, eda:alpha=0.05+paraphrase:n=2,model=smollm2-135m-instruct).
        n: augmented variants per example.
        lang: en, zh or auto (from the data's share of CJK characters).
        keep_original: also write each original example before its variants.
        task: classification or token (default: from the content).
        text_field: field or column of the text (of the tokens for NER).
        label_field: field or column of the label(s) (of the tags for NER).
        text_pair_field: field or column of a second text (sentence pairs).
        label_sep: separator of several labels in one field (multi-label).
        format: the data format (default: from the extension).
        encoding: the data file's encoding.
        skip_bad: skip bad records instead of stopping at the first.
        seed: the random seed (same seed, same output).
        paraphrase_cache: the paraphrase cache file (JSON Lines; default: ~/.cache/yulian/paraphrases.jsonl).
        progress: report paraphrase generation on stderr.
    """
    from yulian.tuning.augment import Augmenter, parse_augment
    from yulian.tuning.data import read_records

    if isinstance(n, bool) or n < 1:
        raise ValueError(f"--n must be >= 1 variants per example, got {n}")
    ops = parse_augment(spec)
    if paraphrase_cache:
        for op in ops:
            if op.name == "paraphrase":
                op.options["cache"] = paraphrase_cache
    records = read_records(
        data,
        fmt=format,
        task=task,
        encoding=encoding,
        text_field=text_field,
        label_field=label_field,
        text_pair_field=text_pair_field,
        label_sep=label_sep,
        skip_bad=skip_bad,
    )
    examples = list(records)
    augmenter = Augmenter(ops, lang=lang, seed=seed, progress=progress)
    augmenter.prepare(examples)
    report: dict[str, Any] = {"data": data, "examples": len(examples), "spec": augmenter.spec, "lang": augmenter.lang}
    if out is None:
        if not any(op.name == "paraphrase" for op in ops):
            raise ValueError("nothing to do: give --out FILE, or a --spec with paraphrase to pre-generate its cache")
        para = augmenter.paraphraser
        texts = [t for e in examples for t in (e.text, getattr(e, "text_pair", None)) if t]
        usable = sum(bool(para.variants(t, augmenter.lang)) for t in dict.fromkeys(texts))
        report.update(cache=str(para.cache), texts_with_a_paraphrase=usable, acceptance=round(para.acceptance(), 4))
        print(json.dumps(report, ensure_ascii=False))
        return 0
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    pair_field = text_pair_field
    with open(target, "w", encoding="utf-8") as sink:
        for i, example in enumerate(examples):
            copies = [example] if keep_original else []
            copies += [augmenter.augment_example(example, random.Random(f"{seed}:{j}:{i}")) for j in range(n)]
            for copy in copies:
                sink.write(json.dumps(_record(copy, text_field, label_field, pair_field), ensure_ascii=False) + "\n")
                written += 1
    report.update(out=str(target), written=written, changes=dict(augmenter.stats))
    if progress:
        print(f"{len(examples):,} examples -> {written:,} records in {target}", file=sys.stderr)
    print(json.dumps(report, ensure_ascii=False))
    return 0
