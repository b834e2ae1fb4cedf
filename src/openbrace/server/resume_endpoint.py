"""`GET /v1/streams/{id}`: resume a resumable stream after op N, then follow it live.

`?after=N` or `Last-Event-ID: N` (what an SSE client sends on reconnect) names the
last op the reader holds; without either the stream is replayed from the start. The
framing follows `Accept` as for the POST; unlike the POST, NDJSON always ends with
the `done` or `error` record, so a reader knows the stream is complete.

`DELETE /v1/streams/{id}` stops the generation and ends the stream with a
`cancelled` error record (204).

404 for an unknown or expired id and for a key other than the one that started the
stream (one answer for all three: the status reveals nothing), 503 while the store
is unreachable, 400 for a malformed `after`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import wire
from ..exceptions import RequestError
from .resume import Resumer, StreamNotFound, bearer_token, parse_after
from .stores import StoreStats, StoreUnavailableError, StreamStore

__all__ = ["cancel_response", "resume_response", "store_stats"]


async def resume_response(
    request: Request, resumer: Resumer, *, keepalive: float, open: bool
) -> Response:
    """The resume of `request.path_params["stream_id"]` (see the module docstring).

    Args:
        open: the server has no API keys (then the id alone grants access).
    """
    try:
        after = parse_after(request.query_params.get("after"), request.headers.get("last-event-id"))
    except ValueError as exc:
        raise RequestError(str(exc), param="after", code="invalid_value") from None
    key = None if open else bearer_token(request.headers.get("authorization"))
    stream_id = request.path_params["stream_id"]
    with _refusals():
        records = await resumer.open(stream_id, key, after)
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no", "x-stream-id": stream_id}
    if "text/event-stream" in request.headers.get("accept", ""):
        frames = wire.sse_frames(records, keepalive=keepalive)
        return StreamingResponse(frames, media_type=wire.SSE, headers=headers)
    frames = wire.ndjson_frames(records, include_usage=True)
    return StreamingResponse(frames, media_type=wire.NDJSON, headers=headers)


async def cancel_response(request: Request, resumer: Resumer, *, open: bool) -> Response:
    """`DELETE /v1/streams/{id}`: stop the generation, end the stream as `cancelled` (204).

    The same 404/503 as a resume. What Stop means for a resumable stream: dropping
    the connection would not stop it.
    """
    key = None if open else bearer_token(request.headers.get("authorization"))
    with _refusals():
        await resumer.cancel(request.path_params["stream_id"], key)
    return Response(status_code=204)


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Unknown, expired or another key's stream: 404; the store down: 503."""
    try:
        yield
    except StreamNotFound:
        raise RequestError(
            "no resumable stream with this id (unknown, or expired)",
            status=404,
            code="stream_not_found",
        ) from None
    except StoreUnavailableError:
        raise RequestError(
            "the resume store is unavailable; retry later",
            status=503,
            code="resume_store_unavailable",
        ) from None


async def store_stats(store: StreamStore) -> StoreStats:
    """The store's figures for `/metrics`; NaN while it is unreachable."""
    try:
        return await store.stats()
    except StoreUnavailableError:
        return StoreStats(math.nan, math.nan)  # type: ignore[arg-type]
