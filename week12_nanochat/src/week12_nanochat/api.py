"""The OpenAI-compatible API: request models, validation with clear errors, the error shape,
``chat.completion`` objects and their streamed ``chat.completion.chunk``s.

Routes (``api_router``): ``GET /v1/models`` (the one model; its id is the model folder's
name) and ``POST /v1/chat/completions`` (``model``, ``messages`` with string content or text
content parts, ``temperature``, ``top_p``, ``max_tokens`` / ``max_completion_tokens``,
``stop``, ``n``, ``stream``, ``seed``). Every error has OpenAI's shape ``{"error": {"message",
"type", "param", "code"}}`` (``install_errors``): 400 for a bad value or a malformed body,
413 past a size limit, 404 for an unknown model or route.

What differs from OpenAI, on purpose: our tools run on the server, so each choice reports
the calls its model made in ``message.nanochat_tool_calls`` (streamed as
``delta.nanochat_tool_call`` chunks, ``{"type": "call" | "output", "text"}``), and
``choices[i].nanochat`` says which adapter or memory answered. ``content`` is the
assistant's words after its last tool output, as ``ChatEngine``'s reply text: streamed
words written before a tool output are the model's preamble (a client that wants the final
content drops the words streamed before the last ``"output"`` chunk). ``seed`` makes a
sampled reply reproducible whatever shares its batch (each row draws from its own
generator; choice i uses ``seed + i``); without one each request draws a fresh seed, as
OpenAI's does. A request's ``nanochat_tools`` (``true``, ``false`` or a list of tool names)
chooses the tools; OpenAI's function ``tools`` are refused (the model calls only the tools
it was trained with).

Left out: function calling by the client, logprobs, ``response_format``, embeddings and the
legacy completions route.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from week12_nanochat.batcher import DONE, QueueFull
from week12_nanochat.engine import Sampling

ROLES = ("system", "developer", "user", "assistant")  # developer: OpenAI's newer system

# ---------------------------------------------------------------- config and errors


@dataclass
class ServeConfig:
    """The server's batching and its limits on one request."""

    batch_size: int = 8
    gather_ms: float = 5.0
    stream_interval_ms: float = 10.0  # a stream writes at most this often (the tokens since)
    max_queue: int = 256  # waiting requests; more get 503
    max_messages: int = 64  # per request (413 past it)
    max_chars: int = 8000  # per message (413 past it)
    max_tokens: int = 512  # a reply's token budget (400 past it)
    max_body_bytes: int = 1_000_000  # 413 past it
    tools: bool = True  # False: the server's tools are off for every request


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = \
            status, message, param, code, type

    def response(self) -> JSONResponse:
        return JSONResponse(status_code=self.status, content={"error": {
            "message": self.message, "type": self.type, "param": self.param,
            "code": self.code}})


def install_errors(app: FastAPI) -> None:
    """Every error of ``app`` in OpenAI's shape (a malformed body is a 400 here, not 422)."""

    @app.exception_handler(ApiError)
    async def _api(request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        msg = f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))
        if err.get("type") == "json_invalid":
            msg = "the body is not valid JSON: send a JSON object"
        return ApiError(400, msg, param=loc or None, code="invalid_value").response()

    @app.exception_handler(Exception)
    async def _server(request, exc: Exception):  # a bug of ours: still OpenAI's shape, named
        return ApiError(500, f"{type(exc).__name__}: {exc}", type="server_error").response()

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        msg = (f"no route {request.method} {request.url.path}: the routes are GET /, "
               "GET /v1/models, POST /v1/chat/completions, GET|POST /v1/memory, "
               "DELETE /v1/memory/{id}") if exc.status_code in (404, 405) else str(exc.detail)
        return ApiError(exc.status_code, msg, code="not_found" if exc.status_code == 404
                        else None).response()

    app.add_middleware(_BodyLimit, limit=lambda: app.state.config.max_body_bytes)


class _BodyLimit:
    """A 413 for a body whose declared length is past the limit, as plain ASGI (Starlette's
    ``@app.middleware("http")`` wraps every streamed chunk in task groups and memory streams:
    a third of the event loop's time under the load benchmark, py-spy)."""

    def __init__(self, app, limit):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            size = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
            limit = self.limit()
            if size.isdigit() and int(size) > limit:
                response = ApiError(413, f"the body has {size.decode()} bytes; at most {limit} "
                                    "are accepted", code="request_too_large").response()
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ---------------------------------------------------------------- the request


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[dict[str, Any]]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: dict | None = None
    seed: int | None = None
    tools: list | None = None
    nanochat_tools: bool | list[str] = True


