"""The server side of the wire: numbered records -> frames, under asyncio.

`number_ops` pairs each record of a stream with its op id (the one `OpIds`
numbering); `ndjson_frames` and `sse_frames` turn numbered records into the bytes
of a response body. An exception raised by the records after the status line
went out becomes an error record, and closing a framer closes the records behind
it, which stops the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from ..exceptions import ServerError, StreamError
from .codec import KEEPALIVE, NDJSON, SSE, Numbered, OpIds, Record, encode_ndjson, encode_sse

__all__ = ["error_record", "ndjson_frames", "number_ops", "patch_frames", "sse_frames"]

log = logging.getLogger("openbrace")


def error_record(exc: BaseException) -> Record:
    """The record that ends a stream whose source raised after it started."""
    if isinstance(exc, StreamError):
        return exc.to_record()
    log.error("patch stream failed after it started", exc_info=exc)
    return ServerError("internal error while streaming").to_record()


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def number_ops(
    records: AsyncIterator[Record], ids: OpIds | None = None
) -> AsyncIterator[Numbered]:
    """`records`, each with its op id from `ids` (a fresh `OpIds` when None).

    Pass an `OpIds` to read the count afterwards or to continue a numbering.
    Closing this generator closes `records`.
    """
    ids = OpIds() if ids is None else ids
    try:
        async for record in records:
            yield ids.number(record)
    finally:
        await _aclose(records)


async def ndjson_frames(
    records: AsyncIterator[Numbered], *, include_usage: bool = False
) -> AsyncIterator[bytes]:
    """NDJSON lines for a numbered record stream (what the server sends).

    NDJSON carries no ids. The `done` record goes out only with `include_usage`
    (SPEC: the body simply ends on success); an `error` record always does and ends
    the stream. An exception raised by `records` after it started becomes an error
    record, since the status line is already sent. Closing this generator closes
    `records`, which stops the generation behind it.
    """
    try:
        async for _, record in records:
            if "done" in record and not include_usage:
                continue
            yield encode_ndjson(record)
            if "error" in record:
                return
    except Exception as exc:
        yield encode_ndjson(error_record(exc))
    finally:
        await _aclose(records)


async def sse_frames(
    records: AsyncIterator[Numbered], *, keepalive: float = 15.0
) -> AsyncIterator[bytes]:
    """SSE events for a numbered record stream, with `: keep-alive` comments while idle.

    Each op goes out with the id it was numbered with (`id: 0, 1, ...`); `done` and
    `error` end the stream. A keep-alive comment goes out whenever nothing was
    produced for `keepalive` seconds.

    `records` runs in one helper task for its whole life (so cancel scopes and
    context variables inside it stay in one task) and hands records over one at a
    time; waiting for the next one with a timeout never cancels the generator.
    Requires asyncio (uvicorn's loop).
    """
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async for item in records:
                await queue.put(("record", item))
            await queue.put(("end", None))
        except Exception as exc:
            await queue.put(("raise", exc))
        finally:
            await _aclose(records)

    task = asyncio.ensure_future(pump())
    getter: asyncio.Future[tuple[str, Any]] | None = None
    try:
        while True:
            # The getter survives a timeout: nothing is cancelled just for being slow.
            getter = getter or asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter}, timeout=keepalive)
            if not done:
                yield KEEPALIVE
                continue
            kind, item = getter.result()
            getter = None
            if kind == "end":
                return
            if kind == "raise":
                yield encode_sse(error_record(item))
                return
            id, record = item
            yield encode_sse(record, id)
            if "done" in record or "error" in record:
                return
    finally:
        for pending in (getter, task):
            if pending is not None and not pending.done():
                pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def patch_frames(
    records: AsyncIterator[Numbered], *, sse: bool, keepalive: float, include_usage: bool
) -> tuple[AsyncIterator[bytes], str]:
    """Numbered records framed as SSE or NDJSON (as the client's `Accept` asked), with
    the media type to answer with."""
    if sse:
        return sse_frames(records, keepalive=keepalive), SSE
    return ndjson_frames(records, include_usage=include_usage), NDJSON
