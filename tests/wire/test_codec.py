"""The wire codec: round trips over any chunking, malformed input, op numbering."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace import wire
from openbrace.exceptions import ProtocolError
from tests.wire import decode_all

# Characters that `str.splitlines` (and so httpx's iter_lines) treats as line breaks;
# JSON escapes those below U+0020, the RAW ones travel as they are.
RAW_BREAKERS = "\u2028\u2029\x85"
LINE_BREAKERS = RAW_BREAKERS + "\x1c\x1d\x1e\x0b\x0c"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(LINE_BREAKERS + "\r\n"))
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
ops = st.builds(
    lambda path, value: {"op": "add", "path": path, "value": value},
    st.text(max_size=8).map(lambda s: "/" + s if s else ""),
    json_values,
)
controls = st.sampled_from(
    [
        {"done": {"finish_reason": "stop", "usage": {"prompt_tokens": 3}}},
        {"error": {"message": "ran out\u2028of tokens", "type": "length", "code": None}},
    ]
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` split at the given offsets (any order, duplicates allowed: empty chunks)."""
    points = sorted(c % (len(data) + 1) for c in cuts)
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def sse_stream(records: list[dict[str, Any]], newline: bytes = b"\n") -> bytes:
    frames, seq = [], 0
    for record in records:
        if "op" in record:
            frames.append(wire.encode_sse(record, seq))
            seq += 1
        else:
            frames.append(wire.encode_sse(record))
    # Compact JSON never holds a raw CR or LF, so every b"\n" here is a line end.
    return b"".join(frames).replace(b"\n", newline)


@settings(max_examples=150)
@given(st.lists(ops, max_size=6), controls, st.lists(st.integers(min_value=0), max_size=30))
def test_ndjson_round_trip_over_any_chunking(records, control, cuts):
    records = [*records, control]
    data = b"".join(wire.encode_ndjson(r) for r in records)
    assert decode_all(wire.NDJSONDecoder(), chunked(data, cuts)) == records


@settings(max_examples=150)
@given(
    st.lists(ops, max_size=6),
    controls,
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(min_value=0), max_size=30),
)
def test_sse_round_trip_over_any_chunking_and_line_ending(records, control, newline, cuts):
    records = [*records, control]
    data = sse_stream(records, newline)
    assert decode_all(wire.SSEDecoder(), chunked(data, cuts)) == records


@settings(max_examples=300)
@given(
    st.lists(
        st.binary(max_size=12)
        | st.sampled_from([b"\n", b"\r", b"\r\n", b"data: ", b"id: 0\n", b"event: error\n", b"{}"])
        | ops.map(wire.encode_ndjson),
        max_size=12,
    ),
    st.sampled_from([wire.NDJSONDecoder, wire.SSEDecoder]),
)
def test_decoders_fail_only_with_protocol_error(pieces, make):
    """Any bytes at all: records (JSON objects) come out, or a ProtocolError; nothing else."""
    decoder = make()
    try:
        records = decode_all(decoder, pieces)
    except ProtocolError:
        return
    assert all(isinstance(record, dict) for record in records)


@pytest.mark.parametrize("char", list(RAW_BREAKERS))
def test_unicode_line_breakers_survive_every_split(char):
    record = {"op": "add", "path": f"/k{char}", "value": f"a{char}b"}
    for data, make in (
        (wire.encode_ndjson(record), wire.NDJSONDecoder),
        (sse_stream([record], b"\r\n"), wire.SSEDecoder),
    ):
        assert char.encode() in data  # ensure_ascii=False: it travels raw
        assert len(data.decode().splitlines()) > len(data.split(b"\n")) - 1  # the trap is real
        for cut in range(len(data) + 1):
            assert decode_all(make(), [data[:cut], data[cut:]]) == [record]
        assert decode_all(make(), [data[i : i + 1] for i in range(len(data))]) == [record]


def test_crlf_split_between_chunks_is_one_line_end():
    data = b"event: patch\r\ndata: [1,\r\ndata: 2]\r\n\r\n"
    cut = data.index(b"\r\ndata: 2") + 1  # between CR and LF
    first = {"op": "add", "path": "", "value": {}}
    decoder = wire.SSEDecoder()
    # Multi-line data is joined with "\n": the record is the JSON array [1,\n2].
    assert decoder.feed(data[:cut]) == []
    with pytest.raises(ProtocolError, match="not a JSON object"):
        decoder.feed(data[cut:])
    ok = b'event: patch\r\ndata: {"op":"add",\r\ndata: "path":"","value":{}}\r\n\r\n'
    cut = ok.index(b'\r\ndata: "path') + 1
    decoder = wire.SSEDecoder()
    assert decoder.feed(ok[:cut]) == []
    assert decoder.feed(ok[cut:]) == [first]
    assert decoder.close() == []


