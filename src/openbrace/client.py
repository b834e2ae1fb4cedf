"""SDK clients: `AsyncClient` and `Client` (also `AsyncDotTxt` and `DotTxt`).

Code written for the dottxt SDK (0.3) runs unchanged: same constructor keywords,
same `stream(...)` / `generate(...)` signatures, same `PatchEvent` attributes, same
`chat.completions` / `models` (the OpenAI SDK's own objects).

Where the patches come from depends on the configuration:

- `base_url` (argument, else `OPENBRACE_BASE_URL`, else `DOTTXT_BASE_URL`): HTTP to a
  patch-stream server (openbrace, dottxt) with `stream: "patch"`.
- `base_url` and `patch="client"`: HTTP to any OpenAI-compatible server with
  `stream: true`; the PatchEmitter runs here, in the client.
- no base URL at all, or `engine=`: in-process, an `Engine` in this process (default:
  the embedded local model), through `openbrace._inprocess`.

All three turn records into `PatchEvent`s with the same code (`_RecordReader`), so
events, errors and snapshots are identical whichever way they travelled.

`stream(..., partial_strings=True)` asks for partial records too (`stream_options`
`{"partial_strings": true}`; in-process, the emitter's own) and yields a `TextEvent`
for each, between the `PatchEvent`s. Without it nothing changes.

The pure parts (configuration, payloads, requests, OpenAI SDK options, status ->
exception, bytes -> events, httpx failure -> exception) live in `_BaseClient`,
`_PatchDecoder` and `_transport_errors`; `Client` and `AsyncClient` only drive
them, each with its own flavour of I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import httpx

from . import _inprocess, wire
from .events import Document, PatchEvent, TextEvent, copy_json
from .exceptions import (
    ConnectError,
    InvalidOutputError,
    OpenBraceError,
    PatchStreamError,
    PointerError,
    ProtocolError,
    ReadTimeoutError,
    TransportError,
    error_class,
)
from .reconnect import RETRIABLE_STATUS, Reconnect
from .schema import to_json_schema
from .tools import parsed_calls, tool_fields

if TYPE_CHECKING:
    import openai

    from .engines.base import Engine

__all__ = [
    "AsyncClient",
    "AsyncDotTxt",
    "AsyncPatchStream",
    "Client",
    "DotTxt",
    "Framing",
    "PatchSource",
]

Framing = Literal["ndjson", "sse"]
"""How a patch stream travels over HTTP: NDJSON (the default, what dottxt sends) or SSE."""

PatchSource = Literal["server", "client"]
"""Where ops are computed for an HTTP base URL: by the server (`stream: "patch"`), or
here in the client from a plain OpenAI-compatible server's `stream: true` text."""

Messages = list[dict[str, Any]]
T = TypeVar("T")
Event = PatchEvent | TextEvent
E = TypeVar("E")  # what a stream yields: PatchEvent, or Event when partial strings are asked


# --- the pure parts ---------------------------------------------------------------------


class _RecordReader:
    """Records (ops and control records) -> `PatchEvent`s, however they travelled.

    An error record raises its typed `StreamError` carrying the snapshot so far; a
    `done` record ends the stream (`finished`, `done`); unknown control records are
    ignored, so servers may add new ones. Partial records become `TextEvent`s when
    `partial_strings` (and are ignored otherwise, like any record not asked for).
    """

    __slots__ = ("document", "done", "finished", "partial_strings", "replayed", "texts")

    def __init__(self, partial_strings: bool = False) -> None:
        self.document = Document()
        self.done: dict[str, Any] | None = None
        self.finished = False
        self.partial_strings = partial_strings
        self.texts: dict[str, list[str]] = {}  # pieces of the strings being written
        self.replayed: set[str] = set()  # strings a resume re-sends whole (see `resume`)

    def resume(self) -> None:
        """The next records come from a resume: its first partial record for a string in
        progress holds that string's whole text so far, of which only the part not yet
        delivered becomes an event (each piece of text reaches the consumer once)."""
        self.replayed = set(self.texts)

    def read(self, record: dict[str, Any]) -> Event | None:
        if "op" in record:
            if self.texts:
                self.texts.pop(record.get("path"), None)  # type: ignore[arg-type]
            try:
                return self.document.apply(record)
            except PointerError as exc:
                raise ProtocolError(f"the server sent an op that does not apply: {exc}") from None
        if "partial" in record:
            return self._text(record["partial"]) if self.partial_strings else None
        if "error" in record:
            self.finished = True
            raise _stream_error(record["error"], self.document.value)
        if "done" in record:
            self.finished = True
            self.done = record["done"] if isinstance(record["done"], dict) else {}
        return None

    def _text(self, body: Any) -> TextEvent | None:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("path"), str)
            or not isinstance(body.get("text"), str)
        ):
            raise ProtocolError(f"a partial record is not {{path, text}}: {body!r:.80}")
        path, text = body["path"], body["text"]
        pieces = self.texts.setdefault(path, [])
        if path in self.replayed:
            self.replayed.discard(path)
            delivered = "".join(pieces)
            if text.startswith(delivered):
                text = text[len(delivered) :]
            if not text:
                return None
        pieces.append(text)
        return TextEvent(path, text, pieces)


