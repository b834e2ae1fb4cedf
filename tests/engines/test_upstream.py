"""UpstreamEngine: a scripted OpenAI-compatible upstream, and llama.cpp's real server.

The scripted upstream (a Starlette app on loopback) stands in for a GPU server
misbehaving on purpose: cut connections, stalls, 500s, prose instead of JSON.
The real one is `python -m llama_cpp.server` (llama-cpp-python's OpenAI-compatible
server, which nobody here wrote) serving the same GGUF as the embedded engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from openbrace import wire
from openbrace.engines.base import (
    EngineRequestError,
    EngineUnavailableError,
    Finish,
    GenerationRequest,
    Usage,
)
from openbrace.engines.upstream import OpenAIChunkParser, UpstreamEngine
from openbrace.exceptions import StreamTimeoutError, UpstreamError
from openbrace.server.app import create_app
from tests.support.loopback import LoopbackServer, wait_until
from tests.support.process import stop_process

SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string"},
        "steps": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["intent"],
    "additionalProperties": False,
}
DOC_TEXT = '{"intent": "refund\u2028now", "steps": ["a", "b"]}'
PIECES = ['{"inte', 'nt": "refund\u2028', 'now", "steps": ["a"', ', "b"]}']
UPSTREAM_KEY = "up-secret-key"
STALL = 2.0  # seconds of upstream silence before the engine gives up


class Upstream:
    """The scripted upstream's shared state (read by tests in another thread)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.model_lists = 0  # GET /v1/models requests served
        self.permits = threading.Semaphore(0)
        self.sent = 0
        self.closed = threading.Event()


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {
        "id": "x",
        "object": "chat.completion.chunk",
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def fake_upstream(state: Upstream) -> Starlette:
    async def models(request: Request) -> Response:
        state.model_lists += 1
        await asyncio.sleep(0.05)  # slow enough that a burst of callers overlaps
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": "fake", "object": "model", "owned_by": "test"},
                    {"id": "legacy", "object": "model", "owned_by": "test"},
                ],
            }
        )

    async def script(name: str) -> AsyncIterator[bytes]:
        yield b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
        pieces = {"prose": ["Sure! Here is ", "your answer."], "breaks": ['{"intent": 5}']}.get(
            name, PIECES
        )
        for i, piece in enumerate(pieces):
            if i == 2 and name == "cut":
                raise RuntimeError("scripted connection cut")
            if i == 2 and name == "stall":
                await asyncio.sleep(30)
            if i == 2 and name == "errorchunk":
                yield b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
                return
            data = chunk(piece)
            yield data.replace(b"\n", b"\r\n") if name == "crlf" else data
        yield chunk(finish="stop")
        yield b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9}}\n\n'
        yield b"data: [DONE]\n\n"

    async def lockstep() -> AsyncIterator[bytes]:
        try:
            yield chunk('{"intent": "x", "steps": [')
            while True:
                acquire = state.permits.acquire
                if not await anyio.to_thread.run_sync(acquire, True, 10, abandon_on_cancel=True):
                    return
                state.sent += 1
                yield chunk('"step", ')
        finally:
            state.closed.set()

    async def chat(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {UPSTREAM_KEY}":
            return JSONResponse({"error": {"message": f"bad key {UPSTREAM_KEY}"}}, 401)
        body = await request.json()
        state.bodies.append(body)
        name = body["messages"][-1]["content"]
        rf = body.get("response_format") or {}
        if body["model"] == "legacy" and rf.get("type") == "json_schema":
            return JSONResponse(
                {
                    "error": {
                        "message": "response_format.type must be "
                        "'text' or 'json_object'\n  File app.py"
                    }
                },
                500,
            )
        if body["model"] not in ("fake", "legacy"):
            return JSONResponse({"error": {"message": "model not found"}}, 404)
        if name == "status500":
            return JSONResponse({"error": {"message": "CUDA out of memory\nTraceback..."}}, 500)
        if name == "html":
            return HTMLResponse("<html>gateway says hi</html>")
        stream = lockstep() if name == "lockstep" else script(name)
        return StreamingResponse(stream, media_type="text/event-stream")

    return Starlette(
        routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])]
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[LoopbackServer, Upstream]]:
    state = Upstream()
    with LoopbackServer(fake_upstream(state), access_log=False) as server:
        yield server, state


