"""`stream_options.partial_strings` over real HTTP: NDJSON and SSE from a real uvicorn
on loopback, read with plain httpx and a parser of the test's own.

A scripted engine writes the hard strings (quotes, backslashes, escapes cut in half,
non-ASCII, emoji); the real embedded model shows the timing: the reply's text
arrives piece by piece, well before the op that completes it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jsonpatch
import pytest

from openbrace.engines.base import Finish, GenerationRequest, MockEngine
from openbrace.server.app import create_app
from tests.support.loopback import LoopbackServer

HARD = [
    '{"reply": "She said \\"hi\\" \\\\o/ caf',
    "\\u00e9 na",
    "ïve \\ud83d",
    "\\ude00 ☕ 🧪 \\",
    'n end", "tags": ["\\"", "\\\\", "ü"], "n": 1}',
]
HARD_DOC = json.loads("".join(HARD))


async def hard(request: GenerationRequest) -> AsyncIterator[str | Finish]:
    for piece in HARD:
        await asyncio.sleep(0.01)
        yield piece
    yield Finish()


@pytest.fixture(scope="module")
def scripted() -> Iterator[LoopbackServer]:
    with LoopbackServer(create_app(MockEngine(hard)), access_log=False) as server:
        yield server


def body(schema: Any = None, **options: Any) -> dict[str, Any]:
    schema = {"type": "object"} if schema is None else schema
    return {
        "messages": [{"role": "user", "content": "go"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        "stream": "patch",
        "stream_options": {"partial_strings": True, "include_usage": True},
        **options,
    }


REPLY = {
    "type": "object",
    "properties": {"reply": {"type": "string", "minLength": 200, "maxLength": 400}},
    "required": ["reply"],
}


def timed_records(url: str, payload: dict[str, Any], sse: bool) -> list[tuple[float, Any]]:
    """Every record of one streamed answer with the `perf_counter()` it arrived at.

    NDJSON splits on b"\\n"; SSE on b"\\n\\n" (compact JSON holds no raw newline), the
    event's fields read by hand: `(time, (event, id, data))` for SSE.
    """
    headers = {"accept": "text/event-stream"} if sse else {}
    out: list[tuple[float, Any]] = []
    tail = b""
    with httpx.stream("POST", url, json=payload, headers=headers, timeout=120) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw():
            now = time.perf_counter()
            *frames, tail = (tail + chunk).split(b"\n\n" if sse else b"\n")
            for frame in frames:
                if sse:
                    fields = dict(line.split(b": ", 1) for line in frame.split(b"\n"))
                    event = (fields[b"event"].decode(), fields.get(b"id"), fields[b"data"])
                    out.append((now, (event[0], event[1], json.loads(event[2]))))
                elif frame.strip():
                    out.append((now, json.loads(frame)))
    assert not tail.strip()
    return out


def as_records(timed: list[tuple[float, Any]], sse: bool) -> list[tuple[float, dict[str, Any]]]:
    """SSE events back to records; checks the ids: 0, 1, ... on ops, none on partials."""
    if not sse:
        return timed
    out, next_id = [], 0
    for when, (event, id, data) in timed:
        if event == "patch":
            assert id == str(next_id).encode()
            next_id += 1
            out.append((when, data))
        else:
            assert id is None, "only ops carry an id"
            out.append((when, {event: data}))
    return out


def check_strings(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Partials rebuild each string, after its parent's op and before its own; returns
    the pieces of each path."""
    ops = [r for r in records if "op" in r]
    document = jsonpatch.apply_patch(None, ops)
    pieces: dict[str, list[str]] = {}
    written: dict[str, str] = {}
    added: set[str] = set()
    for record in records:
        if "partial" in record:
            path, text = record["partial"]["path"], record["partial"]["text"]
            assert path[: path.rfind("/")] in added and text
            written[path] = written.get(path, "") + text
            pieces.setdefault(path, []).append(text)
        elif "op" in record:
            added.add(record["path"])
            if isinstance(record["value"], str):
                assert written.pop(record["path"], "") == record["value"]
    assert written == {}
    assert sum(map(len, ("".join(p) for p in pieces.values()))) == _string_length(document)
    return pieces


def _string_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(map(_string_length, value.values()))
    if isinstance(value, list):
        return sum(map(_string_length, value))
    return 0


@pytest.mark.parametrize("sse", [False, True])
def test_hard_strings_come_out_whole(scripted: LoopbackServer, sse: bool) -> None:
    url = f"{scripted.url}/v1/chat/completions"
    records = [r for _, r in as_records(timed_records(url, body(), sse), sse)]
    assert "done" in records[-1]
    assert jsonpatch.apply_patch(None, [r for r in records if "op" in r]) == HARD_DOC
    pieces = check_strings(records)
    # Each piece is whole characters: the emoji written as a split surrogate pair
    # arrives as one character, the split escapes as their characters.
    assert pieces["/reply"] == ['She said "hi" \\o/ caf', "é na", "ïve ", "😀 ☕ 🧪 ", "\n end"]
    assert pieces["/tags/0"] == ['"'] and pieces["/tags/1"] == ["\\"]


def test_without_the_option_the_stream_is_unchanged(scripted: LoopbackServer) -> None:
    url = f"{scripted.url}/v1/chat/completions"
    plain = body()
    plain["stream_options"] = {"include_usage": True}
    records = [r for _, r in timed_records(url, plain, False)]
    assert all("op" in r for r in records[:-1]) and "done" in records[-1]
    with_partials = [r for _, r in timed_records(url, body(), False)]
    assert [r for r in with_partials if "partial" not in r] == records


def test_the_option_needs_stream_patch(scripted: LoopbackServer) -> None:
    response = httpx.post(f"{scripted.url}/v1/chat/completions", json=body(stream=True))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream_options.partial_strings"


@pytest.mark.model
@pytest.mark.parametrize("sse", [False, True])
def test_the_model_s_reply_arrives_well_before_its_op(
    local_server: LoopbackServer, sse: bool
) -> None:
    payload = body(
        REPLY,
        messages=[{"role": "user", "content": "Write a long, friendly reply to a customer."}],
        max_tokens=200,
        temperature=0,
        seed=3,
    )
    timed = as_records(timed_records(f"{local_server.url}/v1/chat/completions", payload, sse), sse)
    records = [r for _, r in timed]
    assert "done" in records[-1]
    pieces = check_strings(records)
    reply = [when for when, r in timed if r.get("partial", {}).get("path") == "/reply"]
    (added,) = [when for when, r in timed if r.get("path") == "/reply"]
    assert len(pieces["/reply"]) >= 20  # token by token, not in one lump
    assert len(set(reply)) >= 10  # in many network reads, over time
    # The first words were on screen long before the reply was complete.
    assert added - reply[0] >= 0.5 * (added - timed[0][0])
    assert added - reply[0] > 0.2
