"""openbrace: stream an LLM's structured output field by field, as JSON Patch ops.

The public names live here; `openbrace.engines.local`, `openbrace.server` and
`openbrace.cli` are imported only on demand, so their dependencies stay optional.
"""

from .client import AsyncClient, AsyncDotTxt, Client, DotTxt
from .emitter import PatchEmitter
from .events import PatchEvent, TextEvent, apply_add
from .exceptions import (
    ConnectError,
    InvalidOutputError,
    InvalidRequestError,
    InvalidSchemaError,
    LengthError,
    OpenBraceError,
    PatchStreamError,
    PointerError,
    ProtocolError,
    ReadTimeoutError,
    RequestError,
    ServerError,
    StreamError,
    StreamTimeoutError,
    TransportError,
    UpstreamError,
)
from .tools import ToolCall

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncDotTxt",
    "Client",
    "ConnectError",
    "DotTxt",
    "InvalidOutputError",
    "InvalidRequestError",
    "InvalidSchemaError",
    "LengthError",
    "OpenBraceError",
    "PatchEmitter",
    "PatchEvent",
    "PatchStreamError",
    "PointerError",
    "ProtocolError",
    "ReadTimeoutError",
    "RequestError",
    "ServerError",
    "StreamError",
    "StreamTimeoutError",
    "TextEvent",
    "ToolCall",
    "TransportError",
    "UpstreamError",
    "apply_add",
]
