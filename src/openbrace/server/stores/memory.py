"""The in-process store for resumable streams: bounded in streams and bytes.

Past a cap, the streams that finished first are evicted first; a new stream that
still does not fit is refused (`StoreFullError`, a 503), and a live stream that
outgrows the byte cap on its own is dropped from the store (its client keeps
receiving it; a resume then answers 404). Finished streams expire `ttl` seconds
after their terminal record. All on the event loop thread: no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ...wire import Numbered
from . import (
    Replay,
    StoreFullError,
    StoreStats,
    entry_size,
    is_terminal,
    lost_record,
)

__all__ = ["MemoryStore"]


@dataclass
class _Stream:
    owner: str
    deadline: float  # monotonic
    entries: list[Numbered] = field(default_factory=list)
    size: int = 0
    finished: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def changed(self) -> None:
        """Wake every reader waiting for this stream, and arm a fresh event."""
        self.wake.set()
        self.wake = asyncio.Event()


class MemoryStore:
    """Resumable streams in this process's memory (see the module docstring).

    Args:
        ttl: seconds a finished stream is kept.
        max_streams: streams held at once (live and finished).
        max_bytes: bytes of records held at once (`entry_size` of each).
        clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        max_streams: int = 1000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or max_streams < 1 or max_bytes < 1:
            raise ValueError("ttl must be >= 0, max_streams and max_bytes >= 1")
        self.ttl = ttl
        self.max_streams = max_streams
        self.max_bytes = max_bytes
        self._clock = clock
        self._wall_offset = time.time() - clock()
        self._streams: dict[str, _Stream] = {}
        self._finished: OrderedDict[str, float] = OrderedDict()  # id -> expiry, in finish order
        self._bytes = 0

    async def create(self, stream_id: str, owner: str, deadline: float) -> None:
        self._expire()
        while self._full(extra=1) and self._finished:
            self._evict_oldest_finished()
        if self._full(extra=1):
            raise StoreFullError(
                f"{len(self._streams)} resumable streams are live"
                f" (cap {self.max_streams} streams, {self.max_bytes} bytes)"
            )
        self._streams[stream_id] = _Stream(owner, deadline - self._wall_offset)

    async def append(self, stream_id: str, entry: Numbered) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.finished:
            return  # dropped or evicted: the connected client still gets its records
        size = entry_size(entry)
        stream.entries.append(entry)
        stream.size += size
        self._bytes += size
        if is_terminal(entry.record):
            stream.finished = True
            self._finished[stream_id] = self._clock() + self.ttl
        while self._bytes > self.max_bytes and self._finished:
            self._evict_oldest_finished()
        if self._bytes > self.max_bytes:
            self._remove(stream_id)  # one live stream larger than the whole cap
        stream.changed()

    async def discard(self, stream_id: str) -> None:
        self._remove(stream_id)

    async def owner(self, stream_id: str) -> str | None:
        self._expire()
        stream = self._streams.get(stream_id)
        return None if stream is None else stream.owner

    async def follow(self, stream_id: str, after: int) -> AsyncIterator[Numbered]:
        replay = Replay(after)
        position = 0
        while not replay.ended:
            stream = self._streams.get(stream_id)
            if stream is None:
                yield Numbered(None, lost_record("stream_expired", _GONE))
                return
            wake = stream.wake
            batch = stream.entries[position:]
            position = len(stream.entries)
            for entry in replay.take(batch, merge=True):
                yield entry
            if replay.ended:
                return
            if not batch:
                remaining = stream.deadline + _GRACE - self._clock()
                if remaining <= 0:
                    yield Numbered(None, lost_record("stream_lost", _LOST))
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), remaining)

    async def stats(self) -> StoreStats:
        self._expire()
        return StoreStats(len(self._streams), self._bytes)

    async def aclose(self) -> None:
        for stream_id in list(self._streams):
            self._remove(stream_id)

    def _full(self, extra: int = 0) -> bool:
        return len(self._streams) + extra > self.max_streams or self._bytes >= self.max_bytes

    def _expire(self) -> None:
        now = self._clock()
        while self._finished:
            stream_id, expiry = next(iter(self._finished.items()))
            if expiry > now:
                break
            self._remove(stream_id)
        for stream_id, stream in list(self._streams.items()):
            if not stream.finished and stream.deadline + self.ttl < now:
                self._remove(stream_id)  # its generation never ended (a bug): do not leak

    def _evict_oldest_finished(self) -> None:
        self._remove(next(iter(self._finished)))

    def _remove(self, stream_id: str) -> None:
        stream = self._streams.pop(stream_id, None)
        self._finished.pop(stream_id, None)
        if stream is not None:
            self._bytes -= stream.size
            stream.changed()  # readers following it notice it is gone


_GRACE = 10.0  # seconds past a stream's deadline before a reader stops waiting for it
_GONE = "the stream expired or was evicted while being read"
_LOST = "the stream's generation ended without a final record"
