"""Load: hundreds of concurrent patch streams, every op right.

1. `openbrace serve --upstream ...` (a real process, uvicorn on loopback) fronts the
   scripted upstream (`tests.support.upstream`: a stand-in for a GPU cluster,
   which cannot run here). The upstream replays real documents from
   JSONSchemaBench (about 170 distinct ones), tokenized into BPE-sized chunks, at
   a fixed rate; all 200 streams are open at once. Every stream must deliver exactly the op sequence
   the emitter derives from the upstream's text: complete, in order, nothing
   repeated, rebuilding the document. Throughput and the latency the server adds
   (upstream chunk sent -> op received) are printed, not asserted.
2. The embedded engine behind a bounded queue: past `max_concurrent +
   max_queue`, requests get 429 without waiting; the admitted ones finish right.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from openbrace import schema as schemas
from openbrace.exceptions import InvalidSchemaError
from openbrace.server.app import ServerConfig, create_app
from tests.support import (
    LoopbackServer,
    Script,
    ScriptedUpstream,
    recorded_documents,
)
from tests.support.process import serving
from tests.support.streams import apply_ops, ndjson_records, reference_ops, split_records

STREAMS = 200
INTERVAL = 0.02  # seconds between upstream tokens: 50 tokens/s per stream, like a busy GPU
MAX_TOKENS = 150  # longest recorded document replayed (a stream lasts at most 3 s)


def _usable_documents() -> list[tuple[dict[str, Any], Any]]:
    """(schema, instance) pairs the server accepts and whose instance satisfies the schema."""
    found = []
    for _, schema, instance in recorded_documents(max_chars=1500):
        try:
            normalized = schemas.normalize(schema)
            schemas.check(normalized)
        except InvalidSchemaError:
            continue
        if schemas.first_violation(instance, normalized) is None:
            found.append((schema, instance))
    return found


@pytest.fixture(scope="module")
def load_upstream() -> Iterator[tuple[ScriptedUpstream, list[dict[str, Any]]]]:
    """The upstream with one script per stream, and each stream's response_format."""
    documents = []
    for schema, instance in _usable_documents():
        script = Script.from_document(
            instance, indent=2 if len(documents) % 2 else None, interval=INTERVAL
        )
        if len(script.chunks) <= MAX_TOKENS:
            documents.append((schema, script))
    assert len(documents) >= 100, "too few recorded documents to replay"
    formats = []
    with ScriptedUpstream() as upstream:
        for i in range(STREAMS):
            schema, script = documents[i % len(documents)]
            upstream.add(f"load-{i}", script)
            wrapper = {"name": "doc", "schema": schema}
            formats.append({"type": "json_schema", "json_schema": wrapper})
        yield upstream, formats


@pytest.fixture(scope="module")
def serve(load_upstream: tuple[ScriptedUpstream, Any]) -> Iterator[tuple[str, int]]:
    """`openbrace serve` in a subprocess, in front of the upstream: (URL, pid)."""
    upstream, _ = load_upstream
    options = ["--upstream", upstream.base_url, "--host", "127.0.0.1"]
    options += ["--max-concurrent", str(STREAMS + 56), "--max-queue", "0"]
    with serving(*options, timeout=30) as served:
        yield served.url, served.pid


async def _stream(
    client: httpx.AsyncClient, url: str, model: str, response_format: Any
) -> tuple[int, list[tuple[float, dict[str, Any]]]]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "the document"}],
        "stream": "patch",
        "response_format": response_format,
    }
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, [(time.perf_counter(), response.json())]
        return 200, await ndjson_records(response.aiter_raw())


