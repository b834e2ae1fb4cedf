"""Benchmark: what resumable streams cost (`server/stores`), in-process and on Redis.

- Append: the cost the generation pays per record (one `append` awaited per record,
  as `server/resume.py` does), for a stream of `n` ops of ~70 bytes each.
- Resume: from `follow(id, after)` on a finished stream to its last record, the
  backlog after the middle op (what a reconnecting client waits for).

Redis is a real `redis-server` started on a loopback port for the run (skipped, and
said so, when it is not installed). Wall time, median of the runs.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openbrace.server.stores import StreamStore
from openbrace.server.stores.memory import MemoryStore
from openbrace.wire import OpIds, Record

from .harness import Section, fmt_time, md_table

__all__ = ["run"]


def _records(n: int) -> list[Record]:
    ops: list[Record] = [{"op": "add", "path": "", "value": {}}]
    ops += [{"op": "add", "path": f"/f{i}", "value": f"value number {i:06d}"} for i in range(n)]
    return [*ops, {"done": {"finish_reason": "stop", "usage": {}}}]


@contextmanager
def _redis() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


async def _measure(store: StreamStore, n: int, runs: int) -> dict[str, float]:
    records = _records(n)
    appends, resumes = [], []
    for run in range(runs):
        stream_id = f"bench-{run}-{time.monotonic_ns()}"
        ids = OpIds()
        entries = [ids.number(record) for record in records]
        await store.create(stream_id, "", time.time() + 60)
        started = time.perf_counter()
        for entry in entries:
            await store.append(stream_id, entry)
        appends.append((time.perf_counter() - started) / len(entries))
        started = time.perf_counter()
        got = [entry async for entry in store.follow(stream_id, n // 2)]
        resumes.append(time.perf_counter() - started)
        assert len(got) == n - n // 2 + 1, len(got)  # the ops after the middle one, done
    await store.aclose()
    return {"append": statistics.median(appends), "resume": statistics.median(resumes)}


def run(out_dir: Path, *, smoke: bool = False) -> Section:
    del out_dir
    n, runs = (50, 1) if smoke else (1000, 5)
    rows: list[list[Any]] = []
    with _redis() as url:
        stores: list[tuple[str, Any]] = [("in-process (memory)", lambda: MemoryStore())]
        if url is not None:
            from openbrace.server.stores.redis import RedisStore

            stores.append(("Redis Streams (loopback)", lambda: RedisStore(url)))
        for name, make in stores:
            figures = asyncio.run(_measure(make(), n, runs))
            rows.append(
                [name, fmt_time(figures["append"]), f"{n // 2}", fmt_time(figures["resume"])]
            )
    body = "\n".join(
        [
            f"`benchmarks/resume.py`: a resumable stream of {n} ops (~70 bytes each) appended "
            "record by record, each `append` awaited as the generation task does; then a "
            f"resume after op {n // 2} of the finished stream, read to its `done`. Wall "
            f"time, median of {runs} run(s)."
            + ("" if url is not None else " redis-server is not installed: Redis skipped."),
            "",
            md_table(["store", "append / record", "ops replayed", "resume (to done)"], rows),
        ]
    )
    return Section("6. Resumable streams: store cost (issue 14)", body)
