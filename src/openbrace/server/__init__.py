"""The openbrace HTTP server (needs the `server` extra: starlette, uvicorn, prometheus_client).

`create_app(engine, config)` builds the ASGI app; `openbrace serve` runs it.
"""

from __future__ import annotations

from .app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