def _content(m: dict, i: int, config: ServeConfig) -> str:
    content = m.get("content")
    if isinstance(content, list):  # OpenAI content parts: text only
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" \
                    or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ApiError(400, f"messages[{i}].content has a part of type {kind!r}; "
                               "only text parts ({'type': 'text', 'text': ...}) are "
                               "supported", param=f"messages[{i}].content")
            texts.append(part["text"])
        content = "".join(texts)
    if not isinstance(content, str):
        raise ApiError(400, f"messages[{i}].content must be a string or a list of text parts",
                       param=f"messages[{i}].content")
    if len(content) > config.max_chars:
        raise ApiError(413, f"messages[{i}] has {len(content)} characters; at most "
                       f"{config.max_chars} per message", param=f"messages[{i}].content",
                       code="request_too_large")
    return content


def parse(req: ChatCompletionRequest, config: ServeConfig, model_id: str):
    """``(messages, Sampling, n, tools)`` of a request, or an ``ApiError`` saying what is
    wrong and what is valid."""
    if req.model not in (None, "", model_id):
        raise ApiError(404, f"the model {req.model!r} is not served here; this server serves "
                       f"{model_id!r} (GET /v1/models)", param="model", code="model_not_found")
    if not req.messages:
        raise ApiError(400, "messages is empty: send at least one user message",
                       param="messages")
    if len(req.messages) > config.max_messages:
        raise ApiError(413, f"{len(req.messages)} messages; at most {config.max_messages} per "
                       "request", param="messages", code="request_too_large")
    messages = []
    for i, m in enumerate(req.messages):
        role = m.get("role")
        if role not in ROLES:
            raise ApiError(400, f"messages[{i}].role is {role!r}; valid roles are "
                           f"{', '.join(ROLES)}", param=f"messages[{i}].role")
        role = "system" if role == "developer" else role
        if role == "system" and i > 0:
            raise ApiError(400, f"messages[{i}] is a system message; only the first message "
                           "may be one", param=f"messages[{i}].role")
        messages.append({"role": role, "content": _content(m, i, config)})
    if messages[-1]["role"] != "user":
        raise ApiError(400, f"the last message is a {messages[-1]['role']} message; a "
                       "conversation to answer ends with a user message", param="messages")
    if req.tools:
        raise ApiError(400, "function tools are not supported: the model calls its own tools "
                       "on the server (choose them with nanochat_tools)", param="tools")
    temperature = 1.0 if req.temperature is None else req.temperature
    if not 0 <= temperature <= 2:
        raise ApiError(400, f"temperature is {temperature}; valid: 0 (greedy) to 2",
                       param="temperature")
    if req.top_p is not None and not 0 < req.top_p <= 1:
        raise ApiError(400, f"top_p is {req.top_p}; valid: above 0, at most 1", param="top_p")
    if req.seed is not None and not -2**63 <= req.seed < 2**63:
        raise ApiError(400, f"seed is {req.seed}; valid: a 64-bit signed integer", param="seed")
    name = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    max_tokens = getattr(req, name)
    max_tokens = min(256, config.max_tokens) if max_tokens is None else max_tokens
    if not 1 <= max_tokens <= config.max_tokens:
        raise ApiError(400, f"{name} is {max_tokens}; valid: 1 to {config.max_tokens}",
                       param=name)
    if not 1 <= req.n <= config.batch_size:
        raise ApiError(400, f"n is {req.n}; valid: 1 to {config.batch_size} (the batch size)",
                       param="n")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stop) > 4 or any(not s for s in stop):
        raise ApiError(400, f"stop is {req.stop!r}; valid: up to 4 non-empty strings",
                       param="stop")
    tools = config.tools and req.nanochat_tools
    sampling = Sampling(temperature=temperature, top_p=req.top_p, max_tokens=max_tokens,
                        stop=tuple(stop),
                        seed=secrets.randbelow(2**62) if req.seed is None else req.seed)
    return messages, sampling, req.n, tools


# ---------------------------------------------------------------- the response


