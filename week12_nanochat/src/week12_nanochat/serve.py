"""The server: the chat page, the OpenAI-compatible API and the memory, on one ``ChatEngine``.

    python -m week12_nanochat.serve                         # the latest speedrun, port 8000
    python -m week12_nanochat.serve --model runs/speedrun/rl --batch-size 8 --gather-ms 5

``create_app(engine, config)`` is the FastAPI app (what the tests start with uvicorn in a
thread): ``GET /`` the page (``static/``: plain JS, no CDN), ``GET /api/info`` what the page
needs to know, the API of ``api.py`` (``/v1/models``, ``/v1/chat/completions``), and the
memory (``GET|POST /v1/memory``, ``DELETE /v1/memory/{id}``, ``POST
/v1/memory/consolidate``), each answering an error in OpenAI's shape when the server runs
without memory. Every reply is decoded by the app's ``Batcher`` (one thread owns the model;
requests that wait together share a batch; see ``batcher.py`` for where batching stands). A
client that disconnects mid-stream frees its row at the next token.

Bound to 127.0.0.1 unless ``--host`` says otherwise. Left out: authentication, TLS, more
than one model per server and more than one process (the model lives in this one).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict

from week12_nanochat.api import ApiError, ServeConfig, _jsonable, api_router, install_errors
from week12_nanochat.batcher import BatchConfig, Batcher
from week12_nanochat.engine import NoModel

STATIC = Path(__file__).parent / "static"

__all__ = ["ServeConfig", "create_app", "main", "running"]

# ---------------------------------------------------------------- the memory routes


class TeachRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    topic: str | None = None
    user: str | None = None
    consolidate: bool = True  # start the consolidation job in the background


def _memory(engine):
    if engine.memory is None:
        raise ApiError(404, "this server runs without memory: start it with --memory DIR to "
                       "teach and forget facts", code="no_memory")
    return engine.memory


def _memory_routes(app: FastAPI, engine, config: ServeConfig) -> None:
    # plain functions: FastAPI runs them in its thread pool (teaching encodes the facts)

    @app.get("/v1/memory")
    def facts():
        memory = _memory(engine)
        return {"facts": _jsonable(memory.facts()), "job": _jsonable(memory.status())}

    @app.post("/v1/memory")
    def teach(req: TeachRequest):
        memory = _memory(engine)
        if len(req.text) > config.max_chars:
            raise ApiError(413, f"the text has {len(req.text)} characters; at most "
                           f"{config.max_chars}", param="text", code="request_too_large")
        try:
            new = memory.teach(req.text, topic=req.topic, user=req.user)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="text") from exc
        if req.consolidate:
            memory.consolidate(background=True)
        return {"facts": _jsonable(new), "job": _jsonable(memory.status())}

    @app.delete("/v1/memory/{fact_id}")
    def forget(fact_id: str):
        memory = _memory(engine)
        try:
            gone = memory.forget(fact_id=fact_id)
        except KeyError as exc:
            raise ApiError(404, f"no taught fact with id {fact_id!r} (GET /v1/memory lists "
                           "them)", param="id", code="not_found") from exc
        return {"facts": _jsonable(gone), "job": _jsonable(memory.status())}

    @app.post("/v1/memory/consolidate")
    def consolidate():
        memory = _memory(engine)
        memory.consolidate(background=True)
        return {"job": _jsonable(memory.status())}


# ---------------------------------------------------------------- the app


def create_app(engine, config: ServeConfig | None = None, model_id: str = "nanochat") -> FastAPI:
    """The server's app over ``engine``; its batcher starts and stops with the app."""
    config = config or ServeConfig()
    batcher = Batcher(engine, BatchConfig(config.batch_size, config.gather_ms, config.max_queue,
                                          stream_interval_ms=config.stream_interval_ms))

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            batcher.close()

    app = FastAPI(title="nanochat", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config, app.state.batcher, app.state.engine = config, batcher, engine
    install_errors(app)
    app.include_router(api_router(batcher, config, model_id))
    _memory_routes(app, engine, config)

    @app.get("/api/info")
    async def info():
        return {"model": model_id, "tools": list(engine.tools) if config.tools else [],
                "memory": engine.memory is not None, "block_size": engine.block_size,
                "max_tokens": config.max_tokens, "batch_size": config.batch_size}

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


@contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
    """Serve ``app`` with uvicorn in a background thread; yields its base URL (``port=0``:
    a free port). The tests' and the load benchmark's server."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name="nanochat-uvicorn", daemon=True)
    thread.start()
    start = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - start > timeout:
            server.should_exit = True
            raise RuntimeError(f"the server did not start on {host}:{port} within {timeout} s")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


# ---------------------------------------------------------------- the command


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m week12_nanochat.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a stage folder (default: the latest speedrun's model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=8, help="rows per decoding batch")
    p.add_argument("--gather-ms", type=float, default=5.0,
                   help="after a request arrives, wait this long for more to batch with it")
    p.add_argument("--max-tokens", type=int, default=512, help="the most tokens one reply may ask")
    p.add_argument("--stream-interval-ms", type=float, default=10.0,
                   help="a stream writes at most this often, every token made since in one "
                        "write (0: each token at once)")
    p.add_argument("--no-repl", action="store_true", help="no Python tool")
    p.add_argument("--memory", help="the memory folder (default: <runs>/memory)")
    p.add_argument("--no-memory", action="store_true", help="serve without memory")
    return p


def main(argv: list[str] | None = None) -> int:
    import importlib.util

    import uvicorn

    from shared import runs_root
    from week12_nanochat.engine import open_engine

    a = make_parser().parse_args(argv)
    try:
        config = ServeConfig(batch_size=a.batch_size, gather_ms=a.gather_ms,
                             max_tokens=a.max_tokens, stream_interval_ms=a.stream_interval_ms)
        BatchConfig(config.batch_size, config.gather_ms,
                    stream_interval_ms=config.stream_interval_ms)
        if not 0 < a.port < 65536 or config.max_tokens < 1:
            raise ValueError(f"--port must be 1-65535 and --max-tokens >= 1, got {a.port}, "
                             f"{a.max_tokens}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    memory = None
    if not a.no_memory and importlib.util.find_spec("week12_nanochat.memory") is not None:
        memory = a.memory or str(runs_root() / "memory")
    try:
        engine, path = open_engine(a.model, memory, repl=not a.no_repl)
    except NoModel as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # the memory folder did not open
        print(f"error: {e} (--memory DIR, or --no-memory)", file=sys.stderr)
        return 2
    model_id = Path(path).name
    print(f"nanochat: {model_id} on http://{a.host}:{a.port} (tools: {', '.join(engine.tools)};"
          f" memory: {memory or 'off'}; batch {config.batch_size}, gather {config.gather_ms} ms)")
    try:
        uvicorn.run(create_app(engine, config, model_id), host=a.host, port=a.port,
                    log_level="warning")
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
