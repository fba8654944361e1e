"""Output guardrails: a runnable that blocks or rewrites generations that break a policy.

```
from yulian.guardrails import Guardrail, KeywordRule, SecretRule, PIIRule, ClassifierRule

guard = Guardrail([
    KeywordRule(["bomb recipe", "制作炸弹"], name="weapons"),           # block: the answer becomes a refusal
    SecretRule(),                                                     # rewrite: API keys and private keys removed
    PIIRule(),                                                        # rewrite: phone numbers, ID numbers... masked
    ClassifierRule(HFClassifier("runs/toxicity"), labels=["toxic"], threshold=0.8),
])
chain = prompt | model | guard | parser                              # invoke, batch, stream and async all guarded
guard.check("...")                                                    # the violations, without acting on them
```

A rule finds `Violation`s in a text and says what to do about them: "block" (the whole output is replaced by
a refusal, or `GuardrailError` is raised with `raise_on_block=True`), "rewrite" (the offending spans are replaced,
e.g. masked) or "flag" (the output passes and the violation is recorded). The guarded output keeps its type: a
string stays a string, a `Message` stays a `Message` with the violations in `metadata["guardrail"]`.

Streaming: with only span rules (keywords, patterns, secrets, PII), text is released as it comes except the last
`holdback` characters, which wait until the next piece shows they are safe, so a secret split across pieces is
still caught; a block mid-stream ends the stream with the refusal. A classifier judges whole texts, so with a
`ClassifierRule` the stream is held until the end (`stream="buffer"`), as a released piece cannot be recalled.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from yulian.core.messages import Message, MessageChunk
from yulian.core.runnable import ConfigLike, Runnable

__all__ = [
    "ClassifierRule",
    "Guardrail",
    "GuardrailError",
    "KeywordRule",
    "PIIRule",
    "RegexRule",
    "Rule",
    "SecretRule",
    "Violation",
    "guard",
    "guard_command",
    "rules_from_config",
]

ACTIONS = ("block", "rewrite", "flag")
REFUSAL_EN = "I can't help with that."
REFUSAL_ZH = "抱歉，这个问题我无法回答。"
_CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class Violation:
    """A place where a text breaks a rule.

    Attributes:
        rule: the rule's name. action: block, rewrite or flag. message: what was found (never the raw secret).
        start / end: the span in the text (None when the rule judged the whole text, as a classifier does).
        replacement: what a rewrite puts in place of the span.
    """

    rule: str
    action: str
    message: str
    start: int | None = None
    end: int | None = None
    replacement: str = "[removed]"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for metadata, logs and JSON)."""
        return {"rule": self.rule, "action": self.action, "message": self.message, "start": self.start, "end": self.end}


class GuardrailError(ValueError):
    """Raised by a guardrail with `raise_on_block=True` when an output is blocked; `.violations` says why."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        super().__init__("output blocked by guardrail: " + "; ".join(f"{v.rule}: {v.message}" for v in violations))


class Rule:
    """A policy check over a text. Subclasses implement `check`; `action` is what the guardrail does on a hit."""

    name: str = "rule"
    action: str = "block"
    whole_text: bool = False
    """Whether the rule judges whole texts (a classifier) rather than spans: streaming then buffers."""

    def __init__(self, *, name: str | None = None, action: str | None = None) -> None:
        if name is not None:
            self.name = name
        if action is not None:
            self.action = action
        if self.action not in ACTIONS:
            raise ValueError(f"{type(self).__name__}: unknown action {self.action!r} (actions: {', '.join(ACTIONS)})")

    def check(self, text: str) -> list[Violation]:
        """The violations in `text` (empty: it passes)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, action={self.action!r})"


