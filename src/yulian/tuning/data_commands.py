"""`yulian data`: read and validate a training data file, and say what is in it (or what is wrong with it).

$ yulian data intents.csv --label-field intent
$ yulian data broken.jsonl --skip-bad --show-bad 20
$ yulian data msra.ner --tag-scheme bio --json
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any, TextIO

__all__ = ["data_command", "describe"]


def _none(value: str | None) -> str | None:
    return None if value is None or value.lower() in ("", "none", "null") else value


def data_command(
    path: str,
    format: str | None = None,  # the CLI option is --format
    task: str | None = None,
    encoding: str = "utf-8",
    text_field: str = "text",
    label_field: str = "label",
    text_pair_field: str | None = None,
    label_sep: str | None = None,
    delimiter: str | None = None,
    tag_scheme: str | None = None,
    labels: str | None = None,
    fix_answer_starts: bool = False,
    skip_bad: bool = False,
    show_bad: int = 10,
    json_output: bool = False,
) -> int:
    """Read and validate a data file; print what it holds, or the first bad record's file, line and reason.

    Formats come from the extension (.jsonl .json .csv .tsv .txt .conll .bmes .bio .ner), tasks from the content
    (classification, token, qa, chat). Exit status 0 when the file is usable, 1 when it is not.

    Args:
        path: the data file.
        format: jsonl, json, csv, tsv, txt, conll (bmes, bio) or squad; default: from the extension.
        task: classification, token, qa or chat; default: from the content.
        encoding: the file's encoding (gbk or gb18030 for many Chinese files, latin-1 for older European ones).
        text_field: field or column of the text (a 0-based number for files without a header row).
        label_field: field or column of the label(s); none for unlabelled data.
        text_pair_field: field or column of a second text, for sentence-pair tasks.
        label_sep: split labels on this to read several labels per text (multi-label).
        delimiter: column delimiter for csv/tsv/txt files (e.g. @ for text@label lines).
        tag_scheme: rewrite tags to bio, bioes or bmes.
        labels: a labels.json (or a model folder holding one): labels outside it are bad records.
        fix_answer_starts: move QA answers whose answer_start is wrong to where their text occurs.
        skip_bad: skip bad records and count them, instead of stopping at the first.
        show_bad: how many bad records to list.
        json_output: print one JSON object instead of text.
    """
    from yulian.tuning.data import LabelMap, read_records

    records = read_records(
        path,
        fmt=format,
        task=task,
        encoding=encoding,
        text_field=text_field,
        label_field=_none(label_field),
        text_pair_field=text_pair_field,
        label_sep=label_sep,
        delimiter=delimiter,
        tag_scheme=tag_scheme,
        label_map=LabelMap.load(labels) if labels else None,
        fix_answer_starts=fix_answer_starts,
        skip_bad=skip_bad,
    )
    describe(records, sys.stdout, show_bad=show_bad, as_json=json_output)
    return 0


def describe(records: Any, out: TextIO, *, show_bad: int = 10, as_json: bool = False) -> None:
    """Write a `RecordSet`'s summary: counts, label (or tag) frequencies, and the first bad records."""
    from yulian.tuning.data import TextExample, TokenExample

    counts: Counter[str] = Counter()
    for example in records:
        if isinstance(example, TextExample):
            counts.update(example.targets)
        elif isinstance(example, TokenExample):
            counts.update(entity.type for entity in example.entities)
    what = "entities" if records.task == "token" else "labels"
    if as_json:
        report = {
            "path": records.path,
            "format": records.fmt,
            "task": records.task,
            "examples": records.n_good,
            "bad": records.n_bad,
            "bad_by_kind": records.bad_counts(),
            "fixed": records.n_fixed,
            what: dict(counts.most_common()),
            "first_bad": [str(b) for b in records.bad[:show_bad]],
        }
        out.write(json.dumps(report, ensure_ascii=False) + "\n")
        return
    out.write(f"{records.summary()} ({records.fmt})\n")
    if counts:
        shown = ", ".join(f"{name} {n:,}" for name, n in counts.most_common(12))
        more = f", ... ({len(counts)} in all)" if len(counts) > 12 else ""
        out.write(f"{what}: {shown}{more}\n")
    for bad in records.bad[:show_bad]:
        out.write(f"  bad: {bad}\n")
    if records.n_bad > show_bad:
        out.write(f"  ... and {records.n_bad - show_bad:,} more bad records\n")
