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

With tools (whatever the tool_choice), the document is the assistant
message, built by `MessageOps` (docs/tools.md, "Patch mode"):

    {"op": "add", "path": "", "value": {}}
    {"op": "add", "path": "/content", "value": "Let me look."}   text, whole, if any
    {"op": "add", "path": "/tool_calls", "value": []}
    {"op": "add", "path": "/tool_calls/0", "value": {}}
    {"op": "add", "path": "/tool_calls/0/id", "value": "call_..."}
    {"op": "add", "path": "/tool_calls/0/name", "value": "lookup"}   before any argument
    {"op": "add", "path": "/tool_calls/0/arguments", "value": {}}
    {"op": "add", "path": "/tool_calls/0/arguments/order_id", "value": "A-17"}

Each call's arguments go through their own `PatchEmitter`, so every argument is
one `add` at its earliest byte, exactly as a `response_format` document's fields.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from .emitter import PatchEmitter
from .engines.base import Engine, Finish, GenerationRequest, Item
from .events import apply_add
from .exceptions import (
    InvalidOutputError,
    InvalidRequestError,
    InvalidSchemaError,
    LengthError,
    ServerError,
    StreamError,
)

__all__ = ["DocumentOps", "MessageOps", "Record", "patch_records"]

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
    ops: DocumentOps | MessageOps = (
        MessageOps(request, partial_strings=partial_strings)
        if request.tools
        else DocumentOps(request, partial_strings=partial_strings)
    )
    async with aclosing(deltas):  # type: ignore[type-var]
        try:
            item = first
            while not isinstance(item, Finish):
                for record in ops.feed(item):
                    yield record
                item = await deltas.__anext__()
            for record in ops.close(item):
                yield record
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
        yield {"done": {"finish_reason": ops.finish_reason(item), "usage": item.usage.to_dict()}}


class DocumentOps:
    """Text deltas -> the ops of a `response_format` document, checked against its
    schema at the end (an upstream is not constrained)."""

    def __init__(self, request: GenerationRequest, *, partial_strings: bool = False) -> None:
        self._schema = request.schema
        self._emitter = PatchEmitter(partial_strings=partial_strings)
        self._document: Any = None

    def feed(self, item: Item) -> list[Record]:
        if not isinstance(item, str):
            raise InvalidOutputError("the model called a tool, but calls are not allowed")
        return self._track(self._emitter.feed(item))

    def close(self, finish: Finish) -> list[Record]:
        records = self._track(_close(self._emitter, finish))
        _check_schema(self._document, self._schema)
        return records

    def finish_reason(self, finish: Finish) -> str:
        return "stop"  # a document that closed is complete, whatever stopped the model

    def _track(self, records: list[Record]) -> list[Record]:
        for record in records:
            if "op" in record:
                self._document = apply_add(self._document, record["path"], _fresh(record["value"]))
        return records


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
    problem = _violation(document, schema)
    if problem is not None:
        raise InvalidOutputError(f"output does not match the schema: {problem}")


def _fresh(value: Any) -> Any:
    # Ops carry empty containers when they open; a fresh one keeps our copy private.
    if isinstance(value, dict) and not value:
        return {}
    if isinstance(value, list) and not value:
        return []
    return value


