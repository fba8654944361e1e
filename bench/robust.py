"""Robust fine-tuning options vs the plain baseline on small SST-2 subsets (issue 10), plus explanations and
guardrails measured for what they promise.

Rows: for each option (label smoothing, R-Drop, an ensemble of 3 seeds, data augmentation, ...) and training-set
size (100 and 1,000 examples drawn stratified from SST-2 train, a different draw per seed), MiniLM full
fine-tuning is scored on the SST-2 dev set (872) over seeds 0..S-1; the table gives the mean, a 95% confidence
interval (t distribution) and the mean paired difference to the baseline trained on the same draw with the same
seed. Options that do not help are reported as such. `--data chnsenticorp` runs the options on ChnSentiCorp
instead (multilingual-e5-small, max_length 128, jieba word-level EDA with 同义词词林; dev 1,200), kept apart.

Augmentation rows replace half of the training examples by a fresh variant at every epoch (`TrainConfig.augment`,
`yulian.tuning.augment`); paraphrases (SmolLM2-135M-Instruct, 2 per text) are generated once per unique text
before the runs and cached in ~/.cache/yulian/paraphrases.jsonl. The `paraphrase` part measures how many of the
generator's outputs pass the filter, in English and in Chinese, and how fast it generates.

Explanations: integrated-gradients attributions of a classifier trained here are checked for faithfulness on
dev sentences: deleting the 20% of words with the highest attribution must lower the predicted class's
probability more than deleting as many random words (comprehensiveness, DeYoung et al. 2020).
Guardrails: recall and precision of the secret and PII rewrite rules on generated model outputs (with look-alike
negatives), and the time they add per output.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/robust.py                  # everything (~10 min on 2 free cores)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/robust.py --seeds 2 --sizes 100 --only baseline rdrop
    HF_HUB_OFFLINE=1 .venv/bin/python bench/robust.py --parts options --data chnsenticorp --only baseline EDA
    HF_HUB_OFFLINE=1 .venv/bin/python bench/robust.py --parts paraphrase --paraphrase-texts 32
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _common import ci95, git_state, machine_info  # noqa: E402

DATA = Path(os.environ.get("YULIAN_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "bench" / "results" / "robust.json"
TABLE = ROOT / "bench" / "BENCHMARKS.robust.md"

OPTIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "label smoothing 0.1": {"task": {"label_smoothing": 0.1}},
    "R-Drop 1.0": {"task": {"rdrop": 1.0}},
    "ensemble of 3 seeds": {"ensemble": 3},
    "FGM (epsilon 1)": {"train": {"adversarial": "fgm", "adv_epsilon": 1.0}},
    "PGD (epsilon 1, 3 steps)": {"train": {"adversarial": "pgd", "adv_epsilon": 1.0, "adv_alpha": 0.3}},
    "layer-wise lr decay 0.9": {"train": {"layer_decay": 0.9}},
    "EDA (ratio 0.5)": {"train": {"augment": "eda", "augment_ratio": 0.5}},
    "synonym replacement": {"train": {"augment": "synonym", "augment_ratio": 0.5}},
    "paraphrase (SmolLM2)": {"train": {"augment": "paraphrase:n=2", "augment_ratio": 0.5}},
}

DATASETS: dict[str, dict[str, Any]] = {
    "sst2": {
        "name": "SST-2",
        "train": "glue_sst2/train.tsv",
        "dev": "glue_sst2/dev.tsv",
        "text_field": "sentence",
        "model": "minilm-l6",
        "max_length": 64,
        "lang": "en",
        "key": "options",
    },
    "chnsenticorp": {
        "name": "ChnSentiCorp",
        "train": "chnsenticorp/train.tsv",
        "dev": "chnsenticorp/dev.tsv",
        "text_field": "text_a",
        "model": "multilingual-e5-small",
        "max_length": 128,
        "lang": "zh",
        "key": "options_chnsenticorp",
        "dev_size": 400,  # a fixed stratified 400 of the 1,200: e5 evaluates every epoch, on one core
    },
}
"""Where each `--data` reads from, what it trains, and where its rows go in robust.json."""


def _read(data: str = "sst2") -> tuple[list[Any], list[Any]]:
    from yulian.tuning.data import read_records

    spec = DATASETS[data]
    train = list(read_records(DATA / spec["train"], text_field=spec["text_field"], label_field="label"))
    dev = list(read_records(DATA / spec["dev"], text_field=spec["text_field"], label_field="label"))
    if spec.get("dev_size"):
        dev = _draw(dev, int(spec["dev_size"]), seed=-1000)  # seed -1000: random.Random(0), one fixed subset
    return train, dev


def _draw(train: list[Any], size: int, seed: int) -> list[Any]:
    rng = random.Random(1000 + seed)
    by: dict[str, list[Any]] = {}
    for ex in train:
        by.setdefault(ex.label, []).append(ex)
    out: list[Any] = []
    for label in sorted(by):
        out += rng.sample(by[label], size // len(by))
    rng.shuffle(out)
    return out


def _train(
    option: dict[str, Any],
    train: list[Any],
    dev: list[Any],
    seed: int,
    size: int,
    out: Path,
    data: str = "sst2",
    threads: int = 2,
) -> float:
    from yulian.models.registry import resolve
    from yulian.tuning.ensemble import train_ensemble
    from yulian.tuning.tasks import TaskConfig, get_task
    from yulian.tuning.trainer import TrainConfig, Trainer

    spec = DATASETS[data]
    base = resolve(spec["model"]).path
    task_options = dict(option.get("task", {}))
    train_options = dict(option.get("train", {}))
    if "augment" in train_options:
        train_options.setdefault("augment_lang", spec["lang"])  # EDA's word level and synonyms
    config = TrainConfig(
        epochs=10 if size <= 100 else 3,
        batch_size=16,
        lr=5e-5 if size > 100 else 1e-4,
        warmup=0.1,
        seed=seed,
        eval_every="epoch",
        threads=threads,
        progress=False,
        **train_options,
    )

    def make() -> Any:
        return get_task("classification", TaskConfig(max_length=spec["max_length"], **task_options))

    if option.get("ensemble"):
        built = train_ensemble(make, config, out, train, dev, str(base), k=int(option["ensemble"]))
        return float(built.metrics["accuracy"])
    result = Trainer(make(), config, out).fit(train, dev, str(base))
    return float(result.metrics["after"]["accuracy"])


def _selected(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return {n: o for n, o in OPTIONS.items() if not args.only or any(n.startswith(x) for x in args.only)}


def _pregenerate(args: argparse.Namespace, train: list[Any]) -> None:
    """Generate the paraphrases of every draw the paraphrase rows will train on, once, with progress."""
    import torch

    from yulian.tuning.augment import Augmenter

    torch.set_num_threads(args.threads)
    spec = DATASETS[args.data]
    for name, option in _selected(args).items():
        augment = option.get("train", {}).get("augment", "")
        if "paraphrase" not in augment:
            continue
        subsets = [_draw(train, size, seed) for size in args.sizes for seed in range(args.seeds)]
        unique = list({id(e): e for subset in subsets for e in subset}.values())
        print(f"{name}: paraphrasing {len(unique):,} training texts (cached after the first run)", flush=True)
        Augmenter(augment, lang=spec["lang"], progress=True).prepare(unique)


def run_options(args: argparse.Namespace, results: dict[str, Any]) -> None:
    train, dev = _read(args.data)
    rows = results.setdefault(DATASETS[args.data]["key"], {})
    _pregenerate(args, train)
    for size in args.sizes:
        for name, option in _selected(args).items():  # option by option: a stopped run leaves whole rows
            for seed in range(args.seeds):
                subset = _draw(train, size, seed)
                key = f"{name}|{size}|{seed}"
                if key in rows and not args.force:
                    continue
                started = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    acc = _train(option, subset, dev, seed, size, Path(tmp) / "run", args.data, args.threads)
                rows[key] = {"accuracy": acc, "seconds": round(time.perf_counter() - started, 1)}
                took = rows[key]["seconds"]
                print(f"{name:>22} {args.data} n={size:<5} seed {seed}: dev accuracy {acc:.4f} ({took} s)", flush=True)
                _save(results)


def run_paraphrase(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Acceptance rate and speed of SmolLM2 paraphrases on SST-2 (en) and ChnSentiCorp (zh) training texts."""
    import torch

    from yulian.tuning.augment_paraphrase import Paraphraser

    torch.set_num_threads(args.threads)
    report = results.setdefault("paraphrase", {})
    for data in ("sst2", "chnsenticorp"):
        spec = DATASETS[data]
        train, _ = _read(data)
        texts = [e.text for e in random.Random(7).sample(train, args.paraphrase_texts)]
        para = Paraphraser("smollm2-135m-instruct", n=2, progress=True)
        stats = para.prepare(texts, spec["lang"])
        usable = [t for t in texts if para.variants(t, spec["lang"])]
        examples = [(t, para.variants(t, spec["lang"])[0]) for t in usable[:3]]
        report[spec["lang"]] = {
            "data": spec["name"],
            "texts": len(texts),
            "outputs": 2 * len(texts),
            "acceptance": round(para.acceptance(), 4),
            "texts_with_a_paraphrase": len(usable),
            "reasons": dict(para.stats.most_common()),
            "generated": stats["generated"],
            "seconds": stats["seconds"],
            "texts_per_second": round(stats["generated"] / 2 / stats["seconds"], 3) if stats["seconds"] else None,
            "examples": examples,
        }
        print(f"paraphrase {spec['lang']}:", {k: v for k, v in report[spec["lang"]].items() if k != "examples"})
        _save(results)


