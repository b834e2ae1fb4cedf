"""API keys: which routes need one, and what a caller without one is told."""

from __future__ import annotations

import json

import httpx
import pytest

from openbrace.server.auth import authorized
from tests.server.scripted import DOC_TEXT, KEYS, assert_error, body, ndjson, post, rebuild


@pytest.mark.anyio
async def test_auth(strict: httpx.AsyncClient) -> None:
    missing = await post(strict, body())
    error = assert_error(missing, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await post(strict, body(), headers={"Authorization": "Bearer key-on"})
    assert "key-on" not in wrong.text
    assert_error(wrong, 401)
    assert error["code"] == "invalid_api_key"
    assert_error(await post(strict, body(), headers={"Authorization": "Basic key-one"}), 401)
    for key in KEYS:
        ok = await post(strict, body(), headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and rebuild(ndjson(ok)) == json.loads(DOC_TEXT)
    assert_error(await strict.get("/v1/models"), 401)
    assert_error(await strict.get("/metrics"), 401)
    assert (await strict.get("/healthz")).status_code == 200


@pytest.mark.anyio
async def test_open_routes_need_no_key(strict: httpx.AsyncClient) -> None:
    """Health (for load balancers) and the playground's files are open; unknown paths 404."""
    assert (await strict.get("/healthz")).status_code == 200
    assert (await strict.get("/")).status_code == 200
    assert (await strict.get("/static/app.js")).status_code == 200
    assert_error(await strict.get("/v1/nothing"), 404)


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("Bearer key-one", True),
        ("bearer key-two", True),
        ("  Bearer   key-one  ", True),
        ("Bearer key-on", False),
        ("Bearer key-one2", False),
        ("Bearer ", False),
        ("Basic key-one", False),
        ("key-one", False),
        (None, False),
    ],
)
def test_authorized(header: str | None, allowed: bool) -> None:
    keys = tuple(key.encode() for key in KEYS)
    assert authorized(header, keys) is allowed
    assert authorized(header, ()), "no keys: the server is open"
