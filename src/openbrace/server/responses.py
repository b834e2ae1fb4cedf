"""One generation, delivered over HTTP: the ASGI response behind `/v1/chat/completions`.

`GenerationResponse` runs the whole life of a generation inside the response, so
that every phase races the client's connection:

1. take a slot from the `Gate` (429 when it and its queue are full);
2. pull the engine's first item *before* the status line, so pre-stream failures
   (unknown model, unsupported schema, upstream down) are ordinary error statuses;
3. deliver: one JSON body (`stream: false`), OpenAI chunks (`stream: true`), or
   patch records as NDJSON or SSE (`stream: "patch"`). From here on errors travel
   in-band, as the last record.

A task watches for `http.disconnect` the whole time; when the client goes away
the delivery is cancelled and every generator in the chain is closed, which
stops the engine within one step (an upstream engine closes its HTTP request).
A `request_timeout` bounds the whole generation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from starlette.types import Message, Receive, Scope, Send

from .. import wire
from ..engines.base import Engine, Finish
from ..exceptions import RequestError, ServerError, StreamError, StreamTimeoutError
from ..request import ChatPlan
from ..streaming import patch_records
from ..tools import CallBuilder, ToolCallDelta
from .errors import as_request_error, error_response
from .limits import Gate
from .metrics import Metrics
from .resume import Resumer
from .stores import StoreFullError, StoreUnavailableError

__all__ = ["GenerationResponse", "Runtime"]

log = logging.getLogger("openbrace.server")

T = TypeVar("T")

_CLOSE_GRACE = 5.0  # seconds to clean up after cancellation, or past the deadline to send


@dataclass
class Runtime:
    """What every generation shares: the engine, the gate, metrics and time limits."""

    engine: Engine
    gate: Gate
    metrics: Metrics
    request_timeout: float
    keepalive: float
    resumer: Resumer | None = None


class _ClientGone(Exception):
    """`send` failed: the client closed the connection."""


class GenerationResponse:
    """An ASGI response that runs `plan` on `runtime.engine` (see the module docstring).

    Args:
        runtime: shared server state.
        plan: the validated request.
        sse: for `"patch"`, whether the client asked for SSE (`Accept: text/event-stream`).
        started: `time.monotonic()` when the request arrived (time-to-first-op origin).
        api_key: the caller's key, which owns a resumable stream (None: open server).
    """

    def __init__(
        self,
        runtime: Runtime,
        plan: ChatPlan,
        *,
        sse: bool,
        started: float,
        api_key: str | None = None,
    ):
        self.rt = runtime
        self.plan = plan
        self.sse = sse
        self.started = started
        self.deadline = started + runtime.request_timeout
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self._send: Send | None = None
        self._scope: Scope = {"type": "http"}
        self.disconnected = False
        self._started = False  # the status line was sent
        self._status = 0
        self.op_ids = wire.OpIds()  # numbers the patch ops handed to the framer
        self._complete = False  # the whole response was handed to the server
        self.api_key = api_key
        self._handed_off = False  # a resumable generation task holds the slot now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = send
        self._scope = scope
        # The deadline is enforced where the engine is awaited (a `timeout` record);
        # this outer bound also catches a client that stops reading, which would
        # otherwise hold its slot forever with `send` blocked on a full socket.
        bound = self.deadline - time.monotonic() + _CLOSE_GRACE
        with anyio.move_on_after(max(bound, 0)) as outer:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
                try:
                    await self._run()
                except _ClientGone:
                    self.disconnected = True
                finally:
                    tg.cancel_scope.cancel()
        if outer.cancelled_caught:
            self.rt.metrics.errors.labels("stream", "timeout").inc()
        log.info(
            "%s: %s stream=%s status=%s ops=%d %.3fs%s",
            self.id,
            self.plan.request.model,
            self.plan.mode,
            self._status,
            self.op_ids.count,
            time.monotonic() - self.started,
            " (client disconnected: generation stopped)"
            if self.disconnected
            else " (abandoned: the client stopped reading)"
            if outer.cancelled_caught
            else "",
        )

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        """Cancel `scope` when the client disconnects (the body was already read)."""
        while (await receive())["type"] != "http.disconnect":
            pass
        # After the last byte, servers report every connection as disconnected.
        self.disconnected = not self._complete
        scope.cancel()

    async def _emit(self, message: Message) -> None:
        assert self._send is not None
        try:
            await self._send(message)
        except OSError:  # ASGI 2.4 servers report a gone client this way
            raise _ClientGone from None
        if message["type"] == "http.response.start":
            self._started = True
            self._status = message["status"]
        elif not message.get("more_body", False):
            self._complete = True

    async def _run(self) -> None:
        try:
            await self.rt.gate.acquire(wait=self.deadline - time.monotonic())
        except RequestError as exc:
            await self._error(exc)
            return
        self.rt.metrics.streams_in_flight.inc()
        try:
            await self._generate()
        except (_ClientGone, anyio.get_cancelled_exc_class()):
            raise
        except Exception as exc:  # a bug of ours: answer if we still can, never crash
            if self._started:
                log.error("%s: generation failed mid-response", self.id, exc_info=exc)
            else:
                await self._error(exc)  # logs it; answers a plain 500
        finally:
            if not self._handed_off:
                await self._end_generation()

    async def _end_generation(self) -> None:
        self.rt.metrics.streams_in_flight.dec()
        self.rt.gate.release()

    async def _generate(self) -> None:
        request, mode = self.plan.request, self.plan.mode
        if self.plan.options.resumable and self.rt.resumer is not None:
            await self._resumable(self.rt.resumer)
            return
        source: AsyncIterator[Any] = (
            patch_records(
                self.rt.engine, request, partial_strings=self.plan.options.partial_strings
            )
            if mode == "patch"
            else self.rt.engine.generate(request)
        )
        try:
            try:
                first = await self._pull(source)
            except StopAsyncIteration:
                first = Finish()
            except Exception as exc:  # before the status line: an error status
                await self._error(exc)
                return
            if mode == "json":
                await self._json(source, first)
            elif mode == "chunks":
                await self._stream(self._chunk_frames(source, first), "text/event-stream")
            else:
                await self._stream(*self._patch_frames(source, first))
        finally:
            await _close(source)

    async def _pull(self, source: AsyncIterator[Any]) -> Any:
        """The next item of `source`, or `StreamTimeoutError` past the request deadline."""
        remaining = self.deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            with anyio.fail_after(remaining):
                return await source.__anext__()
        except TimeoutError:
            raise StreamTimeoutError(
                f"the request took longer than the server's limit of {self.rt.request_timeout:g} s",
                code="request_timeout",
            ) from None

    # -- delivery -----------------------------------------------------------------

    async def _error(self, exc: BaseException) -> None:
        err = as_request_error(exc)
        self.rt.metrics.errors.labels("before", err.type).inc()
        await error_response(err)(self._scope, _no_receive, self._emit)

    async def _json(self, source: AsyncIterator[Any], item: Any) -> None:
        parts: list[str] = []
        calls = CallBuilder()
        try:
            while not isinstance(item, Finish):
                if isinstance(item, ToolCallDelta):
                    calls.add(item)
                else:
                    parts.append(item)
                item = await self._pull(source)
        except StopAsyncIteration:
            item = ServerError("the engine ended without a finish reason")
        except Exception as exc:  # nothing sent yet: still an error status
            item = exc
        if not isinstance(item, Finish):
            await self._error(item)
            return
        body = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.plan.request.model,
            "choices": [
                {
                    "index": 0,
                    "message": _message("".join(parts), calls),
                    "logprobs": None,
                    "finish_reason": item.reason,
                }
            ],
            "usage": item.usage.to_dict(),
        }
        data = json.dumps(body, ensure_ascii=False).encode()
        await self._emit(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"x-request-id", self.id.encode()),
                ],
            }
        )
        await self._emit({"type": "http.response.body", "body": data})

    # -- resumable streams (server/resume.py) -----------------------------------------

    async def _resumable(self, resumer: Resumer) -> None:
        """Generate in a task of its own that outlives this connection; stream its copy."""
        try:
            stream_id = await resumer.create(self.api_key)
        except (StoreFullError, StoreUnavailableError) as exc:
            full = isinstance(exc, StoreFullError)
            await self._error(
                RequestError(
                    f"cannot start a resumable stream: {exc}",
                    status=503,
                    code="resume_store_full" if full else "resume_store_unavailable",
                )
            )
            return
        source = patch_records(
            self.rt.engine, self.plan.request, partial_strings=self.plan.options.partial_strings
        )
        self._handed_off = True
        copy = resumer.launch(
            stream_id, self._first_then_rest(source), on_end=self._end_generation, ids=self.op_ids
        )
        try:
            try:
                first = await copy.__anext__()
            except Exception as exc:
                await self._error(exc)
                return
            frames, media = self._framed(_prepend(first, copy))
            await self._stream(frames, media, [(b"x-stream-id", stream_id.encode())])
        finally:
            await _close(copy)

    async def _first_then_rest(self, source: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
        """The records of `source` under the deadline; a refusal before the first raises."""
        try:
            try:
                first = await self._pull(source)
            except StopAsyncIteration:
                first = ServerError("the engine ended without a finish reason").to_record()
            async for record in self._records(source, first):
                yield record
        finally:
            await _close(source)

    def _framed(self, records: AsyncIterator[wire.Numbered]) -> tuple[AsyncIterator[bytes], str]:
        include_usage = self.plan.options.include_usage
        return wire.patch_frames(
            records, sse=self.sse, keepalive=self.rt.keepalive, include_usage=include_usage
        )

    async def _stream(
        self,
        frames: AsyncIterator[bytes],
        media_type: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [
            *(extra_headers or []),
            (b"content-type", media_type.encode()),
            # Proxies must neither cache nor buffer a live stream.
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-request-id", self.id.encode()),
        ]
        try:
            await self._emit({"type": "http.response.start", "status": 200, "headers": headers})
            async for frame in frames:
                await self._emit({"type": "http.response.body", "body": frame, "more_body": True})
            await self._emit({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await _close(frames)

    def _patch_frames(
        self, source: AsyncIterator[Any], first: dict[str, Any]
    ) -> tuple[AsyncIterator[bytes], str]:
        return self._framed(wire.number_ops(self._records(source, first), self.op_ids))

    async def _records(
        self, source: AsyncIterator[Any], record: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """`record` then the rest of `source`, under the deadline, counted in metrics."""
        metrics = self.rt.metrics
        first_op_seen = False
        try:
            while True:
                if "op" in record:
                    metrics.ops_sent.inc()
                    if not first_op_seen:
                        first_op_seen = True
                        metrics.time_to_first_op.observe(time.monotonic() - self.started)
                elif "error" in record:
                    metrics.errors.labels("stream", str(record["error"].get("type"))).inc()
                yield record
                if "done" in record or "error" in record:  # the last record
                    return
                try:
                    record = await self._pull(source)
                except StopAsyncIteration:
                    return
                except StreamTimeoutError as exc:
                    record = exc.to_record()
        finally:
            await _close(source)

    async def _chunk_frames(self, source: AsyncIterator[Any], item: Any) -> AsyncIterator[bytes]:
        """OpenAI `chat.completion.chunk` SSE events, then `data: [DONE]`."""
        yield self._chunk({"role": "assistant", "content": ""})
        try:
            while not isinstance(item, Finish):
                if isinstance(item, ToolCallDelta):
                    yield self._chunk({"tool_calls": [_call_delta(item)]})
                elif item:
                    yield self._chunk({"content": item})
                item = await self._pull(source)
        except StopAsyncIteration:
            item = ServerError("the engine ended without a finish reason")
        except StreamError as exc:
            item = exc
        except Exception as exc:
            log.error("%s: generation failed mid-stream", self.id, exc_info=exc)
            item = ServerError("internal error while generating")
        if isinstance(item, StreamError):
            self.rt.metrics.errors.labels("stream", item.type).inc()
            yield _sse_data(item.to_record())
            return
        yield self._chunk({}, finish_reason=item.reason)
        if self.plan.options.include_usage:
            yield _sse_data({**self._chunk_head(), "choices": [], "usage": item.usage.to_dict()})
        yield b"data: [DONE]\n\n"

    def _chunk_head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.plan.request.model,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse_data({**self._chunk_head(), "choices": [choice]})


def _message(content: str, calls: CallBuilder) -> dict[str, Any]:
    """OpenAI's `message`: with calls, `tool_calls` and null content when there is no text."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["content"] = content or None
        message["tool_calls"] = [call.to_openai() for call in calls.calls()]
    return message


def _call_delta(delta: ToolCallDelta) -> dict[str, Any]:
    """OpenAI's `delta.tool_calls[i]`: the first piece of a call has its id, type and name."""
    out: dict[str, Any] = {"index": delta.index}
    function: dict[str, Any] = {"arguments": delta.arguments}
    if delta.id is not None:
        out["id"] = delta.id
        out["type"] = "function"
    if delta.name is not None:
        function = {"name": delta.name, **function}
    out["function"] = function
    return out


def _sse_data(obj: Any) -> bytes:
    # ASCII-escaped: some OpenAI clients split lines on U+2028 and friends.
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _no_receive() -> Message:
    raise RuntimeError("the request body was read before the response started")


async def _prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


async def _close(iterator: AsyncIterator[Any]) -> None:
    """Close an async generator even from a cancelled task, within a grace period."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    with anyio.move_on_after(_CLOSE_GRACE, shield=True):
        # RuntimeError: another task (a framer's pump) is still driving it; that
        # task was cancelled and closes it itself.
        with contextlib.suppress(RuntimeError):
            await aclose()
