"""Paraphrases by a local generator model, generated once per unique text and cached on disk.

The seed's back-translation idea needs two translation models; offline we have one small instruction model
(SmolLM2-135M-Instruct, packaged), so it rewrites the text directly ("Paraphrase the following sentence...", and
a Chinese prompt for Chinese text). Generation on a CPU is slow, so `Paraphraser.prepare(texts)` samples `n`
variants per unique text once, in batches, with progress on stderr, and appends them to a JSON Lines cache keyed
by a hash of (generator, prompt, sampling options, text); later runs read them back instantly.

```python
para = Paraphraser("smollm2-135m-instruct", n=2, cache="runs/paraphrases.jsonl")
para.prepare(texts, "en")                    # generates what the cache lacks
para.variants("a gripping , funny film .", "en")   # the variants that pass the filter
```

Raw outputs are cached; the filter runs when they are read (so a better filter needs no regeneration). It cleans
("Paraphrase: ...", quotes, an echoed prompt) and rejects: empty, a copy of the input, far longer or shorter,
the wrong language, too little overlap with the input's content words (an unrelated sentence), repetitive
output, refusals. `stats` counts the reasons: the acceptance rate says how usable a generator is.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from yulian.tuning.augment_sources import STOPWORDS_EN

__all__ = ["PROMPTS", "Paraphraser", "judge_paraphrase"]

PROMPTS = {
    "en": "Paraphrase the following sentence. Reply with the paraphrase only.\n\n{text}",
    "zh": "请改写下面这句话，意思不变，只回复改写后的句子。\n\n{text}",
}
"""The default prompt per language; `{text}` is replaced by the text."""

_LABEL = re.compile(
    r"^\s*(?:(?:here is|here's)[^:：]*|(?:the )?(?:paraphrase[sd]?|original|rewritten|new)(?: sentence| version| text)?"
    r"(?: is)?|answer|output|改写(?:后)?(?:的句子)?|原句|答案?)\s*[:：]\s*",
    re.IGNORECASE,
)
"""A label before the sentence ("Paraphrase:", "The original sentence is:"): cut, so a copy shows as one."""
_QUOTES = "\"'“”‘’「」『』"
_REFUSALS = ("i'm sorry", "i am sorry", "i cannot", "i can't", "as an ai", "sorry,", "作为一个ai", "作为一个人工智能")
_EN_WORD = re.compile(r"[a-z]{3,}")


def _cjk(ch: str) -> bool:
    cp = ord(ch)
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF


def _cjk_share(text: str) -> float:
    letters = [ch for ch in text if ch.isalpha()]
    return sum(_cjk(ch) for ch in letters) / len(letters) if letters else 0.0


def _normal(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _content(text: str, lang: str) -> set[str]:
    if lang == "zh":
        chars = [ch for ch in text if _cjk(ch)]
        return {a + b for a, b in itertools.pairwise(chars)}
    return {w[:5] for w in _EN_WORD.findall(text.lower()) if w not in STOPWORDS_EN}


def judge_paraphrase(
    source: str,
    output: str,
    lang: str,
    *,
    prompt: str = "",
    max_ratio: float = 2.0,
    min_overlap: float = 0.2,
) -> tuple[str | None, str]:
    """`(cleaned paraphrase, "ok")`, or `(None, reason)` when `output` is no usable paraphrase of `source`.

    Reasons: empty, copy, refusal, language, longer, shorter, unrelated (less than `min_overlap` of the source's
    content words, or Chinese character pairs, in the output; checked when the source has at least 3: a short
    text may be rewritten with no word in common), repetitive."""
    head = prompt.split("{text}")[0].strip().splitlines()[0][:12] if prompt.strip() else ""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not (head and head in line) and not line.endswith((":", "："))]
    text = _LABEL.sub("", lines[0]).strip() if lines else ""
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    if not text:
        return None, "empty"
    if _normal(text) == _normal(source):
        return None, "copy"
    if text.lower().startswith(_REFUSALS):
        return None, "refusal"
    share = _cjk_share(text)
    if (lang == "zh" and share < 0.6) or (lang != "zh" and share > 0.1):
        return None, "language"
    ratio = len(text) / max(1, len(source.strip()))
    if ratio > max_ratio:
        return None, "longer"
    if ratio < 1 / (max_ratio + 0.5):
        return None, "shorter"
    wanted = _content(source, lang)
    if len(wanted) >= 3 and len(wanted & _content(text, lang)) / len(wanted) < min_overlap:
        return None, "unrelated"
    units = list(text) if lang == "zh" else text.split()
    if len(units) >= 12 and len(set(units)) / len(units) < 0.35:
        return None, "repetitive"
    return text, "ok"


class Paraphraser:
    """Paraphrases of texts by a chat model, generated once per unique text and cached as JSON Lines.

    Args:
        generator: a chat model name for `yulian.models.load` (loaded on first generation, released after
            `prepare`), or any Runnable whose `batch(prompts)` returns messages or strings (e.g. a `ChatModel`).
        n: variants per text.
        cache: the JSON Lines file (default: `~/.cache/yulian/paraphrases.jsonl`; `YULIAN_CACHE` moves it).
        prompts: the prompt per language ("en", "zh"), with `{text}`; default `PROMPTS`.
        temperature, top_p: sampling options; variant j samples with seed `seed + j`.
        batch_size: texts per generation batch. max_ratio, min_overlap: filter thresholds (`judge_paraphrase`).
        generator_id: the generator's name in cache keys (default: the name, or the Runnable's repr).
        progress: report generation progress on stderr.
    """

    def __init__(
        self,
        generator: str | Any = "smollm2-135m-instruct",
        *,
        n: int = 2,
        cache: str | os.PathLike[str] | None = None,
        prompts: Mapping[str, str] | None = None,
        temperature: float = 0.8,
        top_p: float = 0.95,
        seed: int = 0,
        batch_size: int = 16,
        max_ratio: float = 2.0,
        min_overlap: float = 0.2,
        generator_id: str | None = None,
        progress: bool = True,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n (paraphrases per text) must be a whole number >= 1, got {n!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.prompts = {**PROMPTS, **(prompts or {})}
        for lang, prompt in self.prompts.items():
            if "{text}" not in prompt:
                raise ValueError(f"the {lang} paraphrase prompt has no {{text}} placeholder: {prompt!r}")
        self.generator = generator
        self.generator_id = generator_id or (generator if isinstance(generator, str) else repr(generator))
        self.n, self.temperature, self.top_p, self.seed = n, temperature, top_p, seed
        self.batch_size, self.max_ratio, self.min_overlap = batch_size, max_ratio, min_overlap
        self.progress = progress
        if cache is None:
            from yulian.models.registry import cache_dir

            cache = Path(cache_dir()) / "paraphrases.jsonl"
        self.cache = Path(cache)
        self._outputs: dict[str, list[str]] | None = None
        self._model: Any = None
        self._filtered: dict[str, list[str]] = {}
        self.stats: Counter[str] = Counter()
        """Filter verdicts per raw output ("ok", "copy", "unrelated", ...), each text counted once."""

    # ----------------------------------------------------------------------------------------- cache
    def key(self, text: str, lang: str) -> str:
        """The cache key of `text`: a hash of the generator, the prompt, the sampling options and the text."""
        parts = [self.generator_id, self.prompts.get(lang, PROMPTS["en"]), self.temperature, self.top_p, self.seed]
        return hashlib.sha256(json.dumps([*parts, text], ensure_ascii=False).encode("utf-8")).hexdigest()[:32]

    def _load(self) -> dict[str, list[str]]:
        if self._outputs is not None:
            return self._outputs
        outputs: dict[str, list[str]] = {}
        if self.cache.exists():
            with open(self.cache, encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    try:
                        record = json.loads(line)
                        outputs.setdefault(str(record["key"]), []).extend(str(o) for o in record["outputs"])
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.stats["bad cache line"] += 1  # e.g. the last line of a killed run
                        if self.progress:
                            print(f"{self.cache} line {number}: not a cache record, skipped", file=sys.stderr)
        self._outputs = outputs
        return outputs

    def cached(self, text: str, lang: str) -> list[str]:
        """The raw cached outputs for `text` (before filtering)."""
        return list(self._load().get(self.key(text, lang), []))

    # ----------------------------------------------------------------------------------------- generation
    def _generator(self) -> Any:
        if self._model is None:
            if isinstance(self.generator, str):
                from yulian.models import load

                self._model = load(self.generator)
            else:
                self._model = self.generator
        return self._model

    def _budget(self, text: str, lang: str) -> int:
        """max_tokens for a paraphrase of `text`: room for a somewhat longer rewrite, not for an essay."""
        estimate = len(text) * 1.5 if lang == "zh" else len(text.split()) * 2.5
        return int(min(320, max(24, estimate + 16)))

    def _generate(self, texts: Sequence[str], lang: str, variant: int) -> list[str]:
        model = self._generator()
        prompt = self.prompts.get(lang, PROMPTS["en"])
        if hasattr(model, "bind"):
            budget = max(self._budget(t, lang) for t in texts)
            model = model.bind(
                temperature=self.temperature, top_p=self.top_p, seed=self.seed + variant, max_tokens=budget
            )
        replies = model.batch([prompt.replace("{text}", t) for t in texts])
        return [str(getattr(r, "content", r)) for r in replies]

    def prepare(self, texts: Iterable[str], lang: str) -> dict[str, Any]:
        """Generate the missing variants of every unique text in `texts` and append them to the cache.

        Returns counts: texts, cached (already complete), generated (variants), seconds. A model loaded here by
        name is released at the end (the variants stay in memory and on disk)."""
        outputs = self._load()
        unique = list(dict.fromkeys(t for t in texts if t and t.strip()))
        missing = [t for t in unique if len(outputs.get(self.key(t, lang), [])) < self.n]
        missing.sort(key=len)  # similar lengths share a batch: less padding, similar budgets
        started, generated = time.perf_counter(), 0
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            have = [len(outputs.get(self.key(t, lang), [])) for t in chunk]
            fresh: list[list[str]] = [[] for _ in chunk]
            for variant in range(min(have), self.n):
                todo = [i for i, h in enumerate(have) if h <= variant]
                for i, reply in zip(todo, self._generate([chunk[i] for i in todo], lang, variant), strict=True):
                    fresh[i].append(reply)
            with open(self.cache, "a", encoding="utf-8") as out:
                for text, new in zip(chunk, fresh, strict=True):
                    key = self.key(text, lang)
                    outputs.setdefault(key, []).extend(new)
                    generated += len(new)
                    record = {"key": key, "lang": lang, "generator": self.generator_id, "text": text, "outputs": new}
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
            if self.progress:
                done, seconds = start + len(chunk), time.perf_counter() - started
                print(
                    f"paraphrase ({self.generator_id}): {done:,}/{len(missing):,} texts, {seconds:.0f} s "
                    f"({done / max(seconds, 1e-9):.2f} texts/s)",
                    file=sys.stderr,
                    flush=True,
                )
        if isinstance(self.generator, str):
            self._model = None
        return {
            "texts": len(unique),
            "cached": len(unique) - len(missing),
            "generated": generated,
            "seconds": round(time.perf_counter() - started, 2),
        }

    def variants(self, text: str, lang: str) -> list[str]:
        """The usable paraphrases of `text` (generated now if the cache lacks them), distinct, in cache order."""
        key = self.key(text, lang)
        if key in self._filtered:
            return list(self._filtered[key])
        if len(self.cached(text, lang)) < self.n:
            self.prepare([text], lang)
        found: dict[str, None] = {}
        for raw in self.cached(text, lang)[: self.n]:
            clean, reason = judge_paraphrase(
                text,
                raw,
                lang,
                prompt=self.prompts.get(lang, ""),
                max_ratio=self.max_ratio,
                min_overlap=self.min_overlap,
            )
            self.stats[reason] += 1
            if clean is not None:
                found.setdefault(clean, None)
        self._filtered[key] = list(found)
        return list(found)

    def acceptance(self) -> float:
        """The share of raw outputs judged so far that passed the filter (0.0 before any)."""
        judged = sum(v for k, v in self.stats.items() if k != "bad cache line")
        return self.stats["ok"] / judged if judged else 0.0
