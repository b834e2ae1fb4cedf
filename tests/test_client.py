"""The SDK clients against a real HTTP server on loopback, in-process, and client-side.

The HTTP tests run a small Starlette app under uvicorn on 127.0.0.1 that replays a
recorded op stream (the ops the PatchEmitter made from a real document) through the
real server framers (`wire.ndjson_frames` / `wire.sse_frames`), in several ways:
whole, cut, refused, tiny network writes, or holding the connection open.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import openbrace
from openbrace import (
    AsyncClient,
    AsyncDotTxt,
    Client,
    DotTxt,
    InvalidOutputError,
    InvalidSchemaError,
    LengthError,
    PatchEmitter,
    PatchStreamError,
    ProtocolError,
    StreamError,
    UpstreamError,
    wire,
)
from openbrace.engines.base import Finish, GenerationRequest, MockEngine, Usage
from tests.support import LoopbackServer, Script, ScriptedUpstream, wait_until

# A recorded document: line breakers that `str.splitlines` would split on, escapes, nesting.
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


# --- the replay server -----------------------------------------------------------------


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
        records = self.records(scenario)
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


@pytest.fixture(scope="module")
def replay_server() -> Iterator[tuple[Replay, str]]:
    """The replay app on a real uvicorn at 127.0.0.1; yields it and its base URL."""
    replay = Replay()
    with LoopbackServer(replay.app(), access_log=False) as server:
        yield replay, server.url + "/v1"


@pytest.fixture
def replay(replay_server: tuple[Replay, str]) -> Replay:
    replay_server[0].__init__()  # fresh records for each test
    return replay_server[0]


@pytest.fixture
def url(replay_server: tuple[Replay, str]) -> str:
    return replay_server[1]


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


# --- HTTP: streams -------------------------------------------------------------------


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


# --- HTTP: leaving early ---------------------------------------------------------------


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


# --- generate ---------------------------------------------------------------------------


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


# --- configuration ----------------------------------------------------------------------


def test_configuration_order(monkeypatch):
    for name in ("OPENBRACE_API_KEY", "OPENBRACE_BASE_URL", "DOTTXT_API_KEY", "DOTTXT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    client = Client()
    assert (client.api_key, client.base_url, client.in_process) == (None, None, True)
    monkeypatch.setenv("DOTTXT_API_KEY", "dt-key")
    monkeypatch.setenv("DOTTXT_BASE_URL", "http://127.0.0.1:9/dottxt/")
    client = Client()
    assert (client.api_key, client.base_url) == ("dt-key", "http://127.0.0.1:9/dottxt")
    monkeypatch.setenv("OPENBRACE_API_KEY", "ob-key")
    monkeypatch.setenv("OPENBRACE_BASE_URL", "http://127.0.0.1:9/ob")
    client = AsyncClient()
    assert (client.api_key, client.base_url) == ("ob-key", "http://127.0.0.1:9/ob")
    client = AsyncClient("arg-key", "http://127.0.0.1:9/arg")
    assert (client.api_key, client.base_url, client.in_process) == (
        "arg-key",
        "http://127.0.0.1:9/arg",
        False,
    )
    engine = MockEngine(_handler(TEXT))
    assert Client(engine=engine).in_process  # an explicit engine beats the environment
    assert "arg-key" not in repr(client)
    with pytest.raises(ValueError, match="not both"):
        Client(base_url="http://127.0.0.1:9", engine=engine)
    with pytest.raises(ValueError, match="patch must be"):
        Client(base_url="http://127.0.0.1:9", patch="proxy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="framing must be"):
        Client(framing="xml")  # type: ignore[arg-type]


# --- in-process -------------------------------------------------------------------------


def _handler(text: str, pieces: int = 3, seen: list[GenerationRequest] | None = None) -> Any:
    async def handler(request: GenerationRequest) -> AsyncIterator[str | Finish]:
        if seen is not None:
            seen.append(request)
        step = max(1, len(text) // pieces)
        for i in range(0, len(text), step):
            await asyncio.sleep(0)
            yield text[i : i + step]
        yield Finish(usage=Usage(3, 4))

    return handler


def test_in_process_async_and_sync_streams():
    seen: list[GenerationRequest] = []
    engine = MockEngine(_handler(TEXT, seen=seen))
    keys = ("intent", "urgency", "steps", "reply", "meta")
    schema = {"type": "object", "properties": {key: {} for key in keys}}
    events = asyncio.run(
        collect(AsyncClient(engine=engine).stream(**ask(model="mock", response_format=schema)))
    )
    check_events(events)
    request = seen[-1]
    assert request.schema == {**schema, "additionalProperties": False}  # normalised
    assert request.messages == [{"role": "user", "content": "Refund me"}]
    with Client(engine=engine) as client:
        check_events(list(client.stream(**ask(model="mock", extra={"stop": "\n", "x": 1}))))
        assert client.generate(**ask(model="mock", response_format=Ticket)).intent == "billing"
    assert (seen[-2].stop, seen[-2].extra) == (["\n"], {"x": 1})


def test_in_process_error_record_is_the_same_typed_error():
    bad = '{"intent": "billing", "steps": [1, }'
    engine = MockEngine(_handler(bad, pieces=len(bad)))
    with pytest.raises(InvalidOutputError) as info:
        asyncio.run(collect(AsyncClient(engine=engine).stream(**ask(model="mock"))))
    assert info.value.type == "invalid_output"
    assert info.value.snapshot == {"intent": "billing", "steps": [1]}
    with Client(engine=engine) as client, pytest.raises(InvalidOutputError):
        list(client.stream(**ask(model="mock")))


def test_in_process_engine_refusal_is_a_patch_stream_error():
    from openbrace.engines.base import EngineRequestError

    async def refuse(request: GenerationRequest) -> AsyncIterator[str | Finish]:
        raise EngineRequestError("unknown model 'x'", status=404, param="model")
        yield ""  # pragma: no cover - makes this an async generator

    with Client(engine=MockEngine(refuse)) as client, pytest.raises(PatchStreamError) as info:
        list(client.stream(**ask(model="x")))
    assert info.value.status_code == 404 and info.value.error["param"] == "model"


class Gate:
    """An engine that yields one piece, then waits; it records being closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.started = threading.Event()

    async def handler(self, request: GenerationRequest) -> AsyncIterator[str | Finish]:
        try:
            yield '{"intent": "billing", '
            self.started.set()
            await asyncio.sleep(20)
            yield "}"
            yield Finish()
        finally:
            self.closed.set()


