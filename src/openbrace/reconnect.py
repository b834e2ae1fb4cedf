"""The client side of resumable streams: when to reconnect, and where to resume. Pure.

`stream(..., resumable=True)` asks the server for `stream_options.resumable` and
remembers the `X-Stream-Id` it answers with. If the connection then drops before
the `done` or `error` record, the client asks `GET {base}/streams/{id}?after=N`,
N being the id of the last op it delivered, so every op reaches the consumer
exactly once, and keeps building the same document. A `Reconnect` counts the
attempts: at most `retries` in a row without progress, `backoff` seconds before
the first, doubling up to `max_delay`; any op received resets the count.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RETRIABLE_STATUS", "Reconnect"]

RETRIABLE_STATUS = frozenset({502, 503, 504})
"""Resume answers worth retrying (a proxy hiccup, the store briefly unreachable);
404 means the stream is gone for good."""


@dataclass
class Reconnect:
    """The state of one resumable stream on the client (see the module docstring).

    Attributes:
        stream_id: the `X-Stream-Id` the server answered with (None until then, or
            when the server does not support resuming: then a drop is final).
        ops: ops delivered so far; the next resume asks for the ones after `ops - 1`.
    """

    retries: int = 5
    backoff: float = 0.25
    max_delay: float = 4.0
    stream_id: str | None = None
    ops: int = 0
    failures: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_delay < 0:
            raise ValueError("retries, backoff and max_delay must be >= 0")

    @property
    def after(self) -> int:
        """The id of the last op delivered (-1: none yet)."""
        return self.ops - 1

    def delivered(self) -> None:
        """One more op reached the consumer: progress resets the retry count."""
        self.ops += 1
        self.failures = 0

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt, or None when it must not be made
        (no stream id, or `retries` attempts in a row failed)."""
        if self.stream_id is None or self.failures >= self.retries:
            return None
        delay = min(self.max_delay, self.backoff * 2**self.failures)
        self.failures += 1
        return float(delay * random.uniform(0.8, 1.0))  # jitter: replicas are not hit in lockstep

    def path(self) -> str:
        """The resume request's path and query, relative to the base URL."""
        assert self.stream_id is not None
        return f"/streams/{self.stream_id}?after={self.after}"
