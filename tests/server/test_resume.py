"""Resumable patch streams over real HTTP (uvicorn on loopback): drop the connection
after any op, resume, and get every op exactly once; access, expiry and the caps."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from openbrace import wire
from openbrace.engines.base import Finish, GenerationRequest, MockEngine
from openbrace.server.app import ServerConfig, create_app
from tests.support.loopback import LoopbackServer, wait_until
from tests.support.streams import apply_ops

DOCUMENT = {
    "intent": "billing",
    "steps": ["verify the charge", "refund it", "tell the customer"],
    "reply": "Hi Jane, the duplicate charge is refunded. Sorry! \u00e9\U0001f600",
}
TEXT = json.dumps(DOCUMENT, ensure_ascii=False)
N_OPS = 7  # root, intent, steps, 3 items, reply
KEY, OTHER_KEY = "sk-owner", "sk-someone-else"


async def slow_writer(request: GenerationRequest) -> AsyncIterator[str | Finish]:
    """The document a few characters at a time: about 0.6 s in all."""
    for start in range(0, len(TEXT), 4):
        await asyncio.sleep(0.02)
        yield TEXT[start : start + 4]
    yield Finish()


def body(**options: Any) -> dict[str, Any]:
    return {
        "model": "mock",
        "messages": [{"role": "user", "content": "refund"}],
        "stream": "patch",
        "response_format": {"type": "json_object"},
        "stream_options": {"resumable": True, **options},
    }


def headers(framing: str, key: str = KEY) -> dict[str, str]:
    accept = wire.SSE if framing == "sse" else wire.NDJSON
    return {"Authorization": f"Bearer {key}", "Accept": accept}


def decoder(framing: str, first_id: int = 0) -> Any:
    return wire.SSEDecoder(first_id) if framing == "sse" else wire.NDJSONDecoder()


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    config = ServerConfig(api_keys=(KEY, OTHER_KEY), resume_ttl=30)
    with LoopbackServer(create_app(MockEngine(slow_writer), config)) as running:
        yield running


def start_and_drop(url: str, framing: str, k: int) -> tuple[str, list[dict[str, Any]]]:
    """POST a resumable stream, read `k` ops, and hang up. Returns the id and the ops."""
    ops: list[dict[str, Any]] = []
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body(), headers=headers(framing)
    ) as response:
        assert response.status_code == 200
        stream_id = response.headers["x-stream-id"]
        if k == 0:
            return stream_id, ops
        frames = decoder(framing)
        for chunk in response.iter_raw():
            for record in frames.feed(chunk):
                if "op" in record:
                    ops.append(record)
                if len(ops) == k:
                    return stream_id, ops
    raise AssertionError("the stream ended before the drop point")


def resume(url: str, stream_id: str, framing: str, after: int, *, by: str = "query") -> Any:
    """GET the rest of the stream; returns (status, records)."""
    hdrs = headers(framing)
    params = {}
    if by == "query":
        params["after"] = str(after)
    else:
        hdrs["Last-Event-ID"] = str(after)
    response = httpx.get(f"{url}/v1/streams/{stream_id}", params=params, headers=hdrs, timeout=10)
    if response.status_code != 200:
        return response.status_code, response.json()
    frames = decoder(framing, after + 1)
    return 200, [*frames.feed(response.content), *frames.close()]


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
@pytest.mark.parametrize("k", [0, 1, 3, N_OPS - 1, N_OPS])
def test_drop_after_op_k_then_resume_delivers_every_op_once(
    server: LoopbackServer, framing: str, k: int
) -> None:
    """Ops before the drop plus the resume are every op exactly once, in order, rebuilding
    the document; the resume ends with the done record (generation went on meanwhile)."""
    stream_id, before = start_and_drop(server.url, framing, k)
    by = "last-event-id" if framing == "sse" else "query"
    status, records = resume(server.url, stream_id, framing, k - 1, by=by)
    assert status == 200
    after = [record for record in records if "op" in record]
    assert len(before) + len(after) == N_OPS
    assert apply_ops(before + after) == DOCUMENT
    assert "done" in records[-1]


def test_generation_continues_while_no_client_is_connected(server: LoopbackServer) -> None:
    """Dropped after the first op, the stream still completes; a later resume replays it."""
    stream_id, _ = start_and_drop(server.url, "ndjson", 1)
    time.sleep(1.0)  # the writer needs ~0.6 s: it is done by now, with nobody connected
    status, records = resume(server.url, stream_id, "ndjson", -1)
    assert status == 200
    assert apply_ops([r for r in records if "op" in r]) == DOCUMENT
    assert records[-1]["done"]["finish_reason"] == "stop"


def test_several_readers_follow_the_same_live_stream(server: LoopbackServer) -> None:
    """Three resumes opened while the stream is generating all receive it whole, live."""
    stream_id, _ = start_and_drop(server.url, "sse", 1)
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(lambda f: resume(server.url, stream_id, f, -1), ["sse", "ndjson", "sse"])
        )
    for status, records in results:
        assert status == 200
        assert apply_ops([r for r in records if "op" in r]) == DOCUMENT


def test_wrong_key_unknown_and_malformed_ids_are_the_same_404(server: LoopbackServer) -> None:
    """Another key, an unknown id and a garbage id get one identical answer."""
    stream_id, _ = start_and_drop(server.url, "ndjson", 1)
    answers = [
        httpx.get(f"{server.url}/v1/streams/{sid}", headers=headers("ndjson", key))
        for sid, key in [
            (stream_id, OTHER_KEY),
            ("A" * 32, KEY),
            ("not/even/an/id", KEY),
        ]
    ]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert answers[0].json() == answers[1].json()
    no_key = httpx.get(f"{server.url}/v1/streams/{stream_id}")
    assert no_key.status_code == 401
    assert resume(server.url, stream_id, "ndjson", -1)[0] == 200  # the owner still can


def test_after_must_be_an_op_id(server: LoopbackServer) -> None:
    """A malformed `after` is a 400 naming it."""
    stream_id, _ = start_and_drop(server.url, "ndjson", 0)
    answer = httpx.get(f"{server.url}/v1/streams/{stream_id}?after=x1", headers=headers("ndjson"))
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "after"


def test_resumable_needs_stream_patch(server: LoopbackServer) -> None:
    """`resumable` with `stream: true` is refused with a 400 naming the option."""
    answer = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={**body(), "stream": True},
        headers=headers("ndjson"),
    )
    assert answer.status_code == 400
    assert "resumable" in answer.json()["error"]["param"]


def test_an_expired_stream_is_404() -> None:
    """ttl seconds after its end a stream is gone: 404, like an id that never existed."""
    config = ServerConfig(resume_ttl=0.5)  # an open server: the id alone grants access
    with LoopbackServer(create_app(MockEngine(slow_writer), config)) as server:
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body())
        stream_id = response.headers["x-stream-id"]
        assert resume(server.url, stream_id, "ndjson", -1)[0] == 200
        time.sleep(1.0)
        status, answer = resume(server.url, stream_id, "ndjson", -1)
        assert status == 404 and answer["error"]["code"] == "stream_not_found"


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_the_stream_cap_holds_under_a_burst() -> None:
    """A burst of 12 resumable streams against a cap of 4: at most 4 are held, the rest
    get 503 at once; once those finish, new streams evict them and are admitted."""
    config = ServerConfig(resume_max_streams=4, max_concurrent=32)
    with LoopbackServer(create_app(MockEngine(slow_writer), config)) as server:

        def post(_: int) -> int:
            return httpx.post(
                f"{server.url}/v1/chat/completions", json=body(), timeout=30
            ).status_code

        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(post, range(12)))
        assert statuses.count(200) == 4 and statuses.count(503) == 8
        assert metric(server.url, "openbrace_resumable_streams_held") == 4
        assert [post(0) for _ in range(5)] == [200] * 5  # finished ones are evicted
        assert metric(server.url, "openbrace_resumable_streams_held") == 4
        assert metric(server.url, "openbrace_resume_store_bytes") > 0


def test_the_byte_cap_holds_under_a_burst() -> None:
    """With room for about three finished streams' bytes, eight streams in a row keep
    the store under its byte cap; the newest stays resumable."""
    config = ServerConfig(resume_max_bytes=2500)
    with LoopbackServer(create_app(MockEngine(slow_writer), config)) as server:
        ids = []
        for _ in range(8):
            response = httpx.post(f"{server.url}/v1/chat/completions", json=body(), timeout=30)
            assert response.status_code == 200
            ids.append(response.headers["x-stream-id"])
            assert metric(server.url, "openbrace_resume_store_bytes") <= 2500
        assert resume(server.url, ids[-1], "ndjson", -1)[0] == 200
        assert resume(server.url, ids[0], "ndjson", -1)[0] == 404


def test_metrics_count_resumes(server: LoopbackServer) -> None:
    """Each resume served adds one to the resumes counter."""
    before = metric_with_key(server.url, "openbrace_resumes_served_total")
    stream_id, _ = start_and_drop(server.url, "ndjson", 2)
    resume(server.url, stream_id, "ndjson", 1)
    resume(server.url, stream_id, "sse", 1)
    assert wait_until(
        lambda: metric_with_key(server.url, "openbrace_resumes_served_total") == before + 2
    )


def metric_with_key(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=headers("ndjson")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_the_cli_streams_resumably(capsys: pytest.CaptureFixture[str]) -> None:
    """`openbrace stream` against a server asks for a resumable stream (`--no-resume`
    does not) and prints every op."""
    from openbrace.cli import main

    with LoopbackServer(create_app(MockEngine(slow_writer))) as server:
        base = ["stream", "--base-url", f"{server.url}/v1", "-m", "mock", "-s", "{}", "refund"]
        assert main(base) == 0
        assert metric(server.url, "openbrace_resumable_streams_held") == 1
        assert main([*base, "--no-resume"]) == 0
        assert metric(server.url, "openbrace_resumable_streams_held") == 1
    lines = capsys.readouterr().out.splitlines()
    assert apply_ops([json.loads(line) for line in lines[:N_OPS]]) == DOCUMENT
    assert len(lines) == 2 * N_OPS


def test_delete_stops_the_generation_and_forgets_the_stream() -> None:
    """DELETE by the owner: the engine stops and readers, then and later, get the stream
    ended by a `cancelled` error record. Another key's DELETE is a 404."""
    written: list[str] = []

    async def endless(request: GenerationRequest) -> AsyncIterator[str | Finish]:
        yield '{"story": "'
        while True:
            await asyncio.sleep(0.01)
            written.append("x")
            yield "x"

    config = ServerConfig(api_keys=(KEY, OTHER_KEY))
    with LoopbackServer(create_app(MockEngine(endless), config)) as server:
        stream_id, _ = start_and_drop(server.url, "ndjson", 1)
        url = f"{server.url}/v1/streams/{stream_id}"
        assert httpx.delete(url, headers=headers("ndjson", OTHER_KEY)).status_code == 404
        with ThreadPoolExecutor(1) as pool:
            reader = pool.submit(resume, server.url, stream_id, "ndjson", 0)
            time.sleep(0.2)
            assert httpx.delete(url, headers=headers("ndjson")).status_code == 204
            status, records = reader.result(10)
        assert status == 200 and records[-1]["error"]["code"] == "cancelled"
        count = len(written)
        time.sleep(0.3)
        assert len(written) == count  # the generation stopped
        status, later = resume(server.url, stream_id, "ndjson", -1)
        assert status == 200 and later[-1] == records[-1]
        assert [r for r in later if "op" in r] == [{"op": "add", "path": "", "value": {}}]


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
def test_a_resume_sends_a_string_in_progress_as_one_partial_record(
    server: LoopbackServer, framing: str
) -> None:
    """With partial strings, a resume after the op before `reply` (read while `reply` was
    being written) starts with one partial record holding all of its text so far."""
    seen: list[dict[str, Any]] = []
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=body(partial_strings=True),
        headers=headers(framing),
    ) as response:
        stream_id = response.headers["x-stream-id"]
        frames = decoder(framing)
        for chunk in response.iter_raw():
            seen += frames.feed(chunk)
            if sum(r.get("partial", {}).get("path") == "/reply" for r in seen) >= 3:
                break
    ops_before = sum("op" in r for r in seen)
    before = "".join(
        r["partial"]["text"] for r in seen if "partial" in r and r["partial"]["path"] == "/reply"
    )
    time.sleep(1.0)  # the stream has ended meanwhile: the backlog holds all of reply's pieces
    status, records = resume(server.url, stream_id, framing, ops_before - 1)
    assert status == 200
    assert records[0] == {"partial": {"path": "/reply", "text": DOCUMENT["reply"]}}
    assert DOCUMENT["reply"].startswith(before) and len(before) > 0
    assert records[1] == {"op": "add", "path": "/reply", "value": DOCUMENT["reply"]}