class RegexRule(Rule):
    """Violations wherever one of `patterns` matches (compiled once; case-insensitive by default)."""

    name = "pattern"

    def __init__(
        self,
        patterns: str | Sequence[str],
        *,
        name: str | None = None,
        action: str | None = None,
        replacement: str = "[removed]",
        ignore_case: bool = True,
    ) -> None:
        super().__init__(name=name, action=action)
        listed = [patterns] if isinstance(patterns, str) else list(patterns)
        if not listed:
            raise ValueError(f"{type(self).__name__} needs at least one pattern")
        flags = re.IGNORECASE if ignore_case else 0
        try:
            self._pattern = re.compile("|".join(f"(?:{p})" for p in listed), flags)
        except re.error as e:
            raise ValueError(f"{type(self).__name__} {self.name!r}: bad pattern: {e}") from None
        self.replacement = replacement

    def _message(self, match: re.Match[str]) -> str:
        return f"matched {match.group(0)!r}"

    def _span(self, match: re.Match[str]) -> tuple[int, int]:
        return match.span()

    def check(self, text: str) -> list[Violation]:
        found = []
        for m in self._pattern.finditer(text):
            start, end = self._span(m)
            if end > start:
                found.append(Violation(self.name, self.action, self._message(m), start, end, self.replacement))
        return found


class KeywordRule(RegexRule):
    """Banned words or phrases (zh and en): whole words for Latin text, plain substrings for Chinese."""

    name = "keywords"

    def __init__(
        self, words: Iterable[str], *, name: str | None = None, action: str | None = None, replacement: str = "***"
    ) -> None:
        listed = sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True)
        if not listed:
            raise ValueError("KeywordRule needs at least one non-empty word")
        patterns = [re.escape(w) if _CJK.search(w) else rf"(?<!\w){re.escape(w)}(?!\w)" for w in listed]
        super().__init__(patterns, name=name, action=action, replacement=replacement)


_SECRETS = {
    "private key": r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)",
    "OpenAI-style API key": r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}",
    "AWS access key id": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
    "Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "JSON web token": r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    "password assignment": r"(?i:\b(?:password|passwd|pwd|密码)\s*[:=：]\s*)(?P<value>\S{4,})",
}


class SecretRule(RegexRule):
    """Credentials a model must never echo: private keys, API keys/tokens, `password=...`. Rewrites by default."""

    name = "secrets"
    action = "rewrite"

    def __init__(self, *, name: str | None = None, action: str | None = None, replacement: str = "[secret]") -> None:
        self._kinds = list(_SECRETS)
        super().__init__(
            [f"(?P<s{i}>{p})" for i, p in enumerate(_SECRETS.values())],
            name=name,
            action=action,
            replacement=replacement,
            ignore_case=False,
        )

    def _span(self, match: re.Match[str]) -> tuple[int, int]:
        return match.span("value") if match.group("value") else match.span()  # keep "password:", drop the value

    def _message(self, match: re.Match[str]) -> str:
        groups = match.groupdict()
        kind = next((self._kinds[int(k[1:])] for k, v in groups.items() if k[1:].isdigit() and v), "secret")
        return f"{kind} ({len(match.group(0))} characters)"


