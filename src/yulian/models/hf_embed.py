"""`HFEmbedder`: sentence embeddings from a local transformers encoder (mean or CLS pooling, normalised).

    from yulian.models.hf_embed import HFEmbedder
    emb = HFEmbedder("path/to/all-MiniLM-L6-v2")           # cheap: nothing loads until first use
    emb.invoke("hello")                                   # list[float], L2-normalised
    emb.embed(["a", "b"])                                 # list[list[float]], one batched call
    emb.embed_numpy(texts)                                # float32 ndarray (n, dim): for FAISS and friends

The vectors equal sentence-transformers' `encode` on the same model (mean pooling over the attention mask,
then L2 normalisation; cosine >= 0.999 in bf16, ~1e-7 apart in float32), computed faster: texts are tokenised
in one call, sorted by length and padded per batch, pooling is fused into the batch loop, the output is written
straight into one array, and on CPUs with native bf16 the model runs in bf16 (see `yulian.models.hf_encoder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yulian._optional import require
from yulian.models.base import Embedder
from yulian.models.hf_encoder import (
    BF16_MIN_COSINE,
    Features,
    HFEncoder,
    HFEncoderConfig,
    _check_choice,
    hidden_size,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["POOLINGS", "HFEmbedder", "HFEmbedderConfig", "declared_prompts"]

POOLINGS = ("mean", "cls")
"""Pooling modes: the mean of the token vectors over the attention mask, or the first ([CLS]) token's vector."""


@dataclass(frozen=True)
class HFEmbedderConfig(HFEncoderConfig):
    """Options of `HFEmbedder` (and those of `HFEncoderConfig`).

    Attributes:
        pooling: "mean" (sentence-transformers' default) or "cls".
        normalize: L2-normalise the vectors (then a dot product is the cosine similarity).
        query_prefix: text put before queries by `embed_query` / `embed_queries` (e.g. "query: " for E5).
        passage_prefix: text put before texts by `embed`, `invoke` and `batch` (e.g. "passage: " for E5).
    """

    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""

    def __post_init__(self) -> None:
        HFEncoderConfig.__post_init__(self)
        _check_choice(type(self).__name__, "pooling", self.pooling, POOLINGS)
        if not isinstance(self.normalize, bool):
            raise ValueError(f"HFEmbedderConfig.normalize must be True or False, got {self.normalize!r}")
        for name in ("query_prefix", "passage_prefix"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"HFEmbedderConfig.{name} must be a str, got {getattr(self, name)!r}")


def declared_prompts(path: str) -> tuple[str, str]:
    """(query prefix, passage prefix) a local model folder declares in `config_sentence_transformers.json`."""
    import json

    try:
        config = json.loads((Path(path).expanduser() / "config_sentence_transformers.json").read_text(encoding="utf-8"))
        prompts = config.get("prompts") or {}
    except (OSError, ValueError, AttributeError):
        return "", ""
    if not isinstance(prompts, dict):
        return "", ""
    query, passage = prompts.get("query", ""), prompts.get("passage", prompts.get("document", ""))
    return (query if isinstance(query, str) else "", passage if isinstance(passage, str) else "")


