"""Task routes (`/v1/classify`, `/v1/ner`, `/v1/qa`) and chain routes (`/v1/chains/{name}/invoke|batch|stream`).

Task responses follow the OpenAI list shape: `{"object": "list", "model", "data": [{"index", ...}], "usage"}`;
each item is the predictor's `to_dict()` (`Prediction`, `Entity` list, `Answer`). Inputs of all requests share
the model's micro-batcher. Chain outputs are turned into JSON: messages and predictions by their `to_dict()`,
dataclasses field by field, anything else as text.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request

from yulian.serving.app import ServerState
from yulian.serving.errors import APIError
from yulian.serving.limits import estimate_tokens
from yulian.serving.routes_openai import (
    call_model,
    check_input_tokens,
    check_items,
    json_response,
    model_error,
    sse,
    sse_response,
)
from yulian.serving.schemas import ChainBatchRequest, ChainInvokeRequest, ClassifyRequest, NERRequest, QARequest

__all__ = ["add_task_routes", "to_jsonable"]


def to_jsonable(value: Any, depth: int = 0) -> Any:
    """`value` as JSON-ready data: `to_dict()` where there is one, dataclasses by field, containers recursively."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if depth > 32:
        return str(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict(), depth + 1)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, Sequence | set | frozenset) and not isinstance(value, bytes | bytearray):
        return [to_jsonable(v, depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)}
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return to_jsonable(tolist(), depth + 1)
    return str(value)


def _results(results: list[Any]) -> list[Any]:
    for result in results:
        if isinstance(result, BaseException):
            raise model_error(result)
    return results


def _tokens(texts: Sequence[str]) -> int:
    return sum(estimate_tokens(t) for t in texts)


