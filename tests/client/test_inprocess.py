"""The clients in-process: an engine in this process, driven by the server's own
pipeline (sync code on a private event-loop thread), and the OpenAI SDK served by the
app in this process.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

import pytest

from openbrace import AsyncClient, Client, InvalidOutputError, PatchStreamError
from openbrace.engines.base import Finish, GenerationRequest, MockEngine
from tests.client.replay import (
    DOCUMENT,
    OPS,
    TEXT,
    Ticket,
    ask,
    check_events,
    collect,
    mock_handler,
)


def test_in_process_async_and_sync_streams():
    seen: list[GenerationRequest] = []
    engine = MockEngine(mock_handler(TEXT, seen=seen))
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
    engine = MockEngine(mock_handler(bad, pieces=len(bad)))
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


def test_in_process_parses_the_body_as_the_server_does():
    """One parser: `max_completion_tokens` counts and a bad field is the server's 400."""
    seen: list[GenerationRequest] = []
    engine = MockEngine(mock_handler(TEXT, seen=seen))
    with Client(engine=engine) as client:
        client.generate(**ask(model="mock", extra={"max_completion_tokens": 5}))
        assert seen[-1].max_tokens == 5
        with pytest.raises(PatchStreamError) as info:
            list(client.stream(**ask(model="mock", extra={"top_p": 7})))
    assert info.value.status_code == 400 and info.value.error["param"] == "top_p"
    assert len(seen) == 1, "a refused body never reaches the engine"


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

    engine = MockEngine(mock_handler(TEXT), model_ids=("mock-1", "mock-2"))
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