def test_encodings_match_the_spec_bytes():
    op = {"op": "add", "path": "/intent", "value": "billing"}
    assert wire.encode_ndjson(op) == b'{"op":"add","path":"/intent","value":"billing"}\n'
    assert wire.encode_sse(op, 3) == (
        b'id: 3\nevent: patch\ndata: {"op":"add","path":"/intent","value":"billing"}\n\n'
    )
    done = {"done": {"finish_reason": "stop", "usage": {"total_tokens": 5}}}
    assert wire.encode_sse(done) == (
        b'event: done\ndata: {"finish_reason":"stop","usage":{"total_tokens":5}}\n\n'
    )
    error = {"error": {"message": "m", "type": "length", "code": None}}
    assert wire.encode_sse(error) == (
        b'event: error\ndata: {"error":{"message":"m","type":"length","code":null}}\n\n'
    )
    assert wire.encode_ndjson({"b": 1, "a": "é"}) == '{"b":1,"a":"é"}\n'.encode()


def test_encoders_refuse_what_is_not_json_or_not_a_record():
    with pytest.raises(ValueError):
        wire.encode_ndjson({"op": "add", "path": "", "value": float("nan")})
    with pytest.raises(ValueError, match="not a patch stream record"):
        wire.encode_sse({"hello": 1})


@pytest.mark.parametrize(
    "line",
    [b"{not json}\n", b"[1, 2]\n", b'"op"\n', b'{"op":"add"\xff}\n', b'{"a":1}{"b":2}\n'],
)
def test_ndjson_malformed_line_raises_after_the_good_records(line):
    good = wire.encode_ndjson({"op": "add", "path": "", "value": []})
    decoder = wire.NDJSONDecoder()
    assert decoder.feed(good + line + good) == [{"op": "add", "path": "", "value": []}]
    with pytest.raises(ProtocolError):
        decoder.close()
    decoder = wire.NDJSONDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(line)
    with pytest.raises(ProtocolError):  # and it stays broken
        decoder.feed(good)


def test_ndjson_blank_lines_and_crlf_are_accepted():
    data = b'\n{"op":"add","path":"","value":1}\r\n  \n'
    assert decode_all(wire.NDJSONDecoder(), [data]) == [{"op": "add", "path": "", "value": 1}]


def test_ndjson_cut_mid_frame_raises_protocol_error():
    decoder = wire.NDJSONDecoder()
    assert decoder.feed(b'{"op":"add","path":"","value":{}}\n{"op":"add","pa') == [
        {"op": "add", "path": "", "value": {}}
    ]
    with pytest.raises(ProtocolError, match="mid-frame"):
        decoder.close()


@pytest.mark.parametrize(
    "tail", [b"event: patch\n", b'id: 0\nevent: patch\ndata: {"op":"add"', b"data: {}\n"]
)
def test_sse_cut_mid_event_raises_protocol_error(tail):
    decoder = wire.SSEDecoder()
    decoder.feed(tail)
    with pytest.raises(ProtocolError, match="mid-frame"):
        decoder.close()


def test_sse_comments_unknown_events_and_fields_are_ignored():
    data = (
        wire.KEEPALIVE
        + b": another comment\n\nretry: 100\nevent: ping\ndata: {}\n\n"
        + b'data: {"op":"add","path":"","value":2}\n\n'  # untyped event = message
        + wire.KEEPALIVE
    )
    assert decode_all(wire.SSEDecoder(), [data]) == [{"op": "add", "path": "", "value": 2}]


def test_sse_id_gap_means_lost_ops():
    op = {"op": "add", "path": "", "value": []}
    data = wire.encode_sse(op, 0) + wire.encode_sse({"op": "add", "path": "/0", "value": 1}, 2)
    decoder = wire.SSEDecoder()
    assert decoder.feed(data) == [op]
    with pytest.raises(ProtocolError, match="ops were lost"):
        decoder.close()


def test_sse_error_event_without_wrapper_is_wrapped():
    data = b'event: error\ndata: {"message":"x","type":"timeout"}\n\n'
    assert decode_all(wire.SSEDecoder(), [data]) == [{"error": {"message": "x", "type": "timeout"}}]


# --- op numbering ----------------------------------------------------------------------

OPS_SAMPLE = [{"op": "add", "path": "", "value": []}, {"op": "add", "path": "/0", "value": 1}]


@given(st.lists(ops | controls, max_size=12), st.integers(min_value=0, max_value=10**6))
def test_op_ids_count_ops_only_and_continue_from_start(records, start):
    ids = wire.OpIds(start)
    numbered = [ids.number(record) for record in records]
    assert [n.record for n in numbered] == records
    op_ids = [n.id for n in numbered if "op" in n.record]
    assert op_ids == list(range(start, start + len(op_ids)))  # in order, no gap
    assert all(n.id is None for n in numbered if "op" not in n.record)
    assert ids.count == start + len(op_ids)


def test_op_ids_are_what_the_sse_decoder_checks():
    records = [OPS_SAMPLE[0], {"done": {}}, OPS_SAMPLE[1]]
    ids = wire.OpIds()
    data = b"".join(wire.encode_sse(n.record, n.id) for n in map(ids.number, records))
    assert data.count(b"id: ") == 2  # the done event carries no id and takes none
    assert decode_all(wire.SSEDecoder(), [data]) == records
    # Resumed after three ops, the ids start at 3: a fresh decoder sees a gap.
    resumed = wire.OpIds(3).number(OPS_SAMPLE[0])
    with pytest.raises(ProtocolError, match="where 0 was due"):
        decode_all(wire.SSEDecoder(), [wire.encode_sse(resumed.record, resumed.id)])
