"""What the server lets in: body size and concurrent generations (API keys: `auth`).

Both answer before any work is done, with a `RequestError` (413, 429): a refused
request costs the server almost nothing.
"""

from __future__ import annotations

import anyio
from starlette.requests import Request

from ..exceptions import RequestError

__all__ = ["Gate", "read_body"]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing with 413 as soon as it is known to exceed `limit` bytes.

    A `Content-Length` above the limit is refused before reading anything; a chunked
    body is counted as it arrives, so an oversized one is never held in memory.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> RequestError:
    return RequestError(
        f"request body exceeds the limit of {limit} bytes", status=413, code="request_too_large"
    )


class Gate:
    """At most `limit` generations at once and `queue` more waiting; refuse the rest.

    A request that finds every slot taken waits in a bounded FIFO queue (anyio's
    semaphore is fair); one that finds the queue full too is refused at once with
    429, and so is one that waited longer than `wait` seconds. Create it anywhere;
    it binds to the event loop on first use.

    Args:
        limit: concurrent generations (slots).
        queue: requests allowed to wait for a slot; 0 refuses as soon as all are busy.
        wait: the longest a request may wait in the queue, in seconds.
    """

    def __init__(self, limit: int, queue: int, wait: float = 30.0):
        if limit < 1 or queue < 0:
            raise ValueError("a gate needs limit >= 1 and queue >= 0")
        self.limit = limit
        self.queue = queue
        self.wait = wait
        self.waiting = 0
        self._semaphore: anyio.Semaphore | None = None

    @property
    def active(self) -> int:
        """Slots in use right now."""
        return 0 if self._semaphore is None else self.limit - self._semaphore.value

    async def acquire(self, wait: float | None = None) -> None:
        """Take a slot, waiting in the queue if there is room; `RequestError(429)` otherwise.

        Args:
            wait: wait at most this long (and never longer than the gate's own `wait`).
        """
        wait = self.wait if wait is None else min(wait, self.wait)
        if self._semaphore is None:
            self._semaphore = anyio.Semaphore(self.limit)
        if self._semaphore.value > 0:  # a free slot means nobody is queued (anyio hands
            self._semaphore.acquire_nowait()  # released slots straight to waiters)
            return
        if self.waiting >= self.queue:
            raise _busy(f"all {self.limit} generation slots are busy and the queue is full")
        self.waiting += 1
        try:
            with anyio.fail_after(max(wait, 0)):
                await self._semaphore.acquire()
        except TimeoutError:
            raise _busy(f"no generation slot became free within {wait:.3g} s") from None
        finally:
            self.waiting -= 1

    def release(self) -> None:
        """Give a slot back (exactly once per successful `acquire`)."""
        assert self._semaphore is not None
        self._semaphore.release()


def _busy(message: str) -> RequestError:
    return RequestError(f"{message}; retry later", status=429, code="too_many_requests")
