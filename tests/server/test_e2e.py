"""The real server over the real embedded model, talked to by three kinds of client.

The official `openai` SDK, our own SDK (NDJSON, SSE, sync), and plain `httpx`, all
against one `openbrace` server on loopback (`local_server`, shared per session).
Outputs are kept short (`max_tokens`), and temperature 0 makes them comparable.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

import httpx
import jsonpatch
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from openbrace import AsyncClient, Client
from openbrace.engines.local import DEFAULT_MODEL_ID
from tests.support.loopback import LoopbackServer, wait_until

pytestmark = pytest.mark.model


class Ticket(BaseModel):
    intent: Literal["billing", "bug", "other"]
    urgent: bool
    summary: str = Field(max_length=40)


SCHEMA = Ticket.model_json_schema()
PROMPT = "Triage this support ticket: 'I was charged twice for my plan this month!'"
MESSAGES = [{"role": "user", "content": PROMPT}]
FORMAT = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": SCHEMA}}
SAMPLING = {"temperature": 0, "seed": 1, "max_tokens": 64}


def sdk(server: LoopbackServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def valid(document: Any) -> Any:
    jsonschema.validate(document, SCHEMA)
    return document


def completion_text(server: LoopbackServer) -> str:
    completion = sdk(server).chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=MESSAGES,
        response_format=FORMAT,
        **SAMPLING,  # type: ignore[arg-type]
    )
    assert completion.choices[0].finish_reason == "stop"
    return completion.choices[0].message.content or ""


# -- the official openai SDK -----------------------------------------------------------


def test_openai_create(local_server: LoopbackServer) -> None:
    valid(json.loads(completion_text(local_server)))
    ids = [m.id for m in sdk(local_server).models.list()]
    assert ids == [DEFAULT_MODEL_ID]


def test_openai_create_stream(local_server: LoopbackServer) -> None:
    chunks = list(
        sdk(local_server).chat.completions.create(
            model=DEFAULT_MODEL_ID,
            messages=MESSAGES,
            response_format=FORMAT,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            **SAMPLING,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion_text(local_server)  # same request, same text, either way
    valid(json.loads(text))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_parse_with_pydantic(local_server: LoopbackServer) -> None:
    completions = sdk(local_server).chat.completions
    parse = getattr(completions, "parse", None) or sdk(local_server).beta.chat.completions.parse
    parsed = (
        parse(model=DEFAULT_MODEL_ID, messages=MESSAGES, response_format=Ticket, **SAMPLING)
        .choices[0]
        .message.parsed
    )  # type: ignore[arg-type]
    assert isinstance(parsed, Ticket)


# -- plain HTTP ------------------------------------------------------------------------


def test_patch_rebuilds_the_completion(local_server: LoopbackServer) -> None:
    response = httpx.post(
        f"{local_server.url}/v1/chat/completions",
        timeout=60,
        json={
            "model": DEFAULT_MODEL_ID,
            "messages": MESSAGES,
            "response_format": FORMAT,
            "stream": "patch",
            "stream_options": {"include_usage": True},
            **SAMPLING,
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = response.content.split(b"\n")
    assert lines[-1] == b"" and all(lines[:-1])
    records = [json.loads(line) for line in lines[:-1]]
    assert records[-1]["done"]["finish_reason"] == "stop"
    ops = records[:-1]
    assert all(list(op) == ["op", "path", "value"] and op["op"] == "add" for op in ops)
    assert [op["path"] for op in ops] == ["", "/intent", "/urgent", "/summary"]
    assert jsonpatch.apply_patch(None, ops) == json.loads(completion_text(local_server))


def test_local_engine_refuses_unknown_fields(local_server: LoopbackServer) -> None:
    response = httpx.post(
        f"{local_server.url}/v1/chat/completions",
        json={
            "model": DEFAULT_MODEL_ID,
            "messages": MESSAGES,
            "response_format": FORMAT,
            "stream": "patch",
            "frobnicate": True,
            "logit_bias": {},
        },
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert "frobnicate" in error["message"] and "logit_bias" in error["message"]
    assert error["param"] in ("frobnicate", "logit_bias")


# -- our SDK -----------------------------------------------------------------------------


def test_our_sdk_all_three_forms(local_server: LoopbackServer) -> None:
    base = f"{local_server.url}/v1"
    options = {
        "model": DEFAULT_MODEL_ID,
        "input": PROMPT,
        "response_format": Ticket,
        "temperature": 0,
        "seed": 1,
        "max_tokens": 64,
    }

    async def stream(framing: Literal["ndjson", "sse"]) -> list[Any]:
        async with AsyncClient(base_url=base, framing=framing) as client:
            return [event async for event in client.stream(**options)]

    ndjson_events = asyncio.run(stream("ndjson"))
    sse_events = asyncio.run(stream("sse"))
    with Client(base_url=base) as client:
        result = client.generate(**options)
    assert isinstance(result, Ticket)
    assert [e.op for e in ndjson_events] == [e.op for e in sse_events]
    assert [e.field for e in ndjson_events] == ["", "intent", "urgent", "summary"]
    assert ndjson_events[-1].snapshot == result.model_dump()


# -- cancellation --------------------------------------------------------------------------


def test_disconnect_stops_the_local_engine(local_server: LoopbackServer, local_engine: Any) -> None:
    """The model stops within a step or so of the client leaving.

    The essay must be 2000 characters long, so without the disconnect the model
    would run to `max_tokens` (200 steps).
    """
    schema = {
        "type": "object",
        "properties": {
            "intent": {"enum": ["billing", "bug"]},
            "essay": {"type": "string", "minLength": 2000},
        },
        "required": ["intent", "essay"],
    }
    body = {
        "model": DEFAULT_MODEL_ID,
        "stream": "patch",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "Write a long essay about tickets."}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "essay", "schema": schema},
        },
    }
    stats = local_engine.stats
    before = stats.sampled_tokens
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{local_server.url}/v1/chat/completions", json=body) as response,
    ):
        got = b""
        for piece in response.iter_raw():
            got += piece
            if got.count(b"\n") >= 2:  # the root and /intent: the essay has begun
                at_close = stats.sampled_tokens
                break  # leaving iter_raw closes the connection (and so does the `with`)
    metrics = f"{local_server.url}/metrics"
    assert wait_until(lambda: "openbrace_streams_in_flight 0" in httpx.get(metrics).text, 10)
    stopped = stats.sampled_tokens
    time.sleep(0.3)
    assert stats.sampled_tokens == stopped, "the engine kept stepping after the stream ended"
    assert stopped - before < 100, "the generation ran on instead of stopping"
    # Steps finished after the client left: the one in flight, plus any that began
    # before the server's event loop saw the FIN (a loaded machine delays it).
    assert stopped - at_close <= 3
