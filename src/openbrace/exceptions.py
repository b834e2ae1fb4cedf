"""Every error openbrace raises, in one tree.

```
OpenBraceError
├── InvalidSchemaError      the response_format is not a usable schema (raised before any request)
├── PointerError            a malformed RFC 6901 JSON Pointer, or one that does not resolve
├── RequestError            refused before any op (server side): `status`, `type`, `param`, `code`
│   ├── EngineRequestError      the engine refuses it (unknown model, unsupported field): a 4xx
│   └── EngineUnavailableError  the engine cannot serve now (model not loadable, upstream down)
│       └── HubError                a GGUF could not be had from the Hub or the cache: one line why
├── PatchStreamError        (client) the server answered a non-200 status: `status_code`, `body`
├── ProtocolError           (client) a frame that is not valid NDJSON/SSE, or a stream cut mid-frame
├── TransportError          (client) the request or its answer did not get through: `url`
│   ├── ConnectError            nothing accepted the connection: is the server running at `url`?
│   └── ReadTimeoutError        the server sent nothing for `timeout` seconds
└── StreamError             an error record ended the stream: `type`, `message`, `code`, `snapshot`
    ├── InvalidRequestError     type "invalid_request_error"
    ├── LengthError             type "length": max_tokens ran out before the document closed
    ├── InvalidOutputError      type "invalid_output": not JSON or breaks the schema (emitter too)
    ├── UpstreamError           type "upstream_error"
    ├── StreamTimeoutError      type "timeout"
    └── ServerError             type "server_error"
```

A `RequestError` on the server is the client's `PatchStreamError`: the same status
and error object, whether it travelled over HTTP or stayed in-process.
A `StreamError` means the ops delivered before it are still valid: `snapshot` is
the document they built.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ConnectError",
    "EngineRequestError",
    "EngineUnavailableError",
    "HubError",
    "InvalidOutputError",
    "InvalidRequestError",
    "InvalidSchemaError",
    "LengthError",
    "OpenBraceError",
    "PatchStreamError",
    "PointerError",
    "ProtocolError",
    "ReadTimeoutError",
    "RequestError",
    "ServerError",
    "StreamError",
    "StreamTimeoutError",
    "TransportError",
    "UpstreamError",
    "error_class",
]


class OpenBraceError(Exception):
    """Base class of every openbrace error."""


class InvalidSchemaError(OpenBraceError, ValueError):
    """The response_format cannot be turned into a usable JSON Schema.

    `pointer` is the JSON Pointer of the offending place in the schema ("" for the root)
    and `keyword` the keyword at fault, when known.
    """

    def __init__(self, message: str, *, pointer: str | None = None, keyword: str | None = None):
        super().__init__(message)
        self.message = message
        self.pointer = pointer
        self.keyword = keyword

    def describe(self) -> str:
        """The message, naming the keyword and its pointer if the raiser did not."""
        message, keyword = self.message, self.keyword
        if keyword and f"'{keyword}'" not in message and f"`{keyword}`" not in message:
            message += f" (keyword '{keyword}')"
        if self.pointer is not None and (self.pointer or "#") not in message:
            message += f" at schema pointer '{self.pointer or '#'}'"
        return message


class PointerError(OpenBraceError, ValueError):
    """A JSON Pointer that is malformed or does not resolve against the document."""


# OpenAI's error `type` for a status, when the raiser names none.
_TYPE_BY_STATUS = {
    401: "authentication_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
    504: "timeout",
}


class RequestError(OpenBraceError):
    """A request refused before any op was generated: the server answers `status`.

    Raised by `openbrace.request.parse_chat` for a bad body (400, `param` naming the
    field), by the server's limits (401, 413, 429) and by engines before their first
    delta (the two subclasses).

    Args:
        message: what is wrong, for the caller (no secrets, no internals).
        status: the HTTP status the server answers with.
        param: the request field at fault, if any.
        code: a short machine-readable code, if any.
        type: OpenAI's error `type`; derived from `status` when omitted.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code
        fallback = "invalid_request_error" if status < 500 else "server_error"
        self.type = type or _TYPE_BY_STATUS.get(status, fallback)

    def to_error(self) -> dict[str, Any]:
        """The OpenAI error object: `{"message", "type", "param", "code"}`."""
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


class EngineRequestError(RequestError):
    """The engine refuses the request before generating (HTTP `status`, default 400)."""


class EngineUnavailableError(RequestError):
    """The engine cannot serve right now (model not loadable, upstream down): HTTP 503/502."""

    def __init__(self, message: str, *, status: int = 503, code: str = "engine_unavailable"):
        super().__init__(message, status=status, code=code)


