"""What needs a real socket: disconnects, a reader that stops reading, third-party clients.

The app runs on a real uvicorn on loopback; everything else about the server is
tested through the ASGI app directly (see `conftest.py`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from openbrace.server.app import ServerConfig, create_app
from tests.server.scripted import DOC_TEXT, ENGINE, SCHEMA, SEEN, body
from tests.support.loopback import LoopbackServer, wait_until


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    config = ServerConfig(keepalive=0.2, request_timeout=2.5)  # generous: busy CI machines
    with LoopbackServer(create_app(ENGINE, config), access_log=False) as s:
        yield s


def post(server: LoopbackServer, payload: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=payload, timeout=10, **kwargs)


@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/event-stream"])
def test_disconnect_closes_the_generation(server: LoopbackServer, accept: str) -> None:
    SEEN.closed.clear()
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            json=body("endless"),
            headers={"Accept": accept},
        ) as response,
    ):
        lines = response.iter_bytes()
        received = b""
        while received.count(b"\n") < 4:
            received += next(lines)
    assert SEEN.closed.wait(5), "the engine's generator was not closed"
    with SEEN.lock:
        stopped_at = SEEN.yielded
    time.sleep(0.2)
    assert SEEN.yielded == stopped_at, "the engine kept generating"
    assert wait_until(
        lambda: "openbrace_streams_in_flight 0" in httpx.get(f"{server.url}/metrics").text
    )


def test_a_client_that_stops_reading_loses_its_slot() -> None:
    """Backpressure: the server stops generating for a stuck reader, then gives up on it."""
    config = ServerConfig(max_concurrent=1, max_queue=0, request_timeout=0.5)
    app = create_app(ENGINE, config)
    with LoopbackServer(app, access_log=False) as s, socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", int(s.url.rsplit(":", 1)[1])))
        payload = json.dumps(body("flood")).encode()
        reader.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload
        )  # ... and never read a byte
        assert wait_until(lambda: post(s, body()).status_code == 429), "the reader holds the slot"
        # request_timeout (0.5 s) plus the 5 s grace to send, then the slot is free again.
        assert wait_until(lambda: post(s, body()).status_code == 200, timeout=20, step=0.5)
        timeouts = app.state.metrics.sample(
            "openbrace_errors_total", stage="stream", type="timeout"
        )
        assert timeouts == 1


def test_dottxt_sdk_against_our_server(server: LoopbackServer) -> None:
    """The published dottxt SDK (what users already have) reads our NDJSON unchanged."""
    from dottxt import AsyncDotTxt

    async def run() -> list[Any]:
        client = AsyncDotTxt(api_key="unused", base_url=f"{server.url}/v1")
        try:
            return [
                e async for e in client.stream(model="mock", input="ok", response_format=SCHEMA)
            ]
        finally:
            await client.close()

    events = asyncio.run(run())
    assert events[-1].snapshot == json.loads(DOC_TEXT)
    assert [e.op["path"] for e in events][:2] == ["", "/intent"]
