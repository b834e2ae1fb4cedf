"""The patch stream's bytes, both directions: pure encoders and decoders (no I/O).

Encoding: `encode_ndjson(record)` and `encode_sse(record, id)` give one frame each;
`OpIds` numbers a stream's ops, once, for every framing.

Decoding: `feed(chunk)` takes any piece of the byte stream (a frame may be split
anywhere, even inside a UTF-8 character or between CR and LF) and returns the
records it completed; `close()` says the stream ended and raises `ProtocolError`
if it ended mid-frame. A malformed frame raises `ProtocolError` too, but only
after the good records before it were returned: the call that meets it returns
those, and the next `feed`/`close` raises.

Records are encoded as compact JSON with `ensure_ascii=False`, keys in the order
they were built. Characters such as U+2028 or U+0085 therefore travel raw; they
never contain the bytes `\\n` or `\\r` in UTF-8, so the decoders split on those
bytes themselves and never on `str.splitlines` (which would break such a line in
the middle of a JSON string, as httpx's `iter_lines` does).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..exceptions import ProtocolError

__all__ = [
    "KEEPALIVE",
    "NDJSON",
    "SSE",
    "NDJSONDecoder",
    "Numbered",
    "OpIds",
    "Record",
    "SSEDecoder",
    "SSEEvent",
    "SSEEvents",
    "encode_ndjson",
    "encode_sse",
]

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
KEEPALIVE = b": keep-alive\n\n"

Record = dict[str, Any]
"""An op `{"op": "add", "path": .., "value": ..}`, a partial record `{"partial": {"path":
.., "text": ..}}` (opt-in: the text of a string being written), or a control record
`{"done": ..}` / `{"error": ..}`."""


class Numbered(NamedTuple):
    """A record and its op id: an int for an op, None for any other record."""

    id: int | None
    record: Record


class OpIds:
    """The one numbering of a stream's ops: SSE `id:` lines, and positions to resume at.

    Ops get 0, 1, 2, ... in the order they are sent. Any other record (a control
    record, or one that does not add a value of its own) gets no id and leaves the
    count alone, so an op's id is always the number of ops before it. The sender
    numbers a stream once, where its records are produced or stored, and every
    framing writes the id it is handed; the SSE decoder numbers what it receives
    the same way to notice lost ops. Pure: no I/O.

    Args:
        start: the id of the next op (a stream taken up after `start` ops).
    """

    __slots__ = ("count",)

    def __init__(self, start: int = 0) -> None:
        self.count = start  # ops numbered so far: the id of the next one

    def number(self, record: Record) -> Numbered:
        """`record` with its id; an op advances the count."""
        if "op" not in record:  # the one test of which records are numbered
            return Numbered(None, record)
        self.count += 1
        return Numbered(self.count - 1, record)


def _dumps(value: Any) -> bytes:
    # allow_nan=False: NaN/Infinity are not JSON and no conforming peer could read them.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def encode_ndjson(record: Record) -> bytes:
    """One NDJSON line: the record as compact JSON, then `\\n`."""
    return _dumps(record) + b"\n"


def encode_sse(record: Record, id: int | None = None) -> bytes:
    """One SSE event for `record`, ended by a blank line.

    A partial record goes out as `event: partial` with its body (`{"path", "text"}`)
    as data and never an id: ids count ops only.

    Args:
        record: an op, `{"partial": {...}}`, `{"done": {...}}` or `{"error": {...}}`.
        id: the op's 0-based sequence number (ops only; omitted when None).
    """
    if "op" in record:
        head = b"" if id is None else b"id: %d\n" % id
        return head + b"event: patch\ndata: " + _dumps(record) + b"\n\n"
    if "partial" in record:
        return b"event: partial\ndata: " + _dumps(record["partial"]) + b"\n\n"
    if "done" in record:
        return b"event: done\ndata: " + _dumps(record["done"]) + b"\n\n"
    if "error" in record:
        return b"event: error\ndata: " + _dumps(record) + b"\n\n"
    raise ValueError(f"not a patch stream record: {record!r}")


def _parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} is not valid UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{what} is not valid JSON ({exc}): {_preview(data)}") from None


def _preview(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _check_record(value: Any, what: str) -> Record:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} is not a JSON object: {value!r:.80}")
    return value


class _Decoder:
    """Shared buffering: good records first, the error on the next call."""

    def __init__(self) -> None:
        self._error: ProtocolError | None = None

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def _deliver(self, out: list[Record], exc: ProtocolError) -> list[Record]:
        self._error = exc  # a broken stream stays broken: every later call raises
        if not out:
            raise exc
        return out


class NDJSONDecoder(_Decoder):
    """Bytes of an NDJSON patch stream -> records. O(1) amortised per byte.

    Blank lines are skipped; a line that is not a JSON object is a `ProtocolError`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no b"\n"

    def feed(self, chunk: bytes) -> list[Record]:
        """Records completed by `chunk`."""
        self._raise_pending()
        self._buffer += chunk
        out: list[Record] = []
        start = 0
        while (end := self._buffer.find(b"\n", max(start, self._scanned))) != -1:
            line = bytes(self._buffer[start:end])
            start = end + 1
            if not line.strip():
                continue
            try:
                out.append(_check_record(_parse_json(line, "NDJSON line"), "NDJSON line"))
            except ProtocolError as exc:
                del self._buffer[:start]
                self._scanned = 0
                return self._deliver(out, exc)
        del self._buffer[:start]
        self._scanned = len(self._buffer)
        return out

    def close(self) -> list[Record]:
        """End of stream; raises `ProtocolError` if it ended inside a line."""
        self._raise_pending()
        if self._buffer.strip():
            raise ProtocolError(f"stream ended mid-frame: {_preview(bytes(self._buffer))}")
        return []