class HFEmbedder(Embedder, HFEncoder[str, list[float]]):
    """Text embeddings from a transformers encoder, as an `Embedder` Runnable.

    `embed`, `invoke` and `batch` treat their texts as passages (`passage_prefix`); `embed_query` and
    `embed_queries` add `query_prefix`. Prefixes left as None come from the model folder's sentence-transformers
    prompts (`config_sentence_transformers.json`: E5's "query: " / "passage: "), else none. `embed_numpy`
    returns a float32 array for speed-critical callers.
    Texts longer than `max_length` tokens are truncated (as sentence-transformers does).
    """

    options: HFEmbedderConfig

    def __init__(
        self,
        path: str,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        batch_size: int = 32,
        max_length: int = 256,
        dtype: str = "auto",
        device: str = "cpu",
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
    ) -> None:
        if query_prefix is None or passage_prefix is None:
            declared_query, declared_passage = declared_prompts(path)
            query_prefix = declared_query if query_prefix is None else query_prefix
            passage_prefix = declared_passage if passage_prefix is None else passage_prefix
        HFEncoder.__init__(
            self,
            HFEmbedderConfig(
                path=path,
                batch_size=batch_size,
                max_length=max_length,
                dtype=dtype,
                device=device,
                pooling=pooling,
                normalize=normalize,
                query_prefix=query_prefix,
                passage_prefix=passage_prefix,
            ),
        )

    # ----------------------------------------------------------------------------------------- public API
    @property
    def dim(self) -> int:
        """The size of the vectors (read from the model's config.json without loading weights when possible)."""
        if self._runtime_state is None:
            size = _config_hidden_size(self.options.path)
            if size is not None:
                return size
        return int(hidden_size(self._runtime().model.config))

    @dim.setter
    def dim(self, value: int | None) -> None:
        raise AttributeError("HFEmbedder.dim is read from the model; it cannot be set")

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text (passages: `passage_prefix` is added), in order."""
        vectors: list[list[float]] = self.embed_numpy(texts).tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query (`query_prefix` is added)."""
        return self.embed_queries([text])[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Vectors of queries (`query_prefix` is added), in order."""
        vectors: list[list[float]] = self.embed_numpy(texts, query=True).tolist()
        return vectors

    def embed_numpy(self, texts: list[str], *, query: bool = False) -> np.ndarray:
        """A float32 array of shape (len(texts), dim); `query=True` adds `query_prefix`, else `passage_prefix`."""
        np = require("numpy", extra="hf")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"embedders take text, got {type(t).__name__} at position {i}: {t!r:.80}")
        rt = self._runtime()
        if not texts:
            return np.zeros((0, hidden_size(rt.model.config)), dtype=np.float32)  # type: ignore[no-any-return]
        prefix = self.options.query_prefix if query else self.options.passage_prefix
        if prefix:
            texts = [prefix + t for t in texts]
        enc = rt.tokenizer(
            texts,
            truncation=True,
            max_length=self._max_length(rt),
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        features = [Features(ids) for ids in enc["input_ids"]]
        out = rt.torch.empty((len(texts), hidden_size(rt.model.config)), dtype=rt.torch.float32)
        for idx, vectors in self._batches(rt, rt.model, features, self._step):
            out[idx] = vectors.cpu()
        return out.numpy()  # type: ignore[no-any-return]

    # ----------------------------------------------------------------------------------------- internals
    def _step(self, model: Any, inputs: dict[str, Any]) -> Any:
        """Forward one padded batch and pool it: float32 vectors (batch, dim)."""
        torch = require("torch", extra="hf")
        hidden = model(**inputs).last_hidden_state
        if self.options.pooling == "cls":
            vectors = hidden[:, 0].float()
        else:
            mask = inputs["attention_mask"].unsqueeze(1).to(torch.float32)  # (b, 1, L)
            summed = torch.bmm(mask, hidden.float()).squeeze(1)  # (b, d)
            vectors = summed / mask.sum(dim=2).clamp(min=1e-9)
        if self.options.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2.0, dim=-1)
        return vectors

    def _probe_step(self, model: Any, inputs: dict[str, Any]) -> Any:
        torch = require("torch", extra="hf")
        return torch.nn.functional.normalize(self._step(model, inputs), p=2.0, dim=-1)

    def _probe_ok(self, reference: list[Any], candidate: list[Any]) -> tuple[bool, str]:
        worst = min(float((r * c).sum()) for r, c in zip(reference, candidate, strict=True))
        return worst >= BF16_MIN_COSINE, f"min probe cosine {worst:.5f} (limit {BF16_MIN_COSINE})"

    def _check_input(self, input: object, index: int) -> str:
        if not isinstance(input, str):
            raise TypeError(f"embedders take text, got {type(input).__name__} at position {index}: {input!r:.80}")
        return input

    def _predict(self, inputs: list[Any]) -> list[list[float]]:
        return self.embed(inputs)


def _config_hidden_size(path: str) -> int | None:
    import json
    from pathlib import Path

    file = Path(path).expanduser() / "config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for name in ("hidden_size", "d_model", "dim"):
        if isinstance(config.get(name), int):
            return int(config[name])
    return None
