"""`/v1/streams/{id}`: resume a resumable stream after op N and follow it live; cancel it.

`GET`: `?after=N` or `Last-Event-ID: N` (what an SSE client sends on reconnect)
names the last op the reader holds; without either the stream is replayed from the
start. The framing follows `Accept` as for the POST; unlike the POST, NDJSON always
ends with the `done` or `error` record, so a reader knows the stream is complete.

`DELETE`: stops the generation and ends the stream with a `cancelled` error record
(204): what Stop means for a resumable stream, which dropping the connection does
not stop.

404 for an unknown or expired id and for a key other than the one that started the
stream (one answer for all three: the status reveals nothing), 503 while the store
is unreachable, 400 for a malformed `after`. Reads `resumer` and `config` from
`request.app.state`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import wire
from ..exceptions import RequestError
from .auth import bearer_token
from .resume import Resumer, StreamNotFound, parse_after
from .stores import StoreUnavailableError

__all__ = ["streams"]


async def streams(request: Request) -> Response:
    """`GET` (resume) or `DELETE` (cancel) `/v1/streams/{stream_id}`."""
    state = request.app.state
    resumer: Resumer = state.resumer
    key = bearer_token(request.headers.get("authorization")) if state.config.api_keys else None
    stream_id = request.path_params["stream_id"]
    if request.method == "DELETE":
        with _refusals():
            await resumer.cancel(stream_id, key)
        return Response(status_code=204)
    try:
        after = parse_after(request.query_params.get("after"), request.headers.get("last-event-id"))
    except ValueError as exc:
        raise RequestError(str(exc), param="after", code="invalid_value") from None
    with _refusals():
        records = await resumer.open(stream_id, key, after)
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no", "x-stream-id": stream_id}
    sse = "text/event-stream" in request.headers.get("accept", "")
    frames, media_type = wire.patch_frames(
        records, sse=sse, keepalive=state.config.keepalive, include_usage=True
    )
    return StreamingResponse(frames, media_type=media_type, headers=headers)


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