def run_explanations(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from yulian.tuning.explain import Explainer

    train, dev = _read("sst2")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clf"
        acc = _train({}, _draw(train, 1000, 0), dev, 0, 1000, out)
        explainer = Explainer(out, steps=32)
        rng = random.Random(0)
        texts = [ex.text for ex in dev if len(ex.text.split()) >= 5][: args.explain_texts]
        top_drops, random_drops, deltas = [], [], []
        for text in texts:
            exp = explainer.explain(text)
            words = exp.words
            k = max(1, round(0.2 * len(words)))
            top = sorted(range(len(words)), key=lambda i: -words[i].score)[:k]
            rand = rng.sample(range(len(words)), k)

            def without(drop: list[int], words: Any = words) -> str:
                return " ".join(w.text for i, w in enumerate(words) if i not in set(drop))

            p_top = explainer.explain(without(top), exp.label).score
            p_rand = explainer.explain(without(rand), exp.label).score
            top_drops.append(exp.score - p_top)
            random_drops.append(exp.score - p_rand)
            deltas.append(abs(exp.delta))
        results["explanations"] = {
            "classifier_dev_accuracy": acc,
            "texts": len(texts),
            "comprehensiveness_top20": statistics.fmean(top_drops),
            "comprehensiveness_random20": statistics.fmean(random_drops),
            "top_beats_random_share": sum(t > r for t, r in zip(top_drops, random_drops, strict=True)) / len(texts),
            "median_abs_delta": statistics.median(deltas),
        }
    print("explanations:", results["explanations"], flush=True)
    _save(results)


def run_guardrails(results: dict[str, Any]) -> None:
    from yulian.guardrails import Guardrail, PIIRule, SecretRule
    from yulian.privacy import id_card_check_char

    rng = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

    def key() -> str:
        return "sk-" + "".join(rng.choice(alphabet) for _ in range(32))

    def aws() -> str:
        return "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))

    def phone() -> str:
        return "1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9))

    def idcard() -> str:
        first = "110105" + f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" + "123"
        return first + id_card_check_char(first)

    makers = {"api key": key, "aws key": aws, "phone": phone, "id card": idcard}
    frames = [
        "Sure! Your config should read: {v}. Let me know if it works.",
        "好的，您的信息是 {v}，请妥善保管。",
        "The value you asked for is {v}; store it somewhere safe.",
    ]
    negatives = [
        "Use the sk-learn package (scikit-learn) for this.",
        "订单金额13800138000元已退款。",
        "The AKIA prefix marks an AWS access key id.",
        "Version 1.2.3.4 fixed the issue; call the help desk on weekdays.",
        "我们的客服电话请在官网查询。",
    ]
    positives = [
        (kind, rng.choice(frames).format(v=(v := make())), v) for kind, make in makers.items() for _ in range(250)
    ]
    guard = Guardrail([SecretRule(), PIIRule()])
    caught = {kind: 0 for kind in makers}
    for kind, text, value in positives:
        if value not in guard.invoke(text):
            caught[kind] += 1
    clean = [n for n in negatives for _ in range(100)]
    false = sum(guard.invoke(t) != t for t in clean)
    texts = [t for _, t, _ in positives] + clean
    started = time.perf_counter()
    for _ in range(3):
        for t in texts:
            guard.invoke(t)
    per = (time.perf_counter() - started) / (3 * len(texts))
    results["guardrails"] = {
        "recall": {k: v / 250 for k, v in caught.items()},
        "false_positive_rate": false / len(clean),
        "us_per_output": round(per * 1e6, 1),
    }
    print("guardrails:", results["guardrails"], flush=True)
    _save(results)


def _save(results: dict[str, Any]) -> None:
    """Write the results merged into what is on disk (row by row), so two runs of different parts or data sets
    at the same time do not drop each other's rows (one at a time: a lock file)."""
    import fcntl

    with (RESULTS.parent / ".robust.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if RESULTS.exists():
            disk = json.loads(RESULTS.read_text(encoding="utf-8"))
            for key, value in disk.items():
                if isinstance(value, dict) and isinstance(results.get(key), dict):  # in place: callers hold the dicts
                    for row, got in value.items():
                        results[key].setdefault(row, got)
                elif key not in results:
                    results[key] = value
        tmp = RESULTS.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        tmp.replace(RESULTS)
        TABLE.write_text(_table(results), encoding="utf-8")


def _option_rows(rows: dict[str, Any]) -> list[str]:
    lines = ["| option | train size | seeds | dev accuracy | Δ vs baseline | verdict |", "|---|--:|--:|--:|--:|---|"]
    sizes = sorted({int(k.split("|")[1]) for k in rows})
    for size in sizes:
        for name in OPTIONS:
            accs = {int(k.split("|")[2]): v["accuracy"] for k, v in rows.items() if k.startswith(f"{name}|{size}|")}
            if not accs:
                continue
            mean, half = ci95(list(accs.values()))
            base = {int(k.split("|")[2]): v["accuracy"] for k, v in rows.items() if k.startswith(f"baseline|{size}|")}
            paired = [accs[s] - base[s] for s in accs if s in base]
            if name == "baseline" or not paired:
                delta, verdict = "", ""
            else:
                d, dh = ci95(paired)
                delta = f"{d:+.4f} ± {dh:.4f}" if not math.isnan(dh) else f"{d:+.4f}"
                if math.isnan(dh):
                    verdict = "one seed: no interval yet"
                else:
                    verdict = "helps" if d - dh > 0 else "hurts" if d + dh < 0 else "no significant difference"
            ci = f" ± {half:.4f}" if not math.isnan(half) else ""
            lines.append(f"| {name} | {size:,} | {len(accs)} | {mean:.4f}{ci} | {delta} | {verdict} |")
    return lines


def _table(results: dict[str, Any]) -> str:
    lines = [
        "## Robust fine-tuning options (issue 10)",
        "",
        "SST-2, MiniLM full fine-tuning, stratified subsets of the training set (a different draw per seed), dev "
        "accuracy on the official dev set (872). Mean over seeds with a 95% confidence interval (t); Δ is the mean "
        "paired difference to the baseline trained on the same draw with the same seed. Augmentation rows replace "
        "half of the examples by a fresh variant each epoch (EDA: Wei & Zou 2019, alpha 0.1, WordNet 3.0 synonyms; "
        "paraphrases: SmolLM2-135M-Instruct, 2 per text, filtered). Command: "
        "`HF_HUB_OFFLINE=1 .venv/bin/python bench/robust.py`.",
        "",
        *_option_rows(results.get("options", {})),
    ]
    zh = results.get("options_chnsenticorp", {})
    if zh:
        lines += [
            "",
            "ChnSentiCorp, multilingual-e5-small full fine-tuning (max_length 128), the same protocol on a fixed "
            "stratified 400 of its dev set (1,200); EDA works on jieba words with 同义词词林 synonyms. No paraphrase "
            "row: SmolLM2-135M's Chinese paraphrases pass the filter 17% of the time at 0.1 texts/s (below), too few "
            "and too slow to be an augmentation here. Command: "
            "`HF_HUB_OFFLINE=1 .venv/bin/python bench/robust.py --parts options --data chnsenticorp`.",
            "",
            *_option_rows(zh),
        ]
    para = results.get("paraphrase", {})
    for lang, p in sorted(para.items()):
        reasons = ", ".join(f"{k} {v}" for k, v in p["reasons"].items() if k != "ok")
        lines += [
            "",
            f"Paraphrases by SmolLM2-135M-Instruct on {p['texts']} {p['data']} training texts ({lang} prompt, 2 "
            f"samples each): {p['acceptance']:.0%} of the outputs pass the filter, {p['texts_with_a_paraphrase']} of "
            f"{p['texts']} texts get at least one (rejected: {reasons or 'none'}); {p['texts_per_second']} texts/s. "
            "Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/robust.py --parts paraphrase`.",
        ]
    exp = results.get("explanations")
    if exp:
        lines += [
            "",
            f"Explanations (integrated gradients, 32 steps) on {exp['texts']} SST-2 dev sentences of >= 5 words, for "
            f"a classifier trained on 1,000 examples (dev accuracy {exp['classifier_dev_accuracy']:.3f}): deleting "
            f"the top-20% attributed words lowers p(predicted label) by {exp['comprehensiveness_top20']:.3f} on "
            f"average vs {exp['comprehensiveness_random20']:.3f} for as many random words; the top words beat random "
            f"ones on {exp['top_beats_random_share']:.0%} of the sentences; median |integration error| "
            f"{exp['median_abs_delta']:.4f}.",
        ]
    guard = results.get("guardrails")
    if guard:
        recall = ", ".join(f"{k} {v:.3f}" for k, v in guard["recall"].items())
        lines += [
            "",
            f"Guardrails (SecretRule + PIIRule, rewrite) on 1,000 generated model outputs (zh/en) with secrets or PII "
            f"and 500 look-alike negatives: recall {recall}; false-positive rate {guard['false_positive_rate']:.3f}; "
            f"{guard['us_per_output']} µs per output.",
        ]
    meta = results.get("meta", {})
    if meta:
        lines += [
            "",
            f"Measured at {meta.get('git', {}).get('commit', '?')[:10]} on {meta.get('machine', {}).get('cpu_model')}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--only", nargs="*", default=None, help="options whose name starts with these")
    parser.add_argument("--force", action="store_true", help="re-run rows already measured")
    parser.add_argument("--parts", nargs="+", default=["options", "explanations", "guardrails"])
    parser.add_argument("--explain-texts", type=int, default=100)
    parser.add_argument("--data", choices=sorted(DATASETS), default="sst2", help="the data set of the options part")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per training run")
    parser.add_argument("--paraphrase-texts", type=int, default=64, help="texts per language in the paraphrase part")
    args = parser.parse_args()
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["meta"] = {"machine": machine_info(), "git": git_state()}
    if "guardrails" in args.parts:
        run_guardrails(results)
    if "options" in args.parts:
        run_options(args, results)
    if "explanations" in args.parts:
        run_explanations(args, results)
    if "paraphrase" in args.parts:
        run_paraphrase(args, results)
    _save(results)
    print(TABLE.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
