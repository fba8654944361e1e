"""`InContextClassifier`: few-shot classification with a local causal LM, by constrained scoring of label words.

```python
from yulian.tuning.fewshot import InContextClassifier
clf = InContextClassifier("smollm2-135m-instruct", train, per_class=8,
                          verbalizer={"0": "negative", "1": "positive"},
                          template="Review: {text}\\nSentiment: {label}", calibrate=True)
clf.invoke("a gripping, funny film")     # Prediction(label="1", score=0.83, scores={"1": 0.83, "0": 0.17})
clf.batch(texts); await clf.abatch(texts)
clf.label_logprobs(texts)               # the raw constrained scores, label -> log-probability
clf.scores(texts)                       # scores, probabilities, p_cf and calibrated probabilities in one pass
```

**The prompt**: an optional instruction, then `per_class` demonstrations of every label (drawn with `seed`, in
shuffled order; or, with `embedder=...`, the `per_class` most similar examples of every label for each input,
the most similar last), each written with `template`, then the input written with the template up to `{label}`.

**Constrained scoring**: the model never generates. The score of a label is the log-probability the model gives
its verbalised word (`verbalizer`, default: the label's name) as the continuation of the prompt: the sum of its
tokens' log-probabilities, divided by their number when `length_norm` (so multi-token words are not penalised
for their length). The probabilities are the softmax of the scores over the labels.

**Contextual calibration** (Zhao et al. 2021, "Calibrate before use"): with `calibrate=True`, p_cf is the mean
label distribution of content-free inputs ("N/A", "", "[MASK]") under the same demonstrations, and the
calibrated probabilities are q = softmax(log p - log p_cf), i.e. q is proportional to p / p_cf.

**Speed** (`yulian.tuning.fewshot_lm`): with demonstrations drawn by seed, every prompt starts with the same
prefix (instruction and demonstrations: nearly all of its tokens). Its key/value cache is computed once and
reused for every batch; a batch's inputs are packed into one row after it (a block-diagonal attention mask), so
only the inputs and label words run through the model, and only the positions that predict label tokens reach
the vocabulary projection. With an embedder each input has its own prompt: its cache is computed once and serves
the input and the content-free calibration inputs. `cache_prefix=False` runs full prompts (the reference).
Measured on SST-2 with SmolLM2-135M: 12x faster than full prompts at 8 demonstrations per class
(bench/BENCHMARKS.fewshot.md).
"""

from __future__ import annotations

import difflib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.models.predictions import Prediction
from yulian.tuning.fewshot_data import (
    Shot,
    TextClassifierRunnable,
    as_shots,
    check_verbalizer,
    label_order,
    parse_verbalizer,
    sample_per_class,
)
from yulian.tuning.fewshot_lm import ContinuationScorer, Prefix

__all__ = ["ICL_FILE", "ICLConfig", "InContextClassifier", "LabelScores"]

ICL_FILE = "fewshot-icl.json"
"""The file `InContextClassifier.save` writes: model, labels, verbaliser, options and demonstrations."""