def _stream_error(error: Any, document: Any) -> Exception:
    error = error if isinstance(error, dict) else {"message": str(error)}
    kind = str(error.get("type") or "server_error")
    return error_class(kind)(
        str(error.get("message") or kind),
        code=error.get("code"),
        snapshot=copy_json(document),
        type=kind,
    )


class _PatchDecoder:
    """Bytes of an HTTP patch stream -> `PatchEvent`s. No I/O.

    `feed` and `close` are generators: events come out one by one and an error
    record raises right after the events before it, so nothing delivered is lost.
    """

    def __init__(
        self,
        framing: Framing,
        partial_strings: bool = False,
        *,
        reader: _RecordReader | None = None,
        first_id: int = 0,
    ) -> None:
        self._framing = framing
        self._wire = wire.SSEDecoder(first_id) if framing == "sse" else wire.NDJSONDecoder()
        # A resumed stream goes on building the document of the connection before it.
        self._reader = _RecordReader(partial_strings) if reader is None else reader
        self._seen_op = first_id > 0

    @property
    def finished(self) -> bool:
        return self._reader.finished

    def feed(self, chunk: bytes) -> Iterator[Event]:
        yield from self._events(self._wire.feed(chunk))

    def close(self) -> Iterator[Event]:
        yield from self._events(self._wire.close())
        if self._reader.finished:
            return
        if self._framing == "sse":
            # SSE always ends with `done` or `error`: without one the stream was cut.
            raise ProtocolError("the SSE stream ended without a done or error event")
        if not self._seen_op:
            raise ProtocolError("the stream ended before any op")

    def _events(self, records: list[dict[str, Any]]) -> Iterator[Event]:
        for record in records:
            event = self._reader.read(record)
            if event is not None:
                self._seen_op = self._seen_op or isinstance(event, PatchEvent)
                yield event
            if self._reader.finished:
                return


def _retry_delay(exc: Exception, state: Reconnect, reader: _RecordReader) -> float | None:
    """Seconds before resuming after `exc`, or None when `exc` is final."""
    if reader.finished:
        return None
    if isinstance(exc, PatchStreamError) and exc.status_code not in RETRIABLE_STATUS:
        return None  # 404: the stream is gone (or was never resumable); 4xx: our fault
    return state.next_delay()


def _policy(resumable: bool | Reconnect) -> Reconnect:
    """A fresh `Reconnect` for one stream: the default policy, or a copy of the one given."""
    if isinstance(resumable, Reconnect):
        return Reconnect(resumable.retries, resumable.backoff, resumable.max_delay)
    return Reconnect()


def _check_finished(reader: _RecordReader) -> None:
    """A resumable stream always ends with `done` or `error`: without one it was cut."""
    if not reader.finished:
        raise ProtocolError("the stream ended without a done or error record")


def _status_error(status: int, body: bytes) -> PatchStreamError:
    return PatchStreamError(status, body.decode("utf-8", errors="replace"))


