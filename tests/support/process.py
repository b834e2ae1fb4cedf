"""`openbrace serve` as a subprocess on loopback, and stopping it."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .loopback import wait_until

__all__ = ["Served", "serving", "stop_process"]

_LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@dataclass
class Served:
    """A running `openbrace serve`: its URL, pid, and its stderr lines so far."""

    url: str
    pid: int
    lines: list[str] = field(default_factory=list)


@contextlib.contextmanager
def serving(*args: str, timeout: float = 60) -> Iterator[Served]:
    """`openbrace serve ARGS --port 0` in a subprocess, until the block ends.

    Its stderr is read on a thread, for the port uvicorn reports and so the pipe
    never fills; the block gets the lines read so far in `Served.lines`.
    """
    command = [sys.executable, "-m", "openbrace.cli", "serve", *args]
    command += ["--port", "0", "--log-level", "info"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url: list[str] = []
    lines: list[str] = []

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if found := _LISTENING.search(line):
                url.append(found.group(1))

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert wait_until(lambda: bool(url) or process.poll() is not None, timeout=timeout), (
            "openbrace serve did not start: " + "".join(lines[-20:])
        )
        assert url, "openbrace serve exited: " + "".join(lines[-20:])
        yield Served(url[0], process.pid, lines)
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[Any], grace: float = 10) -> None:
    """SIGTERM `process`; SIGKILL it if it has not exited `grace` seconds later."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
