"""Both resume stores against one contract: replay after op N, follow live, merge a
string in progress, expire, refuse past the caps. Redis runs as a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from openbrace.server.stores import StoreFullError, StreamStore
from openbrace.server.stores.memory import MemoryStore
from openbrace.wire import Numbered, OpIds, Record
from tests.support.redis import RedisServer

RECORDS: list[Record] = [
    {"op": "add", "path": "", "value": {}},
    {"op": "add", "path": "/intent", "value": "billing"},
    {"partial": {"path": "/reply", "text": "Hi "}},
    {"partial": {"path": "/reply", "text": "Ja"}},
    {"partial": {"path": "/reply", "text": "ne"}},
    {"op": "add", "path": "/reply", "value": "Hi Jane"},
    {"done": {"finish_reason": "stop", "usage": {"prompt_tokens": 1}}},
]


def numbered(records: list[Record]) -> list[Numbered]:
    ids = OpIds()
    return [ids.number(record) for record in records]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Callable[..., StreamStore]:
    def make(**options: Any) -> StreamStore:
        if request.param == "memory":
            return MemoryStore(**options)
        from openbrace.server.stores.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        prefix = f"test:{request.node.name}:{time.monotonic_ns()}:"  # fresh keys per test
        return RedisStore(url, prefix=prefix, **options)

    return make


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


async def collect(entries: AsyncIterator[Numbered]) -> list[Numbered]:
    return [entry async for entry in entries]


async def stored(store: StreamStore, stream_id: str, records: list[Record]) -> None:
    await store.create(stream_id, "owner-digest", time.time() + 30)
    for entry in numbered(records):
        await store.append(stream_id, entry)


def test_replay_from_the_start_is_every_record_with_a_string_merged(make_store: Any) -> None:
    """After -1 (a reader with nothing): all records, partials of one path as one record."""

    async def main() -> list[Numbered]:
        store = make_store()
        await stored(store, "s1", RECORDS)
        try:
            return await collect(store.follow("s1", -1))
        finally:
            await store.aclose()

    got = run(main)
    assert [entry.record for entry in got] == [
        RECORDS[0],
        RECORDS[1],
        {"partial": {"path": "/reply", "text": "Hi Jane"}},
        RECORDS[5],
        RECORDS[6],
    ]
    assert [entry.id for entry in got] == [0, 1, None, 2, None]


@pytest.mark.parametrize("after", [0, 1, 2, 5])
def test_replay_after_op_n_skips_what_the_reader_has(make_store: Any, after: int) -> None:
    """Records after op N only; the terminal record always comes; past the end, only it."""

    async def main() -> list[Numbered]:
        store = make_store()
        await stored(store, "s1", RECORDS)
        try:
            return await collect(store.follow("s1", after))
        finally:
            await store.aclose()

    got = run(main)
    ops = [entry.id for entry in got if entry.id is not None]
    assert ops == list(range(after + 1, 3))
    assert got[-1].record == RECORDS[-1]
    has_partial = any("partial" in entry.record for entry in got)
    assert has_partial == (after <= 1)  # the string written after op 1, re-sent whole


def test_readers_follow_a_live_stream_to_its_end(make_store: Any) -> None:
    """Several readers, started before and during the stream, each get it whole, live."""

    async def main() -> tuple[list[list[Numbered]], StreamStore]:
        store = make_store()
        await store.create("live", "o", time.time() + 30)
        entries = numbered(RECORDS)
        early = asyncio.ensure_future(collect(store.follow("live", -1)))
        await asyncio.sleep(0.05)
        for i, entry in enumerate(entries):
            await store.append("live", entry)
            if i == 2:
                late = asyncio.ensure_future(collect(store.follow("live", 0)))
            await asyncio.sleep(0.01)
        results = await asyncio.wait_for(asyncio.gather(early, late), 10)
        await store.aclose()
        return list(results), store

    (early, late), _ = run(main)
    ops = [e.record for e in early if "op" in e.record]
    assert ops == [r for r in RECORDS if "op" in r]
    assert [e.id for e in late if e.id is not None] == [1, 2]
    assert early[-1].record == late[-1].record == RECORDS[-1]
    text = "".join(e.record["partial"]["text"] for e in early if "partial" in e.record)
    assert text == "Hi Jane"  # live partials arrive one by one, each once


def test_owner_is_kept_and_unknown_ids_have_none(make_store: Any) -> None:
    """The owner digest comes back for a held stream; an unknown id has no owner."""

    async def main() -> tuple[str | None, str | None, str | None]:
        store = make_store()
        await store.create("known", "digest-a", time.time() + 30)
        try:
            known = await store.owner("known")
            unknown = await store.owner("never-created")
            await store.discard("known")
            return known, unknown, await store.owner("known")
        finally:
            await store.aclose()

    assert run(main) == ("digest-a", None, None)


def test_finished_streams_expire_after_the_ttl(make_store: Any) -> None:
    """A finished stream is gone ttl seconds after its last record; a live one is not."""

    async def main() -> tuple[str | None, str | None, str | None]:
        store = make_store(ttl=1)
        await stored(store, "done", RECORDS)
        await store.create("live", "o", time.time() + 30)
        try:
            before = await store.owner("done")
            await asyncio.sleep(2.2)
            return before, await store.owner("done"), await store.owner("live")
        finally:
            await store.aclose()

    assert run(main) == ("owner-digest", None, "o")


def test_past_the_stream_cap_the_oldest_finished_go_first(make_store: Any) -> None:
    """At the cap a new stream evicts the oldest finished one; with none finished, refused."""

    async def main() -> tuple[list[str | None], type[BaseException] | None]:
        store = make_store(max_streams=3)
        try:
            await stored(store, "a", RECORDS)
            await stored(store, "b", RECORDS)
            await store.create("c", "o", time.time() + 30)  # live
            await store.create("d", "o", time.time() + 30)  # evicts a
            await store.create("e", "o", time.time() + 30)  # evicts b
            owners = [await store.owner(s) for s in "abcde"]
            try:
                await store.create("f", "o", time.time() + 30)  # c, d, e live: no room
            except StoreFullError as exc:
                return owners, type(exc)
            return owners, None
        finally:
            await store.aclose()

    owners, refused = run(main)
    assert owners == [None, None, "o", "o", "o"]
    assert refused is StoreFullError


def test_the_byte_cap_evicts_finished_streams(make_store: Any) -> None:
    """Bytes past the cap: finished streams are evicted and the count stays under it."""

    async def main() -> tuple[int, list[str | None]]:
        store = make_store(max_bytes=1000)
        try:
            for name in ("a", "b", "c", "d", "e"):
                await stored(store, name, RECORDS)  # ~400 bytes each
            stats = await store.stats()
            return stats.bytes, [await store.owner(s) for s in "abcde"]
        finally:
            await store.aclose()

    size, owners = run(main)
    assert size <= 1000
    assert owners[-1] == "owner-digest" and owners[0] is None
