"""Tiny served things for the serving tests: fake predictors returning the real prediction types, a slow loader."""

from __future__ import annotations

import time
from typing import Any

from yulian.core.runnable import ConfigLike, Runnable
from yulian.models.predictions import Answer, Entity, Prediction
from yulian.serving import KeyConfig, ModelConfig, ServeConfig, hash_key
from yulian.testing import FakeChatModel, FakeEmbedder

KEY = "yl-test-key"
LIMITED_KEY = "yl-limited"


class TinyClassifier(Runnable[Any, Prediction]):
    """ "pos" when the text holds "good", else "neg"; counts its batched calls."""

    blocking = False

    def __init__(self) -> None:
        self.batches: list[int] = []

    def invoke(self, input: Any, config: ConfigLike = None) -> Prediction:
        return self.batch([input])[0]

    def batch(
        self,
        inputs: Any,
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        self.batches.append(len(inputs))
        out: list[Any] = []
        for text in inputs:
            if text == "boom":
                error = ValueError("cannot classify 'boom'")
                if not return_exceptions:
                    raise error
                out.append(error)
                continue
            label = "pos" if "good" in str(text) else "neg"
            out.append(Prediction(label, 0.9, {label: 0.9, "neg" if label == "pos" else "pos": 0.1}, (label,)))
        return out


class TinyTagger(Runnable[str, list[Entity]]):
    """Capitalised words are PER entities."""

    blocking = False

    def invoke(self, input: str, config: ConfigLike = None) -> list[Entity]:
        out, pos = [], 0
        for word in input.split():
            start = input.index(word, pos)
            pos = start + len(word)
            if word[:1].isupper():
                out.append(Entity(word, "PER", start, pos, 0.99))
        return out


class TinyReader(Runnable[Any, Answer]):
    """Answers with the context's last word."""

    blocking = False

    def invoke(self, input: Any, config: ConfigLike = None) -> Answer:
        context = input["context"]
        if not context.split():
            raise ValueError("the context is empty")
        word = context.split()[-1]
        start = context.rindex(word)
        return Answer(word, start, start + len(word), 0.5)


class SlowLoading(FakeEmbedder):
    """An embedder whose warm_up takes `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(dim=8)
        self.seconds = seconds

    def warm_up(self) -> None:
        time.sleep(self.seconds)


class Exploding(Runnable[Any, Any]):
    """Fails with an internal error whose message must not reach the client."""

    blocking = False

    def invoke(self, input: Any, config: ConfigLike = None) -> Any:
        raise RuntimeError("secret internal detail /etc/passwd")


def config(tmp_path: Any = None, **overrides: Any) -> ServeConfig:
    """A config with a chat model, an embedder, three predictors, two chains and two keys."""
    from yulian.core.runnable import runnable
    from yulian.serving import ChainConfig

    models = [
        ModelConfig(name="bot", model=FakeChatModel()),
        ModelConfig(name="emb", model=FakeEmbedder(dim=8)),
        ModelConfig(name="cls", model=TinyClassifier(), task="classify"),
        ModelConfig(name="tagger", model=TinyTagger(), task="ner"),
        ModelConfig(name="reader", model=TinyReader(), task="qa"),
    ]
    chains = [
        ChainConfig(name="upper", runnable=runnable(lambda x: str(x).upper()) | FakeChatModel()),
        ChainConfig(name="explode", runnable=Exploding()),
    ]
    keys = [
        KeyConfig(id="tester", sha256=hash_key(KEY), models=["*"], metrics=True),
        KeyConfig(id="limited", sha256=hash_key(LIMITED_KEY), models=["emb"], rate_per_minute=60, burst=4),
    ]
    values: dict[str, Any] = {"models": models, "chains": chains, "keys": keys}
    if tmp_path is not None:
        values["audit_log"] = str(tmp_path / "audit.jsonl")
    values.update(overrides)
    return ServeConfig(**values)


AUTH = {"Authorization": f"Bearer {KEY}"}
