"""The endpoints: plain functions of a request, reading what they share from `request.app.state`.

`create_app` puts there `engine`, `config` (`ServerConfig`), `gate`, `metrics`
and `runtime` (what every generation shares). Errors are raised, never answered
here: the app's exception handlers turn them into OpenAI-shaped error bodies.
"""

from __future__ import annotations

import dataclasses
import time

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..engines.base import Engine, unknown_model_error
from ..exceptions import RequestError
from ..request import ChatPlan, parse_chat
from .auth import bearer_token
from .limits import read_body
from .metrics import CONTENT_TYPE
from .responses import GenerationResponse

__all__ = ["completions", "healthz", "index", "metrics", "models"]


async def completions(request: Request) -> Response:
    """`POST /v1/chat/completions`: every `stream` mode; the response runs the generation."""
    started = time.monotonic()
    state = request.app.state
    plan = parse_chat(await read_body(request, state.config.max_body_bytes))
    plan = await _resolve_model(state.engine, plan)
    sse = "text/event-stream" in request.headers.get("accept", "")
    # The key owns a resumable stream (server/resume.py); an open server has none.
    key = bearer_token(request.headers.get("authorization")) if state.config.api_keys else None
    response = GenerationResponse(state.runtime, plan, sse=sse, started=started, api_key=key)
    return response  # type: ignore[return-value]


async def models(request: Request) -> Response:
    """`GET /v1/models`: the engine's models, OpenAI-shaped."""
    found = await request.app.state.engine.models()
    data = [{"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by} for m in found]
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    """`GET /healthz`: liveness for load balancers; never touches the engine."""
    state = request.app.state
    in_flight = state.metrics.sample("openbrace_streams_in_flight")
    return JSONResponse(
        {"status": "ok", "streams_in_flight": int(in_flight), "queued": state.gate.waiting}
    )


async def metrics(request: Request) -> Response:
    """`GET /metrics`: the Prometheus text format."""
    await request.app.state.resumer.refresh_metrics()
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)


async def index(request: Request) -> Response:
    """`GET /`: the playground page."""
    page = request.app.state.config.static_dir / "index.html"
    if not page.is_file():
        raise RequestError("the playground is not installed", status=404, code="not_found")
    return FileResponse(page)


async def _resolve_model(engine: Engine, plan: ChatPlan) -> ChatPlan:
    """Fill in the default model, or refuse an unknown one with 404."""
    ids = [m.id for m in await engine.models()]
    model = plan.request.model
    if not model:
        if not ids:
            raise RequestError("the engine serves no model", status=503, code="engine_unavailable")
        model = ids[0]
    elif model not in ids:
        raise unknown_model_error(model, ids)
    request = dataclasses.replace(plan.request, model=model)
    return dataclasses.replace(plan, request=request)