class PIIRule(Rule):
    """Personal data in the output (`yulian.privacy`: phones, ID numbers, bank cards, emails...). Rewrites by
    default, masking each value with `operator` ("mask" keeps a few characters, "redact" writes the type)."""

    name = "pii"
    action = "rewrite"

    def __init__(
        self,
        entities: Sequence[str] | None = None,
        *,
        operator: str = "mask",
        name: str | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(name=name, action=action)
        from yulian.privacy import Analyzer, get_operator

        self._analyzer = Analyzer(entities if entities is None else list(entities))
        self._operator = get_operator(operator)

    def check(self, text: str) -> list[Violation]:
        found = self._analyzer.analyze(text)
        return [
            Violation(self.name, self.action, e.type, e.start, e.end, self._operator.replace(e, None)) for e in found
        ]


class ClassifierRule(Rule):
    """A text classifier judges the whole output: a hit when its label is in `labels` with score >= threshold.

    `classifier` is any runnable from text to a prediction with `.label`/`.score` (e.g. `yulian.models.
    HFClassifier` over a model you fine-tuned on your policy), a `{"label", "score"}` dict, or a list of them.
    """

    name = "classifier"
    whole_text = True

    def __init__(
        self,
        classifier: Any,
        labels: Sequence[str],
        *,
        threshold: float = 0.5,
        name: str | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(name=name, action=action)
        if not labels:
            raise ValueError("ClassifierRule needs the labels that count as violations")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"ClassifierRule threshold must be in [0, 1], got {threshold}")
        self.classifier, self.labels, self.threshold = classifier, set(labels), threshold

    def check(self, text: str) -> list[Violation]:
        if not text.strip():
            return []
        out = self.classifier.invoke(text)
        for label, score in _predictions(out):
            if label in self.labels and score >= self.threshold:
                return [Violation(self.name, self.action, f"classified {label} ({score:.2f})")]
        return []


def _predictions(out: Any) -> list[tuple[str, float]]:
    items = out if isinstance(out, list) else [out]
    pairs: list[tuple[str, float]] = []
    for item in items:
        if isinstance(item, Mapping):
            pairs.append((str(item.get("label")), float(item.get("score", 1.0))))
        elif hasattr(item, "label"):
            pairs.append((str(item.label), float(getattr(item, "score", 1.0))))
            scores = getattr(item, "scores", None)  # every label's probability, when the predictor gives them
            if isinstance(scores, Mapping):
                pairs.extend((str(k), float(v)) for k, v in scores.items())
        else:
            raise TypeError(f"ClassifierRule: cannot read a label from {type(item).__name__}: {item!r:.80}")
    return pairs


class Guardrail(Runnable[Any, Any]):
    """Checks each output against `rules` and blocks, rewrites or flags it (see the module docstring).

    Args:
        rules: the rules, checked in order; all of them run, then the strongest action wins.
        refusal: the text of a blocked output (default: a short refusal in the output's language).
        raise_on_block: raise `GuardrailError` instead of returning the refusal.
        holdback: characters held back while streaming so that a match across pieces is still caught.
        stream: "auto" (buffer when a rule judges whole texts, else hold back), "holdback" or "buffer".
    """

    blocking = False

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        refusal: str | None = None,
        raise_on_block: bool = False,
        holdback: int = 80,
        stream: str = "auto",
    ) -> None:
        if not rules:
            raise ValueError("Guardrail needs at least one rule")
        for i, rule in enumerate(rules):
            if not isinstance(rule, Rule):
                raise TypeError(f"Guardrail rule {i} is a {type(rule).__name__}, not a yulian.guardrails.Rule")
        if stream not in ("auto", "holdback", "buffer"):
            raise ValueError(f"Guardrail stream must be auto, holdback or buffer, got {stream!r}")
        if holdback < 0:
            raise ValueError(f"Guardrail holdback must be >= 0, got {holdback}")
        self.rules = list(rules)
        self.refusal, self.raise_on_block, self.holdback = refusal, raise_on_block, holdback
        self.blocking = any(r.whole_text for r in self.rules)  # a classifier may be a heavy model
        self.stream_mode = stream if stream != "auto" else ("buffer" if self.blocking else "holdback")

    # ---------------------------------------------------------------------------------------------- checks
    def check(self, text: str) -> list[Violation]:
        """Every rule's violations in `text`, in text order (whole-text ones first)."""
        found = [v for rule in self.rules for v in rule.check(text)]
        return sorted(found, key=lambda v: -1 if v.start is None else v.start)

    def apply(self, text: str) -> tuple[str, list[Violation], bool]:
        """(the guarded text, the violations, whether it was blocked)."""
        violations = self.check(text)
        if any(v.action == "block" for v in violations):
            if self.raise_on_block:
                raise GuardrailError([v for v in violations if v.action == "block"])
            return self._refusal(text), violations, True
        return _rewrite(text, [v for v in violations if v.action == "rewrite"]), violations, False

    def _refusal(self, text: str) -> str:
        if self.refusal is not None:
            return self.refusal
        return REFUSAL_ZH if _CJK.search(text) else REFUSAL_EN

    # ------------------------------------------------------------------------------------------- runnable
    def invoke(self, input: Any, config: ConfigLike = None) -> Any:
        text = _text(input)
        guarded, violations, blocked = self.apply(text)
        return _same_type(input, guarded, violations, blocked)

    def stream(self, input: Any, config: ConfigLike = None) -> Iterator[Any]:
        yield from self.transform(iter([input]), config)

    def transform(self, inputs: Iterable[Any], config: ConfigLike = None) -> Iterator[Any]:
        release = _Release(self)
        for piece in inputs:
            yield from release.feed(piece)
            if release.done:
                return
        yield from release.finish()

    async def atransform(self, inputs: AsyncIterator[Any], config: ConfigLike = None) -> AsyncIterator[Any]:
        release = _Release(self)
        async for piece in inputs:
            for out in release.feed(piece):
                yield out
            if release.done:
                return
        for out in release.finish():
            yield out


