"""A resumable stream from the real embedded model: dropped after two ops over SSE,
resumed with `Last-Event-ID`, it is the same stream a non-resumable request gives; and
the SDK's resumable stream through a connection that is cut mid-frame."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import httpx
import jsonschema
import pytest
from pydantic import BaseModel, Field

from openbrace import AsyncClient, wire
from openbrace.engines.local import DEFAULT_MODEL_ID
from openbrace.reconnect import Reconnect
from tests.client.test_resumable import Cutting
from tests.support.loopback import LoopbackServer
from tests.support.streams import apply_ops

pytestmark = pytest.mark.model


class Ticket(BaseModel):
    intent: Literal["billing", "bug", "other"]
    urgent: bool
    summary: str = Field(max_length=40)


SCHEMA = Ticket.model_json_schema()
BODY = {
    "messages": [{"role": "user", "content": "I was charged twice for my plan this month!"}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}},
    "stream": "patch",
    "temperature": 0,
    "seed": 1,
    "max_tokens": 64,
}


def test_the_real_model_resumes_over_sse_and_the_sdk_over_a_cut(
    local_server: LoopbackServer,
) -> None:
    """Ops before the drop + the resume == the ops of the same request not resumable;
    the SDK, cut after 150 bytes, yields that same sequence once."""
    url = local_server.url
    sse = {"Accept": wire.SSE}
    plain = httpx.post(f"{url}/v1/chat/completions", json=BODY, headers=sse, timeout=120)
    reference = [r for r in wire.SSEDecoder().feed(plain.content) if "op" in r]

    resumable = {**BODY, "stream_options": {"resumable": True}}
    before: list[dict[str, Any]] = []
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=resumable, headers=sse, timeout=120
    ) as response:
        stream_id = response.headers["x-stream-id"]
        decoder = wire.SSEDecoder()
        for chunk in response.iter_raw():
            before += [r for r in decoder.feed(chunk) if "op" in r]
            if len(before) >= 2:
                break
    before = before[:2]
    rest = httpx.get(
        f"{url}/v1/streams/{stream_id}", headers={**sse, "Last-Event-ID": "1"}, timeout=120
    )
    after = [r for r in wire.SSEDecoder(2).feed(rest.content) if "op" in r]
    assert before + after == reference
    jsonschema.validate(apply_ops(before + after), SCHEMA)

    async def sdk() -> list[dict[str, Any]]:
        transport = Cutting([150])
        client = AsyncClient(base_url=f"{url}/v1", framing="sse", transport=transport)  # type: ignore[arg-type]
        resume = Reconnect(retries=3, backoff=0.05)
        try:
            stream = client.stream(
                model=DEFAULT_MODEL_ID, input=BODY["messages"], response_format=SCHEMA,  # type: ignore[arg-type]
                temperature=0, seed=1, max_tokens=64, resumable=resume,
            )  # fmt: skip
            ops = [event.op async for event in stream]
            assert any(r.startswith("GET /v1/streams/") for r in transport.requests)
            return ops
        finally:
            await client.close()

    assert asyncio.run(sdk()) == reference
