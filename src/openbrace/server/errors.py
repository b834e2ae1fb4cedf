"""Errors before the stream starts: OpenAI-shaped JSON bodies with an HTTP status.

Every failure that happens before the status line is sent ends up here, as
`{"error": {"message", "type", "param", "code"}}` (SPEC section 5): a
`RequestError` answers as itself, anything else is first mapped onto one
(`as_request_error`). Messages are written for the caller: they never contain
secrets, stack traces or internal reprs; anything unexpected is logged and
answered with a generic 500.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from ..exceptions import InvalidSchemaError, RequestError, StreamError

__all__ = ["as_request_error", "error_response"]

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

# What a client needs to act on a refusal: how to authenticate, when to retry.
_HEADERS_BY_STATUS = {
    401: {"WWW-Authenticate": "Bearer"},
    429: {"Retry-After": "1"},
    503: {"Retry-After": "1"},
}


def as_request_error(exc: BaseException) -> RequestError:
    """Map any exception raised before streaming onto the refusal to answer with."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, InvalidSchemaError):
        return RequestError(exc.describe(), param="response_format", code="invalid_schema")
    if isinstance(exc, StreamError):
        status = _STREAM_ERROR_STATUS.get(exc.type, 500)
        return RequestError(exc.message, status=status, type=exc.type, code=exc.code)
    if isinstance(exc, HTTPException):  # unknown route (404), wrong method (405)
        return RequestError(str(exc.detail), status=exc.status_code)
    log.error("unexpected error before streaming", exc_info=exc)
    return RequestError("internal server error", status=500, type="server_error")


def error_response(exc: BaseException) -> JSONResponse:
    """An OpenAI-shaped JSON error response for `exc` (see `as_request_error`)."""
    err = as_request_error(exc)
    headers = dict(_HEADERS_BY_STATUS.get(err.status, {}))
    if isinstance(exc, HTTPException):
        headers.update(exc.headers or {})  # 405's Allow
    return JSONResponse({"error": err.to_error()}, status_code=err.status, headers=headers)
