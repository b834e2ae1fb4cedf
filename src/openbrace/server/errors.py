"""Errors before the stream starts: OpenAI-shaped JSON bodies with an HTTP status.

Every failure that happens before the status line is sent ends up here, as
`{"error": {"message", "type", "param", "code"}}` (SPEC section 5). Messages are
written for the caller: they never contain secrets, stack traces or internal
reprs; anything unexpected is logged and answered with a generic 500.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from ..exceptions import InvalidSchemaError, RequestError, StreamError

__all__ = ["ApiError", "error_body", "error_response", "status_for"]

log = logging.getLogger("openbrace.server")

# The HTTP status for a StreamError raised before the first byte was sent.
_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "length": 400,
    "invalid_output": 502,
    "upstream_error": 502,
    "timeout": 504,
    "server_error": 500,
}

# OpenAI's error `type` for the statuses we answer with ourselves.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "server_error",
    504: "timeout",
}


class ApiError(Exception):
    """An error the server answers with before streaming: status plus OpenAI error body.

    Args:
        status: the HTTP status.
        message: a message for the caller (no secrets, no internals).
        type: OpenAI's error `type`; derived from the status when omitted.
        param: the request field at fault, if any.
        code: a short machine-readable code, if any.
        headers: extra response headers (`Retry-After`, `WWW-Authenticate`).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPE_BY_STATUS.get(status, "server_error")
        self.param = param
        self.code = code
        self.headers = headers or {}


def error_body(message: str, type: str, param: str | None, code: str | None) -> dict[str, Any]:
    """The OpenAI error object: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def as_api_error(exc: BaseException) -> ApiError:
    """Map any exception raised before streaming onto the status and body to answer."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidSchemaError):
        return ApiError(400, _schema_message(exc), param="response_format", code="invalid_schema")
    if isinstance(exc, RequestError):
        return ApiError(exc.status, exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, StreamError):
        status = _STREAM_ERROR_STATUS.get(exc.type, 500)
        return ApiError(status, exc.message, type=exc.type, code=exc.code)
    if isinstance(exc, HTTPException):
        return ApiError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    log.error("unexpected error before streaming", exc_info=exc)
    return ApiError(500, "internal server error", type="server_error")


def status_for(exc: BaseException) -> int:
    """The HTTP status `error_response(exc)` would answer with."""
    return as_api_error(exc).status


def error_response(exc: BaseException) -> JSONResponse:
    """An OpenAI-shaped JSON error response for `exc` (see `as_api_error`)."""
    err = as_api_error(exc)
    return JSONResponse(
        error_body(err.message, err.type, err.param, err.code),
        status_code=err.status,
        headers=err.headers,
    )


def _schema_message(exc: InvalidSchemaError) -> str:
    # The message names the keyword and its pointer; add them if the raiser did not.
    message = exc.message
    if exc.keyword and f"'{exc.keyword}'" not in message and f"`{exc.keyword}`" not in message:
        message += f" (keyword '{exc.keyword}')"
    if exc.pointer is not None and (exc.pointer or "#") not in message:
        message += f" at schema pointer '{exc.pointer or '#'}'"
    return message