class _Release:
    """The streaming state of one guarded stream: text so far, how much of it was released, whether it ended."""

    def __init__(self, guard: Guardrail) -> None:
        self.guard, self.text, self.sent, self.done = guard, "", 0, False
        self.first: Any = None  # the first piece: outputs take its type (str or message chunk)

    def feed(self, piece: Any) -> list[Any]:
        """The pieces that can be released once `piece` arrived (hold-back mode; nothing in buffer mode)."""
        self.first = piece if self.first is None else self.first
        self.text += _text(piece)
        if self.guard.stream_mode == "buffer":
            return []
        guarded, violations, blocked = self.guard.apply(self.text)
        if blocked:
            return [self._blocked(guarded, violations)]
        if guarded != self.text:  # a rewrite: release nothing past the first changed character
            safe = min(v.start for v in violations if v.action == "rewrite" and v.start is not None)
        else:
            safe = len(self.text)
        release = max(self.sent, min(safe, len(self.text) - self.guard.holdback))
        if release <= self.sent:
            return []
        out = _same_type(self.first, self.text[self.sent : release], [], False, chunk=True)
        self.sent = release
        return [out]

    def finish(self) -> list[Any]:
        """The rest of the stream, guarded as a whole."""
        if self.first is None:
            return []
        guarded, violations, blocked = self.guard.apply(self.text)
        if blocked:
            return [self._blocked(guarded, violations)]
        tail = _rewrite(self.text, [v for v in violations if v.action == "rewrite"], start=self.sent)
        return [_same_type(self.first, tail, violations, False, chunk=True)] if tail or violations else []

    def _blocked(self, refusal: str, violations: Sequence[Violation]) -> Any:
        self.done = True
        return _same_type(self.first, ("\n" if self.sent else "") + refusal, violations, True, chunk=True)


def _rewrite(text: str, violations: Sequence[Violation], *, start: int = 0) -> str:
    """`text[start:]` with every violation span replaced (overlapping spans merged, the first one's text used)."""
    out: list[str] = []
    at = start
    for v in sorted((v for v in violations if v.start is not None and v.end is not None), key=lambda v: v.start or 0):
        assert v.start is not None and v.end is not None
        if v.end <= at:
            continue
        if v.start >= at:
            out.append(text[at : v.start])
            out.append(v.replacement)
        at = max(at, v.end)
    out.append(text[at:])
    return "".join(out)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Message):
        return value.content
    raise TypeError(f"Guardrail checks text or a Message, got {type(value).__name__}: {value!r:.80}")


