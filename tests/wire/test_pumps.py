"""The server's framers: numbered records -> NDJSON or SSE bytes, keep-alives, closing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openbrace import wire
from openbrace.exceptions import InvalidOutputError
from tests.wire import decode_all

OPS = [
    {"op": "add", "path": "", "value": {}},
    {"op": "add", "path": "/a", "value": "x\u2028y"},
]
DONE = {"done": {"finish_reason": "stop", "usage": {"prompt_tokens": 1}}}


class Records:
    """An async record source that remembers whether it was closed."""

    def __init__(self, items: list[Any], gate: asyncio.Event | None = None, after: int = 0):
        self.items, self.gate, self.after = items, gate, after
        self.closed = False

    async def gen(self) -> AsyncIterator[dict[str, Any]]:
        try:
            for i, item in enumerate(self.items):
                if self.gate is not None and i == self.after:
                    await self.gate.wait()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed = True


async def collect(frames: AsyncIterator[bytes], limit: int | None = None) -> list[bytes]:
    out = []
    async for frame in frames:
        out.append(frame)
        if limit is not None and len(out) == limit:
            await frames.aclose()  # type: ignore[attr-defined]
            break
    return out


@pytest.mark.parametrize("include_usage", [False, True])
def test_ndjson_frames_send_done_only_on_request(include_usage):
    source = Records([*OPS, DONE])
    frames = asyncio.run(
        collect(wire.ndjson_frames(wire.number_ops(source.gen()), include_usage=include_usage))
    )
    expected = [wire.encode_ndjson(r) for r in OPS]
    assert frames == ([*expected, wire.encode_ndjson(DONE)] if include_usage else expected)
    assert source.closed


def test_ndjson_frames_end_at_an_error_record_and_turn_exceptions_into_records():
    error = {"error": {"message": "m", "type": "length", "code": None}}
    source = Records([OPS[0], error, OPS[1]])
    frames = asyncio.run(
        collect(wire.ndjson_frames(wire.number_ops(source.gen()), include_usage=False))
    )
    assert frames == [wire.encode_ndjson(OPS[0]), wire.encode_ndjson(error)]
    assert source.closed

    source = Records([OPS[0], InvalidOutputError("not JSON at byte 3")])
    frames = asyncio.run(
        collect(wire.ndjson_frames(wire.number_ops(source.gen()), include_usage=False))
    )
    assert json.loads(frames[-1])["error"]["type"] == "invalid_output"

    source = Records([OPS[0], RuntimeError("secret internals")])
    frames = asyncio.run(
        collect(wire.ndjson_frames(wire.number_ops(source.gen()), include_usage=False))
    )
    last = json.loads(frames[-1])["error"]
    assert last["type"] == "server_error" and "secret" not in last["message"]


def test_closing_ndjson_frames_early_closes_the_source():
    async def main() -> Records:
        source = Records([*OPS, DONE])
        frames = wire.ndjson_frames(wire.number_ops(source.gen()), include_usage=True)
        assert await collect(frames, limit=1) == [wire.encode_ndjson(OPS[0])]
        return source

    assert asyncio.run(main()).closed


def test_sse_frames_number_ops_and_end_with_done():
    source = Records([*OPS, DONE, OPS[0]])
    frames = asyncio.run(collect(wire.sse_frames(wire.number_ops(source.gen()))))
    assert frames == [wire.encode_sse(OPS[0], 0), wire.encode_sse(OPS[1], 1), wire.encode_sse(DONE)]
    assert decode_all(wire.SSEDecoder(), frames) == [*OPS, DONE]
    assert source.closed


def test_sse_frames_write_the_ids_they_are_handed():
    """The framer does not number: a numbering continued at 5 (a resumed stream) shows."""
    ids = wire.OpIds(5)
    source = Records([*OPS, DONE])
    frames = asyncio.run(collect(wire.sse_frames(wire.number_ops(source.gen(), ids))))
    assert frames == [wire.encode_sse(OPS[0], 5), wire.encode_sse(OPS[1], 6), wire.encode_sse(DONE)]
    assert ids.count == 7


def test_number_ops_pairs_records_with_ids_and_closes_its_source():
    async def main(limit: int | None) -> tuple[list[wire.Numbered], Records]:
        source = Records([*OPS, DONE])
        numbered = wire.number_ops(source.gen())
        out = []
        async for item in numbered:
            out.append(item)
            if len(out) == limit:
                await numbered.aclose()  # type: ignore[attr-defined]
                break
        return out, source

    everything, source = asyncio.run(main(None))
    assert everything == [(0, OPS[0]), (1, OPS[1]), (None, DONE)] and source.closed
    first, source = asyncio.run(main(1))
    assert first == [(0, OPS[0])] and source.closed


def test_sse_frames_send_keepalives_while_the_source_is_idle():
    async def main() -> list[bytes]:
        gate = asyncio.Event()
        source = Records([*OPS, DONE], gate=gate, after=1)  # stalls after the first op
        frames = []
        async for frame in wire.sse_frames(wire.number_ops(source.gen()), keepalive=0.005):
            frames.append(frame)
            if frame == wire.KEEPALIVE and frames.count(wire.KEEPALIVE) == 2:
                gate.set()  # the source resumes only once two keep-alives went out
        return frames

    frames = asyncio.run(main())
    assert frames[0] == wire.encode_sse(OPS[0], 0)
    assert frames[1:3] == [wire.KEEPALIVE, wire.KEEPALIVE]
    rest = [f for f in frames[3:] if f != wire.KEEPALIVE]
    assert rest == [wire.encode_sse(OPS[1], 1), wire.encode_sse(DONE)]
    assert decode_all(wire.SSEDecoder(), frames) == [*OPS, DONE]


def test_closing_sse_frames_early_closes_the_source():
    async def main() -> Records:
        source = Records([*OPS, DONE], gate=asyncio.Event(), after=1)  # never resumes
        frames = wire.sse_frames(wire.number_ops(source.gen()), keepalive=0.005)
        assert await collect(frames, limit=2) == [wire.encode_sse(OPS[0], 0), wire.KEEPALIVE]
        return source

    assert asyncio.run(main()).closed


def test_sse_frames_turn_an_exception_into_an_error_event():
    source = Records([OPS[0], InvalidOutputError("bad")])
    frames = asyncio.run(collect(wire.sse_frames(wire.number_ops(source.gen()))))
    records = decode_all(wire.SSEDecoder(), frames)
    assert records[0] == OPS[0]
    assert records[1]["error"]["type"] == "invalid_output"
    assert frames[1].startswith(b"event: error\n")
