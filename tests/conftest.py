"""Shared fixtures. Each helper adds its own below; keep them independent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def local_engine() -> Iterator[Any]:
    """The embedded engine with the real default model (SmolLM2-135M), loaded once.

    Shared by every test that runs the model; a test must not close it. Tests that
    need fresh counters read `engine.stats` before and after.
    """
    import anyio

    from openbrace.engines.local import default_engine

    engine = default_engine()
    anyio.run(engine.load)
    yield engine
    anyio.run(engine.aclose)  # free llama.cpp before interpreter shutdown tears ctypes down


# -- a real server in front of the embedded engine (server) ------------------------


@pytest.fixture(scope="session")
def local_server(local_engine: Any) -> Iterator[Any]:
    """`create_app(local_engine)` on a real uvicorn at 127.0.0.1 (open: no API keys).

    Yields a `tests.support.loopback.LoopbackServer`; `.url` is its base URL.
    """
    from openbrace.server.app import create_app
    from tests.support.loopback import LoopbackServer

    with LoopbackServer(create_app(local_engine), access_log=False) as server:
        yield server