@pytest.fixture(scope="module")
def gateway(upstream: tuple[LoopbackServer, Upstream]) -> Iterator[LoopbackServer]:
    """openbrace in front of the scripted upstream (STALL: generous, CI machines are busy)."""
    engine = UpstreamEngine(f"{upstream[0].url}/v1", UPSTREAM_KEY, timeout=STALL)
    with LoopbackServer(create_app(engine), access_log=False) as server:
        yield server


def request(script: str = "ok", model: str = "fake", **kw: Any) -> GenerationRequest:
    return GenerationRequest(
        model=model, messages=[{"role": "user", "content": script}], schema=SCHEMA, **kw
    )


def collect(engine: UpstreamEngine, req: GenerationRequest) -> list[str | Finish]:
    async def run() -> list[str | Finish]:
        try:
            return [item async for item in engine.generate(req)]
        finally:
            await engine.aclose()

    return anyio.run(run)


def patch(server: LoopbackServer, script: str, model: str = "fake") -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=10,
        json={
            "model": model,
            "stream": "patch",
            "messages": [{"role": "user", "content": script}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "t", "schema": SCHEMA},
            },
        },
    )


def records(response: httpx.Response) -> list[dict[str, Any]]:
    decoder = wire.NDJSONDecoder()
    return decoder.feed(response.content) + decoder.close()


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picked it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str, process: subprocess.Popen[Any]) -> bool:
    """Whether GET `url` is a 200 yet; True too once `process` has exited, to stop waiting."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return process.poll() is not None


# -- the engine on its own -------------------------------------------------------------


@pytest.mark.parametrize("script", ["ok", "crlf"])
def test_generate_yields_deltas_then_finish(upstream: Any, script: str) -> None:
    server, state = upstream
    engine = UpstreamEngine(server.url, UPSTREAM_KEY)  # no path: /v1 is appended
    items = collect(
        engine, request(script, temperature=0.0, seed=3, max_tokens=50, extra={"top_k": 5})
    )
    assert "".join(i for i in items if isinstance(i, str)) == DOC_TEXT
    assert items[-1] == Finish("stop", Usage(3, 9))
    sent = state.bodies[-1]
    assert sent["stream"] is True and sent["model"] == "fake"
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": SCHEMA, "strict": True},
    }
    assert (sent["temperature"], sent["seed"], sent["max_tokens"], sent["top_k"]) == (0, 3, 50, 5)


def test_auto_falls_back_to_json_object_schemas(upstream: Any) -> None:
    server, state = upstream
    engine = UpstreamEngine(f"{server.url}/v1", UPSTREAM_KEY)
    items = collect(engine, request(model="legacy"))
    assert "".join(i for i in items if isinstance(i, str)) == DOC_TEXT
    assert state.bodies[-1]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert engine.response_format == "json_object"


def test_models_come_from_the_upstream(upstream: Any) -> None:
    engine = UpstreamEngine(f"{upstream[0].url}/v1", UPSTREAM_KEY)

    async def run() -> list[str]:
        try:
            return [m.id for m in await engine.models()]
        finally:
            await engine.aclose()

    assert anyio.run(run) == ["fake", "legacy"]


def test_a_burst_of_cold_requests_fetches_the_model_list_once(upstream: Any) -> None:
    server, state = upstream
    engine = UpstreamEngine(f"{server.url}/v1", UPSTREAM_KEY)
    before = state.model_lists

    async def burst() -> list[list[str]]:
        results: list[list[str]] = []

        async def one() -> None:
            results.append([m.id for m in await engine.models()])

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
            return results
        finally:
            await engine.aclose()

    assert anyio.run(burst) == [["fake", "legacy"]] * 20
    assert state.model_lists - before == 1


@pytest.mark.parametrize(
    ("script", "key", "model", "error", "status"),
    [
        ("status500", UPSTREAM_KEY, "fake", EngineUnavailableError, 502),
        ("html", UPSTREAM_KEY, "fake", EngineUnavailableError, 502),
        ("ok", "wrong-key", "fake", EngineUnavailableError, 502),
        ("ok", UPSTREAM_KEY, "gone", EngineRequestError, 404),
    ],
)
def test_failures_before_text(
    upstream: Any, script: str, key: str, model: str, error: type[Exception], status: int
) -> None:
    engine = UpstreamEngine(f"{upstream[0].url}/v1", key)
    with pytest.raises(error) as caught:
        collect(engine, request(script, model=model))
    assert caught.value.status == status  # type: ignore[attr-defined]
    message = str(caught.value)
    assert UPSTREAM_KEY not in message and "Traceback" not in message and "File" not in message


def test_unreachable_upstream_is_503() -> None:
    port = free_port()  # a port nobody listens on
    with pytest.raises(EngineUnavailableError) as caught:
        collect(UpstreamEngine(f"http://127.0.0.1:{port}/v1"), request())
    assert caught.value.status == 503 and "unreachable" in caught.value.message


@pytest.mark.parametrize(
    ("script", "error"),
    [("cut", UpstreamError), ("errorchunk", UpstreamError), ("stall", StreamTimeoutError)],
)
def test_failures_after_text(upstream: Any, script: str, error: type[Exception]) -> None:
    engine = UpstreamEngine(f"{upstream[0].url}/v1", UPSTREAM_KEY, timeout=STALL)
    items: list[Any] = []

    async def run() -> None:
        try:
            async for item in engine.generate(request(script)):
                items.append(item)
        finally:
            await engine.aclose()

    with pytest.raises(error):
        anyio.run(run)
    assert "".join(items) == "".join(PIECES[:2])


# -- through the openbrace server ------------------------------------------------------


def test_patches_through_the_gateway(gateway: LoopbackServer) -> None:
    response = patch(gateway, "ok")
    assert response.status_code == 200
    assert jsonpatch.apply_patch(None, records(response)) == json.loads(DOC_TEXT)
    models = httpx.get(f"{gateway.url}/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["fake", "legacy"]


@pytest.mark.parametrize(
    ("script", "error_type"),
    [
        ("cut", "upstream_error"),
        ("errorchunk", "upstream_error"),
        ("stall", "timeout"),
        ("prose", "invalid_output"),
        ("breaks", "invalid_output"),
    ],
)
def test_gateway_mid_stream_failures_are_records(
    gateway: LoopbackServer, script: str, error_type: str
) -> None:
    found = records(patch(gateway, script))
    assert found[-1]["error"]["type"] == error_type
    jsonpatch.apply_patch(None, found[:-1])  # what was sent stays valid


@pytest.mark.parametrize(
    ("script", "model", "status"),
    [("status500", "fake", 502), ("html", "fake", 502), ("ok", "nope", 404)],
)
def test_gateway_failures_before_text_are_statuses(
    gateway: LoopbackServer, script: str, model: str, status: int
) -> None:
    response = patch(gateway, script, model)
    assert response.status_code == status
    error = response.json()["error"]
    assert "Traceback" not in error["message"]
    if script == "status500":
        assert "HTTP 500" in error["message"] and "CUDA out of memory" in error["message"]


def test_disconnect_closes_the_upstream_request(upstream: Any) -> None:
    """Lockstep: the upstream sends one chunk per permit, so it cannot run ahead."""
    server, state = upstream
    engine = UpstreamEngine(f"{server.url}/v1", UPSTREAM_KEY, timeout=10)
    with LoopbackServer(create_app(engine), access_log=False) as gateway_:
        state.closed.clear()
        with (
            httpx.Client(timeout=10) as client,
            client.stream(
                "POST",
                f"{gateway_.url}/v1/chat/completions",
                json={
                    "model": "fake",
                    "stream": "patch",
                    "messages": [{"role": "user", "content": "lockstep"}],
                    "response_format": {"type": "json_object"},
                },
            ) as response,
        ):
            stream = response.iter_raw()
            got = next(stream)
            for permits in (1, 2, 3):  # one chunk, so one op, at a time
                state.permits.release()
                while got.count(b"\n") < 3 + permits:  # root, /intent, /steps, then steps
                    got += next(stream)
            sent_when_closed = state.sent
        # No further permit is given: only closing the upstream request ends it.
        assert state.closed.wait(5), "the upstream request was left open"
        assert state.sent == sent_when_closed == 3
        assert wait_until(lambda: gateway_.open_connections == 0)


# -- the chunk parser --------------------------------------------------------------------

RECORDED = b"".join(
    [
        b": comment\r\n\r\n",
        b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n',
        *(chunk(p) for p in PIECES),
        b'event: message\nid: 7\ndata: {"choices":[{"index":0,"delta":{},',
        b'\ndata: "finish_reason":"length"}]}\r\n\r\n',
        b"data: [DONE]\n\n",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(RECORDED)), max_size=12))
def test_chunk_parser_any_split(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    parser = OpenAIChunkParser()
    out: list[Any] = []
    for start, end in zip([0, *points], [*points, len(RECORDED)], strict=True):
        out += parser.feed(RECORDED[start:end])
    out += parser.close()
    assert "".join(i for i in out if isinstance(i, str)) == DOC_TEXT
    assert out[-1] == Finish("length") and sum(isinstance(i, Finish) for i in out) == 1


def test_chunk_parser_truncated_and_garbage() -> None:
    parser = OpenAIChunkParser()
    assert parser.feed(chunk("{")) == ["{"]
    with pytest.raises(UpstreamError, match="before finishing"):
        parser.close()
    with pytest.raises(UpstreamError, match="not JSON"):
        OpenAIChunkParser().feed(b"data: {nope\n\n")
    with pytest.raises(UpstreamError, match="event stream"):
        _feed_close(b"<html>hi</html>")


def _feed_close(data: bytes) -> list[Any]:
    parser = OpenAIChunkParser()
    return parser.feed(data) + parser.close()


# -- llama.cpp's own server as the upstream ----------------------------------------------


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` with the default GGUF on a free loopback port."""
    pytest.importorskip("llama_cpp.server")
    from openbrace.engines.local import default_model_path

    port = free_port()
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(default_model_path()),
            "--model_alias",
            "smol",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "1024",
            "--verbose",
            "False",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        assert wait_until(lambda: answers(f"{url}/models", process), timeout=60, step=0.2), (
            "llama_cpp.server did not start"
        )
        assert process.poll() is None, f"llama_cpp.server exited; see {log.name}"
        yield url
    finally:
        stop_process(process)
        log.close()