@contextlib.contextmanager
def _transport_errors(url: str, timeout: float, *, answered: bool = False) -> Iterator[None]:
    """Around sending a request or reading its answer, sync or async: httpx's transport
    failures become openbrace errors (the pattern of httpx's own exception mapping).

    Args:
        url: the base URL, named in the messages.
        timeout: the request's timeout, for the timeout message.
        answered: the status line came; a dropped connection now cuts the stream.
    """
    try:
        yield
    except httpx.TransportError as exc:
        raise _transport_error(exc, url, timeout, answered=answered) from exc


def _transport_error(
    exc: httpx.TransportError, url: str, timeout: float, *, answered: bool
) -> OpenBraceError:
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ConnectError(
            f"cannot reach {url}: {reason} (is `openbrace serve` running at {url}?)", url=url
        )
    if isinstance(exc, httpx.ReadTimeout):
        when = "mid-stream" if answered else "before answering"
        return ReadTimeoutError(
            f"{url} sent nothing for {timeout:g} s {when} (pass a larger timeout= to wait longer)",
            url=url,
            timeout=timeout,
        )
    if answered and isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return ProtocolError(f"the connection closed mid-stream: {reason}")
    return TransportError(f"the request to {url} failed: {reason}", url=url)


def _messages(input: str | Messages) -> Messages:
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    if isinstance(input, list) and all(isinstance(m, dict) for m in input):
        return input
    raise TypeError("input must be a prompt string or a list of chat messages (dicts)")


def _result(last: PatchEvent | None, response_format: Any, tools: Any = None) -> Any:
    """`generate`'s answer from the stream's last event, which holds the whole document:
    a Pydantic model instance for a Pydantic model class, the JSON data otherwise.

    With tools the document is the assistant message: its calls (`ToolCall`s, each
    `parsed` as its tool's Pydantic model when it is one) when the model called,
    else its content (parsed as the `response_format`, when there is one)."""
    from pydantic import BaseModel, ValidationError

    if last is None:
        raise ProtocolError("the stream ended before any op")
    document = last.snapshot
    if tools:
        if document.get("tool_calls"):
            return parsed_calls(document["tool_calls"], tools)
        document = document.get("content", "")
        if response_format is None:
            return document
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise InvalidOutputError("the content is not JSON", snapshot=document) from exc
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        try:
            return response_format.model_validate(document)
        except ValidationError as exc:
            raise InvalidOutputError(
                f"the output does not validate as {response_format.__name__}: {exc}",
                snapshot=document,
            ) from exc
    return document


