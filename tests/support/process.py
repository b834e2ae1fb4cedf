"""Stopping a server a test started as a subprocess."""

from __future__ import annotations

import subprocess
from typing import Any

__all__ = ["stop_process"]


def stop_process(process: subprocess.Popen[Any], grace: float = 10) -> None:
    """SIGTERM `process`; SIGKILL it if it has not exited `grace` seconds later."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
