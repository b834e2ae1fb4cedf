"""Errors over the scripted engine: in-band records after the first op, statuses before it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from openbrace import wire
from openbrace.engines.base import MockEngine
from openbrace.server.app import ServerConfig, create_app
from tests.server.conftest import asgi_client
from tests.server.scripted import ENGINE, assert_error, body, handler, ndjson, post, rebuild

pytestmark = pytest.mark.anyio


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
async def test_errors_after_the_first_op_travel_in_band(
    client: httpx.AsyncClient, script: str, error_type: str
) -> None:
    response = await post(client, body(script))
    assert response.status_code == 200
    records = ndjson(response)
    assert set(records[-1]) == {"error"}
    assert records[-1]["error"]["type"] == error_type
    assert all("op" in r for r in records[:-1])
    rebuild(records[:-1])  # the ops before the error still apply cleanly


async def test_sse_error_event(client: httpx.AsyncClient) -> None:
    response = await post(client, body("midfail"), headers={"Accept": "text/event-stream"})
    assert "event: error\n" in response.text
    decoder = wire.SSEDecoder()
    records = decoder.feed(response.content) + decoder.close()
    assert records[-1]["error"]["type"] == "upstream_error"
    assert records[-1]["error"]["code"] == "boom"


async def test_stream_true_error_chunk(client: httpx.AsyncClient) -> None:
    response = await post(client, body("midfail", stream=True))
    events = [e for e in response.text.split("\n\n") if e]
    assert "[DONE]" not in response.text
    assert json.loads(events[-1].removeprefix("data: "))["error"]["type"] == "upstream_error"


async def test_stream_false_errors_become_statuses(client: httpx.AsyncClient) -> None:
    assert_error(await post(client, body("midfail", stream=False)), 502)
    assert assert_error(await post(client, body("stall", stream=False)), 504)["type"] == "timeout"


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
async def test_engine_refusals_are_statuses(
    client: httpx.AsyncClient, script: str, status: int, param: str | None, stream: Any
) -> None:
    error = assert_error(await post(client, body(script, stream=stream)), status, param)
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
async def test_bad_bodies_are_400(
    client: httpx.AsyncClient, payload: Any, param: str | None
) -> None:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = await client.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    error = assert_error(response, 400, param)
    assert error["type"] == "invalid_request_error"


async def test_schema_error_names_keyword_and_pointer(client: httpx.AsyncClient) -> None:
    error = assert_error(await post(client, BAD_BODIES[-2][0]), 400)
    assert "/properties/a/type" in error["message"] and "type" in error["message"]


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    error = assert_error(await post(client, body(model="gpt-17")), 404, "model")
    assert error["code"] == "model_not_found" and "mock" in error["message"]


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nothing"), 404)
    response = await client.get("/v1/chat/completions")
    assert_error(response, 405)
    assert response.headers["allow"] == "POST"


class Broken(MockEngine):
    """An engine whose model list fails with a bug of its own."""

    async def models(self) -> Any:
        raise RuntimeError("db-password=hunter2")


async def test_a_bug_before_streaming_is_a_plain_500(caplog: pytest.LogCaptureFixture) -> None:
    """Unexpected exceptions answer a generic 500, logged for the operator, counted."""
    app: Starlette = create_app(Broken(handler))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as broken:
        error = assert_error(await broken.get("/v1/models"), 500)
    assert error == {
        "message": "internal server error",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert "hunter2" in caplog.text
    metrics = app.state.metrics
    assert metrics.sample("openbrace_errors_total", stage="before", type="server_error") == 1
    assert metrics.sample("openbrace_requests_total", route="/v1/models", status="500") == 1


async def test_the_playground_page_missing_is_a_404(tmp_path: Path) -> None:
    app = create_app(ENGINE, ServerConfig(static_dir=tmp_path))
    async with asgi_client(app) as client:
        assert assert_error(await client.get("/"), 404)["code"] == "not_found"
