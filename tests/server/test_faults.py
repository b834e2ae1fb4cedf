"""Faults on either side of the server, and what survives them.

A real openbrace server (uvicorn on loopback) fronts the scripted upstream
(`tests.support.upstream`, the stand-in for a GPU cluster). For each fault the
test checks four things: the stream ends with the right error record or status;
the ops delivered before it are a prefix of the correct op sequence and apply
cleanly with `jsonpatch`; the server serves the next request; and nothing leaks
(asyncio tasks in the server's loop, streams and TCP connections at the upstream,
TCP connections at the server, all back to where they were).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from openbrace.engines.upstream import UpstreamEngine
from openbrace.server.app import ServerConfig, create_app
from tests.support import LoopbackServer, Script, ScriptedUpstream, wait_until
from tests.support.streams import apply_ops, reference_ops, split_records

TICKET = {
    "intent": "billing",
    "urgency": "high",
    "steps": ["verify the duplicate charge", "refund it", "apologise \u2028 warmly"],
    "amount": 42.5,
    "refund": True,
    "reply": "Hi Jane, we refunded the duplicate charge of 42.50 EUR.",
}
TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string"},
        "urgency": {"enum": ["low", "high"]},
        "steps": {"type": "array", "items": {"type": "string"}},
        "amount": {"type": "number"},
        "refund": {"type": "boolean"},
        "reply": {"type": "string"},
    },
    "required": ["intent", "urgency", "steps", "amount", "refund", "reply"],
}
UPSTREAM_TIMEOUT = 2.0  # seconds of upstream silence the engine tolerates
# Small socket buffers make backpressure visible after kilobytes, not megabytes.
SMALL_BUFFER = 32 * 1024
SMALL_RCVBUF = [(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)]

# The backpressure document: 2400 array items of ~1 KB, one upstream chunk each.
BIG_CHUNKS = ("[", *(json.dumps(f"{i:05d}" + "x" * 1000) + "," for i in range(2399)), '"end"]')


def _scripts() -> dict[str, Script]:
    ticket = Script.from_document(TICKET, interval=0.002)
    n = len(ticket.chunks)
    return {
        "ticket": ticket,
        "slow-ticket": Script.from_document(TICKET, interval=0.05),
        "cut": Script.from_document(TICKET, fault="close", fault_after=n // 2),
        "stall": Script.from_document(TICKET, fault="stall", fault_after=n // 2),
        "http-500": Script.from_document(TICKET, fault="http_error"),
        "garbage-mid": Script.from_document(TICKET, fault="not_json", fault_after=n // 2),
        "garbage-first": Script.from_document(TICKET, fault="not_json"),
        "prose": Script.from_text('Sure! Here is the JSON you asked for: {"intent": 1}'),
        "wrong-type": Script.from_document({**TICKET, "amount": "forty-two"}),
        "missing-field": Script.from_document({k: v for k, v in TICKET.items() if k != "reply"}),
        "truncated": Script.from_text(json.dumps(TICKET)[:60], finish_reason="length"),
        "big": Script(chunks=BIG_CHUNKS),
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(send_buffer=SMALL_BUFFER) as server:
        for model, script in _scripts().items():
            server.add(model, script)
        yield server


@pytest.fixture(scope="module")
def server(upstream: ScriptedUpstream) -> Iterator[LoopbackServer]:
    client = httpx.AsyncClient(
        timeout=UPSTREAM_TIMEOUT, transport=httpx.AsyncHTTPTransport(socket_options=SMALL_RCVBUF)
    )
    engine = UpstreamEngine(upstream.base_url, timeout=UPSTREAM_TIMEOUT, http_client=client)
    config = ServerConfig(request_timeout=20.0)
    with LoopbackServer(create_app(engine, config), send_buffer=SMALL_BUFFER) as live:
        yield live


@pytest.fixture(autouse=True)
def no_leaks(server: LoopbackServer, upstream: ScriptedUpstream) -> Iterator[None]:
    """Each test must leave the server and upstream as it found them."""
    assert wait_until(lambda: server.open_connections == 0 and upstream.active_streams == 0)
    tasks = server.task_count()
    upstream_connections = max(upstream.open_connections, 1)  # one pooled keep-alive
    yield
    assert wait_until(lambda: server.task_count() <= tasks), "asyncio tasks leaked"
    assert wait_until(lambda: upstream.active_streams == 0), "an upstream stream is still open"
    assert wait_until(lambda: upstream.open_connections <= upstream_connections), (
        "upstream connections leaked"
    )
    assert wait_until(lambda: server.open_connections == 0), "client connections leaked"


def _body(model: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    rf = (
        {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}
        if schema is not None
        else {"type": "json_object"}
    )
    return {
        "model": model,
        "messages": [{"role": "user", "content": "help"}],
        "stream": "patch",
        "response_format": rf,
    }


def _post(
    server: LoopbackServer, model: str, schema: dict[str, Any] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """One patch request read to the end: (status, NDJSON records or [error body])."""
    with httpx.Client(timeout=30) as client:
        response = client.post(server.url + "/v1/chat/completions", json=_body(model, schema))
    if response.status_code != 200:
        return response.status_code, [response.json()]
    lines = response.content.split(b"\n")
    assert lines[-1] == b"", "the stream must end with a complete line"
    return 200, [json.loads(line) for line in lines[:-1]]


def _check_prefix(upstream: ScriptedUpstream, model: str, ops: list[dict[str, Any]]) -> None:
    """The ops sent are the first ops of the correct sequence and apply cleanly."""
    expected = [op for _, op in reference_ops(upstream.scripts[model].chunks)]
    assert ops == expected[: len(ops)]
    apply_ops(ops)  # every prefix is a valid RFC 6902 patch


def _assert_serves_next(server: LoopbackServer) -> None:
    status, records = _post(server, "ticket", TICKET_SCHEMA)
    ops, control = split_records(records)
    assert status == 200 and control == []
    assert apply_ops(ops) == TICKET


def _error_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    assert "error" in records[-1], f"expected an error record last, got {records[-1]}"
    assert all("error" not in r for r in records[:-1])
    return records[-1]["error"]


# -- the upstream misbehaves ---------------------------------------------------------


def test_healthy_stream_rebuilds_the_document(server: LoopbackServer) -> None:
    _assert_serves_next(server)


@pytest.mark.parametrize(
    ("model", "kind", "code"),
    [
        ("cut", "upstream_error", "upstream_disconnected"),
        ("stall", "timeout", "upstream_timeout"),
        ("garbage-mid", "upstream_error", "upstream_bad_chunk"),
        ("wrong-type", "invalid_output", None),
        ("missing-field", "invalid_output", None),
        ("prose", "invalid_output", None),
        ("truncated", "length", "max_tokens"),
    ],
)
def test_upstream_fault_mid_stream(
    server: LoopbackServer, upstream: ScriptedUpstream, model: str, kind: str, code: str | None
) -> None:
    status, records = _post(server, model, TICKET_SCHEMA)
    assert status == 200
    error = _error_of(records)
    assert error["type"] == kind
    if code is not None:
        assert error["code"] == code
    assert error["message"] and "Traceback" not in error["message"]
    ops, _ = split_records(records)
    _check_prefix(upstream, model, ops)
    if model in ("cut", "stall", "garbage-mid"):
        assert ops, "the ops before the fault were delivered"
    if model in ("wrong-type", "missing-field"):  # valid JSON: every op went out first
        assert len(ops) == len(reference_ops(upstream.scripts[model].chunks))
    _assert_serves_next(server)


def test_stall_is_released_at_the_upstream(
    server: LoopbackServer, upstream: ScriptedUpstream
) -> None:
    _post(server, "stall", TICKET_SCHEMA)
    # The engine gave up and hung up; the upstream saw the client leave mid-stall.
    assert wait_until(lambda: upstream.active_streams == 0)
    assert upstream.last("stall").outcome == "stalled"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("http-500", "HTTP 500"),
        ("garbage-first", "not JSON"),
    ],
)
def test_upstream_fails_before_any_text(server: LoopbackServer, model: str, message: str) -> None:
    status, (body,) = _post(server, model, TICKET_SCHEMA)
    assert status == 502
    assert body["error"]["type"] == "upstream_error"
    assert message in body["error"]["message"]
    _assert_serves_next(server)


def test_request_timeout_ends_a_slow_stream(upstream: ScriptedUpstream) -> None:
    # The upstream never goes silent long enough for its own timeout; the server's
    # overall request_timeout (0.5 s against a ~3 s stream) ends it.
    engine = UpstreamEngine(upstream.base_url, timeout=UPSTREAM_TIMEOUT)
    with LoopbackServer(create_app(engine, ServerConfig(request_timeout=0.5))) as live:
        status, records = _post(live, "slow-ticket", TICKET_SCHEMA)
        assert status == 200
        error = _error_of(records)
        assert (error["type"], error["code"]) == ("timeout", "request_timeout")
        ops, _ = split_records(records)
        _check_prefix(upstream, "slow-ticket", ops)
        assert wait_until(lambda: upstream.active_streams == 0)
        log = upstream.last("slow-ticket")
        assert log.outcome == "disconnected"
        assert log.chunks_sent < len(upstream.scripts["slow-ticket"].chunks)


# -- the client misbehaves ------------------------------------------------------------


def test_client_disconnect_stops_the_upstream(
    server: LoopbackServer, upstream: ScriptedUpstream
) -> None:
    total = len(upstream.scripts["slow-ticket"].chunks)
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", server.url + "/v1/chat/completions", json=_body("slow-ticket", TICKET_SCHEMA)
        ) as response,
    ):
        assert response.status_code == 200
        received = b""
        for chunk in response.iter_raw():
            received += chunk
            if received.count(b"\n") >= 3:
                break
    # Leaving the `with` closed the connection mid-stream.
    assert wait_until(lambda: upstream.last("slow-ticket").outcome == "disconnected")
    assert upstream.last("slow-ticket").chunks_sent < total
    ops = [json.loads(line) for line in received.split(b"\n")[:-1]]
    _check_prefix(upstream, "slow-ticket", ops)
    _assert_serves_next(server)


@pytest.mark.slow
def test_slow_reader_gets_backpressure_not_buffering(
    server: LoopbackServer, upstream: ScriptedUpstream
) -> None:
    """While the client does not read, the server stops reading the upstream."""
    total = len(BIG_CHUNKS)
    transport = httpx.HTTPTransport(socket_options=SMALL_RCVBUF)
    with (
        httpx.Client(timeout=30, transport=transport) as client,
        client.stream("POST", server.url + "/v1/chat/completions", json=_body("big")) as response,
    ):
        chunks = response.iter_raw()
        received = [next(chunks)]
        # Not reading now. The upstream sends at full speed until every buffer on the
        # way is full, then its chunk counter must stand still, far below the total.
        assert wait_until(lambda: upstream.last("big").chunks_sent > 0)
        sent = _settled(lambda: upstream.last("big").chunks_sent)
        print(f"backpressure: the upstream stopped at chunk {sent} of {total}")
        assert sent < total // 2, f"{sent} of {total} chunks sent to a client that reads nothing"
        received.extend(chunks)  # read the rest: everything still arrives, in order
    ops = [json.loads(line) for line in b"".join(received).split(b"\n")[:-1]]
    document = apply_ops(ops)
    assert document == json.loads("".join(BIG_CHUNKS))
    assert upstream.last("big").outcome == "done"


def _settled(read: Any, quiet: float = 0.3, limit: float = 10.0) -> Any:
    """Poll `read()` until it has not changed for `quiet` seconds; return the value."""
    value, since, start = read(), time.monotonic(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() - start < limit:
        time.sleep(0.05)
        current = read()
        if current != value:
            value, since = current, time.monotonic()
    return value