class _BaseClient:
    """Configuration, payloads and transports shared by `Client` and `AsyncClient`."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        engine: Engine | None = None,
        patch: PatchSource = "server",
        framing: Framing = "ndjson",
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        **openai_kwargs: Any,
    ) -> None:
        if patch not in ("server", "client"):
            raise ValueError(f"patch must be 'server' or 'client', not {patch!r}")
        if framing not in ("ndjson", "sse"):
            raise ValueError(f"framing must be 'ndjson' or 'sse', not {framing!r}")
        if engine is not None and base_url is not None:
            raise ValueError("pass either engine= (in-process) or base_url= (HTTP), not both")
        self.api_key = api_key or _env("OPENBRACE_API_KEY", "DOTTXT_API_KEY")
        resolved = (
            None
            if engine is not None
            else base_url or _env("OPENBRACE_BASE_URL", "DOTTXT_BASE_URL")
        )
        self.base_url = _with_scheme(resolved.rstrip("/")) if resolved else None
        self.patch: PatchSource = patch
        self.framing: Framing = framing
        self._engine = engine
        self._owns_engine = False  # an UpstreamEngine made here is closed by close()
        self._transport = transport
        self._openai_kwargs = openai_kwargs
        self._openai: Any = None
        self._lock = threading.Lock()  # lazily created members, for threaded sync use
        if self.base_url is not None and patch == "client":
            from .engines.upstream import UpstreamEngine

            self._engine = UpstreamEngine(self.base_url, self.api_key)
            self._owns_engine = True

    @property
    def in_process(self) -> bool:
        """True when ops are computed in this process (no base URL, or `patch="client"`)."""
        return self.base_url is None or self.patch == "client"

    def __repr__(self) -> str:  # never shows the key
        where = self.base_url or "in-process"
        return f"{type(self).__name__}({where!r}, patch={self.patch!r}, framing={self.framing!r})"

    def _get_engine(self) -> Engine:
        if self._engine is None:
            from .engines.local import default_engine

            self._engine = default_engine()
        return self._engine

    def _prepare(
        self,
        *,
        model: str,
        input: str | Messages,
        response_format: Any,
        temperature: float | None,
        max_tokens: int | None,
        seed: int | None,
        extra: dict[str, Any] | None,
        partial_strings: bool = False,
        resumable: bool = False,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The JSON body (as the dottxt SDK builds it) and extra headers.

        Raises `InvalidSchemaError` before any request for an unusable schema, and
        `TypeError` when there is neither a `response_format` nor `tools`.
        """
        extra = dict(extra or {})
        headers = dict(extra.pop("extra_headers", None) or {})
        extra.update(extra.pop("extra_body", None) or {})
        body: dict[str, Any] = {**extra, "model": model, "messages": _messages(input)}
        if response_format is None and not tools:
            raise TypeError("stream() and generate() need a response_format, or tools")
        if response_format is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": to_json_schema(response_format)},
            }
        if tools:
            body.update(tool_fields(tools, tool_choice))
        for key, value in (
            ("temperature", temperature),
            ("max_tokens", max_tokens),
            ("seed", seed),
        ):
            if value is not None:
                body[key] = value
        body["stream"] = "patch"
        options = body.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        if partial_strings:
            options["partial_strings"] = True
        if resumable and not self.in_process:
            # include_usage: NDJSON then ends with `done`, so a cut is told from the end.
            options.update(resumable=True, include_usage=True)
        if options:
            body["stream_options"] = options
        return body, headers

    def _engine_events(
        self, body: dict[str, Any], partial_strings: bool = False
    ) -> AsyncIterator[Event]:
        """In-process: the events of `body`, from this client's engine."""
        return _local_events(self._get_engine(), body, partial_strings)

    def _build_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        body: dict[str, Any],
        headers: dict[str, str],
        timeout: float,
    ) -> httpx.Request:
        """The patch-stream POST; built by `http` so that its own defaults apply too."""
        return http.build_request(
            "POST",
            f"{self.base_url}/chat/completions",
            json=body,
            headers={**self._default_headers(), **headers},
            timeout=httpx.Timeout(timeout),
        )

    def _default_headers(self) -> dict[str, str]:
        from . import __version__  # here: the package is fully imported by now

        defaults = {
            "Accept": wire.SSE if self.framing == "sse" else wire.NDJSON,
            "User-Agent": f"openbrace/{__version__}",
        }
        if self.api_key:
            defaults["Authorization"] = f"Bearer {self.api_key}"
        return defaults

    def _resume_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        state: Reconnect,
        headers: dict[str, str],
        timeout: float,
    ) -> httpx.Request:
        """`GET /streams/{id}?after=N`: the rest of a resumable stream."""
        return http.build_request(
            "GET",
            f"{self.base_url}{state.path()}",
            headers={**self._default_headers(), **headers},
            timeout=httpx.Timeout(timeout),
        )

    def _transport_errors(
        self, timeout: float, *, answered: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        """`_transport_errors` for this client's base URL."""
        return _transport_errors(str(self.base_url), timeout, answered=answered)

    def _transport_as(self, kind: type[T]) -> T | None:
        """The `transport=` argument if it suits this client's flavour (sync or async)."""
        return self._transport if isinstance(self._transport, kind) else None

    @property
    def chat(self) -> Any:
        """`openai.OpenAI(...).chat` (`openai.AsyncOpenAI` for `AsyncClient`) pointed at
        this client's server (or engine)."""
        return self._openai_client().chat

    @property
    def models(self) -> Any:
        """`openai.OpenAI(...).models` (`openai.AsyncOpenAI` for `AsyncClient`) pointed at
        this client's server (or engine)."""
        return self._openai_client().models

    def _openai_client(self) -> Any:
        if self._openai is None:
            options = {
                # The SDK insists on a key; ours may be open.
                "api_key": self.api_key or "openbrace",
                "base_url": self.base_url or _inprocess.IN_PROCESS_URL,
                **self._openai_kwargs,
            }
            if self.base_url is None:  # no server to talk to: serve its app in this process
                from .server.app import create_app

                options["http_client"] = self._asgi_client(create_app(self._get_engine()))
            self._openai = self._openai_class()(**options)
        return self._openai

    def _detach(self) -> tuple[Any, Engine | None]:
        """What `close()` must close: the OpenAI client (forgotten here: a later use makes a
        new one) and the engine, only if this client made it (never one passed in)."""
        sdk, self._openai = self._openai, None
        return sdk, self._engine if self._owns_engine else None

    # What `Client` and `AsyncClient` supply: the sync or async flavour of each.

    def _openai_class(self) -> type[openai.OpenAI] | type[openai.AsyncOpenAI]:
        raise NotImplementedError

    def _asgi_client(self, app: Any) -> httpx.Client | httpx.AsyncClient:
        """An httpx client whose requests `app` answers in this process."""
        raise NotImplementedError


def _with_scheme(url: str) -> str:
    """`127.0.0.1:8000/v1` means `http://127.0.0.1:8000/v1`: httpx would take the host
    for a scheme and fail with a bare "Connection error"."""
    return url if "://" in url else f"http://{url}"


def _env(*names: str) -> str | None:
    for name in names:
        if value := os.environ.get(name):
            return value
    return None


async def _local_events(
    engine: Engine, body: dict[str, Any], partial_strings: bool = False
) -> AsyncIterator[Event]:
    """In-process: the server's own records, read by the same `_RecordReader`
    (`partial_strings`: the body asks for partial records; read them too)."""
    reader = _RecordReader(partial_strings)
    records = _inprocess.engine_records(engine, body)
    try:
        async for record in records:
            event = reader.read(record)
            if event is not None:
                yield event
            if reader.finished:
                return
    finally:
        await records.aclose()  # type: ignore[attr-defined]


# --- async ----------------------------------------------------------------------------------


class AsyncPatchStream(Generic[E]):
    """The events of one stream: an async iterator and an async context manager.

    ```python
    async with client.stream(model=..., input=..., response_format=Ticket) as stream:
        async for event in stream:
            ...
    ```

    Leaving early (`break` inside `async with`, `aclose()`, cancellation) closes the
    HTTP connection, so the server stops generating. A bare `async for ... break`
    also closes it, when the stream object is garbage-collected.
    """

    def __init__(self, events: AsyncIterator[E]) -> None:
        self._events: AsyncIterator[E] = events

    def __aiter__(self) -> AsyncPatchStream[E]:
        return self

    async def __anext__(self) -> E:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and close its connection. Idempotent."""
        await self._events.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> AsyncPatchStream[E]:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


class AsyncClient(_BaseClient):
    """Async client for patch streams (`AsyncDotTxt` is the same class).

    Args:
        api_key: bearer key; else `OPENBRACE_API_KEY`, else `DOTTXT_API_KEY`; none is
            fine for an open server.
        base_url: API base such as `http://127.0.0.1:8000/v1`; else `OPENBRACE_BASE_URL`,
            else `DOTTXT_BASE_URL`. With none, the client runs `engine` in-process.
        engine: the `Engine` to run in-process (default: the embedded local model,
            loaded once per process on first use: seconds).
        patch: `"server"` (default) asks the server for `stream: "patch"`; `"client"`
            asks any OpenAI-compatible server for `stream: true` and computes the ops
            here (vLLM, llama.cpp, Ollama, OpenAI: no openbrace server needed).
        framing: `"ndjson"` (default) or `"sse"` for patch streams over HTTP.
        transport: an `httpx.AsyncBaseTransport` for the patch-stream requests (tests).
        **openai_kwargs: passed to `openai.AsyncOpenAI` (`max_retries`, `default_headers`...).
    """

    _http: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None
    _stale: tuple[httpx.AsyncClient, ...] = ()  # pools of event loops used before

    @overload
    def stream(
        self,
        *,
        model: str,
        input: str | Messages,
        response_format: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: float = 60.0,
        extra: dict[str, Any] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        partial_strings: Literal[False] = False,
        resumable: bool | Reconnect = False,
    ) -> AsyncPatchStream[PatchEvent]: ...

    @overload
    def stream(
        self,
        *,
        model: str,
        input: str | Messages,
        response_format: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: float = 60.0,
        extra: dict[str, Any] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        partial_strings: Literal[True],
        resumable: bool | Reconnect = False,
    ) -> AsyncPatchStream[Event]: ...

    def stream(
        self,
        *,
        model: str,
        input: str | Messages,
        response_format: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: float = 60.0,
        extra: dict[str, Any] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        partial_strings: bool = False,
        resumable: bool | Reconnect = False,
    ) -> AsyncPatchStream[PatchEvent] | AsyncPatchStream[Event]:
        """Stream `PatchEvent`s as the model fills in a structured response.

        Args:
            model: model id.
            input: a prompt (sent as one user message) or a list of chat messages.
            response_format: anything `openbrace.schema.to_json_schema` accepts.
            temperature, max_tokens, seed: sampling options, sent when given.
            timeout: seconds for connecting and for any silence while reading (HTTP).
            extra: more chat-completions body fields (`top_p`, `stop`, ...).
            partial_strings: also yield a `TextEvent` for each piece of a string value
                as it is written (`text`, and `so_far`); the string's `PatchEvent`
                still follows with the whole value.
            resumable: over HTTP, ask for a resumable stream and, if the connection
                drops, resume it where it stopped (`openbrace.reconnect`: up to 5
                attempts in a row, backing off from 0.25 s): every event still arrives
                exactly once. A `Reconnect(retries=, backoff=, max_delay=)` sets the
                policy. In-process there is no connection to lose: no effect.

        Returns:
            An `AsyncPatchStream` (iterate it; `async with` closes it for sure).

        Raises:
            InvalidSchemaError: at once, for an unusable `response_format`.
            PatchStreamError: on iteration, for a non-200 answer (`status_code`, `body`).
            StreamError: on iteration, the typed error of an error record (`type`,
                `snapshot` of the document so far).
            ProtocolError: on iteration, for a malformed or cut stream.
        """
        body, headers = self._prepare(
            model=model,
            input=input,
            response_format=response_format,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            extra=extra,
            partial_strings=partial_strings,
            resumable=resumable is not False,
            tools=tools,
            tool_choice=tool_choice,
        )
        if self.in_process:
            return AsyncPatchStream(self._engine_events(body, partial_strings))
        if resumable is not False:
            events = self._resumable_events(
                body, headers, timeout, _policy(resumable), partial_strings
            )
            return AsyncPatchStream(events)
        return AsyncPatchStream(self._http_events(body, headers, timeout, partial_strings))

    async def generate(
        self,
        *,
        model: str,
        input: str | Messages,
        response_format: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: float = 60.0,
        extra: dict[str, Any] | None = None,
        resumable: bool | Reconnect = False,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        **more: Any,
    ) -> Any:
        """The whole result: a validated instance for a Pydantic model class, else JSON data.

        Same arguments as `stream`; extra keyword arguments join `extra`, as in the
        dottxt SDK (`top_p=0.9`). Raises what `stream` raises, and `InvalidOutputError`
        when the document does not validate as the Pydantic model.
        """
        stream = self.stream(
            model=model,
            input=input,
            response_format=response_format,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            timeout=timeout,
            extra={**(extra or {}), **more},
            resumable=resumable,
            tools=tools,
            tool_choice=tool_choice,
        )
        last: PatchEvent | None = None
        async with stream:
            async for last in stream:  # noqa: B007 - the last event holds the document
                pass
        return _result(last, response_format, tools)

    async def _http_events(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        timeout: float,
        partial_strings: bool = False,
    ) -> AsyncIterator[Event]:
        http = self._http_client()  # here, not in stream(): nothing happens until iterated
        request = self._build_request(http, body, headers, timeout)
        reader = _RecordReader(partial_strings)
        async with contextlib.aclosing(
            self._one_connection(http, request, None, reader, timeout)
        ) as events:
            async for event in events:
                yield event

    async def _resumable_events(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        timeout: float,
        state: Reconnect,
        partial_strings: bool = False,
    ) -> AsyncIterator[Event]:
        """`_http_events`, resuming the stream after a drop (`openbrace.reconnect`)."""
        http = self._http_client()
        reader = _RecordReader(partial_strings)
        request = self._build_request(http, body, headers, timeout)
        while True:
            try:
                connection = self._one_connection(http, request, state, reader, timeout)
                async with contextlib.aclosing(connection) as events:  # closed when we stop
                    async for event in events:
                        if isinstance(event, PatchEvent):
                            state.delivered()
                        yield event
                return
            except (ProtocolError, TransportError, PatchStreamError) as exc:
                delay = _retry_delay(exc, state, reader)
                if delay is None:
                    raise
            await asyncio.sleep(delay)
            request = self._resume_request(http, state, headers, timeout)
            reader.resume()

    async def _one_connection(
        self,
        http: httpx.AsyncClient,
        request: httpx.Request,
        state: Reconnect | None,
        reader: _RecordReader,
        timeout: float,
    ) -> AsyncGenerator[Event, None]:
        with self._transport_errors(timeout):
            response = await http.send(request, stream=True)
        try:
            with self._transport_errors(timeout, answered=True):
                if response.status_code != 200:
                    raise _status_error(response.status_code, await response.aread())
                first_id = 0
                if state is not None:  # a resumable stream: where to go on from
                    state.stream_id = state.stream_id or response.headers.get("x-stream-id")
                    first_id = state.ops
                decoder = _PatchDecoder(self.framing, reader=reader, first_id=first_id)
                async for chunk in response.aiter_bytes():
                    for event in decoder.feed(chunk):
                        yield event
                    if decoder.finished:
                        return
            for event in decoder.close():
                yield event
            if state is not None:
                _check_finished(reader)
        finally:
            await response.aclose()

    def _http_client(self) -> httpx.AsyncClient:
        # One connection pool per event loop: a pool must not outlive its loop (code
        # that calls asyncio.run() twice with one client would otherwise break).
        loop = asyncio.get_running_loop()
        if self._http is None or self._http[0] is not loop:
            if self._http is not None:
                self._stale = (*self._stale, self._http[1])
            transport = self._transport_as(httpx.AsyncBaseTransport)
            self._http = (loop, httpx.AsyncClient(transport=transport, timeout=60.0))
        return self._http[1]

    def _openai_class(self) -> type[openai.AsyncOpenAI]:
        import openai

        return openai.AsyncOpenAI

    def _asgi_client(self, app: Any) -> httpx.AsyncClient:
        # A bug answers 500, as it would over HTTP, instead of raising here.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url=_inprocess.IN_PROCESS_URL)

    async def close(self) -> None:
        """Close connection pools (the dottxt SDK's name for it)."""
        clients = [*self._stale, *([self._http[1]] if self._http else [])]
        self._http, self._stale = None, ()
        for client in clients:
            with contextlib.suppress(RuntimeError):  # its event loop is gone: nothing to close
                await client.aclose()
        sdk, engine = self._detach()
        if sdk is not None:
            await sdk.close()
        if engine is not None:
            await engine.aclose()

    aclose = close

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


# --- sync -----------------------------------------------------------------------------------


class Client(_BaseClient):
    """Sync client (`DotTxt` is the same class); see `AsyncClient` for the arguments.

    `stream(...)` is a plain iterator. In-process, the async engine runs on a private
    event-loop thread; stopping early (`break`, `close()` on the iterator) stops it.
    """

    _http: httpx.Client | None = None
    _loop: _inprocess.LoopThread | None = None

    @overload
    def stream(
        self,
        *,
        model: str,
        input: str | Messages,
        response_format: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: float = 60.0,
        extra: dict[str, Any] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        partial_strings: Literal[False] = False,
        resumable: bool | Reconnect = False,
    ) -> Iterator[PatchEvent]: ...

    @overload
    def stream(
        self,
        *,
        model: str,
        input: str | Messages,
        response_format: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: float = 60.0,
        extra: dict[str, Any] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        partial_strings: Literal[True],
        resumable: bool | Reconnect = False,
    ) -> Iterator[Event]: ...

    def stream(
        self,
        *,
        model: str,
        input: str | Messages,
        response_format: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: float = 60.0,
        extra: dict[str, Any] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        partial_strings: bool = False,
        resumable: bool | Reconnect = False,
    ) -> Iterator[PatchEvent] | Iterator[Event]:
        """Stream `PatchEvent`s; same arguments and errors as `AsyncClient.stream`."""
        body, headers = self._prepare(
            model=model,
            input=input,
            response_format=response_format,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            extra=extra,
            partial_strings=partial_strings,
            resumable=resumable is not False,
            tools=tools,
            tool_choice=tool_choice,
        )
        if self.in_process:
            return self._loop_thread().iterate(self._engine_events(body, partial_strings))
        if resumable is not False:
            policy = _policy(resumable)
            return self._resumable_events(body, headers, timeout, policy, partial_strings)
        return self._http_events(body, headers, timeout, partial_strings)

    def generate(
        self,
        *,
        model: str,
        input: str | Messages,
        response_format: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: float = 60.0,
        extra: dict[str, Any] | None = None,
        resumable: bool | Reconnect = False,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        **more: Any,
    ) -> Any:
        """The whole result; same arguments and errors as `AsyncClient.generate`."""
        events = self.stream(
            model=model,
            input=input,
            response_format=response_format,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            timeout=timeout,
            extra={**(extra or {}), **more},
            resumable=resumable,
            tools=tools,
            tool_choice=tool_choice,
        )
        last: PatchEvent | None = None
        for last in events:  # noqa: B007 - the last event holds the document
            pass
        return _result(last, response_format, tools)

    def _http_events(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        timeout: float,
        partial_strings: bool = False,
    ) -> Iterator[Event]:
        http = self._http_client()  # here, not in stream(): nothing happens until iterated
        request = self._build_request(http, body, headers, timeout)
        reader = _RecordReader(partial_strings)
        yield from self._one_connection(http, request, None, reader, timeout)

    def _resumable_events(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        timeout: float,
        state: Reconnect,
        partial_strings: bool = False,
    ) -> Iterator[Event]:
        """`_http_events`, resuming the stream after a drop (`openbrace.reconnect`)."""
        http = self._http_client()
        reader = _RecordReader(partial_strings)
        request = self._build_request(http, body, headers, timeout)
        while True:
            try:
                for event in self._one_connection(http, request, state, reader, timeout):
                    if isinstance(event, PatchEvent):
                        state.delivered()
                    yield event
                return
            except (ProtocolError, TransportError, PatchStreamError) as exc:
                delay = _retry_delay(exc, state, reader)
                if delay is None:
                    raise
            time.sleep(delay)
            request = self._resume_request(http, state, headers, timeout)
            reader.resume()

    def _one_connection(
        self,
        http: httpx.Client,
        request: httpx.Request,
        state: Reconnect | None,
        reader: _RecordReader,
        timeout: float,
    ) -> Iterator[Event]:
        with self._transport_errors(timeout):
            response = http.send(request, stream=True)
        try:
            with self._transport_errors(timeout, answered=True):
                if response.status_code != 200:
                    raise _status_error(response.status_code, response.read())
                first_id = 0
                if state is not None:  # a resumable stream: where to go on from
                    state.stream_id = state.stream_id or response.headers.get("x-stream-id")
                    first_id = state.ops
                decoder = _PatchDecoder(self.framing, reader=reader, first_id=first_id)
                for chunk in response.iter_bytes():
                    yield from decoder.feed(chunk)
                    if decoder.finished:
                        return
            yield from decoder.close()
            if state is not None:
                _check_finished(reader)
        finally:
            response.close()

    def _http_client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                transport = self._transport_as(httpx.BaseTransport)
                self._http = httpx.Client(transport=transport, timeout=60.0)
            return self._http

    def _loop_thread(self) -> _inprocess.LoopThread:
        with self._lock:
            if self._loop is None:
                self._loop = _inprocess.LoopThread()
            return self._loop

    def _openai_class(self) -> type[openai.OpenAI]:
        import openai

        return openai.OpenAI

    def _asgi_client(self, app: Any) -> httpx.Client:
        transport = _inprocess.SyncASGITransport(app, self._loop_thread())
        return httpx.Client(transport=transport, base_url=_inprocess.IN_PROCESS_URL)

    def close(self) -> None:
        """Close connection pools and the private event loop."""
        sdk, engine = self._detach()
        if sdk is not None:
            sdk.close()
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._loop is not None:
            if engine is not None:
                self._loop.run(engine.aclose())
            self._loop.close()
            self._loop = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


AsyncDotTxt = AsyncClient
DotTxt = Client
