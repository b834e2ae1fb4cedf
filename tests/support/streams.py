"""Reading patch streams in tests, independently of `openbrace.wire`.

The tests check the server with a parser of their own: NDJSON split on b"\\n"
only (never `iter_lines`, which also splits on U+2028), one `json.loads` a line.
`reference_ops` runs the emitter over a script's chunks to know which ops the
server must send, and after which upstream chunk each one exists.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import jsonpatch

__all__ = ["apply_ops", "ndjson_records", "reference_ops", "split_records"]


async def ndjson_records(chunks: AsyncIterator[bytes]) -> list[tuple[float, dict[str, Any]]]:
    """Every NDJSON record of a byte stream, with the `perf_counter()` it arrived at."""
    records: list[tuple[float, dict[str, Any]]] = []
    tail = b""
    async for chunk in chunks:
        now = time.perf_counter()
        *lines, tail = (tail + chunk).split(b"\n")
        records.extend((now, json.loads(line)) for line in lines if line.strip())
    assert not tail.strip(), f"stream ended mid-line: {tail[:80]!r}"
    return records


Record = dict[str, Any]


def split_records(records: Iterable[Record]) -> tuple[list[Record], list[Record]]:
    """Separate ops (records with an "op" key) from control records, keeping order."""
    records = list(records)
    return [r for r in records if "op" in r], [r for r in records if "op" not in r]


def apply_ops(ops: list[dict[str, Any]]) -> Any:
    """Apply ops one by one with `jsonpatch` (the RFC 6902 reference), so every prefix
    is checked to be a valid patch; return the document they build."""
    document: Any = None
    for op in ops:
        document = jsonpatch.apply_patch(document, [op])
    return document


def reference_ops(chunks: Iterable[str]) -> list[tuple[int, dict[str, Any]]]:
    """The ops a correct server sends for this upstream text: `(chunk index, op)`.

    The chunk index is the upstream chunk whose arrival completes the op (the
    number of chunks for ops only `close()` can emit, such as a bare root number).
    For text that is not one JSON document, the ops before the error: what a
    server may have sent before its error record.
    """
    from openbrace.emitter import PatchEmitter
    from openbrace.exceptions import InvalidOutputError

    emitter = PatchEmitter()
    out: list[tuple[int, dict[str, Any]]] = []
    index = -1
    try:
        for index, chunk in enumerate(chunks):
            out.extend((index, op) for op in emitter.feed(chunk))
        out.extend((index + 1, op) for op in emitter.close())
    except InvalidOutputError:
        pass
    return out
