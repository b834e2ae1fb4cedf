"""The HTTP server over a scripted MockEngine, on a real uvicorn on loopback.

One engine serves every scenario: the last message's content names a script
(`"ok"`, `"midfail"`, `"stall"`, ...). Two servers per module: an open one with
short timers, and a strict one with keys and tight limits.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import jsonpatch
import pytest

from openbrace import wire
from openbrace.engines.base import (
    EngineRequestError,
    EngineUnavailableError,
    Finish,
    GenerationRequest,
    MockEngine,
    Usage,
)
from openbrace.exceptions import InvalidSchemaError, RequestError, UpstreamError
from openbrace.server.app import ServerConfig, create_app
from openbrace.server.limits import Gate
from tests.support.loopback import LoopbackServer, wait_until

SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string"},
        "steps": {"type": "array", "items": {"type": "string"}},
        "n": {"type": "integer"},
    },
    "required": ["intent"],
}
DOC_TEXT = '{"intent": "bil\u2028ling", "steps": ["a/b", "c~d"], "n": 12}'
PIECES = ['{"intent": "bil', '\u2028ling", "steps": ["a/', 'b", "c~d"], "n": 1', "2}"]
KEYS = ("key-one", "key-two")


class Script:
    """What the scripted engine did, for assertions from the test thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.yielded = 0
        self.closed = threading.Event()
        self.requests: list[GenerationRequest] = []


SEEN = Script()


async def handler(request: GenerationRequest) -> AsyncIterator[str | Finish]:
    script = request.messages[-1]["content"]
    SEEN.requests.append(request)
    if script == "reject":
        raise EngineRequestError("frobnicate is not supported", param="frobnicate")
    if script == "unavailable":
        raise EngineUnavailableError("the model is loading")
    if script == "badschema":
        raise InvalidSchemaError("unsupported keyword", pointer="/properties/x", keyword="not")
    if script == "echo":  # the request as the engine saw it
        yield json.dumps({"intent": json.dumps(request.messages), "steps": sorted(request.extra)})
        yield Finish()
        return
    if script == "endless":
        try:
            yield '{"intent": "x", "steps": ['
            while True:
                await asyncio.sleep(0.02)
                with SEEN.lock:
                    SEEN.yielded += 1
                yield '"step", '
        finally:
            SEEN.closed.set()
    if script == "flood":  # far more than socket buffers hold
        yield '{"intent": "x", "steps": ['
        for _ in range(400):
            yield '"' + "y" * 65536 + '", '
        yield '"z"]}'
        yield Finish()
        return
    pieces = {
        "garbage": ['{"intent": "a"', " and then some prose"],
        "breaks": ['{"intent": 5, "n": 1}'],  # valid JSON, wrong type for intent
        "length": ['{"intent": "a", "steps": ["x"'],
    }.get(script, PIECES)
    for i, piece in enumerate(pieces):
        if script == "slow":
            await asyncio.sleep(0.15)
        if script == "pause" and i == 1:
            await asyncio.sleep(0.5)
        if script == "stall" and i == 1:
            await asyncio.sleep(30)
        if script == "midfail" and i == 2:
            raise UpstreamError("the GPU caught fire", code="boom")
        yield piece
    yield Finish("length" if script == "length" else "stop", Usage(7, 11))


ENGINE = MockEngine(handler, model_ids=("mock", "mock-2"))


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    config = ServerConfig(keepalive=0.2, request_timeout=2.5)  # generous: busy CI machines
    with LoopbackServer(create_app(ENGINE, config), access_log=False) as s:
        yield s


@pytest.fixture(scope="module")
def strict() -> Iterator[LoopbackServer]:
    config = ServerConfig(api_keys=KEYS, max_body_bytes=2048, max_concurrent=1, max_queue=0)
    with LoopbackServer(create_app(ENGINE, config), access_log=False) as s:
        yield s


def body(script: str = "ok", stream: Any = "patch", **extra: Any) -> dict[str, Any]:
    return {
        "model": "mock",
        "messages": [{"role": "user", "content": script}],
        "stream": stream,
        "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}},
        **extra,
    }


def post(server: LoopbackServer, payload: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=payload, timeout=10, **kwargs)


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.content.endswith(b"\n")
    decoder = wire.NDJSONDecoder()
    return decoder.feed(response.content) + decoder.close()


