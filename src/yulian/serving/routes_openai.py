"""The OpenAI-compatible routes: `/v1/models`, `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`.

Responses have the shapes the official `openai` client parses; streams are server-sent events ending in
`data: [DONE]`. Generation options map onto `ChatModel.bind(...)` (`GenerationConfig`): `max_tokens` (or
`max_completion_tokens`), `temperature`, `top_p`, `stop`, `seed`. `response_format` `json_object` /
`json_schema` adds a system instruction and checks the reply parses as JSON (422 if not; streamed replies are not
checked). `/v1/completions` is served by chat models: the prompt becomes one user message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request

from yulian.serving.app import ServerState
from yulian.serving.errors import APIError
from yulian.serving.fastjson import dumps
from yulian.serving.limits import estimate_tokens
from yulian.serving.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

__all__ = [
    "add_openai_routes",
    "call_model",
    "check_input_tokens",
    "check_items",
    "json_response",
    "model_error",
    "sse",
    "sse_response",
]

JSON_INSTRUCTION = "Answer with one valid JSON object and nothing else."


def json_response(data: Any, status: int = 200) -> Any:
    """A JSON response, serialised once (no FastAPI re-encoding)."""
    from fastapi import Response

    return Response(dumps(data), status_code=status, media_type="application/json")


def sse_response(events: AsyncIterator[bytes]) -> Any:
    """A `text/event-stream` response from `data: ...` frames."""
    from fastapi.responses import StreamingResponse

    return StreamingResponse(events, media_type="text/event-stream", headers={"cache-control": "no-cache"})


def sse(data: Any) -> bytes:
    """One server-sent event frame."""
    return b"data: " + dumps(data) + b"\n\n"


def _info(request: Any) -> dict[str, Any]:
    info: dict[str, Any] = request.scope["state"]["info"]
    return info


def _principal(request: Any) -> Any:
    return request.scope["state"].get("principal")


async def _timed(state: ServerState, awaitable: Any) -> Any:
    """Await a model call under the request timeout (504 past it)."""
    try:
        return await asyncio.wait_for(awaitable, state.config.limits.request_timeout_s)
    except TimeoutError:
        raise APIError(504, "the model did not answer in time", code="timeout") from None


def model_error(e: BaseException) -> APIError:
    """An `APIError` for an exception raised by a model call: bad input is 400, overload 503, the rest 500."""
    from yulian.serving.batching import OverloadedError

    if isinstance(e, APIError):
        return e
    if isinstance(e, OverloadedError):
        return APIError(503, "the model is overloaded; retry shortly", code="overloaded", headers={"retry-after": "1"})
    if isinstance(e, TimeoutError):
        return APIError(504, "the model did not answer in time", code="timeout")
    if isinstance(e, ValueError | TypeError):
        return APIError(400, f"the model refused the input: {str(e)[:300]}", code="invalid_input")
    raise e


async def call_model(state: ServerState, awaitable: Any) -> Any:
    """Await a model call, mapping its errors (see `model_error`)."""
    try:
        return await _timed(state, awaitable)
    except Exception as e:
        raise model_error(e) from None


def check_items(state: ServerState, n: int) -> None:
    """400 when a request holds more inputs than `limits.max_items`."""
    if n > state.config.limits.max_items:
        raise APIError(
            400,
            f"{n} inputs in one request; the limit is {state.config.limits.max_items}",
            code="too_many_inputs",
            param="input",
        )
    if n == 0:
        raise APIError(400, "the input is empty", code="empty_input", param="input")


def check_input_tokens(state: ServerState, tokens: int, info: dict[str, Any]) -> None:
    """400 when a request's estimated input tokens exceed `limits.max_input_tokens`."""
    info["input_tokens"] = tokens
    if tokens > state.config.limits.max_input_tokens:
        raise APIError(
            400,
            f"the input is about {tokens:,} tokens; the limit is {state.config.limits.max_input_tokens:,}",
            code="context_length_exceeded",
            param="messages",
        )


def _generation_options(state: ServerState, body: Any, max_tokens: int | None) -> dict[str, Any]:
    cap = state.config.limits.max_output_tokens
    if max_tokens is not None and max_tokens > cap:
        raise APIError(
            400,
            f"max_tokens {max_tokens} is over this server's limit of {cap}",
            code="max_tokens_too_large",
            param="max_tokens",
        )
    options: dict[str, Any] = {}
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    for name in ("temperature", "top_p", "seed"):
        if getattr(body, name) is not None:
            options[name] = getattr(body, name)
    if body.stop is not None:
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop)
        if len(stops) > 4 or any(not s for s in stops):
            raise APIError(400, "stop takes up to 4 non-empty strings", code="invalid_stop", param="stop")
        options["stop"] = tuple(stops)
    return options


