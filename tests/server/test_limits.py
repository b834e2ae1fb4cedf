"""Limits: body size, and a bounded number of generations with a bounded queue."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from openbrace.exceptions import RequestError
from openbrace.server.limits import Gate
from tests.server.scripted import DOC_TEXT, KEYS, assert_error, body, ndjson, post, rebuild

AUTH = {"Authorization": f"Bearer {KEYS[0]}"}


@pytest.mark.anyio
async def test_body_too_large(strict: httpx.AsyncClient) -> None:
    big = body(padding="x" * 4096)
    assert_error(await post(strict, big, headers=AUTH), 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        data = json.dumps(big).encode()
        for i in range(0, len(data), 512):
            yield data[i : i + 512]

    response = await strict.post("/v1/chat/completions", content=chunks(), headers=AUTH)
    assert "content-length" not in response.request.headers
    assert_error(response, 413)


@pytest.mark.anyio
async def test_busy_server_answers_429_at_once(
    strict_app: Starlette, strict: httpx.AsyncClient
) -> None:
    gate = strict_app.state.gate
    first: list[httpx.Response] = []

    async def hold_the_slot() -> None:
        first.append(await post(strict, body("slow"), headers=AUTH))

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_the_slot)
        while gate.active == 0:  # holds the only slot, with no queue
            await anyio.sleep(0.01)
        busy = await post(strict, body(), headers=AUTH)
        error = assert_error(busy, 429)
        assert busy.headers["retry-after"] == "1"
        assert error["type"] == "rate_limit_error"
    assert first[0].status_code == 200
    assert rebuild(ndjson(first[0])) == json.loads(DOC_TEXT)
    assert (await post(strict, body(), headers=AUTH)).status_code == 200  # the slot is free again


def test_gate_bounds_concurrency_and_queue() -> None:
    gate = Gate(limit=2, queue=1, wait=5)
    running = peak = 0
    refused = 0

    async def job() -> None:
        nonlocal running, peak, refused
        try:
            await gate.acquire()
        except RequestError as exc:
            assert exc.status == 429
            refused += 1
            return
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.05)
        running -= 1
        gate.release()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(job)

    anyio.run(main)
    assert peak == 2 and refused == 2  # 2 run, 1 waits, 2 are refused at once
    assert gate.active == 0 and gate.waiting == 0
