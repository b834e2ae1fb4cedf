"""Resumable patch streams: generation that outlives its connection, and resumes.

A request with `stream_options.resumable` gets a stream id (`X-Stream-Id`, 192
random bits from `secrets.token_urlsafe`). Its generation runs in a task of its own
(`Resumer.launch`), which numbers every record once and hands it both to the
connected client (an in-process queue, so a store outage never touches that
client) and to the store. When the client drops, only its queue goes away: the
task keeps generating up to the request deadline and the store keeps the records
for `ttl` seconds after the end. `GET /v1/streams/{id}` (`Resumer.open`) then
replays the records after op N and follows the stream live.

Access: a stream belongs to the API key that started it. The store keeps only an
HMAC-SHA256 of the key keyed per stream (`owner_digest`), never the key; any other
key, an unknown id and an expired id all get the same 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from ..exceptions import ServerError
from ..wire import Numbered, OpIds, Record, error_record
from .metrics import Metrics
from .stores import StoreUnavailableError, StreamStore, is_terminal

__all__ = [
    "Resumer",
    "StreamNotFound",
    "new_stream_id",
    "owner_digest",
    "parse_after",
]

log = logging.getLogger("openbrace.server")

_ID = re.compile(r"[A-Za-z0-9_-]{22,64}")  # token_urlsafe output; anything else is unknown


class StreamNotFound(Exception):
    """No stream this caller may read under that id (unknown, expired or not theirs)."""


def new_stream_id() -> str:
    """A fresh stream id: 24 random bytes (192 bits), URL-safe base64 (32 characters)."""
    return secrets.token_urlsafe(24)


def owner_digest(stream_id: str, api_key: str | None) -> str:
    """What the store keeps of the caller's key: HMAC-SHA256(key, stream id), hex.

    Keyed per stream, so digests of one key cannot be linked across streams; "" for
    a caller without a key (an open server: whoever has the id may resume).
    """
    if not api_key:
        return ""
    return hmac.new(api_key.encode(), stream_id.encode(), "sha256").hexdigest()


def parse_after(query: str | None, last_event_id: str | None) -> int:
    """The last op id the reader holds: `?after=N`, else `Last-Event-ID: N`, else -1.

    Raises ValueError (a 400) for anything but an integer >= -1.
    """
    raw = query if query is not None else last_event_id
    if raw is None or raw.strip() == "":
        return -1
    text = raw.strip()
    if not re.fullmatch(r"-1|[0-9]{1,18}", text):
        raise ValueError(
            f"'after' (or Last-Event-ID) must be an op id, an integer >= -1; got {text[:40]!r}"
        )
    return int(text)


@dataclass(frozen=True)
class _ResumeMetrics:
    held: Gauge
    bytes: Gauge
    served: Counter
    failures: Counter


@dataclass
class _Tee:
    """The connected client's copy of a stream: a queue the producer fills."""

    queue: asyncio.Queue[Numbered | BaseException] = field(default_factory=asyncio.Queue)
    attached: bool = True

    def put(self, item: Numbered | BaseException) -> None:
        if self.attached:
            self.queue.put_nowait(item)


