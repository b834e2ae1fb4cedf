"""`stream(..., resumable=True)`: a connection cut anywhere (even mid-frame) is resumed
and the consumer sees every event exactly once, async and sync, NDJSON and SSE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from openbrace import AsyncClient, Client, PatchStreamError, ProtocolError
from openbrace.engines.base import MockEngine
from openbrace.reconnect import Reconnect
from openbrace.server.app import ServerConfig, create_app
from tests.server.test_resume import DOCUMENT, KEY, N_OPS, slow_writer
from tests.support.loopback import LoopbackServer

FAST = Reconnect(retries=3, backoff=0.01, max_delay=0.05)


BEFORE_DONE = -1  # a cut right before the done record: after the last op


class _Cut(httpx.AsyncByteStream, httpx.SyncByteStream):
    """A response body that breaks off after `limit` bytes (or before the done record),
    as a dropped connection does."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner, self.limit = inner, limit
        self.sent = 0

    def _piece(self, chunk: bytes) -> tuple[bytes, bool]:
        """What of `chunk` gets through, and whether the connection breaks after it."""
        if self.limit == BEFORE_DONE:
            at = max(chunk.find(b'{"done"'), chunk.find(b"event: done"))
            return (chunk[:at], True) if at >= 0 else (chunk, False)
        if self.sent + len(chunk) >= self.limit:
            return chunk[: self.limit - self.sent], True
        self.sent += len(chunk)
        return chunk, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            piece, cut = self._piece(chunk)
            yield piece
            if cut:
                raise httpx.ReadError("connection reset by peer")

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            piece, cut = self._piece(chunk)
            yield piece
            if cut:
                raise httpx.ReadError("connection reset by peer")

    async def aclose(self) -> None:
        await self.inner.aclose()

    def close(self) -> None:
        self.inner.close()


class Cutting(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """Real HTTP, but the n-th response body is cut after `cuts[n]` bytes."""

    def __init__(self, cuts: list[int]) -> None:
        self.cuts = list(cuts)
        self.requests: list[str] = []
        self._async = httpx.AsyncHTTPTransport()
        self._sync = httpx.HTTPTransport()

    def _wrap(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        if not self.cuts:
            return response
        stream = _Cut(response.stream, self.cuts.pop(0))
        return httpx.Response(response.status_code, headers=response.headers, stream=stream)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self._wrap(request, await self._async.handle_async_request(request))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._wrap(request, self._sync.handle_request(request))


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    config = ServerConfig(api_keys=(KEY,))
    with LoopbackServer(create_app(MockEngine(slow_writer), config)) as running:
        yield running


def arguments() -> dict[str, Any]:
    schema = {"type": "object"}
    return {"model": "mock", "input": "refund", "response_format": schema, "resumable": FAST}


async def async_events(url: str, framing: str, transport: Cutting) -> list[Any]:
    client = AsyncClient(KEY, f"{url}/v1", framing=framing, transport=transport)  # type: ignore[arg-type]
    try:
        async with client.stream(**arguments()) as stream:
            return [event async for event in stream]
    finally:
        await client.close()


def sync_events(url: str, framing: str, transport: Cutting) -> list[Any]:
    with Client(KEY, f"{url}/v1", framing=framing, transport=transport) as client:  # type: ignore[arg-type]
        return list(client.stream(**arguments()))


@pytest.mark.parametrize("flavour", ["async", "sync"])
@pytest.mark.parametrize("framing", ["ndjson", "sse"])
@pytest.mark.parametrize("cuts", [[1], [120], [120, 60, 90], [BEFORE_DONE]], ids=str)
def test_cut_connections_are_resumed_and_every_event_arrives_once(
    server: LoopbackServer, flavour: str, framing: str, cuts: list[int]
) -> None:
    """Cut after 1 byte (before any op), mid-frame, several times, or past the last op:
    the events are each op once, in order, and the last snapshot is the document."""
    transport = Cutting(cuts)
    if flavour == "async":
        events = asyncio.run(async_events(server.url, framing, transport))
    else:
        events = sync_events(server.url, framing, transport)
    assert [e.op["path"] for e in events] == [
        "",
        "/intent",
        "/steps",
        "/steps/0",
        "/steps/1",
        "/steps/2",
        "/reply",
    ]
    assert len(events) == N_OPS and events[-1].snapshot == DOCUMENT
    resumes = [r for r in transport.requests if r.startswith("GET /v1/streams/")]
    assert len(resumes) == len(cuts)


def test_retries_are_bounded(server: LoopbackServer) -> None:
    """A connection cut before any op every time: after `retries` resumes, the error."""
    transport = Cutting([1] * 10)
    with pytest.raises(ProtocolError):
        asyncio.run(async_events(server.url, "sse", transport))
    assert len(transport.requests) == 1 + FAST.retries


def test_a_stream_that_is_gone_is_not_retried(server: LoopbackServer) -> None:
    """A resume answered 404 (the stream expired) raises at once, without more attempts."""
    config = ServerConfig(api_keys=(KEY,), resume_ttl=0)
    with LoopbackServer(create_app(MockEngine(slow_writer), config)) as fresh:
        transport = Cutting([BEFORE_DONE])  # by the resume, the stream has expired
        with pytest.raises(PatchStreamError) as caught:
            asyncio.run(async_events(fresh.url, "ndjson", transport))
        assert caught.value.status_code == 404
        assert len(transport.requests) == 2


def _cut_inside_the_reply(framing: str) -> int:
    """A byte offset inside the reply's partial records (which span bytes ~990-1590 of
    the NDJSON stream, ~1300-2060 of the SSE one): the stream is cut mid-string."""
    return 1200 if framing == "ndjson" else 1550


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_partial_strings_survive_a_cut_each_character_once(
    server: LoopbackServer, framing: str
) -> None:
    """Cut while `reply` is being written: the resume re-sends its text so far as one
    record, and the SDK passes on only what is new: the pieces of each string join into
    its value exactly, and the ops arrive once."""
    transport = Cutting([_cut_inside_the_reply(framing), 40])

    async def main() -> list[Any]:
        client = AsyncClient(KEY, f"{server.url}/v1", framing=framing, transport=transport)  # type: ignore[arg-type]
        try:
            stream = client.stream(**arguments(), partial_strings=True)
            return [event async for event in stream]
        finally:
            await client.close()

    events = asyncio.run(main())
    ops = [e for e in events if hasattr(e, "op")]
    assert len(ops) == N_OPS and ops[-1].snapshot == DOCUMENT
    for op in ops:
        if isinstance(op.value, str):
            pieces = [e.text for e in events if not hasattr(e, "op") and e.path == op.op["path"]]
            assert "".join(pieces) == op.value
    assert sum(r.startswith("GET /v1/streams/") for r in transport.requests) == 2
