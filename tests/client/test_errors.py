"""How the clients fail over HTTP: refusals, cut or malformed streams, and transport
failures (refused connections, silent servers), each as an openbrace error.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from openbrace import (
    AsyncClient,
    Client,
    ConnectError,
    OpenBraceError,
    PatchStreamError,
    ProtocolError,
    ReadTimeoutError,
    TransportError,
)
from tests.client.replay import OPS, ask, collect

# --- refusals and broken streams -----------------------------------------------------------


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_non_200_raises_patch_stream_error_with_body(replay, url, framing):
    with pytest.raises(PatchStreamError) as info:
        asyncio.run(
            collect(AsyncClient(base_url=url, framing=framing).stream(**ask(model="refuse")))
        )
    assert info.value.status_code == 404
    assert json.loads(info.value.body)["error"]["param"] == "model"  # the body as text
    assert info.value.error["message"] == "unknown model 'refuse'"
    assert "unknown model 'refuse'" in str(info.value)
    assert isinstance(info.value, RuntimeError)  # as dottxt's PatchStreamError
    with Client(base_url=url) as client, pytest.raises(PatchStreamError, match="HTTP 404"):
        list(client.stream(**ask(model="refuse")))


@pytest.mark.parametrize(
    ("scenario", "message"),
    [("cut", "ended mid-frame"), ("abort", "connection closed mid-stream")],
)
def test_stream_cut_mid_frame_raises_protocol_error(replay, url, scenario, message):
    """`cut`: the body ends cleanly inside a line; `abort`: the server drops the socket."""

    async def main() -> list[Any]:
        events = []
        with pytest.raises(ProtocolError, match=message):
            async for event in AsyncClient(base_url=url).stream(**ask(model=scenario)):
                events.append(event)
        return events

    assert [e.op for e in asyncio.run(main())] == OPS[:1]
    with Client(base_url=url) as client, pytest.raises(ProtocolError, match=message):
        list(client.stream(**ask(model=scenario)))


def test_empty_ndjson_body_is_a_protocol_error(replay, url):
    with Client(base_url=url) as client, pytest.raises(ProtocolError, match="before any op"):
        list(client.stream(**ask(model="empty")))


def test_sse_stream_without_done_is_a_cut(replay, url):
    with Client(base_url=url, framing="sse") as client:
        stream = client.stream(**ask(model="no-done"))
        assert len([next(stream) for _ in OPS]) == len(OPS)
        with pytest.raises(ProtocolError, match="without a done"):
            next(stream)
    with Client(base_url=url) as client:  # NDJSON: success is simply the end of the body
        assert len(list(client.stream(**ask(model="no-done")))) == len(OPS)


# --- transport failures ----------------------------------------------------------------


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def fail_sync_and_async(url: str, kind: type[OpenBraceError], **options: Any) -> list[Any]:
    """The error `kind` that `stream` raises, from `Client` and from `AsyncClient`."""
    with Client(base_url=url) as client, pytest.raises(kind) as sync:
        list(client.stream(**ask(), **options))

    async def main() -> Any:
        async with AsyncClient(base_url=url) as client:
            with pytest.raises(kind) as info:
                await collect(client.stream(**ask(), **options))
            return info.value

    return [sync.value, asyncio.run(main())]


def test_a_refused_connection_is_a_connect_error_naming_the_url(refusing_url):
    for error in fail_sync_and_async(refusing_url, ConnectError):
        assert isinstance(error, TransportError) and error.url == refusing_url
        assert str(error).startswith(f"cannot reach {refusing_url}: ")
        assert f"is `openbrace serve` running at {refusing_url}?" in str(error)
        assert isinstance(error.__cause__, httpx.ConnectError)  # what httpx saw, kept


def test_a_server_that_never_answers_is_a_read_timeout(silent_url):
    for error in fail_sync_and_async(silent_url, ReadTimeoutError, timeout=0.3):
        assert isinstance(error, TransportError) and error.url == silent_url
        assert error.timeout == 0.3
        assert str(error).startswith(f"{silent_url} sent nothing for 0.3 s before answering")


def test_a_stream_that_stalls_is_a_read_timeout_after_its_ops(replay, url):
    """The server stops sending after two ops: the ops arrive, then the timeout error."""

    async def main() -> list[Any]:
        events = []
        with pytest.raises(ReadTimeoutError, match="mid-stream"):
            async for event in AsyncClient(base_url=url).stream(**ask(model="hang"), timeout=0.3):
                events.append(event)
        return events

    assert [e.op for e in asyncio.run(main())] == OPS[:2]
    assert replay.disconnected.wait(10)  # the client closed its connection
    replay.disconnected.clear()
    events = []
    with Client(base_url=url) as client, pytest.raises(ReadTimeoutError, match="mid-stream"):
        for event in client.stream(**ask(model="hang"), timeout=0.3):
            events.append(event)
    assert [e.op for e in events] == OPS[:2]
    assert replay.disconnected.wait(10)


def test_a_base_url_without_scheme_means_http(refusing_url):
    """`127.0.0.1:PORT` is taken as `http://127.0.0.1:PORT`, and named so in errors."""
    for error in fail_sync_and_async(refusing_url.removeprefix("http://"), ConnectError):
        assert error.url == refusing_url
        assert str(error).startswith(f"cannot reach {refusing_url}: ")
