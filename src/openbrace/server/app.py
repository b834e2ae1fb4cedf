"""The openbrace HTTP server: an OpenAI-compatible gateway with patch streaming.

```python
from openbrace.engines.local import default_engine
from openbrace.server.app import ServerConfig, create_app

app = create_app(default_engine(), ServerConfig(api_keys=("sk-...",)))
# uvicorn.run(app, host="127.0.0.1", port=8000), or `openbrace serve`
```

Routes (SPEC sections 2, 4, 5):

| route | what |
|---|---|
| `POST /v1/chat/completions` | `stream` false, true, or `"patch"` (NDJSON; SSE if asked) |
| `GET /v1/models` | the engine's models, OpenAI-shaped |
| `GET /healthz` | liveness: `{"status": "ok", ...}`, never touches the engine |
| `GET /metrics` | Prometheus text format |
| `GET /`, `/static/...` | the playground |

The `/v1` routes are also served without the prefix, for clients whose base URL
lacks it. The server keeps no state between requests (no sessions, no caches a
replica depends on), so any number of replicas can sit behind a load balancer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..engines.base import Engine
from ..exceptions import RequestError
from ..request import ChatPlan, parse_chat
from .errors import as_request_error, error_response
from .limits import Gate, authorized, read_body
from .metrics import CONTENT_TYPE, Metrics
from .responses import GenerationResponse, Runtime
from .resume import Resumer, bearer_token
from .resume_endpoint import cancel_response, resume_response, store_stats
from .stores import open_store

__all__ = ["STATIC_DIR", "ServerConfig", "create_app"]

log = logging.getLogger("openbrace.server")

STATIC_DIR = Path(__file__).parent / "static"

_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/models",
        "/chat/completions",
        "/models",
        "/healthz",
        "/metrics",
        "/",
    }
)


@dataclass(frozen=True)
class ServerConfig:
    """Limits and options of one server. Every limit answers before work is done.

    Attributes:
        api_keys: accepted bearer keys; empty means the server is open.
        max_body_bytes: largest request body (413 past it). The schema travels in
            the body, so this also bounds the schema's size.
        max_concurrent: generations running at once (all `stream` modes).
        max_queue: requests allowed to wait for a generation slot; past it, 429 at once.
        queue_timeout: the longest a request waits in the queue before a 429, in seconds.
        request_timeout: the longest one generation may take, in seconds; past it the
            stream ends with a `timeout` error record (504 if nothing was sent yet).
        keepalive: seconds of silence before an SSE `: keep-alive` comment.
        cors_origins: origins allowed by CORS (e.g. the playground's); empty: CORS off.
        static_dir: where the playground's files are.
        resume_store: where resumable streams are kept: None for this process's
            memory, `redis://HOST:PORT/DB` for Redis (shared by replicas).
        resume_ttl: seconds a finished resumable stream can still be resumed.
        resume_max_streams: resumable streams held at once (past it: 503).
        resume_max_bytes: bytes of records held by the in-memory store.
    """

    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = 1_048_576
    max_concurrent: int = 16
    max_queue: int = 64
    queue_timeout: float = 30.0
    request_timeout: float = 300.0
    keepalive: float = 15.0
    cors_origins: tuple[str, ...] = ()
    static_dir: Path = field(default=STATIC_DIR)
    resume_store: str | None = None
    resume_ttl: float = 300.0
    resume_max_streams: int = 1000
    resume_max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.max_concurrent < 1 or self.max_queue < 0:
            raise ValueError("max_body_bytes and max_concurrent must be >= 1, max_queue >= 0")
        if self.request_timeout <= 0 or self.keepalive <= 0 or self.queue_timeout < 0:
            raise ValueError("request_timeout and keepalive must be > 0, queue_timeout >= 0")
        if any(not key for key in self.api_keys):
            raise ValueError("an API key cannot be empty")
        if self.resume_ttl < 0 or self.resume_max_streams < 1 or self.resume_max_bytes < 1:
            raise ValueError("resume_ttl must be >= 0, resume_max_streams/bytes >= 1")
        if self.resume_store not in (None, "memory") and not self.resume_store.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError(
                f"unknown resume store {self.resume_store!r}: use 'memory' or redis://HOST:PORT/DB"
            )


Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(
    engine: Engine, config: ServerConfig | None = None, *, close_engine: bool = False
) -> Starlette:
    """The ASGI app serving `engine` under `config` (defaults: open, see `ServerConfig`).

    Args:
        engine: where text comes from (local model, upstream server, mock).
        config: limits and options.
        close_engine: call `engine.aclose()` at ASGI lifespan shutdown (for `serve`,
            which owns its engine; leave False when the engine is shared).
    """
    config = config or ServerConfig()
    metrics = Metrics()
    gate = Gate(config.max_concurrent, config.max_queue, config.queue_timeout)
    store = open_store(
        config.resume_store,
        ttl=config.resume_ttl,
        max_streams=config.resume_max_streams,
        max_bytes=config.resume_max_bytes,
    )
    resumer = Resumer(store, config.request_timeout)
    runtime = Runtime(engine, gate, metrics, config.request_timeout, config.keepalive, resumer)
    keys = tuple(key.encode() for key in config.api_keys)

    def guarded(endpoint: Endpoint) -> Endpoint:
        """Check the key, and turn any exception into an OpenAI-shaped error response."""

        async def run(request: Request) -> Response:
            try:
                if not authorized(request.headers.get("authorization"), keys):
                    raise RequestError(
                        "missing or invalid API key: send 'Authorization: Bearer KEY'",
                        status=401,
                        code="invalid_api_key",
                    )
                return await endpoint(request)
            except Exception as exc:
                err = as_request_error(exc)
                metrics.errors["before", err.type] += 1
                return error_response(err)

        return run

    async def completions(request: Request) -> Response:
        started = time.monotonic()
        plan = parse_chat(await read_body(request, config.max_body_bytes))
        plan = await _resolve_model(engine, plan)
        sse = "text/event-stream" in request.headers.get("accept", "")
        key = bearer_token(request.headers.get("authorization")) if keys else None
        response = GenerationResponse(runtime, plan, sse=sse, started=started, api_key=key)
        return response  # type: ignore[return-value]

    async def resume(request: Request) -> Response:
        if request.method == "DELETE":
            return await cancel_response(request, resumer, open=not keys)
        return await resume_response(request, resumer, keepalive=config.keepalive, open=not keys)

    async def models(request: Request) -> Response:
        found = await engine.models()
        data = [
            {"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by} for m in found
        ]
        return JSONResponse({"object": "list", "data": data})

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "streams_in_flight": metrics.streams_in_flight,
                "queued": gate.waiting,
            }
        )

    async def metrics_text(request: Request) -> Response:
        held = await store_stats(store)
        gauges = {
            "openbrace_resumable_streams_held": (
                "Resumable streams held by the resume store (live and finished).",
                lambda: held.streams,
            ),
            "openbrace_resume_store_bytes": (
                "Bytes of records held by the resume store.",
                lambda: held.bytes,
            ),
            "openbrace_resumes_served": (
                "Resumes served (GET /v1/streams/ID answered 200), a running count.",
                lambda: resumer.stats.resumes_served,
            ),
            "openbrace_queue_waiting": (
                "Requests waiting for a generation slot.",
                lambda: gate.waiting,
            ),
            "openbrace_slots_busy": ("Generation slots in use.", lambda: gate.active),
            "openbrace_slots_total": ("Generation slots configured.", lambda: gate.limit),
        }
        return PlainTextResponse(metrics.render(gauges), media_type=CONTENT_TYPE)

    async def index(request: Request) -> Response:
        page = config.static_dir / "index.html"
        if not page.is_file():
            raise RequestError("the playground is not installed", status=404, code="not_found")
        return FileResponse(page)

    async def http_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)  # unknown route (404), wrong method (405)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await resumer.aclose()
        if close_engine:
            await engine.aclose()

    routes = [
        Route("/v1/chat/completions", guarded(completions), methods=["POST"]),
        Route("/chat/completions", guarded(completions), methods=["POST"]),
        Route("/v1/streams/{stream_id}", guarded(resume), methods=["GET", "DELETE"]),
        Route("/streams/{stream_id}", guarded(resume), methods=["GET", "DELETE"]),
        Route("/v1/models", guarded(models), methods=["GET"]),
        Route("/models", guarded(models), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", guarded(metrics_text), methods=["GET"]),
        Route("/", _answer_errors(index), methods=["GET"]),
        Mount("/static", StaticFiles(directory=config.static_dir, check_dir=False), name="static"),
    ]
    middleware = [Middleware(_CountRequests, metrics=metrics)]
    if config.cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["authorization", "content-type", "accept", "last-event-id"],
                expose_headers=["x-request-id", "x-stream-id"],
                max_age=600,
            ),
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.metrics = metrics
    app.state.gate = gate
    return app


def _answer_errors(endpoint: Endpoint) -> Endpoint:
    """Error handling without the key check: the playground page holds no secrets."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:
            return error_response(exc)

    return run


async def _resolve_model(engine: Engine, plan: ChatPlan) -> ChatPlan:
    """Fill in the default model, or refuse an unknown one with 404."""
    ids = [m.id for m in await engine.models()]
    model = plan.request.model
    if not model:
        if not ids:
            raise RequestError("the engine serves no model", status=503, code="engine_unavailable")
        model = ids[0]
    elif model not in ids:
        shown = model if len(model) <= 100 else model[:97] + "..."
        raise RequestError(
            f"model '{shown}' does not exist here; available: {', '.join(ids[:20])}",
            status=404,
            param="model",
            code="model_not_found",
        )
    request = dataclasses.replace(plan.request, model=model)
    return dataclasses.replace(plan, request=request)


class _CountRequests:
    """Count every answered request by route and status (`openbrace_requests_total`)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = (
            path
            if path in _ROUTES
            else "/static"
            if path.startswith("/static/")
            else "/v1/streams"
            if path.startswith(("/v1/streams/", "/streams/"))
            else "other"
        )

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests[route, int(message["status"])] += 1
            await send(message)

        await self.app(scope, receive, counting_send)