def add_task_routes(app: FastAPI, state: ServerState) -> None:
    """Register the task and chain routes on `app`."""

    def served(request: Request, name: str, task: str) -> Any:
        request.scope["state"]["info"]["model"] = name
        return state.model(request.scope["state"].get("principal"), name, task)

    def respond(name: str, data: list[dict[str, Any]], tokens: int) -> Any:
        return json_response(
            {"object": "list", "model": name, "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        )

    @app.post("/v1/classify", tags=["tasks"])
    async def classify(body: ClassifyRequest, request: Request) -> Any:
        """Classify texts (or text pairs): the label, its score and every label's score."""
        model = served(request, body.model, "classify")
        items: list[Any] = [body.input] if isinstance(body.input, str) else list(body.input)
        inputs: list[Any] = []
        for i, item in enumerate(items):
            if isinstance(item, list):
                if len(item) != 2:
                    raise APIError(
                        400, f"input[{i}]: a text pair is a list of two texts", param=f"input.{i}", code="invalid_input"
                    )
                inputs.append((item[0], item[1]))
            else:
                inputs.append(item)
        check_items(state, len(inputs))
        texts = [t for x in inputs for t in (x if isinstance(x, tuple) else (x,))]
        tokens = _tokens(texts)
        info = request.scope["state"]["info"]
        check_input_tokens(state, tokens, info)
        info["items"] = len(inputs)
        results = _results(await call_model(state, model.run_batch(inputs)))
        return respond(body.model, [{"index": i, **to_jsonable(r)} for i, r in enumerate(results)], tokens)

    @app.post("/v1/ner", tags=["tasks"])
    async def ner(body: NERRequest, request: Request) -> Any:
        """Named entities (typed spans with character offsets) of each text."""
        model = served(request, body.model, "ner")
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        check_items(state, len(texts))
        tokens = _tokens(texts)
        info = request.scope["state"]["info"]
        check_input_tokens(state, tokens, info)
        info["items"] = len(texts)
        results = _results(await call_model(state, model.run_batch(texts)))
        return respond(body.model, [{"index": i, "entities": to_jsonable(r)} for i, r in enumerate(results)], tokens)

    @app.post("/v1/qa", tags=["tasks"])
    async def qa(body: QARequest, request: Request) -> Any:
        """Extractive question answering: the answer span in the context, with its offsets and score."""
        model = served(request, body.model, "qa")
        if body.input is not None:
            pairs = [{"question": x.question, "context": x.context} for x in body.input]
        elif body.question is not None and body.context is not None:
            pairs = [{"question": body.question, "context": body.context}]
        else:
            raise APIError(
                400, "give question and context, or input: a list of {question, context}", code="invalid_input"
            )
        check_items(state, len(pairs))
        tokens = _tokens([p[k] for p in pairs for k in ("question", "context")])
        info = request.scope["state"]["info"]
        check_input_tokens(state, tokens, info)
        info["items"] = len(pairs)
        results = _results(await call_model(state, model.run_batch(pairs)))
        return respond(body.model, [{"index": i, **to_jsonable(r)} for i, r in enumerate(results)], tokens)

    # ----------------------------------------------------------------------------------------- chains
    def chain_for(request: Request, name: str) -> tuple[Any, Any]:
        request.scope["state"]["info"]["model"] = name
        runnable = state.chains.get(name)
        principal = request.scope["state"].get("principal")
        if runnable is None or principal is None or not principal.allows(name):
            if runnable is not None:
                raise APIError(403, f"this API key may not use the chain {name!r}", code="model_not_allowed")
            raise APIError(
                404, f"the chain {name!r} does not exist or you do not have access to it", code="chain_not_found"
            )
        from yulian.core.config import RunConfig

        timeout = state.chain_configs[name].timeout_s
        return runnable, RunConfig(timeout=timeout, tags=("yulian-serve",), metadata={"route": "chain"})

    def check_size(request: Request, value: Any) -> None:
        text = json.dumps(value, ensure_ascii=False, default=str)
        check_input_tokens(state, estimate_tokens(text), request.scope["state"]["info"])

    @app.post("/v1/chains/{name}/invoke", tags=["chains"])
    async def chain_invoke(name: str, body: ChainInvokeRequest, request: Request) -> Any:
        """Run a chain on one input: `{"output": ...}`."""
        runnable, config = chain_for(request, name)
        check_size(request, body.input)
        output = await call_model(state, runnable.ainvoke(body.input, config))
        return json_response({"output": to_jsonable(output)})

    @app.post("/v1/chains/{name}/batch", tags=["chains"])
    async def chain_batch(name: str, body: ChainBatchRequest, request: Request) -> Any:
        """Run a chain on many inputs: `{"outputs": [...]}` (a failed item fails the request)."""
        runnable, config = chain_for(request, name)
        check_items(state, len(body.inputs))
        check_size(request, body.inputs)
        request.scope["state"]["info"]["items"] = len(body.inputs)
        outputs = await call_model(state, runnable.abatch(body.inputs, config, return_exceptions=True))
        return json_response({"outputs": [to_jsonable(o) for o in _results(list(outputs))]})

    @app.post("/v1/chains/{name}/stream", tags=["chains"])
    async def chain_stream(name: str, body: ChainInvokeRequest, request: Request) -> Any:
        """Stream a chain's output as server-sent events `data: {"chunk": ...}`, ending with `data: [DONE]`."""
        runnable, config = chain_for(request, name)
        check_size(request, body.input)
        info = request.scope["state"]["info"]
        info["stream"] = True

        async def events() -> AsyncIterator[bytes]:
            try:
                async for chunk in runnable.astream(body.input, config):
                    yield sse({"chunk": to_jsonable(chunk)})
            except Exception as e:
                info["error_code"] = "stream_error"
                try:
                    error = model_error(e)
                except Exception:
                    error = APIError(500, "internal error while streaming", code="internal_error")
                yield sse({"error": {"message": error.message, "type": error.type, "param": None, "code": error.code}})
            yield b"data: [DONE]\n\n"

        return sse_response(events())
