"""The in-process transport: a client served by an engine or an app in this process.

- `engine_records(engine, body)`: the records the server would stream for a
  chat-completions body, parsed by the server's own `parse_chat` and produced by
  its own pipeline here; a refusal before the stream is the `PatchStreamError`
  the server's status line would have raised.
- `LoopThread`: a private event loop in a daemon thread, so sync code can drive
  async engines (`Client` in-process).
- `SyncASGITransport`: a sync httpx transport onto an ASGI app, on a `LoopThread`
  (the OpenAI SDK's transport when there is no server; async code uses httpx's own
  `ASGITransport`). Requests go to `IN_PROCESS_URL`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from .exceptions import PatchStreamError, RequestError

if TYPE_CHECKING:
    from .engines.base import Engine

__all__ = [
    "IN_PROCESS_URL",
    "LoopThread",
    "SyncASGITransport",
    "engine_records",
]

T = TypeVar("T")

IN_PROCESS_URL = "http://in-process.invalid/v1"  # never resolved: an ASGI transport serves it


async def engine_records(engine: Engine, body: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The records of the chat-completions `body` from `engine`, as the server would
    stream them (a patch stream: `body` must ask for `stream: "patch"`)."""
    from .request import parse_chat
    from .streaming import patch_records

    try:
        plan = parse_chat(body)
    except RequestError as exc:
        raise PatchStreamError.from_request_error(exc) from exc
    records = patch_records(engine, plan.request, partial_strings=plan.options.partial_strings)
    try:
        async for record in records:
            yield record
    except RequestError as exc:
        raise PatchStreamError.from_request_error(exc) from exc
    finally:
        await records.aclose()  # type: ignore[attr-defined]


class LoopThread:
    """A private event loop in a daemon thread, for driving async engines from sync code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="openbrace-client-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            # Interrupted (KeyboardInterrupt...): stop the coroutine before going on.
            future.cancel()
            concurrent.futures.wait([future])
            raise

    def iterate(self, events: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator from sync code; closing this generator closes it."""

        async def step() -> tuple[bool, Any]:
            try:
                return True, await events.__anext__()
            except StopAsyncIteration:
                return False, None

        interrupted = False
        try:
            while True:
                try:
                    more, item = self.run(step())
                except (KeyboardInterrupt, SystemExit):
                    interrupted = True  # `run` cancelled the step, which closed `events`
                    raise
                if not more:
                    return
                yield item
        finally:
            if not interrupted:
                self._aclose(events)

    def _aclose(self, events: AsyncIterator[Any]) -> None:
        aclose = events.aclose()  # type: ignore[attr-defined]
        if self.loop.is_closed():  # after Client.close() there is nothing left to stop
            aclose.close()
        elif threading.current_thread() is self._thread:  # collected on our own loop
            self.loop.create_task(aclose)
        else:
            self.run(aclose)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncASGITransport(httpx.BaseTransport):
    """A sync httpx transport onto an ASGI app, run on a `LoopThread` (buffered)."""

    def __init__(self, app: Any, loop: LoopThread) -> None:
        self._asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self._loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def send() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            copy = httpx.Request(
                request.method, request.url, headers=request.headers, content=content
            )
            response = await self._asgi.handle_async_request(copy)
            body = b"".join([part async for part in response.stream])  # type: ignore[union-attr]
            return response.status_code, response.headers.raw, body

        status, headers, body = self._loop.run(send())
        return httpx.Response(status, headers=headers, content=body, request=request)