_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event: its type (`"message"` when untyped), data and id."""

    event: str
    data: bytes
    id: bytes | None


class SSEEvents:
    """Bytes of any SSE stream -> `SSEEvent`s (the WHATWG event-stream grammar). No I/O.

    Lines end at CRLF, LF or CR (a CR at the end of one chunk and an LF at the start
    of the next are one line end); comments (`:`) and unknown fields are ignored;
    events without data are dropped, as the spec says. A long line costs O(1) per
    byte: the search for a line end resumes where the last one stopped. Shared by
    the patch decoder below and the upstream engine's OpenAI chunk parser.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._after_cr = False  # the last line ended with a CR that may pair with an LF
        self._scanned = 0  # bytes of the buffer known to hold no line end
        self._event = ""
        self._data: list[bytes] = []
        self._id: bytes | None = None
        self._has_fields = False

    @property
    def partial_line(self) -> bytes:
        """The bytes after the last line end (a line not yet terminated)."""
        return bytes(self._buffer)

    @property
    def pending(self) -> bool:
        """Whether an event was begun and not terminated (bytes or fields held)."""
        return bool(self._buffer) or self._has_fields

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events `chunk` completed."""
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        if chunk:
            self._after_cr = False
        self._buffer += chunk
        out: list[SSEEvent] = []
        pos = 0
        while match := _LINE_END.search(self._buffer, max(pos, self._scanned)):
            if match.group() == b"\r" and match.end() == len(self._buffer):
                self._after_cr = True
            event = self._line(bytes(self._buffer[pos : match.start()]))
            pos = match.end()
            if event is not None:
                out.append(event)
        del self._buffer[:pos]
        self._scanned = len(self._buffer)
        return out

    def close(self) -> SSEEvent | None:
        """End of stream: the unterminated last event (its last line included), if any."""
        if self._buffer:  # a last line with no line end is still a line
            self._line(bytes(self._buffer))
            self._buffer.clear()
        return self._dispatch()

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        self._has_fields = True
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", errors="replace")
        elif name == b"id":
            self._id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        event = SSEEvent(self._event or "message", b"\n".join(self._data), self._id)
        has_data = bool(self._data)
        self._event, self._data, self._id, self._has_fields = "", [], None, False
        return event if has_data else None


class SSEDecoder(_Decoder):
    """Bytes of an SSE patch stream -> records, framed by `SSEEvents`.

    `patch` events (and untyped ones) carry an op, `partial` a partial record's body,
    `done` a done body, `error` an error record; other event types are ignored. An
    `id` on an op must be the one `OpIds` gives it (its 0-based sequence number): a
    gap means lost ops, which would corrupt the document, so it is a `ProtocolError`.
    A resumed stream's ops start at `first_id`.
    """

    def __init__(self, first_id: int = 0) -> None:
        super().__init__()
        self._events = SSEEvents()
        self._ids = OpIds(first_id)  # a resumed stream starts after the ops already held

    def feed(self, chunk: bytes) -> list[Record]:
        """Records completed by `chunk`."""
        self._raise_pending()
        out: list[Record] = []
        for event in self._events.feed(chunk):
            try:
                record = self._record(event)
            except ProtocolError as exc:
                return self._deliver(out, exc)
            if record is not None:
                out.append(record)
        return out

    def close(self) -> list[Record]:
        """End of stream; raises `ProtocolError` if it ended inside an event."""
        self._raise_pending()
        if self._events.pending:
            raise ProtocolError("stream ended mid-frame (an SSE event was not terminated)")
        return []

    def _record(self, event: SSEEvent) -> Record | None:
        kind = event.event
        value = _parse_json(event.data, f"SSE {kind} data")
        if kind in ("patch", "message"):
            record = _check_record(value, "SSE patch data")
            self._check_id(event.id, self._ids.number(record).id)
            return record
        if kind == "partial":  # no id: it does not count as an op
            return {"partial": _check_record(value, "SSE partial data")}
        if kind == "done":
            return {"done": _check_record(value, "SSE done data")}
        if kind == "error":
            record = _check_record(value, "SSE error data")
            return record if "error" in record else {"error": record}
        return None  # unknown event types are for someone else

    @staticmethod
    def _check_id(id: bytes | None, due: int | None) -> None:
        if id is not None and due is not None and id.strip() != str(due).encode():
            raise ProtocolError(
                f"SSE op id {id.decode('utf-8', 'replace')!r} where {due} was due: ops were lost"
            )