def rebuild(records: list[dict[str, Any]]) -> Any:
    ops = [r for r in records if "op" in r]
    return jsonpatch.apply_patch(None, ops) if ops else None


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param
    return error


# -- the three stream forms ---------------------------------------------------------


def test_patch_ndjson_rebuilds_the_document(server: LoopbackServer) -> None:
    response = post(server, body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["cache-control"] == "no-cache"
    assert "content-encoding" not in response.headers
    records = ndjson(response)
    assert all("op" in r for r in records), "no done line unless include_usage"
    assert rebuild(records) == json.loads(DOC_TEXT)
    assert [r["path"] for r in records] == ["", "/intent", "/steps", "/steps/0", "/steps/1", "/n"]
    # U+2028 travels raw (ensure_ascii=False) and never splits a line.
    assert "\u2028".encode() in response.content


def test_patch_ndjson_include_usage_adds_done(server: LoopbackServer) -> None:
    response = post(server, body(stream_options={"include_usage": True}))
    records = ndjson(response)
    assert records[-1] == {
        "done": {
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18},
        }
    }
    assert rebuild(records[:-1]) == json.loads(DOC_TEXT)


def test_patch_sse_ids_and_done(server: LoopbackServer) -> None:
    response = post(server, body(), headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    ids = [line for line in response.text.split("\n") if line.startswith("id: ")]
    assert ids == [f"id: {i}" for i in range(6)]
    decoder = wire.SSEDecoder()
    records = decoder.feed(response.content) + decoder.close()
    assert records[-1]["done"]["finish_reason"] == "stop"
    assert rebuild(records[:-1]) == json.loads(DOC_TEXT)


def test_sse_sends_keepalives_while_idle(server: LoopbackServer) -> None:
    response = post(server, body("pause"), headers={"Accept": "text/event-stream"})
    assert wire.KEEPALIVE in response.content  # a 0.5 s pause, 0.2 s keep-alive
    decoder = wire.SSEDecoder()
    records = decoder.feed(response.content) + decoder.close()
    assert rebuild(records[:-1]) == json.loads(DOC_TEXT)


def test_stream_true_is_openai_chunks(server: LoopbackServer) -> None:
    response = post(server, body(stream=True, stream_options={"include_usage": True}))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == DOC_TEXT
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 18


def test_stream_false_is_one_completion(server: LoopbackServer) -> None:
    response = post(server, body(stream=False))
    assert response.status_code == 200
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-")
    assert completion["model"] == "mock"
    choice = completion["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": DOC_TEXT, "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert completion["usage"] == {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}


def test_default_model_and_text_parts(server: LoopbackServer) -> None:
    payload = body("echo")
    del payload["model"]
    payload["messages"] = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}],
        },
        {"role": "user", "content": "echo"},
    ]
    payload["frobnicate"] = 3
    records = ndjson(post(server, payload))
    document = rebuild(records)
    assert json.loads(document["intent"])[0] == {"role": "system", "content": "be brief"}
    assert document["steps"] == ["frobnicate"], "unknown fields reach the engine as extra"
    assert SEEN.requests[-1].model == "mock", "no model: the engine's first"


def test_models_endpoint(server: LoopbackServer) -> None:
    listed = httpx.get(f"{server.url}/v1/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["mock", "mock-2"]
    assert all(m["object"] == "model" for m in listed["data"])


# -- errors inside the stream --------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "error_type"),
    [
        ("midfail", "upstream_error"),
        ("garbage", "invalid_output"),
        ("breaks", "invalid_output"),
        ("length", "length"),
        ("stall", "timeout"),
    ],
)
def test_errors_after_the_first_op_travel_in_band(
    server: LoopbackServer, script: str, error_type: str
) -> None:
    response = post(server, body(script))
    assert response.status_code == 200
    records = ndjson(response)
    assert set(records[-1]) == {"error"}
    assert records[-1]["error"]["type"] == error_type
    assert all("op" in r for r in records[:-1])
    rebuild(records[:-1])  # the ops before the error still apply cleanly


