"""Test support: servers on loopback, and a scripted stand-in for a GPU cluster.

- `ScriptedUpstream`, `Script`: an OpenAI-compatible upstream replaying recorded
  token streams, with fault modes (see `tests.support.upstream`).
- `LoopbackServer`: any ASGI app under uvicorn on 127.0.0.1 in a thread.
- `recorded_documents()`: real JSON documents (JSONSchemaBench) to replay.
- `serving()`: `openbrace serve` as a subprocess on loopback; `stop_process()`:
  SIGTERM a server subprocess, SIGKILL it if it lingers.
- `tests.support.streams`: reading NDJSON patch streams, and the reference ops a
  correct server sends for a given upstream text.
"""

from __future__ import annotations

from .loopback import LoopbackServer, wait_until
from .process import stop_process
from .upstream import Fault, Script, ScriptedUpstream, StreamLog, recorded_documents, tokenize

__all__ = [
    "Fault",
    "LoopbackServer",
    "Script",
    "ScriptedUpstream",
    "StreamLog",
    "recorded_documents",
    "stop_process",
    "tokenize",
    "wait_until",
]
