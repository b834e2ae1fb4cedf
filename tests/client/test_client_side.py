"""`patch="client"`: a plain OpenAI-compatible server streams text, the client computes
the ops (against the scripted upstream on loopback).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from openbrace import AsyncClient, Client, InvalidOutputError, PatchStreamError, UpstreamError
from tests.client.replay import TEXT, ask, check_events, collect
from tests.support import Script, ScriptedUpstream, wait_until


def test_client_side_patches_over_a_plain_openai_server():
    with ScriptedUpstream() as upstream:
        upstream.add("plain", Script.from_text(TEXT))
        upstream.add("broken", Script.from_text('{"intent": "billing", "steps": [1,, 2]}'))

        async def main() -> list[Any]:
            async with AsyncClient("up-key", upstream.base_url, patch="client") as client:
                return await collect(client.stream(**ask(model="plain")))

        check_events(asyncio.run(main()))
        log = upstream.last("plain")
        assert log.body["stream"] is True and log.authorization == "Bearer up-key"

        with Client(base_url=upstream.base_url, patch="client") as client:
            check_events(list(client.stream(**ask(model="plain"))))
            with pytest.raises(InvalidOutputError) as info:
                list(client.stream(**ask(model="broken")))
            assert info.value.snapshot == {"intent": "billing", "steps": [1]}
            with pytest.raises(PatchStreamError) as refused:
                list(client.stream(**ask(model="unknown")))
            assert refused.value.status_code == 404


def test_client_side_patches_report_a_cut_upstream():
    with ScriptedUpstream() as upstream:
        upstream.add("cut", Script.from_text(TEXT, fault="close", fault_after=4))
        with Client(base_url=upstream.base_url, patch="client") as client:
            events = []
            with pytest.raises(UpstreamError) as info:
                for event in client.stream(**ask(model="cut")):
                    events.append(event)
        assert info.value.snapshot == (events[-1].snapshot if events else None)
        assert wait_until(lambda: upstream.open_connections == 0)
