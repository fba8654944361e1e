"""`HFChatModel`: a local transformers causal LM as a chat model, with real streaming and real batching.

```python
from yulian.models import load
llm = load("smollm2-135m-instruct")          # an HFChatModel: cheap to build, loads on first use
llm.invoke("What is the capital of France?").content
for chunk in llm.stream("Tell me a joke."): print(chunk.content, end="")
llm.batch(["Hi!", "What is 2+2?"])          # one left-padded generate for the whole batch
```

- **Prompts** go through the tokenizer's chat template (a `system_prompt` is prepended when the messages have
  none); a model without a template gets a plain `System:/User:/Assistant:` transcript, with a warning.
- **Generation** is yulian's own loop over the model with a key/value cache (`yulian.models.hf_generation`):
  greedy or sampled (temperature, top-p, `extra={"top_k", "repetition_penalty", "min_tokens"}`), reproducible
  with `seed`, ended early by end-of-sequence tokens and stop strings, streamed token by token.
- **`batch`** generates for many conversations in one batch (left padding, up to `max_batch_size` at a time,
  grouped by prompt length); `abatch` runs it in a worker thread. In float32 a batched reply is exactly the
  single-call reply. In bf16, padding changes rounding, so where two next tokens nearly tie a batched reply can
  take the other branch (as with plain transformers `generate`); use `dtype="float32"` when replies must not
  depend on batching.
- **dtype "auto"**: bfloat16 where the CPU computes it natively (x86 avx512_bf16 or AMX) or on a bf16-capable
  GPU, when a probe shows the bf16 model picks the same next tokens as float32 (at least 90% of positions);
  float32 otherwise. On an AMD EPYC with avx512_bf16 (no AMX) SmolLM2-135M decodes about 2x faster in bf16 at
  batch 1 and 8 (memory-bound decoding reads half the bytes). `runtime_info()` says what was chosen and why.
"""

from __future__ import annotations

import difflib
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from yulian._optional import require
from yulian.core.config import use_config
from yulian.core.messages import Message, MessageChunk, to_messages
from yulian.core.runnable import ConfigLike
from yulian.models.base import ChatInput, ChatModel, GenerationConfig
from yulian.models.hf_encoder import native_bf16
from yulian.models.hf_generation import Sampling, SeqState, decode, forward_kwargs
from yulian.models.registry import ModelNotFoundError, ResolvedModel, hub_load_error, resolve

__all__ = ["HFChatConfig", "HFChatModel"]

DTYPES = ("auto", "float32", "bfloat16", "float16")

_PROBE = [
    ("system", "You are a helpful assistant."),
    ("user", "What is the capital of France? Answer in one sentence, then explain why in two more."),
    ("assistant", "The capital of France is Paris. It has been the seat of government for centuries."),
    ("user", "请用中文简单介绍一下长城。"),
]
"""A conversation the dtype "auto" check runs through float32 and bf16 copies of the model."""

BF16_AGREEMENT = 0.9
"""dtype "auto" keeps bf16 only if it picks float32's most likely next token at this share of probe positions."""


@dataclass(frozen=True, slots=True)
class HFChatConfig:
    """Loading and prompting options of `HFChatModel` (generation options live in `GenerationConfig`).

    Attributes:
        dtype: "auto" (bf16 where it pays and agrees with float32, else float32), "float32", "bfloat16" or
            "float16".
        device: a torch device ("cpu", "cuda", "cuda:1", ...).
        system_prompt: a system message put first when the conversation has none.
        chat_template: a Jinja chat template replacing the tokenizer's.
        max_batch_size: the most conversations `batch` generates together in one batch.
        default_max_tokens: the reply budget when `max_tokens` is not set.
    """

    dtype: str = "auto"
    device: str = "cpu"
    system_prompt: str | None = None
    chat_template: str | None = None
    max_batch_size: int = 16
    default_max_tokens: int = 256

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a torch device name like 'cpu' or 'cuda', got {self.device!r}")
        if isinstance(self.max_batch_size, bool) or not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an int >= 1, got {self.max_batch_size!r}")
        if isinstance(self.default_max_tokens, bool) or self.default_max_tokens < 1:
            raise ValueError(f"default_max_tokens must be an int >= 1, got {self.default_max_tokens!r}")


