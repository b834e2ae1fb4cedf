"""API keys: `Authorization: Bearer KEY` checked by a middleware on the routes that need one.

`create_app` wraps each protected route in `Middleware(RequireKey, keys=...)`, so
the routes list itself says which routes are open (health, the playground). A
refusal is a `RequestError(401)`, answered by the app's exception handler.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..exceptions import RequestError

__all__ = ["RequireKey", "authorized", "bearer_token"]


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, if any."""
    scheme, _, token = (header or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authorized(header: str | None, keys: tuple[bytes, ...]) -> bool:
    """Whether an `Authorization: Bearer KEY` header carries one of `keys`.

    No keys configured means the server is open. The token is compared with every
    key in constant time (`hmac.compare_digest`, no early exit), so the time taken
    says nothing about which key, or how much of one, matched.
    """
    if not keys:
        return True
    given = (bearer_token(header) or "").encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key)
    return matched and bool(given)


class RequireKey:
    """ASGI middleware: let a request through only with one of `keys` (none: all pass)."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = tuple(key.encode() for key in keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not authorized(
            Headers(scope=scope).get("authorization"), self.keys
        ):
            raise RequestError(
                "missing or invalid API key: send 'Authorization: Bearer KEY'",
                status=401,
                code="invalid_api_key",
            )
        await self.app(scope, receive, send)