class Resumer:
    """The resumable streams of one server: their tasks, their store, their metrics.

    Args:
        store: where records are kept (memory or Redis).
        request_timeout: the longest a generation may run, in seconds.
    """

    def __init__(self, store: StreamStore, request_timeout: float) -> None:
        self.store = store
        self.request_timeout = request_timeout
        self._metrics: _ResumeMetrics | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # generating in this process

    def register_metrics(self, metrics: Metrics) -> None:
        """Add the resume series to `metrics` (`refresh_metrics` updates the store's)."""
        self._metrics = _ResumeMetrics(
            held=metrics.gauge(
                "openbrace_resumable_streams_held",
                "Resumable streams held by the resume store (live and finished).",
            ),
            bytes=metrics.gauge(
                "openbrace_resume_store_bytes", "Bytes of records held by the resume store."
            ),
            served=metrics.counter(
                "openbrace_resumes_served", "Resumes served (GET /v1/streams/ID answered 200)."
            ),
            failures=metrics.counter(
                "openbrace_resume_store_failures",
                "Resumable streams that stopped being stored (the store was unreachable).",
            ),
        )

    async def refresh_metrics(self) -> None:
        """Read the store's figures into the gauges (NaN while it is unreachable)."""
        if self._metrics is None:
            return
        try:
            stats = await self.store.stats()
            held, size = float(stats.streams), float(stats.bytes)
        except StoreUnavailableError:
            held = size = math.nan
        self._metrics.held.set(held)
        self._metrics.bytes.set(size)

    async def create(self, api_key: str | None) -> str:
        """Register a new stream owned by `api_key` (None: open server) and return its id.

        Raises StoreFullError or StoreUnavailableError (both answered with 503).
        """
        stream_id = new_stream_id()
        owner = owner_digest(stream_id, api_key)
        await self.store.create(stream_id, owner, time.time() + self.request_timeout)
        return stream_id

    def launch(
        self,
        stream_id: str,
        records: AsyncIterator[Record],
        *,
        on_end: Callable[[], Awaitable[None]],
        ids: OpIds | None = None,
    ) -> AsyncIterator[Numbered]:
        """Run `records` to its end in a task of its own; return the connected client's copy.

        The copy raises what `records` raises before its first record (a pre-stream
        refusal: the caller answers with an error status; the stream is discarded).
        Closing the copy detaches the client and nothing else. `on_end` runs when the
        generation is over (it releases the generation slot). `ids` numbers the ops
        (the response's own numbering, so its log counts them).
        """
        tee = _Tee()
        produce = self._produce(stream_id, records, tee, on_end, ids or OpIds())
        task = asyncio.get_running_loop().create_task(produce, name=f"resumable-{stream_id[:8]}")
        self._tasks[stream_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(stream_id, None))
        return self._client_copy(tee)

    async def open(
        self, stream_id: str, api_key: str | None, after: int
    ) -> AsyncIterator[Numbered]:
        """The records after op `after` for a resume, then the live ones.

        Raises StreamNotFound (404: unknown, expired, or another key's) and
        StoreUnavailableError (503) before anything is sent.
        """
        await self._authorize(stream_id, api_key)
        if self._metrics is not None:
            self._metrics.served.inc()
        return self.store.follow(stream_id, after)

    async def cancel(self, stream_id: str, api_key: str | None) -> None:
        """Stop a stream's generation (if this process runs it) and end the stream with
        a `cancelled` error record (a finished stream is left as it is).

        Raises StreamNotFound and StoreUnavailableError as `open` does. Readers get the
        `cancelled` record. Another replica's generation is not stopped (it runs to its
        end or its deadline), but its stream ends for every reader.
        """
        await self._authorize(stream_id, api_key)
        task = self._tasks.get(stream_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.store.append(stream_id, Numbered(None, _CANCELLED))

    async def aclose(self) -> None:
        """Cancel running generations (server shutdown) and close the store."""
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.store.aclose()

    async def _client_copy(self, tee: _Tee) -> AsyncIterator[Numbered]:
        try:
            while True:
                item = await tee.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if is_terminal(item.record):
                    return
        finally:
            tee.attached = False  # the client is gone: the generation goes on

    async def _authorize(self, stream_id: str, api_key: str | None) -> None:
        """StreamNotFound unless `stream_id` exists and `api_key` started it."""
        if not _ID.fullmatch(stream_id):
            raise StreamNotFound
        stored = await self.store.owner(stream_id)
        if stored is None or not hmac.compare_digest(stored, owner_digest(stream_id, api_key)):
            raise StreamNotFound

    async def _produce(
        self,
        stream_id: str,
        records: AsyncIterator[Record],
        tee: _Tee,
        on_end: Callable[[], Awaitable[None]],
        ids: OpIds,
    ) -> None:
        storing = True
        started = False
        try:
            async for record in _ending(records):
                started = True
                entry = ids.number(record)
                tee.put(entry)
                if storing:
                    storing = await self._store(stream_id, entry)
                if is_terminal(record):
                    return
        except asyncio.CancelledError:  # DELETE /v1/streams/{id}, or shutdown
            tee.put(Numbered(None, _CANCELLED))
            raise
        except Exception as exc:  # before the first record: a refusal for the caller
            tee.put(exc)
            if not started:
                with contextlib.suppress(StoreUnavailableError):
                    await self.store.discard(stream_id)
        finally:
            await _aclose(records)
            await on_end()

    async def _store(self, stream_id: str, entry: Numbered) -> bool:
        """Append to the store; on failure log once and stop storing this stream."""
        try:
            await self.store.append(stream_id, entry)
        except StoreUnavailableError as exc:
            if self._metrics is not None:
                self._metrics.failures.inc()
            log.warning("resumable stream %s: no longer stored (%s)", stream_id[:8], exc)
            return False
        return True


async def _ending(records: AsyncIterator[Record]) -> AsyncIterator[Record]:
    """`records`, made to end with a terminal record whatever happens after the first."""
    first = True
    try:
        async for record in records:
            first = False
            yield record
            if is_terminal(record):
                return
    except Exception as exc:
        if first:
            raise
        yield error_record(exc)
        return
    yield ServerError("the generation ended without a final record").to_record()


_CANCELLED: Record = {
    "error": {"message": "the stream was cancelled", "type": "server_error", "code": "cancelled"}
}


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(RuntimeError):
            await aclose()
