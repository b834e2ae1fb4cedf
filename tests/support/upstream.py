"""A scripted OpenAI-compatible upstream: a stand-in for a GPU cluster.

openbrace serves big models by pointing `UpstreamEngine` at an OpenAI-compatible
server (vLLM, SGLang, llama.cpp's server, ...) running on GPUs. No GPU exists
here, so tests and benchmarks talk to this server instead: it speaks the same
protocol (`GET /v1/models`, `POST /v1/chat/completions` with `stream: true` SSE
chunks or `stream: false`), but instead of running a model it replays a recorded
token stream at a fixed rate, and can misbehave on demand. It is the only thing
the reliability tests mock; the openbrace server in front of it is real.

```python
from tests.support import Script, ScriptedUpstream

with ScriptedUpstream() as upstream:                  # uvicorn on 127.0.0.1, free port
    upstream.add("ticket", Script.from_document({"intent": "billing"}, interval=0.005))
    upstream.add("cut", Script.from_text('{"a": [1, 2', fault="close", fault_after=3))
    engine = UpstreamEngine(upstream.base_url)        # base_url ends in /v1
    ...                                               # requests with model="ticket"
    log = upstream.last("ticket")                     # what was sent, chunk by chunk
    log.chunks_sent, log.send_times, log.outcome
    upstream.active_streams, upstream.peak_streams, upstream.open_connections
```

`hold()` makes new streams wait before their first content chunk until
`release()`: a load test can open hundreds of streams, see them all waiting at
the upstream at once (`active_streams`), then let them run together.

The request's `model` picks the script (unknown models get a 404, like OpenAI).
Each content chunk goes out as its own SSE event, chunk `i` at `start + i *
interval` (a fixed rate that catches up rather than drifts). `send_times[i]` is
the `time.perf_counter()` just after chunk `i` was handed to the socket, so a
test in the same process can measure the latency a proxy adds.

Faults (`Script.fault`), each striking after `fault_after` content chunks:

- `"close"`: drop the connection (no finish chunk, no `[DONE]`).
- `"stall"`: stop sending and hold the connection open until the client leaves
  (or `stall_limit` seconds pass).
- `"http_error"`: answer HTTP `error_status` (500) with an OpenAI-style error
  body saying `error_message`, no stream (with `fault_after > 0` the status is
  already sent: the stream is cut instead).
- `"not_json"`: send an SSE event whose data is not JSON (an HTML error page a
  proxy might inject), then end the stream.

Text that is not JSON, or JSON that breaks the schema, is not a transport fault
but content: script it with `Script.from_text("Sure! Here it is...")`.

Tool calls: `Script.from_tool_calls([("lookup", {"order_id": "A-17"})])` replays
OpenAI's `delta.tool_calls` chunks (id, type and name first, then the arguments'
JSON text in token-sized pieces) and finishes with `"tool_calls"`; pass the
arguments as a string to script text that is not JSON.

Because `send` waits while the socket is full, `chunks_sent` stops growing when
the consumer stops reading: that is how tests observe backpressure.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .loopback import LoopbackServer

__all__ = [
    "Fault",
    "Script",
    "ScriptedUpstream",
    "StreamLog",
    "recorded_documents",
    "tokenize",
]

Fault = Literal["close", "stall", "http_error", "not_json"]

# Pieces the size of BPE tokens: a word (with its leading space) of at most 6
# characters, a run of whitespace, or one punctuation character.
_TOKEN = re.compile(r" ?[^\W_]{1,6}| ?\d{1,3}|\s+|.", re.DOTALL)

DATA_DIR = os.environ.get("OPENBRACE_SCHEMABENCH", "/work/shared/data/jsonschemabench")


def tokenize(text: str) -> list[str]:
    """Split `text` into token-sized chunks (about 3 characters each, like BPE).

    Joining the chunks gives back `text` exactly.
    """
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Script:
    """A recorded token stream and how to replay it.

    Attributes:
        chunks: the content deltas, in order; their concatenation is the reply. A dict
            is sent as the whole `delta` (tool-call chunks).
        interval: seconds between chunks (0 sends as fast as the socket takes them).
        fault: how to misbehave, or None (see the module docstring).
        fault_after: content chunks sent before the fault strikes.
        finish_reason: the final chunk's finish reason ("stop" or "length").
        stall_limit: longest a `"stall"` holds the connection, in seconds.
        error_status: the HTTP status of an `"http_error"`.
        error_message: the message in an `"http_error"` body.
        prompt_tokens: reported in `usage`.
    """

    chunks: tuple[str | dict[str, Any], ...]
    interval: float = 0.0
    fault: Fault | None = None
    fault_after: int = 0
    finish_reason: str = "stop"
    stall_limit: float = 30.0
    error_status: int = 500
    error_message: str = "the GPU fell over"
    prompt_tokens: int = 7

    @classmethod
    def from_text(cls, text: str, **options: Any) -> Script:
        """A script that replays `text` tokenized with `tokenize`."""
        return cls(chunks=tuple(tokenize(text)), **options)

    @classmethod
    def from_document(cls, document: Any, *, indent: int | None = None, **options: Any) -> Script:
        """A script whose reply is `json.dumps(document)` (non-ASCII kept as is)."""
        return cls.from_text(json.dumps(document, indent=indent, ensure_ascii=False), **options)

    @classmethod
    def from_tool_calls(cls, calls: list[tuple[str, Any]], **options: Any) -> Script:
        """A script that calls tools: `(name, arguments)` pairs, arguments as a JSON
        document (serialized compactly) or as the raw text to send."""
        chunks: list[str | dict[str, Any]] = []
        for i, (name, arguments) in enumerate(calls):
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            head = {"index": i, "id": f"call_{i}", "type": "function"}
            chunks.append({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
            chunks += [
                {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                for piece in tokenize(text)
            ]
        return cls(chunks=tuple(chunks), **{"finish_reason": "tool_calls", **options})

    @property
    def text(self) -> str:
        """The whole reply (its content; tool-call chunks have none)."""
        return "".join(c for c in self.chunks if isinstance(c, str))


@dataclass
class StreamLog:
    """What the upstream did for one request (mutated live by the server thread).

    Attributes:
        model: the request's `model`.
        body: the request body as received.
        authorization: the `Authorization` header as received, or None.
        chunks_sent: content chunks handed to the socket so far.
        send_times: `time.perf_counter()` just after each content chunk was sent.
        outcome: None while running, then "done", "closed", "stalled", "http_error",
            "not_json" or "disconnected" (the client went away first).
    """

    model: str
    body: dict[str, Any]
    authorization: str | None
    chunks_sent: int = 0
    send_times: list[float] = field(default_factory=list)
    outcome: str | None = None


class ScriptedUpstream:
    """An OpenAI-compatible server on loopback that replays `Script`s.

    Use as a context manager (or `start()`/`stop()`). Scripts can be added at any
    time with `add(model, script)`.

    Args:
        send_buffer: SO_SNDBUF for its sockets (see `LoopbackServer`); None: the OS default.

    Attributes:
        scripts: model id -> `Script`.
        logs: one `StreamLog` per chat-completions request, in arrival order.
        active_streams: streaming requests in progress right now.
        peak_streams: the most that were ever in progress at once.
    """

    def __init__(self, *, send_buffer: int | None = None) -> None:
        self.scripts: dict[str, Script] = {}
        self.logs: list[StreamLog] = []
        self.active_streams = 0
        self.peak_streams = 0
        self._go: asyncio.Event | None = None
        self._server = LoopbackServer(
            self._app, send_buffer=send_buffer, access_log=False, interface="asgi3"
        )

    # -- control, from the test thread -----------------------------------------------

    def add(self, model: str, script: Script) -> None:
        """Serve `script` to requests whose `model` is `model`."""
        self.scripts[model] = script

    def start(self) -> ScriptedUpstream:
        self._server.start()
        self._go = self._server.call(asyncio.Event)
        self._go.set()
        return self

    def hold(self) -> None:
        """Make streams wait before their first content chunk until `release()`."""
        assert self._go is not None, "start the upstream first"
        self._server.call(self._go.clear)

    def release(self) -> None:
        """Let every held stream (and later ones) go; returns at once."""
        assert self._go is not None, "start the upstream first"
        self._server.call(self._go.set)

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> ScriptedUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, `http://127.0.0.1:PORT/v1`."""
        return self._server.url + "/v1"

    @property
    def open_connections(self) -> int:
        """TCP connections currently open to this upstream."""
        return self._server.open_connections

    def last(self, model: str) -> StreamLog:
        """The log of the latest request for `model`."""
        return next(log for log in reversed(self.logs) if log.model == model)

    # -- the ASGI app, in the server thread ---------------------------------------------

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/v1/models" and method == "GET":
            data = [{"id": m, "object": "model", "owned_by": "scripted"} for m in self.scripts]
            await _json(send, 200, {"object": "list", "data": data})
        elif path == "/v1/chat/completions" and method == "POST":
            await self._completions(scope, receive, send)
        else:
            await _json(send, 404, _error(f"no route {method} {path}", "not_found"))

    async def _completions(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = json.loads(raw)
            model = body["model"]
        except (ValueError, KeyError, TypeError):
            await _json(send, 400, _error("body must be JSON with a model", "invalid_request"))
            return
        script = self.scripts.get(model)
        if script is None:
            await _json(send, 404, _error(f"model {model!r} not found", "model_not_found"))
            return
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization")
        log = StreamLog(model, body, auth.decode("latin-1") if auth else None)
        self.logs.append(log)
        if script.fault == "http_error" and script.fault_after == 0:
            log.outcome = "http_error"
            error = _error(script.error_message, "scripted_error", "server_error")
            await _json(send, script.error_status, error)
            return
        if not body.get("stream"):
            log.outcome = "done"
            await _json(send, 200, _completion(model, script))
            return
        self.active_streams += 1
        self.peak_streams = max(self.peak_streams, self.active_streams)
        try:
            await self._stream_until_disconnect(script, log, receive, send)
        finally:
            self.active_streams -= 1

    async def _stream_until_disconnect(
        self, script: Script, log: StreamLog, receive: Any, send: Any
    ) -> None:
        # uvicorn's `send` silently drops data once the client is gone, so a second
        # task listens for the disconnect and cancels the stream.
        streaming = asyncio.ensure_future(self._stream(script, log, send))
        listening = asyncio.ensure_future(_wait_disconnect(receive))
        done, _ = await asyncio.wait({streaming, listening}, return_when=asyncio.FIRST_COMPLETED)
        if streaming in done:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            streaming.result()
        else:
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)
            if log.outcome is None:
                log.outcome = "disconnected"

    async def _stream(self, script: Script, log: StreamLog, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        chunk_id = f"chatcmpl-{len(self.logs)}"
        model = log.model
        await _event(send, _chunk(chunk_id, model, {"role": "assistant", "content": ""}))
        assert self._go is not None
        await self._go.wait()
        start = time.perf_counter()
        fault_at = script.fault_after if script.fault else None
        for i, text in enumerate(script.chunks):
            if i == fault_at:
                break
            delay = start + i * script.interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            delta = {"content": text} if isinstance(text, str) else text
            await _event(send, _chunk(chunk_id, model, delta))
            log.send_times.append(time.perf_counter())
            log.chunks_sent += 1
        if script.fault is not None:
            await self._strike(script, log, send)
            return
        await _event(send, _chunk(chunk_id, model, {}, script.finish_reason))
        if (log.body.get("stream_options") or {}).get("include_usage"):
            usage = _usage(script)
            await _event(
                send,
                {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [],
                    "usage": usage,
                },
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        log.outcome = "done"

    async def _strike(self, script: Script, log: StreamLog, send: Any) -> None:
        assert script.fault is not None
        if script.fault == "close":
            # Returning without finishing the body makes uvicorn close the socket.
            log.outcome = "closed"
        elif script.fault == "stall":
            log.outcome = "stalled"
            await asyncio.sleep(script.stall_limit)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif script.fault == "not_json":
            log.outcome = "not_json"
            page = b"data: <html><body>502 Bad Gateway</body></html>\n\n"
            await send({"type": "http.response.body", "body": page, "more_body": False})
        else:  # "http_error" after a stream started cannot change the status: cut it
            log.outcome = "closed"


_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def _wait_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _event(send: Any, payload: dict[str, Any]) -> None:
    data = b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _json(send: Any, status: int, payload: dict[str, Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def _error(message: str, code: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


def _chunk(
    chunk_id: str, model: str, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _usage(script: Script) -> dict[str, int]:
    completion = len(script.chunks)
    return {
        "prompt_tokens": script.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": script.prompt_tokens + completion,
    }


def _completion(model: str, script: Script) -> dict[str, Any]:
    return {
        "id": "chatcmpl-full",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": script.finish_reason,
                "message": {"role": "assistant", "content": script.text},
            }
        ],
        "usage": _usage(script),
    }


def recorded_documents(
    limit: int | None = None, max_chars: int = 4000
) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Real documents to replay: `(name, schema, instance)` from JSONSchemaBench.

    Yields each valid test instance (serialized at most `max_chars` long) of each
    schema in `/work/shared/data/jsonschemabench/` (or `$OPENBRACE_SCHEMABENCH`),
    in file-name order; at most `limit` of them. Callers filter for schemas their
    server accepts.
    """
    count = 0
    for path in sorted(glob.glob(os.path.join(DATA_DIR, "*.json"))):
        with open(path, encoding="utf-8") as f:
            case = json.load(f)
        name = os.path.basename(path)[: -len(".json")]
        for n, test in enumerate(case.get("tests", [])):
            text = json.dumps(test["data"], ensure_ascii=False)
            if not test.get("valid") or len(text) > max_chars:
                continue
            yield f"{name}#{n}", case["schema"], test["data"]
            count += 1
            if limit is not None and count >= limit:
                return
