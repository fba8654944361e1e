"""Fine-tuning tasks (ner / qa): metric fidelity against the official scripts, and what windowing saves.

1. `yulian.tuning.metrics.squad_em_f1` against the official SQuAD v1.1 evaluation script (its functions copied
   verbatim below) on every SQuAD v1.1 dev (part a) question, and against the CMRC 2018 script's functions
   (nltk.word_tokenize replaced by str.split: nltk is not installed) on CMRC 2018 dev, with five kinds of
   predictions per question (gold, gold with an article, gold minus its last word, gold plus context, a wrong
   span). Counts disagreements per question and times both, interleaved A B A B, medians.
2. Feature encoding with the all-MiniLM-L6-v2 tokenizer at max_length 64 (NER) / 128 (QA): words a plain
   truncation (the usual recipe) would drop vs the task's stride windows (none), and encode throughput.

    .venv/bin/python bench/tuning_tasks.py    # ~1 minute; writes bench/results/tuning_tasks.json and
                                              # bench/BENCHMARKS.tuning_tasks.md
Data: $YULIAN_DATASETS, else ../shared/datasets.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import string
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _common import git_state, machine_info  # noqa: E402
from yulian.tuning.metrics import exact_match, qa_f1, qa_language  # noqa: E402
from yulian.tuning.tasks import TaskConfig, get_task  # noqa: E402

DATA = Path(os.environ.get("YULIAN_DATASETS") or ROOT.parent / "shared" / "datasets")
SQUAD = DATA / "squad_v1.1" / "dev-v1.1-part-a.json"
CMRC = DATA / "cmrc2018" / "squad-style" / "cmrc2018_dev.json"


# ---------------------------------------------------------------- official SQuAD v1.1 evaluate-v1.1.py (verbatim)
def normalize_answer(s: str) -> str:
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_em(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


# ---------------------------------------------------------------- CMRC 2018 cmrc2018_evaluate.py (nltk -> split)
CMRC_PUNCT = [
    "-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=", "，", "。", "：", "？", "！", "“", "”", "；", "’", "《",
    "》", "……", "·", "、", "「", "」", "（", "）", "－", "～", "『", "』",
]  # fmt: skip


def mixed_segmentation(in_str: str, rm_punc: bool = False) -> list[str]:
    in_str = str(in_str).lower().strip()
    segs_out: list[str] = []
    temp_str = ""
    for char in in_str:
        if rm_punc and char in CMRC_PUNCT:
            continue
        if re.search(r"[\u4e00-\u9fa5]", char) or char in CMRC_PUNCT:
            if temp_str != "":
                segs_out.extend(temp_str.split())
                temp_str = ""
            segs_out.append(char)
        else:
            temp_str += char
    if temp_str != "":
        segs_out.extend(temp_str.split())
    return segs_out


def remove_punctuation(in_str: str) -> str:
    in_str = str(in_str).lower().strip()
    sp_char = CMRC_PUNCT
    return "".join(char for char in in_str if char not in sp_char)


def find_lcs(s1: list[str], s2: list[str]) -> int:
    m = [[0 for i in range(len(s2) + 1)] for j in range(len(s1) + 1)]
    mmax = 0
    for i in range(len(s1)):
        for j in range(len(s2)):
            if s1[i] == s2[j]:
                m[i + 1][j + 1] = m[i][j] + 1
                mmax = max(mmax, m[i + 1][j + 1])
    return mmax


def cmrc_f1(answers: list[str], prediction: str) -> float:
    f1_scores = []
    for ans in answers:
        ans_segs = mixed_segmentation(ans, rm_punc=True)
        prediction_segs = mixed_segmentation(prediction, rm_punc=True)
        lcs_len = find_lcs(ans_segs, prediction_segs)
        if lcs_len == 0:
            f1_scores.append(0)
            continue
        precision = 1.0 * lcs_len / len(prediction_segs)
        recall = 1.0 * lcs_len / len(ans_segs)
        f1_scores.append((2 * precision * recall) / (precision + recall))
    return max(f1_scores)


def cmrc_em(answers: list[str], prediction: str) -> float:
    return float(any(remove_punctuation(a) == remove_punctuation(prediction) for a in answers))


# ---------------------------------------------------------------- the comparison
def predictions(examples: list[Any]) -> list[tuple[str, list[str]]]:
    """Five predictions per question: gold, with an article, minus its last word, plus context, a wrong span."""
    out = []
    for ex in examples:
        golds = [a["text"] for a in ex.answers]
        g, start = golds[0], ex.answers[0]["start"]
        words = g.split()
        out.append((g, golds))
        out.append(("the " + g, golds))
        out.append((" ".join(words[:-1]) if len(words) > 1 else g[:-1], golds))
        out.append((ex.context[max(0, start - 12) : start + len(g) + 12], golds))
        out.append((ex.context[:20], golds))
    return out


def compare(name: str, examples: list[Any], official: Any, reps: int = 5) -> dict[str, Any]:
    pairs = predictions(examples)
    lang = qa_language([ex.context for ex in examples])
    ours = [(exact_match(p, g, lang), qa_f1(p, g, lang)) for p, g in pairs]
    ref = [official(p, g) for p, g in pairs]
    em_diff = sum(1 for a, b in zip(ours, ref, strict=True) if a[0] != b[0])
    f1_diff = sum(1 for a, b in zip(ours, ref, strict=True) if abs(a[1] - b[1]) > 1e-9)
    examples_diff = [
        (p, g, o, r) for (p, g), o, r in zip(pairs, ours, ref, strict=True) if o[0] != r[0] or abs(o[1] - r[1]) > 1e-9
    ][:5]
    times: dict[str, list[float]] = {"yulian": [], "official": []}
    for _ in range(reps):  # interleaved A B A B
        for label, fn in (
            ("yulian", lambda p, g: (exact_match(p, g, lang), qa_f1(p, g, lang))),
            ("official", official),
        ):
            t0 = time.perf_counter()
            for p, g in pairs:
                fn(p, g)
            times[label].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name}: {len(pairs)} predictions, EM disagreements {em_diff}, F1 disagreements {f1_diff}", flush=True)
    return {
        "data": name,
        "language": lang,
        "predictions": len(pairs),
        "em_disagreements": em_diff,
        "f1_disagreements": f1_diff,
        "mean_f1_yulian": sum(o[1] for o in ours) / len(ours),
        "mean_f1_official": sum(r[1] for r in ref) / len(ref),
        "us_per_prediction_yulian": med["yulian"] / len(pairs) * 1e6,
        "us_per_prediction_official": med["official"] / len(pairs) * 1e6,
        "disagreement_samples": [[p, g, list(o), list(r)] for p, g, o, r in examples_diff],
    }


def squad_official(p: str, golds: list[str]) -> tuple[float, float]:
    return max(squad_em(p, g) for g in golds), max(squad_f1(p, g) for g in golds)


def cmrc_official(p: str, golds: list[str]) -> tuple[float, float]:
    return cmrc_em(golds, p), cmrc_f1(golds, p)


def windows(name: str, task_name: str, path: Path, config: TaskConfig, tokenizer: Any, limit: int) -> dict[str, Any]:
    task = get_task(task_name, config)
    examples = list(task.read(path, skip_bad=True))[:limit]
    task.setup(examples, "unused")
    t0 = time.perf_counter()
    features = task.encode(examples, tokenizer)
    seconds = time.perf_counter() - t0
    row: dict[str, Any] = {
        "data": name,
        "task": task_name,
        "examples": len(examples),
        "features": len(features),
        "examples_per_s": len(examples) / seconds,
    }
    if task_name == "ner":
        lost = total = 0
        room = config.max_length - 2
        enc = tokenizer([ex.tokens for ex in examples], is_split_into_words=True, add_special_tokens=False)
        for i, ex in enumerate(examples):
            kept = {w for w in enc.word_ids(i)[:room] if w is not None}
            lost += sum(1 for w in range(len(ex.tokens)) if w not in kept)
            total += len(ex.tokens)
        covered = {(f["example"], w) for f in features for w in f["word_ids"] if w is not None}
        tokenised = {(i, w) for i in range(len(examples)) for w in enc.word_ids(i) if w is not None}
        row.update(
            words=total,
            words_lost_truncation_pct=100 * lost / total,
            words_lost_windows_pct=100 * len(tokenised - covered) / total,
        )
    else:
        first_window = {f["example"] for f in features if f["start_positions"] != f["cls"] and f["offsets"]}
        answered = [i for i, ex in enumerate(examples) if ex.answers]
        only_first = {}
        for f in features:
            only_first.setdefault(f["example"], f)
        lost = sum(1 for i in answered if only_first[i]["start_positions"] == only_first[i]["cls"])
        row.update(
            answers=len(answered),
            answers_lost_truncation_pct=100 * lost / len(answered),
            answers_lost_windows_pct=100 * sum(1 for i in answered if i not in first_window) / len(answered),
        )
    print(f"{name}: {row}", flush=True)
    return row


def main() -> None:
    from transformers import AutoTokenizer

    from yulian.tuning.tasks._hf import model_folder

    started = time.time()
    qa = get_task("qa")
    squad = [ex for ex in qa.read(SQUAD) if ex.answers]
    cmrc = [ex for ex in qa.read(CMRC, skip_bad=True) if ex.answers]
    metrics = [compare("SQuAD v1.1 dev (part a)", squad, squad_official), compare("CMRC 2018 dev", cmrc, cmrc_official)]
    tokenizer = AutoTokenizer.from_pretrained(model_folder("minilm-l6"))
    ner = TaskConfig(max_length=64, stride=16)
    qa_config = TaskConfig(max_length=128, stride=32)
    encoding = [
        windows("CoNLL-2003 valid", "ner", DATA / "conll2003_en" / "valid.txt", ner, tokenizer, 100_000),
        windows("Resume NER dev (BMES)", "ner", DATA / "ner_zh_resume" / "dev.char.bmes", ner, tokenizer, 100_000),
        windows(
            "SQuAD v1.1 dev (part a)", "qa", DATA / "squad_v1.1" / "dev-v1.1-part-a.json", qa_config, tokenizer, 3000
        ),
        windows(
            "CMRC 2018 dev", "qa", DATA / "cmrc2018" / "squad-style" / "cmrc2018_dev.json", qa_config, tokenizer, 3000
        ),
    ]
    result = {
        "machine": machine_info(),
        "git": git_state(),
        "command": ".venv/bin/python bench/tuning_tasks.py",
        "seconds": time.time() - started,
        "metrics": metrics,
        "encoding": encoding,
    }
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "tuning_tasks.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    lines = [
        "## Fine-tuning tasks: metric fidelity and windowing",
        "",
        "Command: `.venv/bin/python bench/tuning_tasks.py` (data: `$YULIAN_DATASETS` or `../shared/datasets`).",
        "",
        "| data | predictions | EM disagreements | F1 disagreements | mean F1 yulian / official | us/pred yulian | "
        "us/pred official | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics:
        lines.append(
            f"| {m['data']} | {m['predictions']} | {m['em_disagreements']} | {m['f1_disagreements']} | "
            f"{m['mean_f1_yulian']:.4f} / {m['mean_f1_official']:.4f} | {m['us_per_prediction_yulian']:.1f} | "
            f"{m['us_per_prediction_official']:.1f} | "
            f"{m['us_per_prediction_yulian'] / m['us_per_prediction_official']:.2f}x |"
        )
    lines += [
        "",
        "Official: SQuAD v1.1 `evaluate-v1.1.py` functions verbatim; CMRC 2018 `cmrc2018_evaluate.py` functions with "
        "`nltk.word_tokenize` replaced by `str.split`. Timings: medians of 5 interleaved runs.",
        "",
        "| data | task | examples | features | encode examples/s | lost with plain truncation | lost with windows |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in encoding:
        what = "words" if e["task"] == "ner" else "answers"
        lines.append(
            f"| {e['data']} | {e['task']} | {e['examples']} | {e['features']} | {e['examples_per_s']:,.0f} | "
            f"{e[what + '_lost_truncation_pct']:.2f}% {what} | {e[what + '_lost_windows_pct']:.2f}% {what} |"
        )
    lines += [
        "",
        "MiniLM tokenizer; NER max_length 64 stride 16, QA max_length 128 stride 32. Plain truncation: one window "
        "per example (NER: `truncation=True`; QA: the first window only). The CMRC answers lost with windows are "
        "answers longer than the stride (50-80 characters), which straddle every window boundary: raise stride.",
        "",
    ]
    (ROOT / "bench" / "BENCHMARKS.tuning_tasks.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