def test_sse_error_event(server: LoopbackServer) -> None:
    response = post(server, body("midfail"), headers={"Accept": "text/event-stream"})
    assert "event: error\n" in response.text
    decoder = wire.SSEDecoder()
    records = decoder.feed(response.content) + decoder.close()
    assert records[-1]["error"]["type"] == "upstream_error"
    assert records[-1]["error"]["code"] == "boom"


def test_stream_true_error_chunk(server: LoopbackServer) -> None:
    response = post(server, body("midfail", stream=True))
    events = [e for e in response.text.split("\n\n") if e]
    assert "[DONE]" not in response.text
    assert json.loads(events[-1].removeprefix("data: "))["error"]["type"] == "upstream_error"


def test_stream_false_errors_become_statuses(server: LoopbackServer) -> None:
    assert_error(post(server, body("midfail", stream=False)), 502)
    assert assert_error(post(server, body("stall", stream=False)), 504)["type"] == "timeout"


# -- errors before the stream --------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "status", "param"),
    [
        ("reject", 400, "frobnicate"),
        ("unavailable", 503, None),
        ("badschema", 400, "response_format"),
    ],
)
@pytest.mark.parametrize("stream", ["patch", True, False])
def test_engine_refusals_are_statuses(
    server: LoopbackServer, script: str, status: int, param: str | None, stream: Any
) -> None:
    error = assert_error(post(server, body(script, stream=stream)), status, param)
    if script == "badschema":
        assert "not" in error["message"] and "/properties/x" in error["message"]


BAD_BODIES: list[tuple[Any, str | None]] = [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b'{"temperature": NaN}', None),
    ({**body(), "stream": "yes"}, "stream"),
    ({**body(), "temperature": "hot"}, "temperature"),
    ({**body(), "temperature": 7}, "temperature"),
    ({**body(), "max_tokens": 0}, "max_tokens"),
    ({**body(), "max_tokens": 10**40}, "max_tokens"),
    ({**body(), "seed": 1.5}, "seed"),
    ({**body(), "stop": [1]}, "stop"),
    ({**body(), "model": 5}, "model"),
    ({**body(), "messages": []}, "messages"),
    ({**body(), "messages": "hi"}, "messages"),
    ({**body(), "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({**body(), "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({**body(), "response_format": None}, "response_format"),
    ({**body(), "response_format": {"type": "text"}}, "response_format"),
    ({**body(), "response_format": "json"}, "response_format"),
    (
        {
            **body(),
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "schema": {"type": "object", "properties": {"a": {"type": "strin"}}},
                },
            },
        },
        "response_format",
    ),
    ({**body(), "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
]


@pytest.mark.parametrize(("payload", "param"), BAD_BODIES)
def test_bad_bodies_are_400(server: LoopbackServer, payload: Any, param: str | None) -> None:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
    )
    error = assert_error(response, 400, param)
    assert error["type"] == "invalid_request_error"


def test_schema_error_names_keyword_and_pointer(server: LoopbackServer) -> None:
    error = assert_error(post(server, BAD_BODIES[-2][0]), 400)
    assert "/properties/a/type" in error["message"] and "type" in error["message"]


def test_unknown_model_is_404(server: LoopbackServer) -> None:
    error = assert_error(post(server, body(model="gpt-17")), 404, "model")
    assert error["code"] == "model_not_found" and "mock" in error["message"]


def test_unknown_route_and_method(server: LoopbackServer) -> None:
    assert_error(httpx.get(f"{server.url}/v1/nothing"), 404)
    assert_error(httpx.get(f"{server.url}/v1/chat/completions"), 405)


# -- auth and limits -----------------------------------------------------------------