@dataclass
class _Runtime:
    """What loading produced; shared by a model and its `bind` copies."""

    torch: Any
    model: Any
    tokenizer: Any
    eos_ids: frozenset[int]
    pad_id: int
    context: int | None
    template: str | None
    cache_factory: Any
    cache_arg: str
    logits_to_keep: bool
    info: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Shared:
    """The lazily loaded runtime and the lock that guards loading it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runtime: _Runtime | None = None


class HFChatModel(ChatModel):
    """A local Hugging Face causal LM as a chat model: streaming, batched, KV-cached generation on CPU or GPU.

    Args:
        path: a registered name (`"smollm2-135m-instruct"`), a local folder, a `.gguf` file, a hub id, or a
            `ResolvedModel`. Resolved now (cheap, offline); weights load on first use or `warm_up()`.
        dtype, device, system_prompt, chat_template, max_batch_size, default_max_tokens: see `HFChatConfig`.
        options: generation options (`GenerationConfig`); `**overrides` changes some of them, e.g.
            `HFChatModel(path, max_tokens=64, temperature=0.7, seed=1, stop=["\\n\\n"])`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | ResolvedModel = "smollm2-135m-instruct",
        *,
        dtype: str = "auto",
        device: str = "cpu",
        system_prompt: str | None = None,
        chat_template: str | None = None,
        max_batch_size: int = 16,
        default_max_tokens: int = 256,
        options: GenerationConfig | None = None,
        **overrides: Any,
    ) -> None:
        _check_overrides(overrides)
        super().__init__(options=options, **overrides)
        self.config = HFChatConfig(dtype, device, system_prompt, chat_template, max_batch_size, default_max_tokens)
        self.resolved = path if isinstance(path, ResolvedModel) else _resolve(path)
        if self.resolved.source == "openai":
            raise ValueError(f"{self.resolved.name} is a remote model: use load({self.resolved.name!r}) instead")
        if self.resolved.kind != "chat":
            raise ValueError(
                f"{self.resolved.name} is a {self.resolved.kind} model, not a text generator: "
                "HFChatModel needs a causal language model"
            )
        self._name = f"HFChatModel({self.resolved.name})"
        self._shared = _Shared()

    def __repr__(self) -> str:
        return f"HFChatModel({self.resolved.name!r})"

    # ----------------------------------------------------------------------------------------- loading
    def warm_up(self) -> HFChatModel:
        """Load the tokenizer and weights now (converting a GGUF file first if needed); returns self."""
        self._runtime()
        return self

    def runtime_info(self) -> dict[str, Any]:
        """What loading chose: folder, dtype (and why), device, chat template source, load seconds."""
        return dict(self._runtime().info)

    def _runtime(self) -> _Runtime:
        runtime = self._shared.runtime
        if runtime is not None:
            return runtime
        with self._shared.lock:
            if self._shared.runtime is None:
                self._shared.runtime = self._load()
            return self._shared.runtime

    def _load(self) -> _Runtime:
        started = time.perf_counter()
        torch = require("torch", extra="hf", purpose="local chat models")
        transformers = require("transformers", extra="hf", purpose="local chat models")
        r, cfg = self.resolved, self.config
        folder = r.path
        if r.gguf_path is not None:
            from yulian.models.gguf import ensure_converted

            folder = str(ensure_converted(r.gguf_path))
        wanted = {"auto": torch.float32}.get(cfg.dtype) or getattr(torch, cfg.dtype)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
            model = _load_causal_lm(transformers.AutoModelForCausalLM, folder, dtype=wanted)
        except OSError as e:
            if r.source == "hub":
                raise hub_load_error(r.path, e) from e
            raise ModelNotFoundError(f"{r.name}: cannot load a causal language model from {folder} ({e})") from e
        model.to(cfg.device).eval()
        template, template_source = cfg.chat_template, "custom"
        if template is None:
            template, template_source = getattr(tokenizer, "chat_template", None), "tokenizer"
        if template is None:
            template_source = "fallback (no chat template: System:/User:/Assistant: transcript)"
        runtime = _Runtime(
            torch=torch,
            model=model,
            tokenizer=tokenizer,
            eos_ids=_eos_ids(model, tokenizer),
            pad_id=_pad_id(model, tokenizer),
            context=getattr(model.config, "max_position_embeddings", None),
            template=template,
            cache_factory=_cache_factory(transformers, model),
            cache_arg=forward_kwargs(model)[0],
            logits_to_keep=forward_kwargs(model)[1],
        )
        dtype_name, reason = cfg.dtype, "requested"
        if cfg.dtype == "auto":
            dtype_name, reason = _auto_dtype(runtime, self, folder)
        runtime.info = {
            "model": r.name,
            "folder": folder,
            "source": r.source,
            "dtype": dtype_name,
            "dtype_reason": reason,
            "device": cfg.device,
            "chat_template": template_source,
            "parameters": sum(p.numel() for p in runtime.model.parameters()),
            "load_seconds": round(time.perf_counter() - started, 2),
        }
        return runtime

    # ----------------------------------------------------------------------------------------- prompts
    def prompt_ids(self, messages: ChatInput) -> list[int]:
        """The token ids the model sees for `messages`: the chat template applied, generation prompt added."""
        return self._prompt_ids(self._runtime(), to_messages(messages))

    def _prompt_ids(self, rt: _Runtime, messages: list[Message]) -> list[int]:
        if self.config.system_prompt and not any(m.role == "system" for m in messages):
            messages = [Message("system", self.config.system_prompt), *messages]
        conversation = [{"role": m.role, "content": m.content} for m in messages]
        if rt.template is None:
            _warn_fallback(self.resolved.name)
            lines = [f"{m['role'].capitalize()}: {m['content']}" for m in conversation]
            ids: list[int] = rt.tokenizer("\n\n".join([*lines, "Assistant:"]))["input_ids"]
        else:
            try:
                text = rt.tokenizer.apply_chat_template(
                    conversation, chat_template=rt.template, add_generation_prompt=True, tokenize=False
                )
            except Exception as e:  # jinja errors: a template that rejects a role, an order, ...
                raise ValueError(f"the chat template of {self.resolved.name} rejected the messages: {e}") from e
            ids = rt.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"the chat template of {self.resolved.name} turned the messages into an empty prompt")
        if rt.context is not None and len(ids) >= rt.context:
            raise ValueError(
                f"the prompt is {len(ids)} tokens but {self.resolved.name} reads at most {rt.context}: shorten it"
            )
        return ids

    # ----------------------------------------------------------------------------------------- generation
    def _decode(
        self, rt: _Runtime, prompts: list[list[int]], options: GenerationConfig, states: list[SeqState]
    ) -> Iterator[tuple[int, str]]:
        sampling = Sampling.from_options(options, self.config.default_max_tokens)
        return decode(
            rt.torch,
            rt.model,
            rt.tokenizer,
            prompts,
            sampling,
            eos_ids=rt.eos_ids,
            pad_id=rt.pad_id,
            context=rt.context,
            lock=rt.lock,
            cache_factory=rt.cache_factory,
            cache_arg=rt.cache_arg,
            logits_to_keep=rt.logits_to_keep,
            states=states,
        )

    def _generate(self, messages: list[Message], options: GenerationConfig) -> Message:
        rt = self._runtime()
        states: list[SeqState] = []
        for _ in self._decode(rt, [self._prompt_ids(rt, messages)], options, states):
            pass
        return self._reply(states[0], options.stop)

    def _stream(self, messages: list[Message], options: GenerationConfig) -> Iterator[MessageChunk]:
        rt = self._runtime()
        states: list[SeqState] = []
        for _, piece in self._decode(rt, [self._prompt_ids(rt, messages)], options, states):
            yield MessageChunk("assistant", piece)
        yield MessageChunk("assistant", "", metadata=self._metadata(states[0]))

    def batch(
        self,
        inputs: Sequence[ChatInput],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Message]:
        """Replies to many conversations, generated together in left-padded batches of up to `max_batch_size`.

        Conversations of similar prompt length share a batch. With `return_exceptions=True` a conversation that
        fails (a bad message) gets its exception in place and the others still run. `max_concurrency` is
        accepted for the Runnable contract; batching replaces it here.
        """
        inputs = list(inputs)
        if not inputs:
            return []
        with use_config(config):
            return self._batch(inputs, return_exceptions)

    async def abatch(
        self,
        inputs: Sequence[ChatInput],
        config: ConfigLike = None,
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Message]:
        """Async `batch`: the batched generation runs in a worker thread."""
        import asyncio

        inputs = list(inputs)
        return await asyncio.to_thread(self.batch, inputs, config, return_exceptions=return_exceptions)

    def _batch(self, inputs: list[ChatInput], return_exceptions: bool) -> list[Any]:
        rt = self._runtime()
        results: list[Any] = [None] * len(inputs)
        prompts: dict[int, list[int]] = {}
        for i, item in enumerate(inputs):
            try:
                prompts[i] = self._prompt_ids(rt, to_messages(item))
            except Exception as e:
                if return_exceptions:
                    results[i] = e
                elif type(e) in (ValueError, TypeError):
                    raise type(e)(f"input {i}: {e}") from e
                else:
                    raise
        order = sorted(prompts, key=lambda i: len(prompts[i]))
        size = self.config.max_batch_size
        for start in range(0, len(order), size):
            group = order[start : start + size]
            states: list[SeqState] = []
            try:
                for _ in self._decode(rt, [prompts[i] for i in group], self.options, states):
                    pass
            except Exception as e:
                if not return_exceptions:
                    raise
                for i in group:
                    results[i] = e
                continue
            for i, state in zip(group, states, strict=True):
                results[i] = self._reply(state, self.options.stop)
        return results

    def _metadata(self, state: SeqState) -> dict[str, Any]:
        return {
            "finish_reason": state.finish_reason or "length",
            "usage": {
                "prompt_tokens": state.prompt_tokens,
                "completion_tokens": state.tokens,
                "total_tokens": state.prompt_tokens + state.tokens,
            },
            "model": self.resolved.name,
        }

    def _reply(self, state: SeqState, stop: Sequence[str]) -> Message:
        text, metadata = state.text, self._metadata(state)
        cut = min((i for s in stop if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            text, metadata["finish_reason"] = text[:cut], "stop"
        return Message("assistant", text, metadata=metadata)


# ============================================================================================ helpers
_OWN_OPTIONS = ("dtype", "device", "system_prompt", "chat_template", "max_batch_size", "default_max_tokens")


def _check_overrides(overrides: dict[str, Any]) -> None:
    known = [f.name for f in fields(GenerationConfig)]
    for name in overrides:
        if name not in known:
            close = difflib.get_close_matches(name, [*known, *_OWN_OPTIONS], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"HFChatModel got an unknown option {name!r} (model options: {', '.join(_OWN_OPTIONS)}; "
                f"generation options: {', '.join(known)}).{hint}"
            )


_warned: set[str] = set()


def _warn_fallback(name: str) -> None:
    if name not in _warned:
        _warned.add(name)
        warnings.warn(
            f"{name} has no chat template: using a plain 'System:/User:/Assistant:' transcript. "
            "Pass chat_template=... for the format the model was trained on.",
            UserWarning,
            stacklevel=4,
        )


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return frozenset(ids)


def _pad_id(model: Any, tokenizer: Any) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, getattr(model.config, "pad_token_id", None)):
        if isinstance(value, int):
            return value
    return 0


def _cache_factory(transformers: Any, model: Any) -> Any:
    cache_class = transformers.DynamicCache
    try:
        cache_class(config=model.config)
    except TypeError:  # transformers 4.x: no config argument
        return cache_class
    return lambda: cache_class(config=model.config)


def _cast_parameters(model: Any, dtype: Any) -> None:
    """Cast the weights to `dtype` in place, leaving buffers alone.

    `model.to(dtype)` would also round float32 buffers such as the rotary frequencies (`inv_freq`), which
    `from_pretrained(dtype=...)` keeps in float32: positions far into a sequence would then drift.
    """
    for param in model.parameters():
        if param.is_floating_point():
            param.data = param.data.to(dtype)


def _auto_dtype(rt: _Runtime, chat: HFChatModel, folder: str) -> tuple[str, str]:
    """("bfloat16" | "float32", why): bf16 when native and its next-token choices agree with float32's.

    Leaves `rt.model` in the chosen dtype (reloaded from `folder` when bf16 was tried and rejected).
    """
    torch = rt.torch
    if not native_bf16(torch, torch.device(chat.config.device)):
        return "float32", f"auto: float32 ({chat.config.device} has no native bf16 arithmetic)"
    ids = chat._prompt_ids(rt, to_messages(_PROBE))
    with torch.inference_mode():
        inputs = torch.tensor([ids], device=next(rt.model.parameters()).device)
        reference = rt.model(input_ids=inputs).logits[0].argmax(-1)
        _cast_parameters(rt.model, torch.bfloat16)
        candidate = rt.model(input_ids=inputs).logits[0].argmax(-1)
    agreement = float((reference == candidate).float().mean())
    detail = f"bf16 picks float32's next token at {agreement:.0%} of {len(ids)} probe positions"
    if agreement >= BF16_AGREEMENT:
        return "bfloat16", f"auto: bfloat16 (native bf16 on {chat.config.device}; {detail})"
    rt.model = _load_causal_lm(type(rt.model), folder, dtype=torch.float32).to(chat.config.device).eval()  # unrounded
    return "float32", f"auto: float32 ({detail}, below {BF16_AGREEMENT:.0%})"


def _is_adapter(path: Any) -> bool:
    return isinstance(path, str | os.PathLike) and Path(path).expanduser().joinpath("adapter_config.json").is_file()


def _resolve(path: str | os.PathLike[str]) -> ResolvedModel:
    """`resolve(path)`, except that a PEFT adapter folder (yulian.tuning.adapters) is a local chat model."""
    if _is_adapter(path):
        return ResolvedModel(name=str(path), path=str(path), kind="chat", source="local")
    return resolve(path)


def _load_causal_lm(cls: Any, folder: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(folder, **kwargs)`; an adapter folder loads its base model with the adapter merged in."""
    if _is_adapter(folder):
        from yulian.tuning.adapters import load_model

        return load_model("AutoModelForCausalLM", folder, **kwargs)
    return cls.from_pretrained(folder, **kwargs)
