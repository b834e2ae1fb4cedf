"""A real `redis-server` on a loopback port, started and stopped by tests.

```python
with RedisServer() as redis:
    store = RedisStore(redis.url)
    redis.stop()      # Redis down mid-test
    redis.start()     # back, same port, empty (no persistence)
```

`redis-server` is the Debian package (the test command installs it, as it installs
Chromium). Where it is missing and cannot be installed, `require_redis()` skips the
test with one line saying so.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from tests.support.process import stop_process

__all__ = ["RedisServer", "require_redis"]


def require_redis() -> str:
    """The path of `redis-server`, or skip the test saying how to get it."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("redis-server is not installed (sudo make system-deps installs it)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """`redis-server` on 127.0.0.1 at a free port, without persistence."""

    def __init__(self) -> None:
        self.binary = require_redis()
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start (or restart) the server; returns once it accepts connections."""
        self._process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start within 10 s")

    def stop(self) -> None:
        """Stop the server (its data is gone: no persistence)."""
        if self._process is not None:
            stop_process(self._process, grace=5)
            self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
