"""Run an ASGI app under a real uvicorn on 127.0.0.1, in a background thread.

```python
with LoopbackServer(app) as server:
    httpx.get(server.url + "/healthz")
    server.task_count()        # asyncio tasks alive in the server's loop
    server.open_connections    # TCP connections uvicorn holds open
```

The port is chosen by the OS (port 0), so tests never collide. Logging is left
alone (`log_config=None`): uvicorn's records propagate to the root logger, where
pytest's `caplog` sees them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn

__all__ = ["LoopbackServer", "wait_until"]

T = TypeVar("T")


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; return its last value.

    For state that settles asynchronously (a socket closing, a task finishing):
    tests assert the returned value, so a condition that never holds still fails.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return bool(condition())
        time.sleep(step)


class LoopbackServer:
    """A uvicorn server on 127.0.0.1 (OS-chosen port) in a daemon thread.

    Args:
        app: the ASGI application.
        send_buffer: if set, the SO_SNDBUF of the listening socket, which accepted
            connections inherit: a small one makes backpressure show after a few
            kilobytes instead of the megabytes the kernel would otherwise buffer.
        **options: extra `uvicorn.Config` options (for example `access_log=False`).

    Attributes:
        url: `http://127.0.0.1:PORT`, set once started.
        loop: the server thread's event loop, set once started.
    """

    def __init__(self, app: Any, *, send_buffer: int | None = None, **options: Any):
        options = {"log_config": None, "lifespan": "off", "timeout_graceful_shutdown": 2, **options}
        self._config = uvicorn.Config(app, host="127.0.0.1", port=0, **options)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if send_buffer is not None:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self._socket.bind(("127.0.0.1", 0))
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._run, name="loopback-uvicorn", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.url = ""

    def _run(self) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[self._socket])

        asyncio.run(serve())

    def start(self) -> LoopbackServer:
        """Start serving; returns once the socket is bound (at most 10 s)."""
        self._thread.start()
        if not wait_until(lambda: self._server.started or not self._thread.is_alive(), 10):
            raise RuntimeError("uvicorn did not start within 10 s")
        if not self._server.started:
            raise RuntimeError("uvicorn failed to start")
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for its thread (forcing it after 5 s)."""
        self._server.should_exit = True
        self._thread.join(5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)
        self._socket.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Run `fn()` inside the server's event loop thread and return its result."""
        assert self.loop is not None, "server not started"

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def task_count(self) -> int:
        """How many asyncio tasks are alive in the server's loop (uvicorn's own included).

        The probe's own task is not counted.
        """
        return self.call(lambda: len(asyncio.all_tasks())) - 1

    @property
    def open_connections(self) -> int:
        """How many client TCP connections the server currently holds open."""
        return len(self._server.server_state.connections)