def _messages(body: ChatCompletionRequest) -> list[Any]:
    from yulian.core.messages import Message

    out = []
    for i, m in enumerate(body.messages):
        data = m.model_dump(exclude_none=True)
        if data["role"] == "developer":
            data["role"] = "system"
        try:
            out.append(Message.from_dict(data))
        except (TypeError, ValueError) as e:
            raise APIError(400, f"messages[{i}]: {e}", code="invalid_message", param=f"messages.{i}") from None
    return out


def _wants_json(fmt: dict[str, Any] | None) -> bool:
    """Whether `response_format` asks for JSON; checked with the client side's own `response_format_param`."""
    from yulian.models._openai_wire import response_format_param

    try:
        checked = response_format_param(fmt)
    except ValueError as e:
        raise APIError(400, str(e), code="invalid_response_format", param="response_format") from None
    if checked is None:
        return False
    if checked["type"] not in ("text", "json_object", "json_schema"):
        raise APIError(
            400,
            "response_format.type must be 'text', 'json_object' or 'json_schema'",
            code="invalid_response_format",
            param="response_format",
        )
    return bool(checked["type"] != "text")


def _json_text(text: str) -> str:
    """`text` if it is JSON, else the first balanced JSON object inside it; 422 if there is none."""
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    start = text.find("{")
    while start >= 0:
        try:
            obj, end = json.JSONDecoder().raw_decode(text, start)
            if isinstance(obj, dict):
                return text[start:end]
        except ValueError:
            pass
        start = text.find("{", start + 1)
    raise APIError(
        422, "the model's reply is not valid JSON (response_format asked for JSON)", code="invalid_json_output"
    )


def _usage(prompt: int, completion: int, meta: dict[str, Any]) -> dict[str, int]:
    found = meta.get("usage")
    usage: dict[str, Any] = found if isinstance(found, dict) else {}
    p = int(usage.get("prompt_tokens", prompt))
    c = int(usage.get("completion_tokens", completion))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _finish(meta: dict[str, Any], has_tools: bool) -> str:
    if has_tools:
        return "tool_calls"
    reason = meta.get("finish_reason")
    return reason if reason in ("stop", "length", "tool_calls", "content_filter") else "stop"


