"""Resumable streams in Redis, shared by every replica (`--resume-store redis://...`).

One Redis Stream per resumable stream: `XADD` per record (fields `i`, the op id or
empty, and `r`, the record's JSON), `XRANGE` for the backlog and `XREAD BLOCK` to
follow it live, from whichever replica the resume lands on. Next to it a hash holds
the owner digest and state. Keys are named after a SHA-256 of the stream id, so a
listing of Redis keys does not reveal resumable ids. Every key carries an `EXPIRE`:
`deadline + ttl` while live, `ttl` once the terminal record is in.

Caps are checked when a stream is created and when one finishes (an index sorted set of streams with
their expiry, a sorted set of finished streams by finish time, a hash of bytes per
stream): past them the oldest finished streams are deleted, and if that is not
enough the new stream is refused. Replicas check without a lock, so under a burst
the caps may be overshot by the number of replicas; Redis's own `maxmemory` is the
hard limit.

Redis errors become `StoreUnavailableError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ...wire import Numbered
from . import (
    Replay,
    StoreFullError,
    StoreStats,
    StoreUnavailableError,
    entry_size,
    is_terminal,
    lost_record,
)

__all__ = ["RedisStore"]

_BLOCK_MS = 1000  # one XREAD BLOCK; between them a reader checks the stream still exists
_GRACE = 10.0


class RedisStore:
    """Resumable streams in Redis (see the module docstring).

    Args:
        url: `redis://HOST:PORT/DB` (or `rediss://`, `unix://`).
        ttl: seconds a finished stream is kept.
        max_streams, max_bytes: caps checked at creation (see the module docstring).
        prefix: key prefix, so several deployments can share one Redis.
        clock: wall-clock time source.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 300.0,
        max_streams: int = 1000,
        max_bytes: int = 64 * 1024 * 1024,
        prefix: str = "openbrace:resume:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self.max_streams = max_streams
        self.max_bytes = max_bytes
        self._prefix = prefix
        self._clock = clock
        # Any: redis-py's return types are unions of every RESP shape.
        self._redis: Any = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=_BLOCK_MS / 1000 + 4.0,
            decode_responses=False,
        )
        self._index = f"{prefix}index"  # zset: key -> expiry time
        self._finished = f"{prefix}finished"  # zset: key -> finish time
        self._sizes = f"{prefix}bytes"  # hash: key -> bytes
        self._deadlines: dict[str, float] = {}  # streams this replica writes

    def _key(self, stream_id: str) -> str:
        return self._prefix + hashlib.sha256(stream_id.encode()).hexdigest()[:40]

    async def create(self, stream_id: str, owner: str, deadline: float) -> None:
        key = self._key(stream_id)
        try:
            await self._make_room()
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(f"{key}:meta", mapping={"owner": owner, "deadline": repr(deadline)})
                pipe.expire(f"{key}:meta", self._seconds(deadline + self.ttl))
                pipe.zadd(self._index, {key: deadline + self.ttl})
                pipe.hset(self._sizes, key, 0)
                await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"the resume store is unavailable: {exc}") from exc
        self._deadlines[stream_id] = deadline

    async def append(self, stream_id: str, entry: Numbered) -> None:
        key = self._key(stream_id)
        fields = {"i": "" if entry.id is None else str(entry.id), "r": json.dumps(entry.record)}
        deadline = self._deadlines.get(stream_id, self._clock() + self.ttl)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(key, fields)
                pipe.hincrby(self._sizes, key, entry_size(entry))
                if is_terminal(entry.record):
                    now = self._clock()
                    ttl = max(1, round(self.ttl))
                    pipe.expire(key, ttl)
                    pipe.expire(f"{key}:meta", ttl)
                    pipe.zadd(self._index, {key: now + self.ttl})
                    pipe.zadd(self._finished, {key: now})
                else:
                    pipe.expire(key, self._seconds(deadline + self.ttl))
                await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"the resume store is unavailable: {exc}") from exc
        if is_terminal(entry.record):
            self._deadlines.pop(stream_id, None)
            with contextlib.suppress(RedisError, StoreFullError):  # best effort: create checks too
                await self._make_room(admit=0)

    async def discard(self, stream_id: str) -> None:
        self._deadlines.pop(stream_id, None)
        try:
            await self._delete(self._key(stream_id))
        except RedisError as exc:
            raise StoreUnavailableError(f"the resume store is unavailable: {exc}") from exc

    async def owner(self, stream_id: str) -> str | None:
        try:
            owner = await self._redis.hget(f"{self._key(stream_id)}:meta", "owner")
        except RedisError as exc:
            raise StoreUnavailableError(f"the resume store is unavailable: {exc}") from exc
        return None if owner is None else owner.decode()

    async def follow(self, stream_id: str, after: int) -> AsyncIterator[Numbered]:
        key = self._key(stream_id)
        replay = Replay(after)
        try:
            deadline = await self._redis.hget(f"{key}:meta", "deadline")
            if deadline is None:
                yield Numbered(None, lost_record("stream_expired", _GONE))
                return
            backlog = await self._redis.xrange(key)
            last = backlog[-1][0] if backlog else b"0-0"
            for entry in replay.take([_entry(fields) for _, fields in backlog], merge=True):
                yield entry
            while not replay.ended:
                found = await self._redis.xread({key: last}, block=_BLOCK_MS)
                batch = found[0][1] if found else []
                if batch:
                    last = batch[-1][0]
                    for entry in replay.take([_entry(fields) for _, fields in batch], merge=False):
                        yield entry
                elif not await self._redis.exists(f"{key}:meta"):
                    yield Numbered(None, lost_record("stream_expired", _GONE))
                    return
                elif self._clock() > float(deadline) + _GRACE:
                    yield Numbered(None, lost_record("stream_lost", _LOST))
                    return
        except RedisError:
            yield Numbered(None, lost_record("resume_store_unavailable", _DOWN))

    async def stats(self) -> StoreStats:
        try:
            await self._expire()
            streams = await self._redis.zcard(self._index)
            sizes = await self._redis.hvals(self._sizes)
        except RedisError as exc:
            raise StoreUnavailableError(f"the resume store is unavailable: {exc}") from exc
        return StoreStats(int(streams), sum(int(size) for size in sizes))

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _make_room(self, admit: int = 1) -> None:
        """Expire what is past its time, then evict finished streams while over a cap
        (counting `admit` streams about to be created)."""
        await self._expire()
        while True:
            streams = int(await self._redis.zcard(self._index))
            size = sum(int(n) for n in await self._redis.hvals(self._sizes))
            if streams + admit <= self.max_streams and size + admit <= self.max_bytes:
                return
            oldest = await self._redis.zpopmin(self._finished)
            if not oldest:
                raise StoreFullError(
                    f"{streams} resumable streams are held"
                    f" (cap {self.max_streams} streams, {self.max_bytes} bytes)"
                )
            await self._delete(oldest[0][0].decode())

    async def _expire(self) -> None:
        for key in await self._redis.zrangebyscore(self._index, "-inf", self._clock()):
            await self._delete(key.decode())

    async def _delete(self, key: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key, f"{key}:meta")
            pipe.zrem(self._index, key)
            pipe.zrem(self._finished, key)
            pipe.hdel(self._sizes, key)
            await pipe.execute()

    def _seconds(self, until: float) -> int:
        return max(1, round(until - self._clock()))


def _entry(fields: dict[Any, Any]) -> Numbered:
    op_id = fields[b"i"]
    return Numbered(int(op_id) if op_id else None, json.loads(fields[b"r"]))


_GONE = "the stream expired or was evicted while being read"
_LOST = "the stream's generation ended without a final record"
_DOWN = "the resume store became unavailable while the stream was being read"
