"""Where resumable streams keep their records: the store protocol and its shared logic.

A resumable stream (`stream_options.resumable`) is recorded as it is generated:
every record (ops with their op id, partial-string records, the final `done` or
`error`) is appended to a store, and `GET /v1/streams/{id}` reads it back from any
point and then follows it live. Two stores implement `StreamStore`:

- `memory.MemoryStore`: in this process (the default), bounded in streams and bytes;
- `redis.RedisStore`: Redis Streams (`XADD` per record, `XREAD` to follow), so every
  replica behind a load balancer can serve a resume.

Shared here: what a reader gets after op N (`Replay`: skip to op N, merge the
partial records of a string in progress into one, stop at the terminal record), the
errors, and `open_store(url)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from ...wire import Numbered, Record, encode_ndjson

__all__ = [
    "Replay",
    "StoreFullError",
    "StoreStats",
    "StoreUnavailableError",
    "StreamStore",
    "check_url",
    "entry_size",
    "is_terminal",
    "lost_record",
    "merge_partials",
    "open_store",
]


class StoreFullError(Exception):
    """No room for another resumable stream (the server answers 503)."""


class StoreUnavailableError(Exception):
    """The store cannot be reached (Redis down): resumes answer 503."""


@dataclass(frozen=True)
class StoreStats:
    """What `/metrics` reports about a store."""

    streams: int
    bytes: int


def is_terminal(record: Record) -> bool:
    """Whether `record` ends a stream (`done` or `error`)."""
    return "done" in record or "error" in record


def entry_size(entry: Numbered) -> int:
    """Bytes an entry costs a store: its compact JSON plus a fixed overhead."""
    return len(encode_ndjson(entry.record)) + 16


def lost_record(code: str, message: str) -> Record:
    """The error record a reader gets when a stream it follows cannot be completed."""
    return {"error": {"message": message, "type": "server_error", "code": code}}


def merge_partials(entries: list[Numbered]) -> list[Numbered]:
    """`entries` with each run of partial records for one path merged into one record.

    A string's partial records are contiguous (no value completes while a string is
    being written), so merging neighbours turns a string in progress into one record
    holding its text so far.
    """
    out: list[Numbered] = []
    for entry in entries:
        partial = entry.record.get("partial")
        last = out[-1].record.get("partial") if out else None
        if partial is not None and last is not None and last.get("path") == partial.get("path"):
            merged = {"path": last["path"], "text": last["text"] + partial["text"]}
            out[-1] = Numbered(None, {"partial": merged})
        else:
            out.append(entry)
    return out


class Replay:
    """Which stored records a reader that has op `after` still needs. Pure.

    Everything up to and including op `after` is skipped (ops, and the partial records
    of strings completed before it); the terminal record is always delivered. `after`
    -1 means from the start. Feed `take` the backlog first, then each live batch.
    """

    def __init__(self, after: int) -> None:
        self.skipping = after >= 0
        self.after = after
        self.ended = False

    def take(self, entries: list[Numbered], *, merge: bool) -> list[Numbered]:
        """The entries of `entries` to deliver (partials merged if `merge`)."""
        out: list[Numbered] = []
        for entry in entries:
            if self.ended:
                break
            if self.skipping and not is_terminal(entry.record):
                if entry.id is None or entry.id < self.after:
                    continue
                self.skipping = False
                if entry.id == self.after:
                    continue
            self.skipping = False
            out.append(entry)
            self.ended = is_terminal(entry.record)
        return merge_partials(out) if merge else out


class StreamStore(Protocol):
    """Records of resumable streams, keyed by stream id.

    `owner` is an opaque digest of the caller's credentials (compared by the server).
    `deadline` is the wall-clock time (`time.time()`) by which the generation ends.
    A stream is kept until `ttl` seconds after its terminal record, and never past
    `deadline + ttl`.
    """

    ttl: float

    async def create(self, stream_id: str, owner: str, deadline: float) -> None:
        """Register a new stream; `StoreFullError` when past the caps."""

    async def append(self, stream_id: str, entry: Numbered) -> None:
        """Add one record; a terminal record finishes the stream and starts its TTL."""

    async def discard(self, stream_id: str) -> None:
        """Forget a stream at once (its request failed before streaming)."""

    async def owner(self, stream_id: str) -> str | None:
        """The owner digest of a held stream; None when unknown or expired."""

    def follow(self, stream_id: str, after: int) -> AsyncIterator[Numbered]:
        """The records after op `after` (partials of a string in progress merged), then
        the live ones, up to and including the terminal record."""
        ...

    async def stats(self) -> StoreStats:
        """Streams held and bytes of records held (this store's view)."""

    async def aclose(self) -> None:
        """Release connections."""


def open_store(
    url: str | None,
    *,
    ttl: float = 300.0,
    max_streams: int = 1000,
    max_bytes: int = 64 * 1024 * 1024,
) -> StreamStore:
    """The store for `--resume-store`: None or `memory` for in-process, `redis://...` for Redis."""
    check_url(url)
    if url is None or url == "memory":
        from .memory import MemoryStore

        return MemoryStore(ttl=ttl, max_streams=max_streams, max_bytes=max_bytes)
    from .redis import RedisStore

    return RedisStore(url, ttl=ttl, max_streams=max_streams, max_bytes=max_bytes)


def check_url(url: str | None) -> None:
    """ValueError unless `url` names a store: None or `memory`, or a Redis URL."""
    if url not in (None, "memory") and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"unknown resume store {url!r}: use 'memory' or redis://HOST:PORT/DB")