# ============================================================================================ routes
def add_openai_routes(app: FastAPI, state: ServerState) -> None:
    """Register the OpenAI-compatible routes on `app`."""

    @app.get("/v1/models", tags=["openai"])
    async def list_models(request: Request) -> Any:
        """The models and chains this key may use."""
        principal = _principal(request)
        data = [_model_card(s.name, s.created, s.task) for s in state.models.values() if principal.allows(s.name)]
        data += [_model_card(name, 0, "chain") for name in state.chains if principal.allows(name)]
        return json_response({"object": "list", "data": data})

    @app.get("/v1/models/{model:path}", tags=["openai"])
    async def get_model(model: str, request: Request) -> Any:
        """One model's card."""
        served = state.models.get(model)
        if served is None or not _principal(request).allows(model):
            raise APIError(
                404,
                f"the model {model!r} does not exist or you do not have access to it",
                code="model_not_found",
                param="model",
            )
        return json_response(_model_card(served.name, served.created, served.task))

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        """Chat completions, streamed as server-sent events with `stream: true`."""
        info = _info(request)
        info["model"] = body.model
        served = state.model(_principal(request), body.model, "chat")
        if body.logprobs:
            raise APIError(400, "logprobs are not available from this server", code="unsupported", param="logprobs")
        messages = _messages(body)
        json_mode = _wants_json(body.response_format)
        model = served.obj
        if json_mode and hasattr(model, "response_format"):  # a remote OpenAI-compatible model does JSON itself
            model = model.bind(response_format=body.response_format)
        elif json_mode:
            from yulian.core.messages import Message

            messages = [Message("system", JSON_INSTRUCTION), *messages]
        prompt_tokens = sum(estimate_tokens(m.content) for m in messages)
        check_input_tokens(state, prompt_tokens, info)
        options = _generation_options(state, body, body.max_completion_tokens or body.max_tokens)
        if body.tools:
            if not hasattr(model, "bind_tools"):
                raise APIError(400, f"the model {body.model!r} does not take tools", code="unsupported", param="tools")
            try:
                model = model.bind_tools(body.tools, tool_choice=body.tool_choice)
            except (TypeError, ValueError) as e:  # checked by the client side's tool_spec / tool_choice_param
                raise APIError(400, str(e), code="invalid_tools", param="tools") from None
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        ident = "chatcmpl-" + secrets.token_hex(12)
        if body.stream:
            info["stream"] = True
            bound = model.bind(**options) if options else model
            return sse_response(
                _chat_stream(state, bound, messages, body.model, ident, prompt_tokens, include_usage, info)
            )
        if model is served.obj and served.batcher is not None:
            group = json.dumps(options, sort_keys=True, default=str)
            reply = (await call_model(state, served.run_batch([(options, messages)], group)))[0]
        else:
            bound = model.bind(**options) if options else model
            reply = await call_model(state, bound.ainvoke(messages))
        if isinstance(reply, BaseException):
            raise model_error(reply)
        content = _json_text(reply.content) if json_mode else reply.content
        completion_tokens = estimate_tokens(content)
        usage = _usage(prompt_tokens, completion_tokens, dict(reply.metadata))
        info["output_tokens"] = usage["completion_tokens"]
        _count_tokens(state, body.model, usage)
        message = reply.to_dict()
        message["content"] = content if content or not reply.tool_calls else None
        return json_response(
            {
                "id": ident,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": _finish(dict(reply.metadata), bool(reply.tool_calls)),
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
        )

    @app.post("/v1/completions", tags=["openai"])
    async def completions(body: CompletionRequest, request: Request) -> Any:
        """Text completions from a chat model (the prompt is one user message)."""
        info = _info(request)
        info["model"] = body.model
        served = state.model(_principal(request), body.model, "chat")
        if body.echo or body.logprobs or body.suffix:
            raise APIError(400, "echo, logprobs and suffix are not available from this server", code="unsupported")
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        check_items(state, len(prompts))
        prompt_tokens = sum(estimate_tokens(p) for p in prompts)
        check_input_tokens(state, prompt_tokens, info)
        options = _generation_options(state, body, body.max_tokens)
        ident = "cmpl-" + secrets.token_hex(12)
        if body.stream:
            if len(prompts) != 1:
                raise APIError(400, "streaming takes one prompt", code="unsupported", param="prompt")
            info["stream"] = True
            bound = served.obj.bind(**options) if options else served.obj
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return sse_response(
                _text_stream(state, bound, prompts[0], body.model, ident, prompt_tokens, include_usage, info)
            )
        if served.batcher is not None:
            group = json.dumps(options, sort_keys=True, default=str)
            replies = await call_model(state, served.run_batch([(options, p) for p in prompts], group))
        else:
            bound = served.obj.bind(**options) if options else served.obj
            replies = await call_model(state, bound.abatch(prompts, return_exceptions=True))
        choices = []
        completion_tokens = 0
        for i, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                raise model_error(reply)
            completion_tokens += estimate_tokens(reply.content)
            choices.append(
                {
                    "index": i,
                    "text": reply.content,
                    "finish_reason": _finish(dict(reply.metadata), False),
                    "logprobs": None,
                }
            )
        usage = _usage(prompt_tokens, completion_tokens, {})
        info["output_tokens"] = completion_tokens
        _count_tokens(state, body.model, usage)
        return json_response(
            {
                "id": ident,
                "object": "text_completion",
                "created": int(time.time()),
                "model": body.model,
                "choices": choices,
                "usage": usage,
            }
        )

    @app.post("/v1/embeddings", tags=["openai"])
    async def embeddings(body: EmbeddingRequest, request: Request) -> Any:
        """Embeddings of one text or a list of texts (float lists or base64 float32)."""
        info = _info(request)
        info["model"] = body.model
        served = state.model(_principal(request), body.model, "embed")
        given: list[Any] = [body.input] if isinstance(body.input, str) else list(body.input)
        texts = [t for t in given if isinstance(t, str)]
        if len(texts) != len(given):
            raise APIError(400, "token-id inputs are not served: send text", code="unsupported", param="input")
        check_items(state, len(texts))
        if any(not t for t in texts):
            raise APIError(400, "input texts must not be empty", code="empty_input", param="input")
        tokens = sum(estimate_tokens(t) for t in texts)
        check_input_tokens(state, tokens, info)
        info["items"] = len(texts)
        vectors = await call_model(state, served.run_batch(texts))
        dim = len(vectors[0]) if vectors else 0
        if body.dimensions is not None and body.dimensions != dim:
            raise APIError(
                400,
                f"the model {body.model!r} makes {dim}-dimensional vectors; dimensions cannot change it",
                code="unsupported",
                param="dimensions",
            )
        encode: Callable[[Any], Any] = _base64 if body.encoding_format == "base64" else _floats
        data = [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]
        state.metrics.tokens.labels(body.model, "prompt").inc(tokens)
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": body.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _model_card(name: str, created: int, task: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "yulian", "task": task}


def _floats(vector: Any) -> Any:
    """A float32 array as it is (`dumps` writes it exactly and shortest), anything else as a list of floats."""
    if hasattr(vector, "__array_interface__") and getattr(vector, "ndim", 0) == 1:  # numpy
        return vector
    return [float(x) for x in vector]


def _base64(vector: Any) -> str:
    """Little-endian float32 bytes in base64, as the `openai` client decodes them."""
    if hasattr(vector, "__array_interface__"):  # numpy
        return base64.b64encode(vector.astype("<f4", copy=False).tobytes()).decode()
    import array

    values = array.array("f", (float(x) for x in vector))
    if sys.byteorder == "big":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


def _count_tokens(state: ServerState, model: str, usage: dict[str, int]) -> None:
    state.metrics.tokens.labels(model, "prompt").inc(usage["prompt_tokens"])
    state.metrics.tokens.labels(model, "completion").inc(usage["completion_tokens"])


def _stream_error(e: BaseException) -> bytes:
    try:
        error = model_error(e)
    except Exception:
        error = APIError(500, "internal error while streaming", code="internal_error")
    return sse({"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}})


async def _chat_stream(
    state: ServerState,
    model: Any,
    messages: list[Any],
    name: str,
    ident: str,
    prompt_tokens: int,
    include_usage: bool,
    info: dict[str, Any],
) -> AsyncIterator[bytes]:
    created = int(time.time())

    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
        )

    yield frame({"role": "assistant", "content": ""})
    meta: dict[str, Any] = {}
    completion_tokens = 0
    calls: list[Any] = []
    try:
        async for chunk in model.astream(messages):
            meta.update(chunk.metadata)
            calls.extend(chunk.tool_calls)
            if chunk.content:
                completion_tokens += estimate_tokens(chunk.content)
                yield frame({"content": chunk.content})
    except Exception as e:
        info["error_code"] = "stream_error"
        yield _stream_error(e)
        yield b"data: [DONE]\n\n"
        return
    if calls:
        yield frame({"tool_calls": [dict(c.to_dict(), index=i) for i, c in enumerate(calls)]})
    yield frame({}, _finish(meta, bool(calls)))
    usage = _usage(prompt_tokens, completion_tokens, meta)
    info["output_tokens"] = usage["completion_tokens"]
    _count_tokens(state, name, usage)
    if include_usage:
        yield sse(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [],
                "usage": usage,
            }
        )
    yield b"data: [DONE]\n\n"


async def _text_stream(
    state: ServerState,
    model: Any,
    prompt: str,
    name: str,
    ident: str,
    prompt_tokens: int,
    include_usage: bool,
    info: dict[str, Any],
) -> AsyncIterator[bytes]:
    created = int(time.time())

    def frame(text: str, finish: str | None = None) -> bytes:
        return sse(
            {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
            }
        )

    meta: dict[str, Any] = {}
    completion_tokens = 0
    try:
        async for chunk in model.astream(prompt):
            meta.update(chunk.metadata)
            if chunk.content:
                completion_tokens += estimate_tokens(chunk.content)
                yield frame(chunk.content)
    except Exception as e:
        info["error_code"] = "stream_error"
        yield _stream_error(e)
        yield b"data: [DONE]\n\n"
        return
    yield frame("", _finish(meta, False))
    usage = _usage(prompt_tokens, completion_tokens, meta)
    info["output_tokens"] = usage["completion_tokens"]
    _count_tokens(state, name, usage)
    if include_usage:
        yield sse(
            {"id": ident, "object": "text_completion", "created": created, "model": name, "choices": [], "usage": usage}
        )
    yield b"data: [DONE]\n\n"