def test_in_process_sync_break_stops_the_engine():
    gate = Gate()
    with Client(engine=MockEngine(gate.handler)) as client:
        for event in client.stream(**ask(model="mock")):
            if event.field == "intent":
                break
        assert gate.closed.is_set()  # closed synchronously, on the private loop


def test_in_process_async_cancel_and_aclose_stop_the_engine():
    async def main() -> None:
        gate = Gate()
        client = AsyncClient(engine=MockEngine(gate.handler))
        task = asyncio.create_task(collect(client.stream(**ask(model="mock"))))
        await asyncio.to_thread(gate.started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gate.closed.is_set()

        gate = Gate()
        client = AsyncClient(engine=MockEngine(gate.handler))
        async with client.stream(**ask(model="mock")) as stream:
            assert (await stream.__anext__()).op == OPS[0]
        assert gate.closed.is_set()

    asyncio.run(main())


def test_in_process_chat_and_models_are_the_openai_sdk():
    import openai

    engine = MockEngine(_handler(TEXT), model_ids=("mock-1", "mock-2"))
    with Client(engine=engine) as client:
        assert isinstance(client.chat.completions, openai.resources.chat.Completions)
        assert [m.id for m in client.models.list().data] == ["mock-1", "mock-2"]
        completion = client.chat.completions.create(
            model="mock-1", messages=[{"role": "user", "content": "hi"}]
        )
        assert json.loads(completion.choices[0].message.content) == DOCUMENT

    async def main() -> list[str]:
        async with AsyncClient(engine=engine) as client:
            assert isinstance(client.chat.completions, openai.resources.chat.AsyncCompletions)
            return [m.id for m in (await client.models.list()).data]

    assert asyncio.run(main()) == ["mock-1", "mock-2"]


def test_http_chat_and_models_point_at_the_base_url(url):
    client = Client("sk-x", url, max_retries=0)
    sdk = client._openai_client()
    assert str(sdk.base_url).rstrip("/") == url and sdk.api_key == "sk-x"
    assert sdk.max_retries == 0  # constructor keywords reach openai.OpenAI, as in dottxt
    assert client.models is sdk.models


# --- client-side patches over a plain OpenAI-compatible server --------------------------


def test_client_side_patches_over_a_plain_openai_server():
    with ScriptedUpstream() as upstream:
        upstream.add("plain", Script.from_text(TEXT))
        upstream.add("broken", Script.from_text('{"intent": "billing", "steps": [1,, 2]}'))

        async def main() -> list[Any]:
            async with AsyncClient("up-key", upstream.base_url, patch="client") as client:
                return await collect(client.stream(**ask(model="plain")))

        check_events(asyncio.run(main()))
        log = upstream.last("plain")
        assert log.body["stream"] is True and log.authorization == "Bearer up-key"

        with Client(base_url=upstream.base_url, patch="client") as client:
            check_events(list(client.stream(**ask(model="plain"))))
            with pytest.raises(InvalidOutputError) as info:
                list(client.stream(**ask(model="broken")))
            assert info.value.snapshot == {"intent": "billing", "steps": [1]}
            with pytest.raises(PatchStreamError) as refused:
                list(client.stream(**ask(model="unknown")))
            assert refused.value.status_code == 404


def test_client_side_patches_report_a_cut_upstream():
    with ScriptedUpstream() as upstream:
        upstream.add("cut", Script.from_text(TEXT, fault="close", fault_after=4))
        with Client(base_url=upstream.base_url, patch="client") as client:
            events = []
            with pytest.raises(UpstreamError) as info:
                for event in client.stream(**ask(model="cut")):
                    events.append(event)
        assert info.value.snapshot == (events[-1].snapshot if events else None)
        assert wait_until(lambda: upstream.open_connections == 0)


# --- drop-in for the dottxt SDK ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("AsyncClient.stream", "AsyncDotTxt.stream"),
        ("Client.generate", "DotTxt.generate"),
        ("AsyncClient.generate", "AsyncDotTxt.generate"),
        ("Client.__init__", "DotTxt.__init__"),
        ("AsyncClient.__init__", "AsyncDotTxt.__init__"),
    ],
)
def test_signatures_accept_every_dottxt_call(ours, theirs):
    """Every parameter of dottxt 0.3 exists here, callable the same way, same default."""
    import inspect

    dottxt = pytest.importorskip("dottxt")
    mine = inspect.signature(_attr(openbrace, ours)).parameters
    for name, param in inspect.signature(_attr(dottxt, theirs)).parameters.items():
        if param.kind is param.VAR_KEYWORD:
            assert any(p.kind is p.VAR_KEYWORD for p in mine.values()), name
            continue
        assert name in mine, f"{ours} lacks {name!r}"
        assert mine[name].default == param.default, name
        if param.kind is param.KEYWORD_ONLY:
            assert mine[name].kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD), name


