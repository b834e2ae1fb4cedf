"""From an engine's text deltas to the records of a patch stream.

`patch_records(engine, request)` is the one pipeline behind both the server and
the in-process client: it feeds every delta to a `PatchEmitter`, yields each op
the moment it exists, and ends with exactly one control record:

- `{"done": {"finish_reason": "stop", "usage": {...}}}` on success;
- `{"error": {"message": ..., "type": ..., "code": ...}}` on failure, after which
  the ops already yielded stay valid (SPEC section 4).

With `partial_strings=True` the emitter's partial records (`{"partial": {"path",
"text"}}`, the text of string values as it is written) come interleaved with the
ops, in the order the emitter gives them.

Errors raised before the first delta (an unsupported schema, an unknown model)
propagate as exceptions, so the server can still answer with a 4xx status.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from .emitter import PatchEmitter
from .engines.base import Engine, Finish, GenerationRequest
from .events import apply_add
from .exceptions import (
    InvalidOutputError,
    InvalidRequestError,
    InvalidSchemaError,
    LengthError,
    ServerError,
    StreamError,
)

__all__ = ["Record", "patch_records"]

Record = dict[str, Any]
log = logging.getLogger("openbrace")


async def patch_records(
    engine: Engine, request: GenerationRequest, *, partial_strings: bool = False
) -> AsyncIterator[Record]:
    """Ops (and partial records, if asked) for `request`, then one `done` or `error`
    record. See the module docstring."""
    deltas = engine.generate(request)
    try:
        first = await deltas.__anext__()  # pre-stream errors propagate from here
    except StopAsyncIteration:
        first = Finish()
    async with aclosing(deltas):  # type: ignore[type-var]
        emitter = PatchEmitter(partial_strings=partial_strings)
        document: Any = None
        try:
            item = first
            while not isinstance(item, Finish):
                for record in emitter.feed(item):
                    if "op" in record:
                        document = apply_add(document, record["path"], _fresh(record["value"]))
                    yield record
                item = await deltas.__anext__()
            for record in _close(emitter, item):
                if "op" in record:
                    document = apply_add(document, record["path"], _fresh(record["value"]))
                yield record
            _check_schema(document, request.schema)
        except StreamError as exc:
            for op in getattr(exc, "ops", ()):  # completed before the bad byte: still valid
                yield op
            yield exc.to_record()
            return
        except StopAsyncIteration:
            yield ServerError("the engine ended without a finish reason").to_record()
            return
        except Exception:  # never leak internals into the stream
            log.exception("generation failed mid-stream")
            yield ServerError("internal error while generating").to_record()
            return
        yield {"done": {"finish_reason": "stop", "usage": item.usage.to_dict()}}


def _close(emitter: PatchEmitter, finish: Finish) -> list[Record]:
    try:
        return emitter.close()
    except InvalidOutputError:
        if finish.reason == "length":
            raise LengthError(
                "max_tokens ran out before the document closed", code="max_tokens"
            ) from None
        raise


def _check_schema(document: Any, schema: dict[str, Any] | None) -> None:
    """An unconstrained upstream may write valid JSON that breaks the schema."""
    if not schema:
        return
    from .validation import first_violation

    try:
        problem = first_violation(document, schema)
    except InvalidSchemaError as exc:  # the client's schema, not our failure
        raise InvalidRequestError(exc.message, code="invalid_schema") from None
    if problem is not None:
        raise InvalidOutputError(f"output does not match the schema: {problem}")


def _fresh(value: Any) -> Any:
    # Ops carry empty containers when they open; a fresh one keeps our copy private.
    if isinstance(value, dict) and not value:
        return {}
    if isinstance(value, list) and not value:
        return []
    return value