class MessageOps:
    """Text and tool-call deltas -> the ops of the assistant message (module docstring).

    Content is added whole when it ends (at the first call, or at the finish); each
    call opens with its id and name, then its arguments stream through a
    `PatchEmitter` under `/tool_calls/N/arguments`. Each call's arguments are checked
    against its tool's schema when the call ends (an upstream is not constrained):
    `InvalidOutputError` carrying the ops completed before the fault.

    With `partial_strings`, content text and the arguments' string values also come
    as partial records (`/content`, `/tool_calls/N/arguments/...`) as they are written.
    """

    def __init__(self, request: GenerationRequest, *, partial_strings: bool = False) -> None:
        self._request = request
        self._partial = partial_strings
        self._tools = {tool.name: tool for tool in request.tools}
        self._opened = False
        self._content: list[str] = []
        self._calls: list[_CallOps] = []

    def feed(self, item: Item) -> list[Record]:
        """The ops `item` (text or a `ToolCallDelta`) completed."""
        ops = self._open()
        if isinstance(item, str):
            if self._calls:
                if item.strip():  # whitespace between calls is layout, not content
                    raise InvalidOutputError("the model wrote text after a tool call")
                return ops
            self._content.append(item)
            if self._partial and item:
                ops.append({"partial": {"path": "/content", "text": item}})
            return ops
        if isinstance(item, Finish):
            return ops
        ops += self._flush_content()
        if not self._calls:
            ops.append({"op": "add", "path": "/tool_calls", "value": []})
        if item.index == len(self._calls):
            if self._calls:
                ops += self._end(self._calls[-1])
            self._calls.append(_CallOps(item.index, self._partial))
        elif item.index != len(self._calls) - 1:
            raise InvalidOutputError(f"tool call {item.index} arrived out of order")
        call = self._calls[-1]
        call.id = call.id or item.id
        call.name += item.name or ""
        if item.arguments:
            ops += self._guarded(call, call.feed, item.arguments)
        return ops

    def finish_reason(self, finish: Finish) -> str:
        return finish.reason

    def close(self, finish: Finish) -> list[Record]:
        """The last ops, after the engine's `Finish`; raises if the message is unusable."""
        ops = self._open()
        if not self._calls:
            ops += self._flush_content(always=True)
            return ops
        return ops + self._end(self._calls[-1], finish)

    def _open(self) -> list[Record]:
        if self._opened:
            return []
        self._opened = True
        return [{"op": "add", "path": "", "value": {}}]

    def _flush_content(self, *, always: bool = False) -> list[Record]:
        text = "".join(self._content)
        self._content = []
        if not text and not always:
            return []
        if self._request.schema is not None:
            _check_content(text, self._request.schema)
        return [{"op": "add", "path": "/content", "value": text}]

    def _end(self, call: _CallOps, finish: Finish | None = None) -> list[Record]:
        ops = self._guarded(call, call.close, finish)
        tool = self._tools.get(call.name)
        if tool is None:
            raise InvalidOutputError(
                f"tool call {call.index} names {call.name!r}, which is not one of the tools"
            )
        problem = _violation(call.arguments, tool.parameters)
        if problem is not None:
            raise InvalidOutputError(
                f"tool call {call.index} ({call.name}): the arguments do not match the "
                f"tool's schema: {problem}",
                ops=ops,
            )
        return ops

    def _guarded(self, call: _CallOps, step: Any, arg: Any) -> list[Record]:
        try:
            return list(step(arg))
        except InvalidOutputError as exc:
            exc.ops = call.prefix(exc.ops)
            exc.message = f"tool call {call.index} ({call.name}): {exc.message}"
            exc.args = (exc.message,)
            raise


class _CallOps:
    """One call: its id and name, then its arguments' ops under `/tool_calls/N/arguments`."""

    def __init__(self, index: int, partial_strings: bool = False) -> None:
        self.index = index
        self.id: str | None = None
        self.name = ""
        self.arguments: Any = None  # the arguments document, built from the ops
        self._emitter = PatchEmitter(partial_strings=partial_strings)
        self._base = f"/tool_calls/{index}"
        self._head_sent = False
        self._fed = False

    def feed(self, text: str) -> list[Record]:
        head = self._head()
        self._fed = True
        return head + self.prefix(self._emitter.feed(text))

    def close(self, finish: Finish | None) -> list[Record]:
        head = self._head()
        if not self._fed:  # no arguments text at all (some servers): an empty object
            self._fed = True
            ops = self._emitter.feed("{}")
            return head + self.prefix(ops + self._emitter.close())
        try:
            ops = self._emitter.close()
        except InvalidOutputError:
            if finish is not None and finish.reason == "length":
                raise LengthError(
                    "max_tokens ran out before the tool call's arguments closed", code="max_tokens"
                ) from None
            raise
        return head + self.prefix(ops)

    def _head(self) -> list[Record]:
        if self._head_sent:
            return []
        from .tools import new_call_id

        self._head_sent = True
        self.id = self.id or new_call_id()
        base = self._base
        return [
            {"op": "add", "path": base, "value": {}},
            {"op": "add", "path": f"{base}/id", "value": self.id},
            {"op": "add", "path": f"{base}/name", "value": self.name},
        ]

    def prefix(self, ops: list[Record]) -> list[Record]:
        out: list[Record] = []
        base = f"{self._base}/arguments"
        for op in ops:
            if "partial" in op:
                partial = op["partial"]
                out.append({"partial": {"path": base + partial["path"], "text": partial["text"]}})
                continue
            path = op["path"]
            if path == "" and not isinstance(op["value"], dict):
                raise InvalidOutputError("the arguments of a tool call must be a JSON object")
            self.arguments = apply_add(self.arguments, path, _fresh(op["value"]))
            out.append({"op": "add", "path": base + path, "value": op["value"]})
        return out


def _violation(document: Any, schema: dict[str, Any]) -> str | None:
    """The first way `document` breaks `schema`, or None."""
    from .validation import first_violation

    try:
        return first_violation(document, schema)
    except InvalidSchemaError as exc:  # the client's schema, not our failure
        raise InvalidRequestError(exc.message, code="invalid_schema") from None


def _check_content(text: str, schema: dict[str, Any]) -> None:
    """With a response_format too, text content must be a document of that schema."""
    import json

    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidOutputError("the content is not JSON, as the response_format asks") from None
    problem = _violation(document, schema)
    if problem is not None:
        raise InvalidOutputError(f"the content does not match the schema: {problem}")
