"""The endpoints over the scripted engine: the three stream forms, models, health, CORS."""

from __future__ import annotations

import json

import httpx
import pytest

from openbrace import wire
from openbrace.server.app import ServerConfig, create_app
from tests.server.conftest import asgi_client
from tests.server.scripted import DOC_TEXT, ENGINE, SEEN, body, ndjson, post, rebuild

pytestmark = pytest.mark.anyio


async def test_patch_ndjson_rebuilds_the_document(client: httpx.AsyncClient) -> None:
    response = await post(client, body())
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


async def test_patch_ndjson_include_usage_adds_done(client: httpx.AsyncClient) -> None:
    response = await post(client, body(stream_options={"include_usage": True}))
    records = ndjson(response)
    assert records[-1] == {
        "done": {
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18},
        }
    }
    assert rebuild(records[:-1]) == json.loads(DOC_TEXT)


async def test_patch_sse_ids_and_done(client: httpx.AsyncClient) -> None:
    response = await post(client, body(), headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    ids = [line for line in response.text.split("\n") if line.startswith("id: ")]
    assert ids == [f"id: {i}" for i in range(6)]
    decoder = wire.SSEDecoder()
    records = decoder.feed(response.content) + decoder.close()
    assert records[-1]["done"]["finish_reason"] == "stop"
    assert rebuild(records[:-1]) == json.loads(DOC_TEXT)


async def test_sse_sends_keepalives_while_idle(client: httpx.AsyncClient) -> None:
    response = await post(client, body("pause"), headers={"Accept": "text/event-stream"})
    assert wire.KEEPALIVE in response.content  # a 0.5 s pause, 0.2 s keep-alive
    decoder = wire.SSEDecoder()
    records = decoder.feed(response.content) + decoder.close()
    assert rebuild(records[:-1]) == json.loads(DOC_TEXT)


async def test_stream_true_is_openai_chunks(client: httpx.AsyncClient) -> None:
    response = await post(client, body(stream=True, stream_options={"include_usage": True}))
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


async def test_stream_false_is_one_completion(client: httpx.AsyncClient) -> None:
    response = await post(client, body(stream=False))
    assert response.status_code == 200
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-")
    assert completion["model"] == "mock"
    choice = completion["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": DOC_TEXT, "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert completion["usage"] == {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}


async def test_default_model_and_text_parts(client: httpx.AsyncClient) -> None:
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
    records = ndjson(await post(client, payload))
    document = rebuild(records)
    assert json.loads(document["intent"])[0] == {"role": "system", "content": "be brief"}
    assert document["steps"] == ["frobnicate"], "unknown fields reach the engine as extra"
    assert SEEN.requests[-1].model == "mock", "no model: the engine's first"


async def test_models_endpoint(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/models")).json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["mock", "mock-2"]
    assert all(m["object"] == "model" for m in listed["data"])


async def test_routes_are_served_without_the_v1_prefix_too(client: httpx.AsyncClient) -> None:
    assert (await client.get("/models")).json() == (await client.get("/v1/models")).json()
    response = await client.post("/chat/completions", json=body())
    assert rebuild(ndjson(response)) == json.loads(DOC_TEXT)


async def test_health_and_playground(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


async def test_cors_is_off_by_default_and_configurable(client: httpx.AsyncClient) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    response = await client.options("/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    app = create_app(ENGINE, ServerConfig(cors_origins=("https://ui.example",)))
    async with asgi_client(app) as cors:
        ok = await cors.options(
            "/v1/chat/completions", headers={**preflight, "Origin": "https://ui.example"}
        )
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        other = await cors.options("/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in other.headers
