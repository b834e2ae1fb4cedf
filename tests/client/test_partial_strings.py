"""`stream(..., partial_strings=True)`: `TextEvent`s for the pieces of string values,
between the usual `PatchEvent`s, whichever way the stream travels (in-process, HTTP
NDJSON and SSE to a real server on loopback, `patch="client"` to a plain
OpenAI-compatible server). Code that does not ask sees exactly today's events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from openbrace import AsyncClient, Client, PatchEvent, TextEvent
from openbrace.engines.base import Finish, GenerationRequest, MockEngine
from openbrace.server.app import create_app
from tests.support import LoopbackServer, Script, ScriptedUpstream

# Quotes, backslashes, escapes cut in half, non-ASCII and emoji (one as a surrogate pair
# escape split between chunks), in an object member, an array item and a nested object.
PIECES = [
    '{"intent": "bil',
    'ling", "reply": "Dear \\"Jane\\", your caf\\u00',
    "e9 order ☕ is on its way \\",
    "\\ back\\\\slash \\ud83d",
    '\\ude00 ok", "steps": ["a\\nb", "naïve 🧪"], "meta": {"note": "",',
    ' "n": 3}}',
]
TEXT = "".join(PIECES)
DOCUMENT = json.loads(TEXT)
SCHEMA = {"type": "object"}


async def pieces(request: GenerationRequest) -> AsyncIterator[str | Finish]:
    for piece in PIECES:
        await asyncio.sleep(0)
        yield piece
    yield Finish()


def ask() -> dict[str, Any]:
    return {"model": "mock", "input": "write", "response_format": SCHEMA}


def check(events: list[Any]) -> None:
    """Texts rebuild each string value and precede its op; the ops are today's."""
    texts = [e for e in events if isinstance(e, TextEvent)]
    ops = [e for e in events if isinstance(e, PatchEvent)]
    assert len(events) == len(texts) + len(ops) and texts
    assert ops[-1].snapshot == DOCUMENT
    so_far: dict[str, str] = {}
    for event in events:
        if isinstance(event, TextEvent):
            so_far[event.path] = so_far.get(event.path, "") + event.text
            assert event.so_far == so_far[event.path] and event.field == event.path[1:]
        elif isinstance(event.value, str):
            assert so_far.pop(event.path, "") == event.value
    assert so_far == {}
    reply = [e.text for e in texts if e.path == "/reply"]
    assert len(reply) >= 3  # it came in pieces, before its op
    assert "".join(reply) == 'Dear "Jane", your café order ☕ is on its way \\ back\\slash 😀 ok'


def plain(events: list[Any]) -> list[dict[str, Any]]:
    return [e.op for e in events if isinstance(e, PatchEvent)]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with LoopbackServer(create_app(MockEngine(pieces)), access_log=False) as running:
        yield running.url + "/v1"


def test_in_process() -> None:
    engine = MockEngine(pieces)
    with Client(engine=engine) as client:
        events = list(client.stream(**ask(), partial_strings=True))
        check(events)
        before = list(client.stream(**ask()))
    assert all(isinstance(e, PatchEvent) for e in before)
    assert [e.op for e in before] == plain(events)

    async def main() -> list[Any]:
        async with (
            AsyncClient(engine=engine) as client,
            client.stream(**ask(), partial_strings=True) as stream,
        ):
            return [event async for event in stream]

    check(asyncio.run(main()))


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_over_http(server: str, framing: Any) -> None:
    with Client(base_url=server, framing=framing) as client:
        events = list(client.stream(**ask(), partial_strings=True))
        check(events)
        before = list(client.stream(**ask()))
    assert [e.op for e in before] == plain(events)

    async def main() -> list[Any]:
        async with AsyncClient(base_url=server, framing=framing) as client:
            return [event async for event in client.stream(**ask(), partial_strings=True)]

    check(asyncio.run(main()))


def test_stream_options_are_merged_with_the_callers() -> None:
    with Client(engine=MockEngine(pieces)) as client:
        body, _ = client._prepare(
            model="m",
            input="x",
            response_format=SCHEMA,
            temperature=None,
            max_tokens=None,
            seed=None,
            extra={"stream_options": {"include_usage": True}},
            partial_strings=True,
        )
        unchanged, _ = client._prepare(
            model="m",
            input="x",
            response_format=SCHEMA,
            temperature=None,
            max_tokens=None,
            seed=None,
            extra=None,
        )
    assert body["stream_options"] == {"include_usage": True, "partial_strings": True}
    assert "stream_options" not in unchanged  # the dottxt body, as before


def test_client_side_against_a_plain_openai_server() -> None:
    with ScriptedUpstream() as upstream:
        upstream.add("mock", Script(chunks=tuple(PIECES), interval=0.002))
        with Client(base_url=upstream.base_url, patch="client") as client:
            check(list(client.stream(**ask(), partial_strings=True)))
        sent = upstream.last("mock").body
        # The upstream is asked for plain `stream: true`; the option never reaches it.
        assert sent["stream"] is True and "partial_strings" not in json.dumps(sent)


def test_text_events_are_immutable_and_compare_by_content() -> None:
    pieces_so_far = ["a", "b"]
    event = TextEvent("/a~1b", "b", pieces_so_far)
    pieces_so_far.append("c")  # later pieces do not change an earlier event
    assert event.so_far == "ab" and event.keys == ("a/b",) and event.field == "a~1b"
    assert event == TextEvent("/a~1b", "b", []) and event != TextEvent("/a~1b", "c", [])
    with pytest.raises(AttributeError):
        event.text = "x"  # type: ignore[misc]
    assert repr(event) == "TextEvent(field='a~1b', text='b')"


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_partial_records_nobody_asked_for_are_ignored(framing: Any) -> None:
    """A server that sends partial records anyway changes nothing for a client that
    did not ask: the same PatchEvents, no TextEvent."""
    from openbrace import PatchEmitter, wire
    from openbrace.client import _PatchDecoder

    emitter = PatchEmitter(partial_strings=True)
    records = [r for piece in PIECES for r in emitter.feed(piece)] + emitter.close()
    records.append({"done": {"finish_reason": "stop", "usage": {}}})
    ids = wire.OpIds()
    data = b"".join(
        wire.encode_sse(r, ids.number(r).id) if framing == "sse" else wire.encode_ndjson(r)
        for r in records
    )
    for partial_strings in (False, True):
        decoder = _PatchDecoder(framing, partial_strings)
        events = [*decoder.feed(data), *decoder.close()]
        if partial_strings:
            check(events)
        else:
            assert [e.op for e in events] == [r for r in records if "op" in r]