@pytest.mark.model
def test_llama_cpp_server_upstream_matches(llama_server: str) -> None:
    schema = {
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": ["billing", "bug", "other"]},
            "urgent": {"type": "boolean"},
            "summary": {"type": "string", "maxLength": 60},
        },
        "required": ["intent", "urgent", "summary"],
        "additionalProperties": False,
    }
    messages = [{"role": "user", "content": "Triage: I was charged twice for my plan!"}]
    sampling = {"temperature": 0, "seed": 7, "max_tokens": 60}
    # The reference: the upstream's own answer, asked directly (its own dialect).
    direct = httpx.post(
        f"{llama_server}/chat/completions",
        timeout=60,
        json={
            "model": "smol",
            "messages": messages,
            **sampling,
            "response_format": {"type": "json_object", "schema": schema},
        },
    ).json()
    expected = json.loads(direct["choices"][0]["message"]["content"])

    engine = UpstreamEngine(llama_server, timeout=60)
    with LoopbackServer(create_app(engine), access_log=False) as gateway_:
        response = httpx.post(
            f"{gateway_.url}/v1/chat/completions",
            timeout=60,
            json={
                "model": "smol",
                "messages": messages,
                "stream": "patch",
                "stream_options": {"include_usage": True},
                **sampling,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "triage", "schema": schema},
                },
            },
        )
        assert response.status_code == 200, response.text
        found = records(response)
    assert found[-1]["done"]["finish_reason"] == "stop", found[-1]
    ops = found[:-1]
    assert ops[0] == {"op": "add", "path": "", "value": {}}
    assert [op["path"] for op in ops[1:]] == ["/intent", "/urgent", "/summary"]
    assert jsonpatch.apply_patch(None, ops) == expected
    assert engine.response_format == "json_object"  # auto-detected llama-cpp-python's dialect


