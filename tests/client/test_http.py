"""The clients over HTTP against the replay server on loopback: streams, leaving early,
`generate`, and the OpenAI SDK pointed at the base URL.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import openbrace
from openbrace import (
    AsyncClient,
    AsyncDotTxt,
    Client,
    DotTxt,
    InvalidOutputError,
    InvalidSchemaError,
    LengthError,
    StreamError,
    UpstreamError,
    wire,
)
from tests.client.replay import DOCUMENT, OPS, SCHEMA, Ticket, ask, check_events, collect

# --- streams -------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_async_stream_over_http(replay, url, framing):
    client = AsyncClient(api_key="sk-test", base_url=url + "/", framing=framing)
    events = asyncio.run(collect(client.stream(**ask(temperature=0.2, extra={"top_p": 0.5}))))
    check_events(events)
    headers, body = replay.requests[-1]
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["user-agent"] == f"openbrace/{openbrace.__version__}"
    assert headers["accept"] == (wire.SSE if framing == "sse" else wire.NDJSON)
    assert body == {
        "top_p": 0.5,
        "model": "ok",
        "messages": [{"role": "user", "content": "Refund me"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": SCHEMA},
        },
        "temperature": 0.2,
        "stream": "patch",
    }


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_sync_stream_over_http(replay, url, framing):
    with Client(base_url=url, framing=framing) as client:
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        events = list(client.stream(**ask(input=messages, max_tokens=64, seed=7)))
    check_events(events)
    headers, body = replay.requests[-1]
    assert "authorization" not in headers  # no key anywhere: none sent
    assert body["messages"] == messages and (body["max_tokens"], body["seed"]) == (64, 7)


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_frames_split_into_tiny_network_writes(replay, url, framing):
    client = AsyncClient(base_url=url, framing=framing)
    check_events(asyncio.run(collect(client.stream(**ask(model="tiny")))))
    with Client(base_url=url, framing=framing) as sync:
        check_events(list(sync.stream(**ask(model="tiny"))))


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_error_record_raises_typed_error_with_snapshot(replay, url, framing):
    async def main() -> tuple[list[Any], LengthError]:
        events = []
        with pytest.raises(LengthError) as info:
            async for event in AsyncClient(base_url=url, framing=framing).stream(
                **ask(model="length")
            ):
                events.append(event)
        return events, info.value

    events, error = asyncio.run(main())
    assert [e.op for e in events] == OPS[:5]  # nothing delivered is lost
    assert isinstance(error, StreamError)
    assert (error.type, error.code, error.message) == ("length", "m", "max_tokens ran out")
    assert error.snapshot == events[-1].snapshot

    with Client(base_url=url, framing=framing) as client:
        stream = client.stream(**ask(model="length"))
        assert [next(stream).op for _ in range(5)] == OPS[:5]
        with pytest.raises(LengthError) as info:
            next(stream)
    assert info.value.snapshot == error.snapshot


def test_mock_transport_one_byte_chunks():
    """`transport=` takes an httpx transport: here bytes arrive one at a time, no network."""
    import httpx

    error = {"error": {"message": "upstream died", "type": "upstream_error", "code": None}}
    data = b"".join(wire.encode_ndjson(r) for r in [*OPS[:6], error])

    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["stream"] == "patch"
        return httpx.Response(200, content=iter([data[i : i + 1] for i in range(len(data))]))

    client = Client(base_url="http://mock.invalid/v1", transport=httpx.MockTransport(handler))
    events = []
    with pytest.raises(UpstreamError) as info:
        for event in client.stream(**ask()):
            events.append(event)
    assert [e.op for e in events] == OPS[:6]
    assert info.value.snapshot == events[-1].snapshot


# --- leaving early -------------------------------------------------------------------------


def test_async_context_manager_closes_the_connection_on_break(replay, url):
    async def main() -> Any:
        async with AsyncClient(base_url=url).stream(**ask(model="hang")) as stream:
            async for event in stream:  # noqa: B007 - the first one is enough
                break
        return event

    assert asyncio.run(main()).op == OPS[0]
    assert replay.disconnected.wait(10)


def test_bare_async_for_break_closes_the_connection(replay, url):
    async def main() -> None:
        client = AsyncClient(base_url=url, framing="sse")
        async for _ in client.stream(**ask(model="hang")):
            break
        gc.collect()  # the stream object is gone: its generator finalizer closes it
        await asyncio.to_thread(replay.disconnected.wait, 10)

    asyncio.run(main())
    assert replay.disconnected.is_set()


def test_cancellation_closes_the_connection(replay, url):
    async def main() -> None:
        stream = AsyncClient(base_url=url).stream(**ask(model="hang"))

        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await asyncio.to_thread(replay.hanging.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert replay.disconnected.wait(10)


def test_sync_break_closes_the_connection(replay, url):
    with Client(base_url=url) as client:
        for _ in client.stream(**ask(model="hang")):
            break
        assert replay.disconnected.wait(10)
        replay.disconnected.clear()
        stream = client.stream(**ask(model="hang"))
        assert next(stream).op == OPS[0]
        stream.close()  # closing the generator explicitly
        assert replay.disconnected.wait(10)


def test_aclose_closes_the_connection(replay, url):
    async def main() -> None:
        stream = AsyncClient(base_url=url).stream(**ask(model="hang"))
        assert (await stream.__anext__()).op == OPS[0]
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()

    asyncio.run(main())
    assert replay.disconnected.wait(10)


# --- generate ------------------------------------------------------------------------------


def test_generate_returns_a_model_instance_or_plain_json(replay, url):
    async def main() -> tuple[Any, Any]:
        client = AsyncDotTxt(base_url=url)
        model = await client.generate(**ask(response_format=Ticket))
        data = await client.generate(**ask(response_format=json.dumps(SCHEMA), top_p=0.9))
        await client.close()
        return model, data

    model, data = asyncio.run(main())
    assert isinstance(model, Ticket) and model.steps[1] == "refund it"
    assert data == DOCUMENT
    assert replay.requests[-1][1]["top_p"] == 0.9  # dottxt passes **extra into the body
    with DotTxt(base_url=url) as client:
        assert client.generate(**ask(response_format=Ticket)) == model


def test_generate_refuses_output_that_does_not_fit_the_model(replay, url):
    class Narrow(BaseModel):
        intent: Literal["technical"]

    with Client(base_url=url) as client, pytest.raises(InvalidOutputError) as info:
        client.generate(**ask(response_format=Narrow))
    assert info.value.snapshot == DOCUMENT


def test_bad_schema_fails_before_any_request(replay, url):
    client = Client(base_url=url)
    with pytest.raises(InvalidSchemaError, match="/properties/a/type"):
        client.stream(**ask(response_format={"properties": {"a": {"type": "nope"}}}))
    with pytest.raises(TypeError, match="prompt string or a list"):
        client.stream(**ask(input=42))
    assert replay.requests == []


# --- connection pools and the OpenAI SDK ---------------------------------------------------


def test_one_async_client_across_event_loops(replay, url):
    client = AsyncClient(base_url=url)  # created once, used under two asyncio.run()s
    for _ in range(2):
        assert asyncio.run(client.generate(**ask())) == DOCUMENT
    asyncio.run(client.close())


def test_http_chat_and_models_point_at_the_base_url(url):
    client = Client("sk-x", url, max_retries=0)
    sdk = client._openai_client()
    assert str(sdk.base_url).rstrip("/") == url and sdk.api_key == "sk-x"
    assert sdk.max_retries == 0  # constructor keywords reach openai.OpenAI, as in dottxt
    assert client.models is sdk.models
