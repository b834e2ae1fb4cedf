"""The patch stream on the wire: NDJSON and SSE, both directions (SPEC section 4).

A *record* is what travels: an op `{"op":"add","path":..,"value":..}`, a partial
record `{"partial": {"path":..,"text":..}}` (opt-in, the text of a string being
written), or a control record `{"done": {...}}` / `{"error": {...}}`.

- NDJSON: one compact JSON record per line, each line ended by `\\n`.
- SSE: ops as `id: N` (the op's 0-based sequence number), `event: patch`,
  `data: <op>`; partial records as `event: partial` with the record's *body* as
  data and no id (ids count ops); success as `event: done` with the done record's *body* as data;
  failure as `event: error` with the whole `{"error": {...}}` record as data;
  `: keep-alive` comments while idle.

Two modules: `codec` (pure encoders, decoders and the op numbering, shared by the
server, the clients and the upstream engine) and `pumps` (the server's asyncio
framers). Every public name of both is re-exported here: `wire.SSEDecoder`.
"""

from __future__ import annotations

from .codec import (
    KEEPALIVE,
    NDJSON,
    SSE,
    NDJSONDecoder,
    Numbered,
    OpIds,
    Record,
    SSEDecoder,
    SSEEvent,
    SSEEvents,
    encode_ndjson,
    encode_sse,
)
from .pumps import error_record, ndjson_frames, number_ops, patch_frames, sse_frames

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
    "error_record",
    "ndjson_frames",
    "number_ops",
    "patch_frames",
    "sse_frames",
]
