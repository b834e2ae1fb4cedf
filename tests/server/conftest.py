"""The server's app called directly through `httpx.ASGITransport` (no socket).

`client` talks to an open app with short timers; `strict` to one with keys and
tight limits (one slot, no queue, 2 KiB bodies). Each test gets fresh apps, so
metrics and slots start at zero.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from openbrace.server.app import ServerConfig, create_app
from tests.server.scripted import ENGINE, KEYS


def asgi_client(app: Starlette) -> httpx.AsyncClient:
    """An httpx client whose requests `app` answers in this event loop."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server")


@pytest.fixture
def app() -> Starlette:
    return create_app(ENGINE, ServerConfig(keepalive=0.2, request_timeout=2.5))


@pytest.fixture
def strict_app() -> Starlette:
    config = ServerConfig(api_keys=KEYS, max_body_bytes=2048, max_concurrent=1, max_queue=0)
    return create_app(ENGINE, config)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        yield client


@pytest.fixture
async def strict(strict_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(strict_app) as client:
        yield client
