"""What the client tests share: a replay server, a recorded document, engine handlers.

`Replay` is a small Starlette app (run under uvicorn on 127.0.0.1 by the `replay_server`
fixture) that replays a recorded op stream (the ops the PatchEmitter made from a real
document) through the real server framers (`wire.number_ops` into `wire.ndjson_frames` /
`wire.sse_frames`), in several ways chosen by the request's `model`: whole (`ok`), cut
(`cut`, `abort`), refused (`refuse`), tiny network writes (`tiny`), an error record
(`length`), no ops (`empty`), no done record (`no-done`), or holding the connection
open (`hang`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from openbrace import PatchEmitter, wire
from openbrace.engines.base import Finish, GenerationRequest, Usage

__all__ = [
    "DOCUMENT",
    "OPS",
    "SCHEMA",
    "TEXT",
    "USAGE",
    "Replay",
    "Ticket",
    "ask",
    "check_events",
    "collect",
    "mock_handler",
    "record_ops",
]

TEXT = (
    '{"intent": "billing", "urgency": "high", "steps": ["verify the duplicate\u2028charge",'
    ' "refund it"], "reply": "Hi Jane,\u0085 done \\"now\\"", "meta": {"a/b": 12.5, "ok": true,'
    ' "none": null}}'
)


DOCUMENT = json.loads(TEXT)


def record_ops(text: str) -> list[dict[str, Any]]:
    emitter = PatchEmitter()
    return [op for ch in text for op in emitter.feed(ch)] + emitter.close()


OPS = record_ops(TEXT)
USAGE = {"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49}
SCHEMA = {"type": "object"}


class Ticket(BaseModel):
    intent: Literal["billing", "technical"]
    urgency: str
    steps: list[str]
    reply: str
    meta: dict[str, Any]


# --- the replay server ---------------------------------------------------------------------


class Replay:
    """What the replay server saw: request bodies and headers, and disconnects."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.disconnected = threading.Event()
        self.hanging = threading.Event()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"])])

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        scenario = body["model"]
        if scenario == "refuse":
            error = {"message": "unknown model 'refuse'", "type": "invalid_request_error"}
            return JSONResponse({"error": {**error, "param": "model", "code": None}}, 404)
        sse = "text/event-stream" in request.headers.get("accept", "")
        media = wire.SSE if sse else wire.NDJSON
        if scenario in ("cut", "abort"):
            return StreamingResponse(self.cut(abort=scenario == "abort"), media_type=media)
        records = wire.number_ops(self.records(scenario))
        if sse:
            frames = wire.sse_frames(records, keepalive=0.01)
        else:
            usage = (body.get("stream_options") or {}).get("include_usage", False)
            frames = wire.ndjson_frames(records, include_usage=usage)
        if scenario == "tiny":
            frames = self.tiny(frames)
        return StreamingResponse(frames, media_type=media)

    async def records(self, scenario: str) -> AsyncIterator[dict[str, Any]]:
        disconnected = self.disconnected  # this test's event, even if the next one began
        finished = False
        try:
            if scenario == "length":
                for op in OPS[:5]:
                    yield op
                yield {"error": {"message": "max_tokens ran out", "type": "length", "code": "m"}}
            elif scenario == "hang":
                for op in OPS[:2]:
                    yield op
                self.hanging.set()
                await asyncio.sleep(20)  # until the client leaves (bounded)
            elif scenario == "empty":
                pass
            elif scenario == "no-done":
                for op in OPS:
                    yield op
            else:
                for op in OPS:
                    await asyncio.sleep(0)
                    yield op
                yield {"done": {"finish_reason": "stop", "usage": USAGE}}
            finished = True
        finally:
            if not finished:
                disconnected.set()

    async def tiny(self, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Every frame as many writes of 1 to 3 bytes (UTF-8 characters split too)."""
        async for frame in frames:
            for i in range(0, len(frame), 3):
                for piece in (frame[i : i + 1], frame[i + 1 : i + 3]):
                    if piece:
                        yield piece
                        await asyncio.sleep(0)  # one ASGI send, one socket write

    async def cut(self, *, abort: bool) -> AsyncIterator[bytes]:
        yield wire.encode_ndjson(OPS[0])
        yield wire.encode_ndjson(OPS[1])[:10]
        if abort:  # an exception after the status: uvicorn drops the connection
            raise ConnectionAbortedError("the replay server dies mid-stream")


def ask(**overrides: Any) -> dict[str, Any]:
    return {"model": "ok", "input": "Refund me", "response_format": SCHEMA, **overrides}


async def collect(stream: Any) -> list[Any]:
    return [event async for event in stream]


def check_events(events: list[Any]) -> None:
    assert [e.op for e in events] == OPS
    assert events[-1].snapshot == DOCUMENT
    assert events[1].field == "intent" and events[1].value == "billing"
    assert (
        events[4].keys == ("steps", "0") and events[4].value == "verify the duplicate\u2028charge"
    )
    assert events[0].snapshot == {}  # later ops never change an earlier snapshot


def mock_handler(text: str, pieces: int = 3, seen: list[GenerationRequest] | None = None) -> Any:
    """A `MockEngine` handler that writes `text` in about `pieces` deltas."""

    async def handler(request: GenerationRequest) -> AsyncIterator[str | Finish]:
        if seen is not None:
            seen.append(request)
        step = max(1, len(text) // pieces)
        for i in range(0, len(text), step):
            await asyncio.sleep(0)
            yield text[i : i + step]
        yield Finish(usage=Usage(3, 4))

    return handler
