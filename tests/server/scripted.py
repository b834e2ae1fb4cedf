"""A scripted `MockEngine` for the server tests, and helpers to read its answers.

One engine serves every scenario: the last message's content names a script
(`"ok"`, `"midfail"`, `"stall"`, ...). `SEEN` records what it did, readable from
the test thread while a uvicorn thread serves it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonpatch

from openbrace import wire
from openbrace.engines.base import (
    EngineRequestError,
    EngineUnavailableError,
    Finish,
    GenerationRequest,
    MockEngine,
    Usage,
)
from openbrace.exceptions import InvalidSchemaError, UpstreamError

SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string"},
        "steps": {"type": "array", "items": {"type": "string"}},
        "n": {"type": "integer"},
    },
    "required": ["intent"],
}
DOC_TEXT = '{"intent": "bil\u2028ling", "steps": ["a/b", "c~d"], "n": 12}'
PIECES = ['{"intent": "bil', '\u2028ling", "steps": ["a/', 'b", "c~d"], "n": 1', "2}"]
KEYS = ("key-one", "key-two")


class Script:
    """What the scripted engine did, for assertions from the test thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.yielded = 0
        self.closed = threading.Event()
        self.requests: list[GenerationRequest] = []


SEEN = Script()


async def handler(request: GenerationRequest) -> AsyncIterator[str | Finish]:
    script = request.messages[-1]["content"]
    SEEN.requests.append(request)
    if script == "reject":
        raise EngineRequestError("frobnicate is not supported", param="frobnicate")
    if script == "unavailable":
        raise EngineUnavailableError("the model is loading")
    if script == "badschema":
        raise InvalidSchemaError("unsupported keyword", pointer="/properties/x", keyword="not")
    if script == "echo":  # the request as the engine saw it
        yield json.dumps({"intent": json.dumps(request.messages), "steps": sorted(request.extra)})
        yield Finish()
        return
    if script == "endless":
        try:
            yield '{"intent": "x", "steps": ['
            while True:
                await asyncio.sleep(0.02)
                with SEEN.lock:
                    SEEN.yielded += 1
                yield '"step", '
        finally:
            SEEN.closed.set()
    if script == "flood":  # far more than socket buffers hold
        yield '{"intent": "x", "steps": ['
        for _ in range(400):
            yield '"' + "y" * 65536 + '", '
        yield '"z"]}'
        yield Finish()
        return
    pieces = {
        "garbage": ['{"intent": "a"', " and then some prose"],
        "breaks": ['{"intent": 5, "n": 1}'],  # valid JSON, wrong type for intent
        "length": ['{"intent": "a", "steps": ["x"'],
    }.get(script, PIECES)
    for i, piece in enumerate(pieces):
        if script == "slow":
            await asyncio.sleep(0.15)
        if script == "pause" and i == 1:
            await asyncio.sleep(0.5)
        if script == "stall" and i == 1:
            await asyncio.sleep(30)
        if script == "midfail" and i == 2:
            raise UpstreamError("the GPU caught fire", code="boom")
        yield piece
    yield Finish("length" if script == "length" else "stop", Usage(7, 11))


ENGINE = MockEngine(handler, model_ids=("mock", "mock-2"))


def body(script: str = "ok", stream: Any = "patch", **extra: Any) -> dict[str, Any]:
    return {
        "model": "mock",
        "messages": [{"role": "user", "content": script}],
        "stream": stream,
        "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}},
        **extra,
    }


async def post(client: httpx.AsyncClient, payload: Any, **kwargs: Any) -> httpx.Response:
    return await client.post("/v1/chat/completions", json=payload, **kwargs)


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.content.endswith(b"\n")
    decoder = wire.NDJSONDecoder()
    return decoder.feed(response.content) + decoder.close()


def rebuild(records: list[dict[str, Any]]) -> Any:
    ops = [r for r in records if "op" in r]
    return jsonpatch.apply_patch(None, ops) if ops else None


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param
    return error
