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
| `GET /v1/streams/{id}` | resume a resumable stream after op N, then follow it (docs/resume.md) |
| `DELETE /v1/streams/{id}` | cancel a resumable stream |
| `GET /v1/models` | the engine's models, OpenAI-shaped |
| `GET /healthz` | liveness: `{"status": "ok", ...}`, never touches the engine |
| `GET /metrics` | Prometheus text format |
| `GET /`, `/static/...` | the playground |

The `/v1` routes are also served without the prefix, for clients whose base URL
lacks it. The server keeps no state between requests (no sessions, no caches a
replica depends on), so any number of replicas can sit behind a load balancer;
resumable streams live in a store that replicas share (`--resume-store redis://`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..engines.base import Engine
from ..exceptions import OpenBraceError
from . import endpoints, resume_endpoint
from .auth import RequireKey
from .errors import as_request_error, error_response
from .limits import Gate
from .metrics import Metrics
from .responses import Runtime
from .resume import Resumer
from .stores import check_url, open_store

__all__ = ["STATIC_DIR", "ServerConfig", "create_app"]

log = logging.getLogger("openbrace.server")

STATIC_DIR = Path(__file__).parent / "static"


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
        resume_store: where resumable streams are kept: None (or "memory") for this
            process's memory, `redis://HOST:PORT/DB` for Redis (shared by replicas).
        resume_ttl: seconds a finished resumable stream can still be resumed.
        resume_max_streams: resumable streams held at once (past it: 503).
        resume_max_bytes: bytes of records the store holds.
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
        check_url(self.resume_store)


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
    store = open_store(
        config.resume_store,
        ttl=config.resume_ttl,
        max_streams=config.resume_max_streams,
        max_bytes=config.resume_max_bytes,
    )
    resumer = Resumer(store, config.request_timeout)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await resumer.aclose()
        if close_engine:
            await engine.aclose()

    app = Starlette(
        routes=_routes(config),
        middleware=_middleware(config),
        exception_handlers={
            HTTPException: _http_error,
            OpenBraceError: _refused,
            Exception: _refused,  # a bug of ours: a plain 500, logged (Starlette re-raises it)
        },
        lifespan=lifespan,
    )
    metrics = Metrics()
    gate = Gate(config.max_concurrent, config.max_queue, config.queue_timeout)
    metrics.gauge(
        "openbrace_queue_waiting",
        "Requests waiting for a generation slot.",
        read=lambda: gate.waiting,
    )
    metrics.gauge("openbrace_slots_busy", "Generation slots in use.", read=lambda: gate.active)
    metrics.gauge("openbrace_slots_total", "Generation slots configured.", read=lambda: gate.limit)
    for name, (help, read) in engine.gauges().items():  # e.g. the batch context's sequences
        metrics.gauge(name, help, read=read)
    app.state.engine = engine
    app.state.config = config
    app.state.metrics = metrics
    app.state.gate = gate
    resumer.register_metrics(metrics)
    app.state.resumer = resumer
    app.state.runtime = Runtime(
        engine, gate, metrics, config.request_timeout, config.keepalive, resumer
    )
    return app


def _routes(config: ServerConfig) -> list[BaseRoute]:
    """Every route; the ones that need the API key are wrapped in `RequireKey`."""
    keyed = [Middleware(RequireKey, keys=config.api_keys)]
    routes: list[BaseRoute] = []
    for prefix in ("/v1", ""):  # also without the prefix, for base URLs that lack it
        routes += [
            Route(
                f"{prefix}/chat/completions",
                endpoints.completions,
                methods=["POST"],
                middleware=keyed,
            ),
            Route(f"{prefix}/models", endpoints.models, methods=["GET"], middleware=keyed),
            Route(
                prefix + "/streams/{stream_id}",
                resume_endpoint.streams,
                methods=["GET", "DELETE"],
                middleware=keyed,
            ),
        ]
    return [
        *routes,
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/metrics", endpoints.metrics, methods=["GET"], middleware=keyed),
        Route("/", endpoints.index, methods=["GET"]),
        Mount("/static", StaticFiles(directory=config.static_dir, check_dir=False), name="static"),
    ]


def _middleware(config: ServerConfig) -> list[Middleware]:
    middleware = [Middleware(_CountRequests)]
    if config.cors_origins:
        cors = Middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "accept", "last-event-id"],
            expose_headers=["x-request-id", "x-stream-id"],
            max_age=600,
        )
        middleware.insert(0, cors)
    return middleware


async def _refused(request: Request, exc: Exception) -> Response:
    """A request refused before streaming: counted, and answered OpenAI-shaped."""
    err = as_request_error(exc)
    request.app.state.metrics.errors.labels("before", err.type).inc()
    return error_response(err)


async def _http_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)  # unknown route (404), wrong method (405)


class _CountRequests:
    """Count every answered request by route and status (`openbrace_requests_total`).

    The label is the matched route's path (the router notes it in the scope), so
    unknown paths share one label, `other`.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        requests = scope["app"].state.metrics.requests
        started = False

        def count(status: int) -> None:
            route = scope.get("route")
            label = route.path if isinstance(route, Route | Mount) else "other"
            requests.labels(label, str(status)).inc()

        async def counting_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            if not started:  # Starlette's outermost middleware answers it with a 500
                count(500)
            raise