def _attr(module: Any, dotted: str) -> Any:
    cls, name = dotted.split(".")
    return getattr(getattr(module, cls), name)


def test_dottxt_sdk_reads_our_ndjson_frames(replay, url):
    """The real dottxt client parses the frames our server framers write."""
    dottxt = pytest.importorskip("dottxt")

    async def main() -> list[Any]:
        client = dottxt.AsyncDotTxt(api_key="k", base_url=url)
        try:
            return [e async for e in client.stream(**ask())]
        finally:
            await client.close()

    events = asyncio.run(main())
    assert [e.op for e in events] == OPS  # U+2028 and U+0085 inside values included
    # (Not the snapshot: dottxt 0.3's apply_add does not unescape RFC 6901 `~1`.)


def test_one_async_client_across_event_loops(replay, url):
    client = AsyncClient(base_url=url)  # created once, used under two asyncio.run()s
    for _ in range(2):
        assert asyncio.run(client.generate(**ask())) == DOCUMENT
    asyncio.run(client.close())


# --- the README example, on the real embedded model ---------------------------------------


@pytest.mark.model
def test_readme_api_example_runs(local_engine, monkeypatch, capsys, tmp_path):
    """The example in README's API section runs as written, in-process on the real model."""
    import ast
    import re
    import runpy
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("<!-- section: api (core) -->", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    for name in ("OPENBRACE_BASE_URL", "DOTTXT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    script = tmp_path / "readme_example.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="readme_example")  # in sys.modules while it runs
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"route to the (billing|technical|account) queue", lines[0])
    document = ast.literal_eval(lines[-1])
    assert list(document) == ["intent", "urgency", "reply"]


# --- the public surface -------------------------------------------------------------------


def test_exported_members():
    """`openbrace.__all__` lists exactly the public names (httpx `test_exported_members`)."""
    public = {
        name
        for name, value in vars(openbrace).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert openbrace.__all__ == sorted(openbrace.__all__)
    assert set(openbrace.__all__) == public
    for name in openbrace.__all__:
        assert getattr(openbrace, name).__doc__, f"{name} has no docstring"
    for module in (openbrace.client, openbrace.schema, openbrace.wire):
        assert all(hasattr(module, name) for name in module.__all__)
    assert openbrace.DotTxt is openbrace.Client and openbrace.AsyncDotTxt is openbrace.AsyncClient
