"""Fixtures of the client tests: the replay server on a real uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.replay import Replay
from tests.support import LoopbackServer


@pytest.fixture(scope="package")
def replay_server() -> Iterator[tuple[Replay, str]]:
    """The replay app on a real uvicorn at 127.0.0.1 (one for the package); yields it and
    its base URL."""
    replay = Replay()
    with LoopbackServer(replay.app(), access_log=False) as server:
        yield replay, server.url + "/v1"


@pytest.fixture
def replay(replay_server: tuple[Replay, str]) -> Replay:
    replay_server[0].__init__()  # fresh records for each test
    return replay_server[0]


@pytest.fixture
def url(replay_server: tuple[Replay, str]) -> str:
    return replay_server[1]
