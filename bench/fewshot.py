"""Few-shot classification (issue 10): in-context SmolLM2 (with and without contextual calibration), SetFit on
MiniLM and plain MiniLM fine-tuning, on the same k examples per class, plus the in-context prefix-cache speed-up.

Accuracy: for k in 8/16/32 examples per class and seeds 0..S-1, k examples of each label are drawn from SST-2
train (one draw per (k, seed), shared by every method) and each method is scored on a fixed stratified subset
of the SST-2 dev set (400 of the 872 sentences, 200 per label; `--dev-size 0` for all of them). The in-context
classifier is too slow for all 872 x 9 runs within the time budget on 2 cores (measured ~40-160 ms per sentence
at k = 8..32), hence the subset; every method sees the same one. The table gives the mean over seeds with a 95%
confidence interval (t distribution) and the mean paired difference to fine-tuning on the same draw.

- ICL: `InContextClassifier("smollm2-135m-instruct")`, template "Review: {text}\\nSentiment: {label}", verbaliser
  0=negative, 1=positive, k demonstrations per class drawn with the seed; calibrated probabilities are
  softmax(log p - log p_cf) with p_cf from "N/A", "" and "[MASK]" (Zhao et al. 2021). One scoring pass gives both.
- SetFit: `train_setfit(draw, base="minilm-l6")` with SetFit's defaults (oversampled pairs, 1 epoch, 2e-5).
- fine-tune: `Trainer` full fine-tuning of MiniLM + a fresh head: 20 epochs, batch 8, lr 1e-4, 10% warm-up,
  max_length 64, no dev-based checkpoint selection (a few-shot learner has no dev set).
- `--anchor`: the `setfit` package (1.2.0) on the same draws, for parity of our SetFit implementation.
- `--chinese`: ChnSentiCorp (dev subset), SetFit vs fine-tuning on multilingual-e5-small, k = 8 and 16 (slower: 12
  layers and long reviews; measured ~50 s per SetFit run at k = 8 on one thread, ~4x that at k = 16: ~10 min).

Speed: `label_logprobs` on dev sentences with full prompts (`cache_prefix=False`), with the prefix cache copied
into padded rows, and with the prefix cache and packed rows (the default), interleaved A B C A B C, medians.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/fewshot.py                 # full run (~15 min on 2 free cores)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/fewshot.py --smoke         # 8 per class, 1 seed, 100 dev sentences
    HF_HUB_OFFLINE=1 .venv/bin/python bench/fewshot.py --parts accuracy --methods setfit finetune --sizes 8
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
RESULTS = ROOT / "bench" / "results" / "fewshot.json"
TABLE = ROOT / "bench" / "BENCHMARKS.fewshot.md"

TEMPLATE = "Review: {text}\nSentiment: {label}"
VERBALIZER = {"0": "negative", "1": "positive"}
METHODS = {
    "icl": "ICL, SmolLM2-135M",
    "icl-cal": "ICL + calibration, SmolLM2-135M",
    "icl-rand": "ICL, S random of the draw per class (similar-demos dev subset)",
    "icl-rand-cal": "ICL + calibration, S random of the draw per class (same subset)",
    "icl-sim": "ICL, S most similar of the draw per class by MiniLM (same subset)",
    "icl-sim-cal": "ICL + calibration, S most similar of the draw by MiniLM (same subset)",
    "setfit": "SetFit, MiniLM-L6",
    "finetune": "fine-tune, MiniLM-L6",
    "setfit-package": "setfit 1.2.0 package, MiniLM-L6 (anchor)",
    "zh-setfit": "SetFit, multilingual-e5-small (ChnSentiCorp)",
    "zh-finetune": "fine-tune, multilingual-e5-small (ChnSentiCorp)",
}
BASELINES = {  # what Δ compares a row with (same draw, same seed, same dev sentences)
    "icl-rand": "icl-rand",
    "icl-rand-cal": "icl-rand-cal",
    "icl-sim": "icl-rand",
    "icl-sim-cal": "icl-rand-cal",
    "zh-setfit": "zh-finetune",
    "zh-finetune": "zh-finetune",
}


# ============================================================================================ data
def _read(name: str, split: str, text_field: str) -> list[Any]:
    from yulian.tuning.data import read_records

    return list(read_records(DATA / name / f"{split}.tsv", text_field=text_field, label_field="label"))


def _stratified(examples: list[Any], size: int, seed: int) -> list[Any]:
    """`size` examples, equal shares of every label (all of them for size 0), in a fixed shuffled order."""
    if not size or size >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    by: dict[str, list[Any]] = {}
    for ex in examples:
        by.setdefault(ex.label, []).append(ex)
    out: list[Any] = []
    for label in sorted(by):
        out += rng.sample(by[label], size // len(by))
    rng.shuffle(out)
    return out


def _draw(train: list[Any], k: int, seed: int) -> list[Any]:
    """k examples of every label: the draw of (k, seed), shared by every method."""
    return _stratified(train, k * len({ex.label for ex in train}), 1000 + 97 * k + seed)


# ============================================================================================ methods
def _icl(draw: list[Any], dev: list[Any], k: int, seed: int, chat: Any) -> dict[str, dict[str, float]]:
    from yulian.tuning.fewshot import InContextClassifier

    clf = InContextClassifier(
        chat, draw, per_class=k, seed=seed, template=TEMPLATE, verbalizer=VERBALIZER, batch_size=16
    ).warm_up()
    started = time.perf_counter()
    details = clf.scores([ex.text for ex in dev])
    seconds = time.perf_counter() - started
    prefix = clf._runtime().prefix
    out = _both(details, dev, clf.labels)
    for row in out.values():
        row.update(
            seconds=round(seconds, 1),
            ms_per_text=round(1000 * seconds / len(dev), 1),
            prompt_tokens=len(prefix.ids) if prefix is not None else 0,
        )
    out["-cal"]["calibration"] = details[0].calibration
    return {f"icl{suffix}": row for suffix, row in out.items()}


def _both(details: list[Any], dev: list[Any], labels: list[str]) -> dict[str, dict[str, Any]]:
    """Metrics without ("") and with ("-cal") contextual calibration, from one scoring pass."""
    from yulian.tuning.fewshot import classification_scores

    gold = [ex.label for ex in dev]
    out: dict[str, dict[str, Any]] = {}
    for suffix, field in (("", "probabilities"), ("-cal", "calibrated")):
        predicted = [max(getattr(d, field).items(), key=lambda kv: kv[1])[0] for d in details]
        out[suffix] = dict(classification_scores(gold, predicted, labels))
    return out


def _icl_similar(
    draw: list[Any], dev: list[Any], shots: int, seed: int, chat: Any, embedder: Any
) -> dict[str, dict[str, float]]:
    """S demonstrations per class out of the k-per-class draw: drawn at random, or the S most similar to each input
    (MiniLM cosine; every input then has its own prompt: its cache serves the input and the calibration only)."""
    from yulian.tuning.fewshot import InContextClassifier

    out = {}
    for name, options in (("icl-rand", {}), ("icl-sim", {"embedder": embedder})):
        clf = InContextClassifier(
            chat, draw, per_class=shots, seed=seed, template=TEMPLATE, verbalizer=VERBALIZER, batch_size=16, **options
        ).warm_up()
        started = time.perf_counter()
        details = clf.scores([ex.text for ex in dev])
        seconds = time.perf_counter() - started
        for suffix, row in _both(details, dev, clf.labels).items():
            out[name + suffix] = {
                **row,
                "seconds": round(seconds, 1),
                "ms_per_text": round(1000 * seconds / len(dev), 1),
            }
    return out


def _setfit(draw: list[Any], dev: list[Any], seed: int, base: str, threads: int) -> dict[str, float]:
    from yulian.tuning.fewshot import train_setfit

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = train_setfit(draw, Path(tmp) / "m", base=base, seed=seed, threads=threads)
        metrics = result.classifier.evaluate(dev)
    return {**metrics, "seconds": round(time.perf_counter() - started, 1), "pairs": result.pairs}


def _finetune(draw: list[Any], dev: list[Any], seed: int, base: str, threads: int) -> dict[str, float]:
    from yulian.tuning.tasks import TaskConfig, get_task
    from yulian.tuning.trainer import TrainConfig, Trainer

    started = time.perf_counter()
    task = get_task("classification", TaskConfig(max_length=64))
    config = TrainConfig(
        epochs=20,
        batch_size=8,
        lr=1e-4,
        warmup=0.1,
        seed=seed,
        threads=threads,
        progress=False,
        artifacts=False,
        save_model=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task, config, Path(tmp) / "m")
        trainer.fit(draw, None, base)
        metrics = task.evaluate(trainer.model, trainer.tokenizer, dev, batch_size=64)
    return {**{k: float(v) for k, v in metrics.items()}, "seconds": round(time.perf_counter() - started, 1)}


def _setfit_package(draw: list[Any], dev: list[Any], seed: int, base: str) -> dict[str, float]:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from yulian.tuning.fewshot import classification_scores

    started = time.perf_counter()
    labels = sorted({ex.label for ex in draw})
    data = Dataset.from_dict({"text": [ex.text for ex in draw], "label": [labels.index(ex.label) for ex in draw]})
    model = SetFitModel.from_pretrained(base)
    with tempfile.TemporaryDirectory() as tmp:  # setfit writes checkpoints into output_dir
        args = TrainingArguments(output_dir=tmp, seed=seed, report_to="none", show_progress_bar=False)
        Trainer(model=model, args=args, train_dataset=data).train()
    predicted = [labels[int(p)] for p in model.predict([ex.text for ex in dev])]
    metrics = classification_scores([ex.label for ex in dev], predicted, labels)
    return {**metrics, "seconds": round(time.perf_counter() - started, 1)}


def run_accuracy(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from yulian.models.hf_chat import HFChatModel
    from yulian.models.registry import resolve

    rows = results.setdefault("rows", {})
    minilm = resolve("minilm-l6").path
    chat = HFChatModel("smollm2-135m-instruct") if {"icl", "icl-similar"} & set(args.methods) else None
    embedder = None
    if "icl-similar" in args.methods:
        from yulian.models.registry import load

        embedder = load("minilm-l6")
    plan: list[tuple[str, str, str, str]] = [("sst2", "glue_sst2", "sentence", m) for m in args.methods]
    if args.chinese:
        plan += [("zh", "chnsenticorp", "text_a", m) for m in ("zh-setfit", "zh-finetune")]
    cache: dict[str, tuple[list[Any], list[Any]]] = {}
    for k in args.sizes:
        for seed in range(args.seeds):
            for data_name, folder, field, method in plan:
                if method == "icl-similar" and k not in args.similar_sizes:
                    continue
                if data_name == "zh" and k not in args.chinese_sizes:
                    continue
                key = f"{'icl-sim' if method == 'icl-similar' else method}|{k}|{seed}"
                if key in rows and not args.force:
                    continue
                if data_name not in cache:
                    train = _read(folder, "train", field)
                    dev = _stratified(_read(folder, "dev", field), args.dev_size, 1234)
                    cache[data_name] = (train, dev)
                train, dev = cache[data_name]
                draw = _draw(train, k, seed)
                title = METHODS.get(method, "ICL, similar vs random demonstrations")
                print(f"{title:>46} k={k:<3} seed {seed} ...", end=" ", flush=True)
                if method == "icl":
                    for name, row in _icl(draw, dev, k, seed, chat).items():
                        rows[f"{name}|{k}|{seed}"] = row
                    row = rows[f"icl-cal|{k}|{seed}"]
                    print(f"(uncalibrated {rows[key]['accuracy']:.4f})", end=" ")
                elif method == "icl-similar":
                    small = dev[: args.similar_dev]
                    for name, row in _icl_similar(draw, small, args.similar_shots, seed, chat, embedder).items():
                        rows[f"{name}|{k}|{seed}"] = row
                    row = rows[f"icl-sim-cal|{k}|{seed}"]
                    print(f"(random {rows[f'icl-rand-cal|{k}|{seed}']['accuracy']:.4f} calibrated)", end=" ")
                elif method == "setfit":
                    row = rows[key] = _setfit(draw, dev, seed, str(minilm), args.threads)
                elif method == "finetune":
                    row = rows[key] = _finetune(draw, dev, seed, str(minilm), args.threads)
                elif method == "setfit-package":
                    row = rows[key] = _setfit_package(draw, dev, seed, str(minilm))
                elif method == "zh-setfit":
                    row = rows[key] = _setfit(draw, dev, seed, "multilingual-e5-small", args.threads)
                elif method == "zh-finetune":
                    row = rows[key] = _finetune(draw, dev, seed, "multilingual-e5-small", args.threads)
                else:
                    raise ValueError(f"unknown method {method!r} (methods: {', '.join(METHODS)})")
                print(f"accuracy {row['accuracy']:.4f} ({row['seconds']} s)", flush=True)
                _save(results)


# ============================================================================================ speed
def run_speed(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from yulian.models.hf_chat import HFChatModel
    from yulian.tuning.fewshot import InContextClassifier

    train = _read("glue_sst2", "train", "sentence")
    dev = _stratified(_read("glue_sst2", "dev", "sentence"), 0, 0)
    chat = HFChatModel("smollm2-135m-instruct").warm_up()
    speed = results.setdefault("speed", {})
    for spec in args.speed:
        k, n, reps = (int(x) for x in spec.split(":"))
        texts = [ex.text for ex in dev[:n]]

        def make(k: int = k, **options: Any) -> Any:
            opts = {"per_class": k, "seed": 0, "template": TEMPLATE, "verbalizer": VERBALIZER, "batch_size": 16}
            return InContextClassifier(chat, _draw(train, k, 0), **opts, **options).warm_up()

        variants = {"full prompts": make(cache_prefix=False), "cached, padded rows": make(), "cached, packed": make()}
        variants["cached, padded rows"].scorer.packing = False
        times: dict[str, list[float]] = {name: [] for name in variants}
        scores: dict[str, Any] = {}
        for rep in range(reps):
            for name, clf in variants.items():
                started = time.perf_counter()
                scores[name] = clf.label_logprobs(texts)
                times[name].append(time.perf_counter() - started)
            print(f"speed k={k} rep {rep + 1}/{reps}: " + ", ".join(f"{a} {t[-1]:.2f} s" for a, t in times.items()))
        ref = scores["full prompts"]
        prefix = variants["cached, packed"]._runtime().prefix
        speed[str(k)] = {
            "inputs": n,
            "reps": reps,
            "prompt_tokens": len(prefix.ids) if prefix is not None else 0,
            "ms_per_text": {name: round(1000 * statistics.median(t) / n, 1) for name, t in times.items()},
            "max_abs_diff": {
                name: max(abs(s[label] - r[label]) for s, r in zip(scores[name], ref, strict=True) for label in r)
                for name in variants
            },
            "same_labels": {
                name: sum(
                    max(s, key=lambda x, s=s: s[x]) == max(r, key=lambda x, r=r: r[x])
                    for s, r in zip(scores[name], ref, strict=True)
                )
                / n
                for name in variants
            },
            "dtype": chat.runtime_info()["dtype"],
        }
        _save(results)


# ============================================================================================ output
def _save(results: dict[str, Any]) -> None:
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    TABLE.write_text(_table(results), encoding="utf-8")


def _table(results: dict[str, Any]) -> str:
    proto = results.get("protocol", {})
    dev_n = proto.get("dev_size") or 872
    command = proto.get("command", "HF_HUB_OFFLINE=1 .venv/bin/python bench/fewshot.py")
    lines = [
        "## Few-shot classification (issue 10)",
        "",
        f"SST-2, k labelled examples per class drawn from the training set (one draw per k and seed, shared by every "
        f"method), accuracy on a fixed stratified subset of {dev_n} SST-2 dev sentences (the in-context runs are too "
        "slow for all 872 x 9 within the time budget). Mean over seeds with a 95% confidence interval (t); Δ is "
        "the mean paired difference to fine-tuning on the same draw (for the similar-demonstrations rows: to random "
        f"demonstrations from the same draw, on the first {proto.get('similar_dev')} of those dev sentences). "
        "ICL: SmolLM2-135M-Instruct, "
        "'Review: {text} / Sentiment: {label}', words negative/positive, constrained scoring (no generation). "
        "SetFit: our implementation, SetFit's defaults. Fine-tune: MiniLM + fresh head, 20 epochs, batch 8, lr 1e-4, "
        "no dev-based selection. ChnSentiCorp rows (`--chinese`): the same protocol on ChnSentiCorp (k reviews per "
        f"class from its training set, a fixed stratified {dev_n} of its 1,200 dev reviews) with multilingual-e5-small "
        "for SetFit (max_length 128) and fine-tuning (max_length 64): long reviews are cut. Commands: "
        "`HF_HUB_OFFLINE=1 .venv/bin/python bench/fewshot.py --threads 1` (SST-2), "
        "`... bench/fewshot.py --parts accuracy --chinese --sizes 8 16 --threads 1` (adds the ChnSentiCorp rows); "
        f"last run: `{command}`.",
        "",
        "| method | k per class | seeds | dev accuracy | macro F1 | Δ (paired) | verdict | s per run |",
        "|---|--:|--:|--:|--:|--:|---|--:|",
    ]
    rows = results.get("rows", {})
    sizes = sorted({int(key.split("|")[1]) for key in rows})
    for size in sizes:
        for method, title in METHODS.items():
            title = title.replace(" S ", f" {proto.get('similar_shots', 'S')} ")
            runs = {int(k.split("|")[2]): v for k, v in rows.items() if k.startswith(f"{method}|{size}|")}
            if not runs:
                continue
            acc, half = ci95([r["accuracy"] for r in runs.values()])
            f1, _ = ci95([r["macro_f1"] for r in runs.values()])
            base_name = BASELINES.get(method, "finetune")
            base = {int(k.split("|")[2]): v for k, v in rows.items() if k.startswith(f"{base_name}|{size}|")}
            paired = [runs[s]["accuracy"] - base[s]["accuracy"] for s in runs if s in base]
            delta = verdict = ""
            if method != base_name and paired:
                d, dh = ci95(paired)
                delta = f"{d:+.4f} ± {dh:.4f}" if not math.isnan(dh) else f"{d:+.4f}"
                if math.isnan(dh):
                    verdict = "one seed: no interval"
                else:
                    verdict = "better" if d - dh > 0 else "worse" if d + dh < 0 else "no significant difference"
            ci = f" ± {half:.4f}" if not math.isnan(half) else ""
            secs = statistics.fmean(r["seconds"] for r in runs.values())
            lines.append(
                f"| {title} | {size} | {len(runs)} | {acc:.4f}{ci} | {f1:.4f} | {delta} | {verdict} | {secs:.0f} |"
            )
    speed = results.get("speed", {})
    if speed:
        lines += [
            "",
            "In-context prefix cache (SST-2 dev sentences, `label_logprobs`, batch 16, interleaved runs, medians; "
            "max |Δ| and same-label share against full prompts; in bfloat16 the paths round differently, in float32 "
            "they agree to 1e-5, as tests/unit/tuning/test_fewshot.py checks):",
            "",
            "| k per class | prefix tokens | dtype | full prompts ms/text | cached, padded rows | cached, packed | "
            "speed-up (packed vs full) | max abs Δ score | same labels |",
            "|--:|--:|---|--:|--:|--:|--:|--:|--:|",
        ]
        for k, s in sorted(speed.items(), key=lambda kv: int(kv[0])):
            ms = s["ms_per_text"]
            lines.append(
                f"| {k} | {s['prompt_tokens']} | {s['dtype']} | {ms['full prompts']} | {ms['cached, padded rows']} | "
                f"{ms['cached, packed']} | {ms['full prompts'] / ms['cached, packed']:.1f}x | "
                f"{s['max_abs_diff']['cached, packed']:.2g} | {s['same_labels']['cached, packed']:.0%} |"
            )
    meta = results.get("meta", {})
    if meta:
        lines += [
            "",
            f"Measured at {meta.get('git', {}).get('commit', '?')[:10]} on {meta.get('machine', {}).get('cpu_model')} "
            f"({meta.get('machine', {}).get('cpus')} CPUs), {proto.get('threads')} torch threads.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32], help="examples per class")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dev-size", type=int, default=400, help="stratified dev subset (0: the whole dev set)")
    parser.add_argument(
        "--methods", nargs="+", default=["icl", "icl-similar", "setfit", "finetune"], choices=[*METHODS, "icl-similar"]
    )
    parser.add_argument("--similar-sizes", type=int, nargs="+", default=[32], help="draws the similar-demos rows use")
    parser.add_argument("--similar-shots", type=int, default=8, help="demonstrations per class they put in the prompt")
    parser.add_argument("--similar-dev", type=int, default=100, help="dev sentences they are scored on")
    parser.add_argument("--anchor", action="store_true", help="also the setfit package (needs `pip install setfit`)")
    parser.add_argument("--chinese", action="store_true", help="also ChnSentiCorp with multilingual-e5-small")
    parser.add_argument("--chinese-sizes", type=int, nargs="+", default=[8, 16], help="k of the ChnSentiCorp rows")
    parser.add_argument("--speed", nargs="*", default=["8:16:3", "32:4:2"], help="K:INPUTS:REPS speed runs")
    parser.add_argument("--parts", nargs="+", default=["speed", "accuracy"], choices=["speed", "accuracy"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--force", action="store_true", help="re-run rows already measured")
    parser.add_argument("--smoke", action="store_true", help="8 per class, 1 seed, 100 dev sentences, small speed run")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.seeds, args.dev_size, args.speed = [8], 1, 100, ["8:8:2"]
        args.similar_sizes, args.similar_shots, args.similar_dev = [8], 4, 40
    if args.anchor and "setfit-package" not in args.methods:
        args.methods.append("setfit-package")
    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    protocol = {
        "dev_size": args.dev_size,
        "similar_shots": args.similar_shots,
        "similar_dev": args.similar_dev,
        "threads": args.threads,
        "command": "HF_HUB_OFFLINE=1 " + " ".join([".venv/bin/python", "bench/fewshot.py", *sys.argv[1:]]),
    }
    old = results.get("protocol", {})
    if any(old.get(k) != protocol[k] for k in ("dev_size", "similar_shots", "similar_dev")):
        results = {}  # rows measured on other dev subsets are not comparable
    results["protocol"] = protocol
    results["meta"] = {"machine": machine_info(), "git": git_state()}
    started = time.perf_counter()
    if "speed" in args.parts and args.speed:
        run_speed(args, results)
    if "accuracy" in args.parts:
        run_accuracy(args, results)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    _save(results)
    print(TABLE.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