_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ICLConfig:
    """Options of `InContextClassifier`, checked here.

    Attributes:
        per_class: demonstrations of every label in the prompt.
        seed: draws the demonstrations (and their order) when no embedder picks them.
        template: how one example is written; `{text}` is the text, `{label}` the verbalised label and must end
            the template (it is the continuation the model scores). Spaces before `{label}` go with the word
            (" positive"), as BPE tokenizers expect.
        separator: between demonstrations (and after the instruction).
        instruction: text put before the demonstrations ("" for none).
        length_norm: divide a word's log-probability by its number of tokens.
        calibrate: contextual calibration with the `content_free` inputs.
        content_free: inputs without content, whose mean label distribution calibration divides out.
        batch_size: prompt rows per forward pass.
        max_text_tokens: texts (demonstrations and inputs) are cut to this many tokens.
        cache_prefix: compute the shared prefix's key/value cache once and reuse it (False: full prompts).
        dtype: weights' dtype: "auto" (`HFChatModel`'s choice: bf16 where the CPU computes it natively and it picks
            float32's tokens, else float32), "float32", "bfloat16" or "float16". Ignored for an `HFChatModel`.
        device: a torch device.
    """

    per_class: int = 4
    seed: int = 0
    template: str = "Text: {text}\nLabel: {label}"
    separator: str = "\n\n"
    instruction: str = ""
    length_norm: bool = True
    calibrate: bool = False
    content_free: tuple[str, ...] = ("N/A", "", "[MASK]")
    batch_size: int = 8
    max_text_tokens: int = 96
    cache_prefix: bool = True
    dtype: str = "auto"
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name, minimum in (("per_class", 1), ("batch_size", 1), ("max_text_tokens", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"ICLConfig.{name} must be a whole number >= {minimum}, got {value!r}")
        t = self.template
        if not isinstance(t, str) or t.count("{text}") != 1 or t.count("{label}") != 1:
            raise ValueError(f"ICLConfig.template must contain {{text}} and {{label}} once each, got {t!r}")
        if not t.endswith("{label}") or t.index("{text}") > t.index("{label}"):
            raise ValueError(
                f"ICLConfig.template must end with {{label}}, after {{text}} (the label word is the continuation "
                f"the model scores), got {t!r}"
            )
        if not isinstance(self.separator, str) or not isinstance(self.instruction, str):
            raise ValueError("ICLConfig.separator and instruction must be strings")
        content_free: object = self.content_free
        if isinstance(content_free, str):
            raise ValueError(f"ICLConfig.content_free is a list of strings, got the string {content_free!r}")
        object.__setattr__(self, "content_free", tuple(self.content_free))
        if not self.content_free or not all(isinstance(s, str) for s in self.content_free):
            raise ValueError(f"ICLConfig.content_free must be a non-empty list of strings, got {self.content_free!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"ICLConfig.dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        for name in ("length_norm", "calibrate", "cache_prefix"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ICLConfig.{name} must be True or False, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class LabelScores:
    """What `InContextClassifier.scores` computes for one text.

    Attributes:
        logprobs: label -> constrained score (log-probability of its word, per token when `length_norm`).
        probabilities: label -> softmax of the scores.
        calibration: label -> p_cf, the mean distribution of the content-free inputs under the same demonstrations.
        calibrated: label -> probability after contextual calibration (proportional to p / p_cf).
    """

    logprobs: dict[str, float]
    probabilities: dict[str, float]
    calibration: dict[str, float] | None = None
    calibrated: dict[str, float] | None = None


@dataclass
class _Loaded:
    """What the first use prepares: token ids of the label words, the shared prefix, the pool's vectors."""

    bos: list[int]
    words: list[list[int]]  # the continuation token ids of each label, in `labels` order
    prefix: Prefix | None = None  # the shared prefix (demonstrations drawn by seed)
    pool: Any = None  # unit vectors of the example pool (embedder mode)
    memo: dict[tuple[int, ...], Prefix] = field(default_factory=dict)


class InContextClassifier(TextClassifierRunnable):
    """A causal LM as a few-shot text classifier: demonstrations in the prompt, label words scored, not generated.

    Args:
        model: a registered chat model name (`"smollm2-135m-instruct"`), a Hugging Face causal-LM folder, a
            `.gguf` file, or an `HFChatModel` (its loaded weights are shared).
        examples: the labelled examples: `TextExample`s, `(text, label)` pairs or `{"text", "label"}` mappings.
            `per_class` of each label are drawn from them (or, with `embedder`, chosen per input).
        labels: the labels in order (default: those of the examples, in `LabelMap` order).
        verbalizer: label -> word the model scores (`{"0": "negative", "1": "positive"}` or
            `"0=negative,1=positive"`); default: the label names.
        embedder: an `Embedder` (or a registered name such as `"minilm-l6"`): each input then gets the
            `per_class` most similar examples of every label as demonstrations.
        config: an `ICLConfig`; `**options` change some of its fields (`per_class=8, calibrate=True`).

    Weights load on first use or `warm_up()`. `invoke`/`batch` return `Prediction`s whose `scores` are the
    (calibrated, when `calibrate`) probabilities of every label.
    """

    task = "classify"
    """What the server exposes it as (`yulian.serving.detect_task`)."""

    def __init__(
        self,
        model: Any = "smollm2-135m-instruct",
        examples: Sequence[Any] = (),
        *,
        labels: Sequence[str] | None = None,
        verbalizer: Mapping[str, str] | str | None = None,
        embedder: Any = None,
        config: ICLConfig | None = None,
        **options: Any,
    ) -> None:
        from yulian.models.hf_chat import HFChatModel

        self.config = _with_options(config or ICLConfig(), options)
        shots = as_shots(examples)
        if not shots:
            raise ValueError("InContextClassifier needs labelled examples to put in its prompt")
        found = label_order({label for _, label in shots})
        self.labels: list[str] = [str(x) for x in labels] if labels is not None else found
        stray = sorted(set(found) - set(self.labels))
        if stray:
            raise ValueError(f"examples have labels not in labels={self.labels}: {', '.join(stray)}")
        if len(self.labels) < 2:
            raise ValueError(f"classification needs at least 2 labels, got {self.labels}")
        self.verbalizer = check_verbalizer(parse_verbalizer(verbalizer), self.labels)
        self.embedder_name = embedder if isinstance(embedder, str) else None
        if isinstance(embedder, str):
            from yulian.models.registry import load

            embedder = load(embedder, task="embed")
        self.embedder = embedder
        cfg = self.config
        if embedder is None:
            self.pool: list[Shot] = []
            self.demonstrations: list[Shot] = sample_per_class(shots, cfg.per_class, cfg.seed)
        else:
            sample_per_class(shots, cfg.per_class, cfg.seed)  # the same check: enough examples of every label
            self.pool, self.demonstrations = shots, []
        head = cfg.template[: -len("{label}")]
        self._query_template = head.rstrip(" ")
        self._label_lead = head[len(self._query_template) :]
        if isinstance(model, HFChatModel):
            self.chat = model
        else:
            self.chat = HFChatModel(model, dtype=cfg.dtype, device=cfg.device)
        self.scorer = ContinuationScorer(self.chat, batch_size=cfg.batch_size)
        self._name = f"InContextClassifier({self.chat.resolved.name})"
        self._lock = threading.Lock()
        self._busy = threading.RLock()
        self._loaded: _Loaded | None = None

    # ----------------------------------------------------------------------------------------- public API
    def warm_up(self) -> InContextClassifier:
        """Load the model now and compute the shared prefix's cache (and calibration); returns self."""
        rt = self._runtime()
        if rt.prefix is not None:
            if self.config.cache_prefix:
                self.scorer.ensure_prefix(rt.prefix)
            if self.config.calibrate:
                self._calibration(rt, rt.prefix)
        return self

    def prompt(self, text: str) -> str:
        """The prompt the model reads for `text`, up to the label word (for inspection)."""
        demos = self._demos_for([text])[0] if self.pool else self.demonstrations
        return self._prefix_text(demos) + self._query_text(self._truncate(text))

    def label_logprobs(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """The constrained score of every label for each text: the log-probability of its word as the prompt's
        continuation (per token when `length_norm`), before softmax and calibration."""
        return [d.logprobs for d in self._details(self._check_texts(texts), calibrate=False)]

    def calibration(self, text: str | None = None) -> dict[str, float]:
        """p_cf: the mean label distribution of the content-free inputs under the shared demonstrations (with an
        embedder, under those chosen for `text`)."""
        rt = self._runtime()
        if self.pool:
            if text is None:
                raise ValueError("with an embedder the demonstrations depend on the input: pass text=...")
            prefix: Prefix | None = self._prefixes(rt, [text])[0]
        else:
            prefix = rt.prefix
        assert prefix is not None
        with self._busy:
            calibration = self._calibration(rt, prefix)
            if self.pool:
                prefix.kv = None  # a per-input prompt: its cache is not kept
        return dict(zip(self.labels, calibration, strict=True))

    def probabilities(self, texts: Sequence[str], *, calibrate: bool | None = None) -> list[dict[str, float]]:
        """label -> probability for each text (calibrated when `calibrate`, default: the config's)."""
        use = self.config.calibrate if calibrate is None else calibrate
        details = self._details(self._check_texts(texts), calibrate=use)
        return [d.calibrated if use and d.calibrated is not None else d.probabilities for d in details]

    def scores(self, texts: Sequence[str]) -> list[LabelScores]:
        """Everything about each text in one pass: the constrained scores, the probabilities, and (whatever
        `calibrate` says) the content-free distribution and the calibrated probabilities."""
        return self._details(self._check_texts(texts), calibrate=True)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write `fewshot-icl.json` (model, labels, verbaliser, options, demonstrations) into `folder`; returns it.

        `InContextClassifier.load(folder)` rebuilds the same classifier (same prompt, same scores).
        """
        if self.embedder is not None and self.embedder_name is None:
            raise ValueError("save() needs the embedder given by name (embedder='minilm-l6'), not as an object")
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        data = {
            "kind": "in-context",
            "model": self.chat.resolved.name,
            "labels": self.labels,
            "verbalizer": self.verbalizer,
            "config": asdict(self.config),
            "demonstrations": [list(s) for s in self.demonstrations],
            "pool": [list(s) for s in self.pool],
            "embedder": self.embedder_name,
        }
        (out / ICL_FILE).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str], **options: Any) -> InContextClassifier:
        """The classifier `save` wrote into `folder` (`**options` change config fields, e.g. `batch_size=16`)."""
        file = Path(folder) / ICL_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{folder} holds no {ICL_FILE}: not a saved InContextClassifier")
        data = json.loads(file.read_text(encoding="utf-8"))
        config = ICLConfig(**{**data["config"], "content_free": tuple(data["config"]["content_free"])})
        shots = [tuple(s) for s in (data["pool"] or data["demonstrations"])]
        model = options.pop("model", data["model"])
        clf = cls(
            model,
            shots,
            labels=data["labels"],
            verbalizer=data["verbalizer"],
            embedder=data.get("embedder"),
            config=_with_options(config, options),
        )
        if not data["pool"]:
            clf.demonstrations = [(str(t), str(label)) for t, label in data["demonstrations"]]
        return clf

    # ----------------------------------------------------------------------------------------- loading
    def _runtime(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> _Loaded:
        lm = self.scorer
        words: list[list[int]] = []
        for label in self.labels:
            ids = lm.ids(self._label_lead + self.verbalizer[label])
            if not ids:
                raise ValueError(f"the verbalised word of label {label!r} is empty after tokenisation")
            words.append(ids)
        if len({tuple(w) for w in words}) < len(words):
            raise ValueError("two labels' words tokenise to the same tokens: choose distinct words")
        rt = _Loaded(bos=lm.bos(), words=words)
        if not self.pool:
            rt.prefix = Prefix(rt.bos + lm.ids(self._prefix_text(self._truncated(self.demonstrations))))
        return rt

    # ----------------------------------------------------------------------------------------- prompts
    def _truncate(self, text: str) -> str:
        limit = self.config.max_text_tokens
        if len(text) <= limit:  # never more tokens than characters (beyond a BOS, not added here)
            return text
        ids = self.scorer.ids(text)
        return text if len(ids) <= limit else str(self.scorer.tokenizer.decode(ids[:limit]))

    def _truncated(self, demos: Sequence[Shot]) -> list[Shot]:
        return [(self._truncate(text), label) for text, label in demos]

    def _query_text(self, text: str) -> str:
        return self._query_template.replace("{text}", text)

    def _prefix_text(self, demos: Sequence[Shot]) -> str:
        sep = self.config.separator
        parts = [self.config.instruction] if self.config.instruction else []
        parts += [self._query_text(text) + self._label_lead + self.verbalizer[label] for text, label in demos]
        return sep.join(parts) + sep

    def _chosen(self, texts: Sequence[str]) -> list[list[int]]:
        """Embedder mode: the pool indices of each text's demonstrations, the `per_class` most similar examples of
        every label, the most similar last (next to the input)."""
        rt = self._runtime()
        np = require("numpy", extra="hf")
        if rt.pool is None:
            pool = np.asarray(self.embedder.batch([t for t, _ in self.pool]), dtype=np.float32)
            rt.pool = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
        vectors = np.asarray(self.embedder.batch(list(texts)), dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        sims = vectors @ rt.pool.T
        labels = np.array([label for _, label in self.pool])
        out = []
        for row in sims:
            chosen: list[int] = []
            for label in self.labels:
                idx = np.flatnonzero(labels == label)
                chosen += idx[np.argsort(-row[idx], kind="stable")[: self.config.per_class]].tolist()
            chosen.sort(key=lambda i: (float(row[i]), -i))
            out.append(chosen)
        return out

    def _demos_for(self, texts: Sequence[str]) -> list[list[Shot]]:
        """The demonstrations of each text in embedder mode."""
        return [[self.pool[i] for i in chosen] for chosen in self._chosen(texts)]

    def _prefixes(self, rt: _Loaded, texts: Sequence[str]) -> list[Prefix]:
        if not self.pool:
            assert rt.prefix is not None
            return [rt.prefix] * len(texts)
        out = []
        for chosen in self._chosen(texts):
            key = tuple(chosen)
            if key not in rt.memo:
                if len(rt.memo) > 4096:
                    rt.memo.clear()
                demos = self._truncated([self.pool[i] for i in chosen])
                rt.memo[key] = Prefix(rt.bos + self.scorer.ids(self._prefix_text(demos)))
            out.append(rt.memo[key])
        return out

    # ----------------------------------------------------------------------------------------- scoring
    def _check_texts(self, texts: Sequence[str]) -> list[str]:
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"{self.name} takes text, got {type(t).__name__} at position {i}: {t!r:.80}")
        return texts

    def _predict(self, texts: list[str]) -> list[Prediction]:
        out = []
        for d in self._details(self._check_texts(texts), calibrate=self.config.calibrate):
            probs = d.calibrated if d.calibrated is not None else d.probabilities
            ranked = dict(sorted(probs.items(), key=lambda kv: -kv[1]))
            label, score = next(iter(ranked.items()))
            out.append(Prediction(label, score, ranked, (label,)))
        return out

    def _details(self, texts: list[str], *, calibrate: bool) -> list[LabelScores]:
        """Scores (and calibration, when `calibrate`) of every text. With an embedder, texts go in groups of
        `batch_size`: each has its own prompt, whose cache is freed once the group is scored."""
        if not texts:
            return []
        rt = self._runtime()
        with self._busy:  # one call at a time: the model runs one forward pass at a time anyway
            if not self.pool:
                return self._group(rt, texts, calibrate)
            out: list[LabelScores] = []
            size = self.config.batch_size
            for start in range(0, len(texts), size):
                out += self._group(rt, texts[start : start + size], calibrate)
                for prefix in rt.memo.values():
                    prefix.kv = None  # per-input prompts: their caches are not reused
            return out

    def _group(self, rt: _Loaded, texts: list[str], calibrate: bool) -> list[LabelScores]:
        prefixes = self._prefixes(rt, texts)
        queries = [self.scorer.ids(self._query_text(self._truncate(t))) for t in texts]
        raw = self._score(rt, list(zip(prefixes, queries, strict=True)))
        out = []
        for prefix, scores in zip(prefixes, raw, strict=True):
            p = _softmax(scores)
            cf = q = None
            if calibrate:
                cf = self._calibration(rt, prefix)
                q = _softmax([_log(a) - _log(b) for a, b in zip(p, cf, strict=True)])
            out.append(
                LabelScores(
                    logprobs=dict(zip(self.labels, scores, strict=True)),
                    probabilities=dict(zip(self.labels, p, strict=True)),
                    calibration=None if cf is None else dict(zip(self.labels, cf, strict=True)),
                    calibrated=None if q is None else dict(zip(self.labels, q, strict=True)),
                )
            )
        return out

    def _calibration(self, rt: _Loaded, prefix: Prefix) -> list[float]:
        if prefix.calibration is None:
            queries = [self.scorer.ids(self._query_text(s)) for s in self.config.content_free]
            dists = [_softmax(s) for s in self._score(rt, [(prefix, q) for q in queries])]
            mean = [sum(col) / len(dists) for col in zip(*dists, strict=True)]
            total = sum(mean)
            prefix.calibration = [m / total for m in mean]
        return prefix.calibration

    def _score(self, rt: _Loaded, items: list[tuple[Prefix, list[int]]]) -> list[list[float]]:
        """The label scores of each (prefix, query ids) item."""
        return self.scorer.score(
            items,
            rt.words,
            length_norm=self.config.length_norm,
            use_cache=self.config.cache_prefix,
        )


# ============================================================================================ helpers
def _with_options(config: ICLConfig, options: Mapping[str, Any]) -> ICLConfig:
    if not options:
        return config
    known = [f.name for f in fields(ICLConfig)]
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"unknown InContextClassifier option {name!r} (options: {', '.join(known)}).{hint}")
    return replace(config, **options)


def _log(x: float) -> float:
    import math

    return math.log(max(x, 1e-30))


def _softmax(scores: Sequence[float]) -> list[float]:
    import math

    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]