def _same_type(like: Any, text: str, violations: Sequence[Violation], blocked: bool, *, chunk: bool = False) -> Any:
    if isinstance(like, str):
        return text
    assert isinstance(like, Message)
    meta = dict(like.metadata)
    if violations or blocked:
        meta["guardrail"] = {"blocked": blocked, "violations": [v.to_dict() for v in violations]}
    if chunk and not isinstance(like, MessageChunk):
        return MessageChunk(like.role, text, like.name, metadata=meta)
    return replace(like, content=text, metadata=meta)


def guard(model: Any, rules: Sequence[Rule], **options: Any) -> Runnable[Any, Any]:
    """`model | Guardrail(rules, **options)`: the model with its outputs guarded."""
    from yulian.core.runnable import coerce

    return coerce(model) | Guardrail(rules, **options)


_KINDS = ("keywords", "pattern", "secrets", "pii", "classifier")


def rules_from_config(policy: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, where: str = "policy") -> list[Rule]:
    """Rules from plain data (a YAML/JSON policy file): a list of `{"type": ..., options}` or `{"rules": [...]}`.

    Types: `keywords` (words, name, action, replacement), `pattern` (patterns, ...), `secrets`, `pii` (entities,
    operator) and `classifier` (model: a classifier folder, labels, threshold). Errors name the rule and field.
    """
    items = policy.get("rules") if isinstance(policy, Mapping) else policy
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise ValueError(f"{where}: expected a list of rules (or a mapping with 'rules')")
    rules: list[Rule] = []
    for i, item in enumerate(items):
        at = f"{where}: rule {i + 1}"
        if not isinstance(item, Mapping):
            raise ValueError(f"{at}: expected a mapping with a 'type', got {type(item).__name__}")
        options = dict(item)
        kind = options.pop("type", None)
        if kind not in _KINDS:
            raise ValueError(f"{at}: unknown type {kind!r} (types: {', '.join(_KINDS)})")
        try:
            if kind == "keywords":
                rules.append(KeywordRule(options.pop("words"), **options))
            elif kind == "pattern":
                rules.append(RegexRule(options.pop("patterns"), **options))
            elif kind == "secrets":
                rules.append(SecretRule(**options))
            elif kind == "pii":
                rules.append(PIIRule(**options))
            else:
                from yulian.models import HFClassifier

                model = HFClassifier(str(options.pop("model")))
                rules.append(ClassifierRule(model, options.pop("labels"), **options))
        except KeyError as e:
            raise ValueError(f"{at} ({kind}): missing field {e.args[0]!r}") from None
        except TypeError as e:
            raise ValueError(f"{at} ({kind}): {e}") from None
    return rules


def guard_command(policy: str | None = None, json: bool = False, raise_on_block: bool = False) -> int:
    """Guard text from stdin: block, rewrite or flag what breaks the policy; write the result to stdout.

    Without --policy the built-in rules run: secrets and PII are rewritten. Exit status 3 when blocked.

    Args:
        policy: a YAML or JSON file with the rules (see `yulian.guardrails.rules_from_config`).
        json: write `{"text", "blocked", "violations"}` as JSON instead of the text.
        raise_on_block: exit with status 3 and no output text when the input is blocked.
    """
    import json as _json
    import sys
    from pathlib import Path

    if policy:
        path = Path(policy)
        if not path.is_file():
            raise FileNotFoundError(f"{policy}: no such policy file")
        raw = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            from yulian._optional import require

            data = require("yaml", extra="serve", purpose="YAML policies").safe_load(raw)
        else:
            data = _json.loads(raw)
        rules = rules_from_config(data, where=policy)
    else:
        rules = [SecretRule(), PIIRule()]
    text = sys.stdin.read()
    guardrail = Guardrail(rules)
    guarded, violations, blocked = guardrail.apply(text)
    if json:
        print(_json.dumps({"text": guarded, "blocked": blocked, "violations": [v.to_dict() for v in violations]}))
    elif not (blocked and raise_on_block):
        sys.stdout.write(guarded)
    return 3 if blocked else 0