# -- `openbrace serve` as a process ------------------------------------------------------


def test_serve_command_fronts_an_upstream(upstream: Any, tmp_path: Any) -> None:
    """The real CLI: keys from the flag and the environment, the banner, a patch stream."""
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openbrace.cli",
            "serve",
            "--port",
            str(port),
            "--upstream",
            f"{upstream[0].url}/v1",
            "--upstream-key",
            UPSTREAM_KEY,
            "--api-key",
            "flag-key",
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OPENBRACE_API_KEYS": "env-key-1, env-key-2"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: answers(f"{url}/healthz", process), timeout=30, step=0.1)
        assert process.poll() is None
        for key in ("flag-key", "env-key-2"):
            response = patch_with_key(url, key)
            assert jsonpatch.apply_patch(None, records(response)) == json.loads(DOC_TEXT)
        assert patch_with_key(url, "nope").status_code == 401
    finally:
        process.terminate()
        code = process.wait(15)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert "3 API key(s) configured" in output
    assert "flag-key" not in output and "env-key" not in output and UPSTREAM_KEY not in output
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its shutdown


def patch_with_key(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        timeout=10,
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "fake",
            "stream": "patch",
            "messages": [{"role": "user", "content": "ok"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "t", "schema": SCHEMA},
            },
        },
    )