def _jsonable(x):
    if is_dataclass(x) and not isinstance(x, type):
        return {k: _jsonable(v) for k, v in asdict(x).items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    return x if isinstance(x, (str, int, float, bool)) or x is None else str(x)


def nanochat_info(reply, ticket) -> dict:
    """Which adapter and memory answered, what was retrieved, how the request was served."""
    return {"adapter": _jsonable(reply.adapter), "memory": reply.memory,
            "sources": _jsonable(reply.sources), "dropped_messages": reply.dropped,
            "batch_rows": ticket.batch_rows}


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"  # "cancelled" never reaches a client


def completion(ticket, model_id: str) -> dict:
    """The ``chat.completion`` object of a finished ticket."""
    choices = [{"index": j, "finish_reason": _finish(r.finish_reason), "logprobs": None,
                "message": {"role": "assistant", "content": r.text,
                            "nanochat_tool_calls": _jsonable(r.calls)},
                "nanochat": nanochat_info(r, ticket)} for j, r in enumerate(ticket.replies)]
    prompt = ticket.replies[0].prompt_tokens
    done = sum(r.completion_tokens for r in ticket.replies)
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": model_id, "choices": choices,
            "usage": {"prompt_tokens": prompt, "completion_tokens": done,
                      "total_tokens": prompt + done}}


class _Words:
    """A choice's streamed words, trimmed as the reply text is (no leading or trailing
    whitespace; the answer restarts after a tool output), so the chunks join to it."""

    def __init__(self):
        self.started, self.pending = False, ""

    def feed(self, text: str) -> str:
        s = self.pending + text
        if not self.started:
            s = s.lstrip()
        body = s.rstrip()
        self.pending = s[len(body):]
        self.started = self.started or bool(body)
        return body

    def reset(self) -> None:
        self.started, self.pending = False, ""


def _sse(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


async def stream_chunks(ticket, model_id: str, usage: bool = False):
    """The SSE body of a streamed request; the ticket is cancelled if the client leaves."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(j, delta, finish=None, **extra):
        return _sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                     "model": model_id, "choices": [{"index": j, "delta": delta,
                                                     "finish_reason": finish, **extra}]})
    words = [_Words() for _ in range(ticket.n)]
    try:
        for j in range(ticket.n):
            yield chunk(j, {"role": "assistant", "content": ""})
        ended = False
        while not ended:
            out = []  # every chunk that arrived together goes out in one write
            for kind, e in await ticket.aget_many():
                if kind == DONE:
                    ended = True
                elif kind == "error":
                    out.append(_sse({"error": {"message": f"decoding failed: {e}",
                                               "type": "server_error", "param": None,
                                               "code": None}}))
                elif e.kind == "text":
                    text = words[kind].feed(e.text)
                    if text:
                        out.append(chunk(kind, {"content": text}))
                elif e.kind in ("call", "output"):
                    if e.kind == "output":
                        words[kind].reset()
                    out.append(chunk(kind, {"nanochat_tool_call": {"type": e.kind,
                                                                   "text": e.text}}))
                else:
                    out.append(chunk(kind, {}, _finish(e.reply.finish_reason),
                                     nanochat=nanochat_info(e.reply, ticket)))
            if out:
                yield "".join(out)
        if usage and all(r is not None for r in ticket.replies):
            prompt = ticket.replies[0].prompt_tokens
            done = sum(r.completion_tokens for r in ticket.replies)
            yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                        "model": model_id, "choices": [], "usage": {
                            "prompt_tokens": prompt, "completion_tokens": done,
                            "total_tokens": prompt + done}})
        yield "data: [DONE]\n\n"
    finally:
        ticket.cancel()  # a client that went away frees its rows; after the end, a no-op


# ---------------------------------------------------------------- the routes


def submit(batcher, req: ChatCompletionRequest, config: ServeConfig, model_id: str):
    messages, sampling, n, tools = parse(req, config, model_id)
    try:
        return batcher.submit(messages, sampling, tools=tools, n=n,
                              loop=asyncio.get_running_loop())
    except QueueFull as exc:
        raise ApiError(503, str(exc), code="overloaded", type="server_error") from exc


def api_router(batcher, config: ServeConfig, model_id: str) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model",
                                            "created": 0, "owned_by": "nanochat"}]}

    @router.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request):
        ticket = submit(batcher, req, config, model_id)
        if req.stream:
            usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(stream_chunks(ticket, model_id, usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache",
                                              "X-Accel-Buffering": "no"})
        try:
            ended = False
            while not ended:
                try:
                    items = await asyncio.wait_for(ticket.aget_many(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return None
                    continue
                for kind, e in items:
                    if kind == "error":
                        raise ApiError(500, f"decoding failed: {e}", type="server_error")
                    ended = ended or kind == DONE
        finally:
            ticket.cancel()
        return completion(ticket, model_id)

    return router
