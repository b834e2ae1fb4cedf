"""Shared fixtures; each is independent of the others."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

# CI replays the same examples every run, so a red build is reproducible; a
# developer's run draws fresh ones and keeps finding new cases (as it found the
# stop-string bug). HYPOTHESIS_PROFILE=ci reproduces CI locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


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
