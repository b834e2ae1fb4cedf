"""Partial records on the wire: NDJSON lines, SSE `event: partial` without an id, and
the op numbering that does not count them, through the framers and the decoders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace import PatchEmitter, wire
from openbrace.exceptions import ProtocolError
from tests.wire import decode_all
from tests.wire.test_codec import chunked, controls, ops

partials = st.builds(
    lambda path, text: {"partial": {"path": path, "text": text}},
    st.text(max_size=8).map(lambda s: "/" + s),
    st.text(
        alphabet=st.characters(codec="utf-8") | st.sampled_from('\u2028\x85\r\n"\\'), min_size=1
    ),
)


def test_the_spec_bytes() -> None:
    record = {"partial": {"path": "/reply", "text": 'Dear "Jane"\n☕'}}
    assert wire.encode_ndjson(record) == (
        b'{"partial":{"path":"/reply","text":"Dear \\"Jane\\"\\n\xe2\x98\x95"}}\n'
    )
    assert (
        wire.encode_sse(record)
        == wire.encode_sse(record, 7)
        == (b'event: partial\ndata: {"path":"/reply","text":"Dear \\"Jane\\"\\n\xe2\x98\x95"}\n\n')
    )


async def frames(records: list[dict[str, Any]], sse: bool) -> bytes:
    async def source() -> AsyncIterator[dict[str, Any]]:
        for record in records:
            yield record

    numbered = wire.number_ops(source())
    framer = wire.sse_frames(numbered) if sse else wire.ndjson_frames(numbered, include_usage=True)
    return b"".join([frame async for frame in framer])


def emitted(text: str) -> list[dict[str, Any]]:
    emitter = PatchEmitter(partial_strings=True)
    return [r for piece in text for r in emitter.feed(piece)] + emitter.close()


@pytest.mark.parametrize("sse", [False, True])
def test_the_framers_number_ops_only(sse: bool) -> None:
    records = emitted('{"a": "xyz", "b": ["p\\"q", 1]}')
    records.append({"done": {"finish_reason": "stop", "usage": {}}})
    data = anyio.run(frames, records, sse)
    assert decode_all(wire.SSEDecoder() if sse else wire.NDJSONDecoder(), [data]) == records
    if sse:
        events = [e for e in wire.SSEEvents().feed(data)]
        numbered = [(e.event, e.id) for e in events if e.event in ("patch", "partial")]
        ids = [int(i) for kind, i in numbered if kind == "patch"]
        assert ids == list(range(len(ids))) == list(range(5))
        assert all(i is None for kind, i in numbered if kind == "partial")
        assert [kind for kind, _ in numbered].count("partial") == 6


@settings(max_examples=150)
@given(
    st.lists(ops | partials, max_size=8),
    controls,
    st.sampled_from([b"\n", b"\r\n"]),
    st.lists(st.integers(min_value=0), max_size=30),
)
def test_round_trip_over_any_chunking(
    records: list[dict[str, Any]], control: dict[str, Any], newline: bytes, cuts: list[int]
) -> None:
    records = [*records, control]
    ndjson = anyio.run(frames, records, False)
    assert decode_all(wire.NDJSONDecoder(), chunked(ndjson, cuts)) == records
    sse = anyio.run(frames, records, True).replace(b"\n", newline)
    assert decode_all(wire.SSEDecoder(), chunked(sse, cuts)) == records


def test_a_partial_event_is_not_counted_as_an_op() -> None:
    op = {"op": "add", "path": "", "value": {}}
    data = (
        wire.encode_sse(op, 0)
        + wire.encode_sse({"partial": {"path": "/a", "text": "x"}})
        + b'id: 1\nevent: partial\ndata: {"path":"/a","text":"y"}\n\n'  # an id is ignored
        + wire.encode_sse({"op": "add", "path": "/a", "value": "xy"}, 1)
    )
    assert len(decode_all(wire.SSEDecoder(), [data])) == 4
    with pytest.raises(ProtocolError, match="partial data is not a JSON object"):
        decode_all(wire.SSEDecoder(), [b"event: partial\ndata: [1]\n\n"])