async def _run_load(
    url: str, upstream: ScriptedUpstream, formats: list[Any]
) -> tuple[list[Any], float, float]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=STREAMS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        upstream.hold()  # every stream waits at the upstream until all are open
        tasks = [
            asyncio.ensure_future(_stream(client, url, f"load-{i}", formats[i]))
            for i in range(STREAMS)
        ]
        deadline = time.monotonic() + 30
        while upstream.active_streams < STREAMS and time.monotonic() < deadline:
            if any(task.done() for task in tasks):
                break  # a request failed early: report it below
            await asyncio.sleep(0.02)
        concurrent = upstream.active_streams
        started = time.perf_counter()
        upstream.release()
        results = await asyncio.gather(*tasks)
        return results, started, concurrent


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_200_concurrent_streams_through_openbrace_serve(
    serve: tuple[str, int], load_upstream: tuple[ScriptedUpstream, list[Any]]
) -> None:
    upstream, formats = load_upstream
    url, pid = serve
    cpu = _cpu_seconds(pid), time.process_time()
    results, started, concurrent = asyncio.run(_run_load(url, upstream, formats))
    finished = time.perf_counter()
    server_cpu, test_cpu = _cpu_seconds(pid) - cpu[0], time.process_time() - cpu[1]
    assert concurrent == STREAMS, f"only {concurrent} streams were open at once"

    added: list[float] = []
    ops_total = 0
    for i, (status, records) in enumerate(results):
        model = f"load-{i}"
        assert status == 200, records
        script = upstream.scripts[model]
        ops, control = split_records(record for _, record in records)
        assert control == [], f"{model} ended with {control}"
        expected = reference_ops(script.chunks)
        assert ops == [op for _, op in expected], f"{model}: ops differ from the upstream's text"
        paths = [op["path"] for op in ops]
        assert len(set(paths)) == len(paths), f"{model}: an op was repeated"
        assert apply_ops(ops) == json.loads(script.text)
        sent = upstream.last(model).send_times
        for (received, _), (chunk, _) in zip(records, expected, strict=True):
            if chunk < len(sent):  # ops completed by the finish have no chunk time
                added.append(received - sent[chunk])
        ops_total += len(ops)

    elapsed = finished - started
    chunks = sum(len(upstream.scripts[f"load-{i}"].chunks) for i in range(STREAMS))
    quantiles = statistics.quantiles(added, n=100)
    print(
        f"\nload: {STREAMS} concurrent streams, {ops_total} ops from {chunks} upstream tokens "
        f"in {elapsed:.2f} s ({ops_total / elapsed:.0f} ops/s, {chunks / elapsed:.0f} tokens/s; "
        f"upstream fixed rate {1 / INTERVAL:.0f} tokens/s per stream)\n"
        f"load: added latency (upstream chunk sent -> op received) "
        f"p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms, "
        f"max {max(added) * 1000:.1f} ms over {len(added)} ops\n"
        f"load: CPU seconds: server {server_cpu:.2f}, "
        f"this process (upstream + clients) {test_cpu:.2f}"
    )


# -- the embedded engine's bounded queue --------------------------------------------------

MAX_CONCURRENT, MAX_QUEUE, EXTRA = 1, 2, 5
# Six words of up to eight characters: long enough (tens of tokens) that the queue
# is still full while the extra requests arrive.
WORDS_SCHEMA = {
    "type": "object",
    "properties": {
        "words": {
            "type": "array",
            "items": {"type": "string", "maxLength": 8},
            "minItems": 6,
            "maxItems": 6,
        }
    },
    "required": ["words"],
}


async def _local_request(
    client: httpx.AsyncClient, url: str, seed: int
) -> tuple[int, float, list[dict[str, Any]]]:
    body = {
        "messages": [{"role": "user", "content": "Six words about the sea."}],
        "stream": "patch",
        "max_tokens": 120,
        "seed": seed,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "words", "schema": WORDS_SCHEMA},
        },
    }
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, time.perf_counter(), [response.json()]
        records = await ndjson_records(response.aiter_raw())
        return 200, time.perf_counter(), [record for _, record in records]


async def _flood(server: LoopbackServer, gate: Any) -> list[tuple[int, float, list[Any]]]:
    async with httpx.AsyncClient(timeout=120) as client:
        admitted = [
            asyncio.ensure_future(_local_request(client, server.url, seed))
            for seed in range(MAX_CONCURRENT + MAX_QUEUE)
        ]
        # Wait until the slot is busy and the queue is full, then send the extra ones.
        deadline = time.monotonic() + 60
        while not (gate.active == MAX_CONCURRENT and gate.waiting == MAX_QUEUE):
            assert not any(task.done() for task in admitted), "a request ended too early"
            assert time.monotonic() < deadline, "the queue never filled"
            await asyncio.sleep(0.005)
        extra = [
            asyncio.ensure_future(_local_request(client, server.url, 100 + n)) for n in range(EXTRA)
        ]
        return list(await asyncio.gather(*admitted, *extra))


@pytest.mark.model
@pytest.mark.slow
def test_local_engine_bounded_queue_refuses_with_429(local_engine: Any) -> None:
    config = ServerConfig(max_concurrent=MAX_CONCURRENT, max_queue=MAX_QUEUE)
    app = create_app(local_engine, config)
    with LoopbackServer(app, access_log=False) as server:
        results = asyncio.run(_flood(server, app.state.gate))
        status, _, _ = asyncio.run(_one_more(server))
        assert status == 200, "the server serves again once the queue drains"
    admitted, extra = results[: MAX_CONCURRENT + MAX_QUEUE], results[MAX_CONCURRENT + MAX_QUEUE :]
    last_admitted_done = max(done for _, done, _ in admitted)
    for status, done, (body,) in extra:
        assert status == 429
        assert body["error"]["type"] == "rate_limit_error"
        assert body["error"]["message"]
        # Refused at once, not after waiting in the queue: before the queue drained.
        assert done < last_admitted_done
    for status, _, records in admitted:
        assert status == 200
        ops, control = split_records(records)
        assert control == [], control
        document = apply_ops(ops)
        assert schemas.first_violation(document, schemas.normalize(WORDS_SCHEMA)) is None


async def _one_more(server: LoopbackServer) -> tuple[int, float, list[Any]]:
    async with httpx.AsyncClient(timeout=120) as client:
        return await _local_request(client, server.url, 999)