class HubError(EngineUnavailableError):
    """A GGUF could not be had from the Hub or the cache; the message says why, in one line."""

    def __init__(self, message: str):
        super().__init__(message, code="model_unavailable")


class PatchStreamError(OpenBraceError, RuntimeError):
    """The server refused the request: a non-200 status, before any op was streamed.

    As in the dottxt SDK (whose `PatchStreamError` is a `RuntimeError`), `body` is the
    response body as text; `error` is its OpenAI-shaped `{"error": {...}}` object
    parsed, when it is one (else None); pass `error` when it is already at hand.
    In-process (`in_process=True`) no HTTP was spoken, so the message does not name
    a status; `status_code` still says what a server would have answered.
    In-process, `from_request_error` builds it from the server-side refusal itself.
    """

    def __init__(
        self,
        status_code: int,
        body: Any,
        *,
        error: dict[str, Any] | None = None,
        in_process: bool = False,
    ):
        self.status_code = status_code
        self.body = body
        self.error: dict[str, Any] | None = _error_object(body) if error is None else error
        message = self.error.get("message") if self.error else None
        text = message or (body if isinstance(body, str) else repr(body))[:500]
        super().__init__(text if in_process else f"HTTP {status_code}: {text}")

    @classmethod
    def from_request_error(cls, exc: RequestError) -> PatchStreamError:
        """What an HTTP client would have raised for `exc`, answered by the server.

        The error object is `exc`'s own (nothing is parsed back); `body` holds the text
        the server would have sent. Raise it `from exc`.
        """
        error = exc.to_error()
        body = json.dumps({"error": error}, ensure_ascii=False)
        return cls(exc.status, body, error=error, in_process=True)


def _error_object(body: Any) -> dict[str, Any] | None:
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


class ProtocolError(OpenBraceError):
    """The byte stream is not a valid NDJSON or SSE patch stream."""


class TransportError(OpenBraceError):
    """The request could not be sent, or its answer could not be read (client side).

    `url` is the base URL the client talks to; the httpx exception is the cause.
    """

    def __init__(self, message: str, *, url: str):
        super().__init__(message)
        self.message = message
        self.url = url


class ConnectError(TransportError):
    """No connection to the server: refused, unknown host, or no answer in time."""


class ReadTimeoutError(TransportError):
    """The server sent nothing for `timeout` seconds (before its answer, or mid-stream)."""

    def __init__(self, message: str, *, url: str, timeout: float):
        super().__init__(message, url=url)
        self.timeout = timeout


class StreamError(OpenBraceError):
    """The stream ended with an error record; the ops before it stay valid.

    Attributes:
        type: the record's `type` (see SPEC section 4).
        message: the human-readable message.
        code: the record's `code`, if any.
        snapshot: the document built by the ops delivered before the error.
    """

    type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        snapshot: Any = None,
        type: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.snapshot = snapshot
        if type is not None:
            self.type = type

    def to_record(self) -> dict[str, Any]:
        """The NDJSON control record for this error: `{"error": {...}}`."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}


class InvalidRequestError(StreamError):
    """The request was refused after the stream started (type `invalid_request_error`)."""

    type = "invalid_request_error"


class LengthError(StreamError):
    """`max_tokens` ran out before the document closed (type `length`)."""

    type = "length"


class InvalidOutputError(StreamError):
    """Text that is not a JSON document (or breaks the schema).

    Raised by `PatchEmitter.feed`/`close` with `offset`, the byte offset in the UTF-8
    text at which the problem was found, and `ops`, the ops that the failing chunk
    completed before its bad byte (valid, and returned nowhere else); and by clients
    on an `invalid_output` record.
    """

    type = "invalid_output"

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        ops: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ):
        super().__init__(message, **kwargs)
        self.offset = offset
        self.ops = ops or []


class UpstreamError(StreamError):
    """The upstream server failed mid-stream (type `upstream_error`)."""

    type = "upstream_error"


class StreamTimeoutError(StreamError):
    """The generation took too long (type `timeout`)."""

    type = "timeout"


class ServerError(StreamError):
    """An internal failure while generating (type `server_error`)."""

    type = "server_error"


_BY_TYPE: dict[str, type[StreamError]] = {
    cls.type: cls
    for cls in (
        InvalidRequestError,
        LengthError,
        InvalidOutputError,
        UpstreamError,
        StreamTimeoutError,
        ServerError,
    )
}


def error_class(type: str) -> type[StreamError]:
    """The StreamError subclass for an error record's `type` (StreamError if unknown)."""
    return _BY_TYPE.get(type, StreamError)