def test_auth(strict: LoopbackServer) -> None:
    missing = post(strict, body())
    error = assert_error(missing, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = post(strict, body(), headers={"Authorization": "Bearer key-on"})
    assert "key-on" not in wrong.text
    assert_error(wrong, 401)
    assert error["code"] == "invalid_api_key"
    assert_error(post(strict, body(), headers={"Authorization": "Basic key-one"}), 401)
    for key in KEYS:
        ok = post(strict, body(), headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and rebuild(ndjson(ok)) == json.loads(DOC_TEXT)
    assert_error(httpx.get(f"{strict.url}/v1/models"), 401)
    assert_error(httpx.get(f"{strict.url}/metrics"), 401)
    assert httpx.get(f"{strict.url}/healthz").status_code == 200


def test_body_too_large(strict: LoopbackServer) -> None:
    auth = {"Authorization": f"Bearer {KEYS[0]}"}
    big = body(padding="x" * 4096)
    assert_error(post(strict, big, headers=auth), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        data = json.dumps(big).encode()
        for i in range(0, len(data), 512):
            yield data[i : i + 512]

    response = httpx.post(f"{strict.url}/v1/chat/completions", content=chunks(), headers=auth)
    assert_error(response, 413)


def test_busy_server_answers_429_at_once(strict: LoopbackServer) -> None:
    auth = {"Authorization": f"Bearer {KEYS[0]}"}
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", f"{strict.url}/v1/chat/completions", json=body("slow"), headers=auth
        ) as first,
    ):
        assert first.status_code == 200  # holds the only slot, with no queue
        busy = post(strict, body(), headers=auth)
        error = assert_error(busy, 429)
        assert busy.headers["retry-after"] == "1"
        assert error["type"] == "rate_limit_error"
        rest = first.read()
    assert rebuild(ndjson(httpx.Response(200, content=rest))) == json.loads(DOC_TEXT)
    assert post(strict, body(), headers=auth).status_code == 200  # the slot is free again


# -- disconnects, metrics, the rest ---------------------------------------------------


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


def test_metrics(server: LoopbackServer) -> None:
    post(server, body())
    post(server, body("midfail"))
    post(server, body(model="nope"))
    text = httpx.get(f"{server.url}/metrics").text
    assert httpx.get(f"{server.url}/metrics").headers["content-type"].startswith("text/plain")
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert int(samples['openbrace_requests_total{route="/v1/chat/completions",status="200"}']) >= 2
    assert int(samples['openbrace_requests_total{route="/v1/chat/completions",status="404"}']) >= 1
    assert int(samples['openbrace_errors_total{stage="stream",type="upstream_error"}']) >= 1
    assert int(samples["openbrace_ops_sent_total"]) >= 6
    assert int(samples["openbrace_time_to_first_op_seconds_count"]) >= 2
    assert samples["openbrace_streams_in_flight"] == "0"
    assert "# TYPE openbrace_time_to_first_op_seconds histogram" in text


def test_health_and_playground(server: LoopbackServer) -> None:
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_cors_is_off_by_default_and_configurable(server: LoopbackServer) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    response = httpx.options(f"{server.url}/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    app = create_app(ENGINE, ServerConfig(cors_origins=("https://ui.example",)))
    with LoopbackServer(app, access_log=False) as s:
        ok = httpx.options(
            f"{s.url}/v1/chat/completions", headers={**preflight, "Origin": "https://ui.example"}
        )
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        other = httpx.options(f"{s.url}/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in other.headers


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


def test_serve_banner_says_whether_the_server_is_open() -> None:
    from openbrace.cli import _serve_banner

    open_local = _serve_banner("local model m", "127.0.0.1", 8000, ())
    assert "no API key configured: the server is open" in open_local
    assert not any("WARNING" in line for line in open_local)
    exposed = _serve_banner("local model m", "0.0.0.0", 8000, ())
    assert any(line.startswith("WARNING: 0.0.0.0 is not a loopback") for line in exposed)
    keyed = _serve_banner("local model m", "0.0.0.0", 8000, ("sekrit",))
    assert "1 API key(s) configured" in keyed[1] and "sekrit" not in " ".join(keyed)
    assert not any("WARNING" in line for line in keyed)


# -- the pieces on their own ----------------------------------------------------------


def test_gate_bounds_concurrency_and_queue() -> None:
    gate = Gate(limit=2, queue=1, wait=5)
    running = peak = 0
    refused = 0

    async def job() -> None:
        nonlocal running, peak, refused
        try:
            await gate.acquire()
        except RequestError as exc:
            assert exc.status == 429
            refused += 1
            return
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.05)
        running -= 1
        gate.release()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(job)

    anyio.run(main)
    assert peak == 2 and refused == 2  # 2 run, 1 waits, 2 are refused at once
    assert gate.active == 0 and gate.waiting == 0


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
        assert app.state.metrics.errors["stream", "timeout"] == 1
