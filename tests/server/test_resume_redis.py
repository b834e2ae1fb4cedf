"""Resumable streams shared through a real Redis by two `openbrace serve` replicas in
front of a scripted upstream: start on one, resume on the other; Redis stopped
mid-stream."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from openbrace import wire
from tests.support import Script, ScriptedUpstream
from tests.support.process import serving
from tests.support.redis import RedisServer
from tests.support.streams import apply_ops

KEY, OTHER_KEY = "sk-replicas", "sk-other"
DOCUMENT = {
    "intent": "billing",
    "steps": ["verify the charge", "refund the duplicate", "email the receipt"],
    "reply": "Hi Jane, we refunded the duplicate charge; the receipt is on its way.",
}
N_OPS = 7


@contextlib.contextmanager
def replica(upstream: str, store: str) -> Iterator[str]:
    """`openbrace serve` in a subprocess with a Redis resume store; yields its URL."""
    options = ["--upstream", upstream, "--api-key", KEY, "--api-key", OTHER_KEY]
    with serving(*options, "--resume-store", store, timeout=30) as served:
        yield served.url


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        server.add("ticket", Script.from_document(DOCUMENT, interval=0.04))  # ~1.5 s
        yield server


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def replicas(upstream: ScriptedUpstream, redis: RedisServer) -> Iterator[tuple[str, str]]:
    with replica(upstream.base_url, redis.url) as a, replica(upstream.base_url, redis.url) as b:
        yield a, b


def body() -> dict[str, Any]:
    return {
        "model": "ticket",
        "messages": [{"role": "user", "content": "refund"}],
        "stream": "patch",
        "response_format": {"type": "json_object"},
        "stream_options": {"resumable": True},
    }


def headers(framing: str, key: str = KEY) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {key}",
        "Accept": wire.SSE if framing == "sse" else wire.NDJSON,
    }


def decode(framing: str, data: bytes, first_id: int = 0) -> list[dict[str, Any]]:
    decoder: Any = wire.SSEDecoder(first_id) if framing == "sse" else wire.NDJSONDecoder()
    return [*decoder.feed(data), *decoder.close()]


def start(url: str, k: int) -> tuple[str, list[dict[str, Any]]]:
    """A resumable stream on `url`: read `k` ops and hang up."""
    ops: list[dict[str, Any]] = []
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body(), headers=headers("ndjson"), timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        decoder = wire.NDJSONDecoder()
        for chunk in response.iter_raw():
            ops += [r for r in decoder.feed(chunk) if "op" in r]
            if len(ops) >= k:
                return response.headers["x-stream-id"], ops[:k]
    raise AssertionError("the stream ended before the drop point")


@pytest.mark.parametrize("framing", ["ndjson", "sse"])
@pytest.mark.parametrize("k", [0, 2, N_OPS])
def test_a_stream_started_on_one_replica_resumes_on_the_other(
    replicas: tuple[str, str], framing: str, k: int
) -> None:
    """Dropped on replica A after op k (while A still generates), resumed on replica B:
    every op once, the same document, and B follows A's generation live to `done`."""
    a, b = replicas
    stream_id, before = start(a, k)
    response = httpx.get(
        f"{b}/v1/streams/{stream_id}", params={"after": k - 1}, headers=headers(framing), timeout=30
    )
    assert response.status_code == 200
    records = decode(framing, response.content, k)
    after = [r for r in records if "op" in r]
    assert len(before) + len(after) == N_OPS
    assert apply_ops(before + after) == DOCUMENT
    assert "done" in records[-1]


def test_another_key_gets_404_on_every_replica(replicas: tuple[str, str]) -> None:
    """The owner check travels with the stream: another key is refused by both replicas."""
    a, b = replicas
    stream_id, _ = start(a, 1)
    for url in (a, b):
        answer = httpx.get(f"{url}/v1/streams/{stream_id}", headers=headers("ndjson", OTHER_KEY))
        assert answer.status_code == 404
    assert httpx.get(f"{b}/v1/streams/{stream_id}", headers=headers("ndjson")).status_code == 200


def test_redis_down_mid_stream(upstream: ScriptedUpstream) -> None:
    """Redis stops while a stream is generating: its connected client still gets every
    op and `done`; a resume answers 503, and a new resumable request 503 too."""
    with RedisServer() as redis, replica(upstream.base_url, redis.url) as a:
        body_ = {**body(), "stream_options": {"resumable": True, "include_usage": True}}
        records: list[dict[str, Any]] = []
        with httpx.stream(
            "POST", f"{a}/v1/chat/completions", json=body_, headers=headers("ndjson"), timeout=30
        ) as response:
            stream_id = response.headers["x-stream-id"]
            decoder = wire.NDJSONDecoder()
            for chunk in response.iter_raw():
                records += decoder.feed(chunk)
                if len(records) == 2:
                    redis.stop()
        assert apply_ops([r for r in records if "op" in r]) == DOCUMENT
        assert "done" in records[-1]
        resumed = httpx.get(f"{a}/v1/streams/{stream_id}", headers=headers("ndjson"))
        assert resumed.status_code == 503
        assert resumed.json()["error"]["code"] == "resume_store_unavailable"
        fresh = httpx.post(f"{a}/v1/chat/completions", json=body(), headers=headers("ndjson"))
        assert fresh.status_code == 503 and fresh.headers["retry-after"] == "1"
