"""`yulian chat` and `yulian models`: plain functions whose signatures are the CLI and docstrings the help."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["chat", "models"]


def chat(
    question: str,
    model: str = "smollm2-135m-instruct",
    system: str | None = None,
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float | None = None,
    seed: int | None = None,
    stop: list[str] | None = None,
    stream: bool = True,
) -> None:
    """Ask a model one question and print the answer as it is generated.

    The first use of a GGUF model (such as the default) converts it once, in about a minute; later runs load
    it in seconds. Use "-" as the question to read it from standard input.

    Args:
        question: the question (or "-" to read it from stdin).
        model: a registered name, a local model folder, a .gguf file, a hub id or openai:MODEL.
        system: a system prompt.
        max_tokens: the most tokens in the answer.
        temperature: 0 answers greedily; higher values sample more freely.
        top_p: nucleus sampling mass, in (0, 1].
        seed: a random seed, for reproducible sampling.
        stop: strings that end the answer.
        stream: print tokens as they come (--no-stream prints the whole answer at the end).
    """
    from yulian.core.messages import Message
    from yulian.models.registry import load

    if question == "-":
        question = sys.stdin.read().strip()
    if not question:
        raise ValueError("the question is empty")
    options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "stop": tuple(stop or ())}
    if top_p is not None:
        options["top_p"] = top_p
    if seed is not None:
        options["seed"] = seed
    llm = load(model, task="chat", **options)
    messages = [Message("system", system)] if system else []
    messages.append(Message("user", question))
    if not stream:
        print(llm.invoke(messages).content)
        return
    for chunk in llm.stream(messages):
        sys.stdout.write(chunk.content)
        sys.stdout.flush()
    sys.stdout.write("\n")


def models(json: bool = False, hub_cache: bool = True) -> None:
    """List the models available on this machine and how each name resolves.

    Args:
        json: print JSON lines instead of a table.
        hub_cache: also list the models found in the local Hugging Face cache.
    """
    import dataclasses
    import json as json_module

    from yulian.models.registry import available_models, cache_dir

    infos = available_models(include_hub_cache=hub_cache)
    if json:
        for info in infos:
            print(json_module.dumps(dataclasses.asdict(info), ensure_ascii=False))
        return
    rows = [("NAME", "KIND", "SOURCE", "STATUS", "LOCATION")]
    rows += [(i.name, i.kind, i.source, i.status, i.location) for i in infos]
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    print(f"\ncache: {cache_dir()}  (set YULIAN_CACHE to move it)")
