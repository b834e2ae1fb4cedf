"""PatchEvent and TextEvent, and applying `add` ops to build documents.

A `Document` applies ops in order and hands out one `PatchEvent` per op. Reading
an event's `field` or `value` costs O(1); its `snapshot` (an independent deep copy
of the document right after that op) is only built when read, so a consumer that
never looks at snapshots never pays for them.

A `TextEvent` is a piece of a string value still being written: one per partial
record, for a client that asked for partial strings.
"""

from __future__ import annotations

from typing import Any

from . import pointer
from .exceptions import PointerError

__all__ = ["Document", "PatchEvent", "TextEvent", "apply_add", "copy_json"]

_CONTAINERS = (dict, list)


def copy_json(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars); faster than `copy.deepcopy`."""
    if isinstance(value, dict):
        return {k: copy_json(v) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


def apply_add(doc: Any, path: str, value: Any) -> Any:
    """Apply one RFC 6902 `add` op to `doc` in place and return the new document.

    `path` is an RFC 6901 pointer (unescaped here). The root path `""` replaces the
    document, so always keep the return value: `doc = apply_add(doc, path, value)`.
    Array indices may be a number up to the length, or `-` to append.
    """
    if path == "":
        return value
    *parents, last = pointer.split(path)
    target = doc
    for token in parents:
        target = _child(target, token, path)
    if isinstance(target, dict):
        target[last] = value
    elif isinstance(target, list):
        if last == "-":
            target.append(value)
        else:
            target.insert(_index(target, last, path, allow_end=True), value)
    else:
        raise PointerError(f"cannot add {path!r}: parent is not a container")
    return doc


def _child(container: Any, token: str, path: str) -> Any:
    if isinstance(container, dict):
        if token not in container:
            raise PointerError(f"cannot add {path!r}: {token!r} does not exist")
        return container[token]
    if isinstance(container, list):
        return container[_index(container, token, path, allow_end=False)]
    raise PointerError(f"cannot add {path!r}: {token!r} is inside a scalar")


def _index(array: list[Any], token: str, path: str, *, allow_end: bool) -> int:
    # isascii: str.isdigit also accepts digits like "²" that int() refuses.
    if not (token.isascii() and token.isdigit()) or (token != "0" and token.startswith("0")):
        raise PointerError(f"cannot add {path!r}: {token!r} is not an array index")
    index = int(token)
    if index > len(array) or (index == len(array) and not allow_end):
        raise PointerError(f"cannot add {path!r}: index {index} is out of range")
    return index


class Document:
    """The document a stream of `add` ops builds, and the events that describe it.

    `apply(op)` checks and applies one op and returns its `PatchEvent`. The document
    keeps the ops it applied so that any event's snapshot can be rebuilt later.
    `value` is the live document: read it, do not change it.
    """

    __slots__ = ("_ops", "_tools", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self._ops: list[tuple[str, Any]] = []  # (path, value) of every op applied
        self._tools: dict[str, str] = {}  # tool name of each call, by its index token

    def apply(self, op: dict[str, Any]) -> PatchEvent:
        """Check and apply one `add` op; return its event.

        Costs O(depth of the op's path) plus, for a container value, O(its size)
        to copy it (an emitter's container opens are empty: O(1)). No snapshot is
        built here.

        Raises:
            PointerError: `op` is not an `add` op, or its path does not resolve.
        """
        if (
            not isinstance(op, dict)
            or op.get("op") != "add"
            or not isinstance(op.get("path"), str)
            or "value" not in op
        ):
            raise PointerError(f"not an RFC 6902 add op: {op!r}")
        path, value = op["path"], op["value"]
        if isinstance(value, _CONTAINERS):
            # Two private copies: one for the live document, which later ops fill, and
            # one to rebuild old snapshots from, which nobody can change: not even a
            # consumer mutating `event.value`.
            self.value = apply_add(self.value, path, copy_json(value))
            self._ops.append((path, copy_json(value)))
        else:
            self.value = apply_add(self.value, path, value)
            self._ops.append((path, value))
        tool = self._tool(path, value) if path.startswith("/tool_calls/") else None
        return PatchEvent(op, self, len(self._ops), tool)

    def _tool(self, path: str, value: Any) -> str | None:
        """The tool name of the call at `path` as of this op (a name op sets it)."""
        index, _, rest = path[12:].partition("/")
        if rest == "name" and isinstance(value, str):
            self._tools[index] = value
        return self._tools.get(index)

    def snapshot_after(self, count: int) -> Any:
        """An independent copy of the document after its first `count` ops.

        O(document size) for the latest op; an older one is rebuilt by replaying
        the first `count` ops.
        """
        if count == len(self._ops):
            return copy_json(self.value)
        doc: Any = None
        for path, value in self._ops[:count]:
            doc = apply_add(doc, path, copy_json(value))
        return doc


class PatchEvent:
    """One op of a patch stream, with the document as it stood right after it.

    Attributes:
        op: the op as received, `{"op": "add", "path": ..., "value": ...}`.
        path: the raw RFC 6901 pointer, `"/steps/0"`; `""` for the root.
        field: `path` without its leading `/`: `"steps/0"`, `"address/city"`, `""`.
        value: the op's value. A container open carries `{}` or `[]`.
        keys: the unescaped path tokens, `("steps", "0")`; `()` for the root.
        is_leaf: False for the root seed and container opens (`{}`/`[]` values that
            later ops fill), True for every complete value, including `0`, `""`,
            `false` and `null`.
        snapshot: an independent deep copy of the whole document after this op.
            Built on first read (O(document size)) and cached: every read returns
            the same object. Later ops never change it, so stashing events is safe.

    With tools (the document is the assistant message, docs/tools.md):

        call: the index of the tool call the op belongs to (`/tool_calls/N/...`),
            else None.
        tool: that call's tool name. The name's own op comes before the call's
            first argument, so every argument's event knows its tool.
        argument: the op's place inside the call's arguments, like `field`:
            `"order_id"`, `"items/0"`; `""` for the arguments object; else None.

    Events are immutable: setting an attribute raises `AttributeError`.
    """

    __slots__ = ("_count", "_doc", "_snapshot", "_tool", "op")

    op: dict[str, Any]
    _doc: Document
    _count: int
    _snapshot: Any
    _tool: str | None

    _UNSET: Any = object()

    def __init__(self, op: dict[str, Any], doc: Document, count: int, tool: str | None = None):
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "_doc", doc)
        object.__setattr__(self, "_count", count)
        object.__setattr__(self, "_snapshot", PatchEvent._UNSET)
        object.__setattr__(self, "_tool", tool)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PatchEvent is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("PatchEvent is immutable")

    @property
    def path(self) -> str:
        """The op's RFC 6901 pointer, escaped: `"/steps/0"`, `""` for the root."""
        return self.op["path"]  # type: ignore[no-any-return]

    @property
    def field(self) -> str:
        """`path` without its leading `/` (still escaped): `"steps/0"`, `""` for the root."""
        return self.path[1:]

    @property
    def value(self) -> Any:
        """The op's value, as received (`{}`/`[]` for a container open)."""
        return self.op["value"]

    @property
    def keys(self) -> tuple[str, ...]:
        """The unescaped path tokens: `("a/b", "0")` for `"/a~1b/0"`; O(path length)."""
        return pointer.split(self.path)

    @property
    def call(self) -> int | None:
        """The index of the tool call this op belongs to, or None (see the class)."""
        path = self.path
        if not path.startswith("/tool_calls/"):
            return None
        index = path[12:].split("/", 1)[0]
        return int(index) if index.isascii() and index.isdigit() else None

    @property
    def tool(self) -> str | None:
        """The name of the tool this op's call calls, once its name op has arrived."""
        return self._tool

    @property
    def argument(self) -> str | None:
        """Where in its call's arguments this op adds (`"order_id"`), `""` for the
        arguments object itself, None for ops outside a call's arguments."""
        index = self.call
        if index is None:
            return None
        prefix = f"/tool_calls/{index}/arguments"
        path = self.path
        if path == prefix:
            return ""
        return path[len(prefix) + 1 :] if path.startswith(prefix + "/") else None

    @property
    def is_leaf(self) -> bool:
        """False for the root seed and container opens (an empty `{}`/`[]` that later
        ops may fill); True for a value that arrives complete, however falsy."""
        value = self.value
        return not (isinstance(value, _CONTAINERS) and not value)

    @property
    def snapshot(self) -> Any:
        """The whole document right after this op, an independent deep copy.

        Built on first read and cached (O(document size), or a replay of the ops
        up to this one when read after later ops); never changed by later ops.
        """
        if self._snapshot is PatchEvent._UNSET:
            object.__setattr__(self, "_snapshot", self._doc.snapshot_after(self._count))
        return self._snapshot

    def __repr__(self) -> str:
        return f"PatchEvent(field={self.field!r}, value={self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PatchEvent) and other.op == self.op


class TextEvent:
    """A piece of a string value that is still being written (a partial record).

    The string's own `PatchEvent` follows the last piece and carries the whole value:
    that one says the string is complete.

    Attributes:
        path: the string's RFC 6901 pointer, `"/reply"`; `""` for a root string.
        field: `path` without its leading `/`: `"reply"`, `"steps/0"`.
        keys: the unescaped path tokens, `("steps", "0")`.
        text: the text written since the last piece (decoded: escapes resolved,
            whole characters only).
        so_far: all the text of this string so far, this piece included. Joined on
            first read (O(length so far)) and cached.

    Events are immutable: setting an attribute raises `AttributeError`.
    """

    __slots__ = ("_count", "_pieces", "_so_far", "path", "text")

    path: str
    text: str
    _pieces: list[str]
    _count: int
    _so_far: str | None

    def __init__(self, path: str, text: str, pieces: list[str]):
        """`pieces`: every piece of this string so far, this one last (shared, append-only)."""
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "_pieces", pieces)
        object.__setattr__(self, "_count", len(pieces))
        object.__setattr__(self, "_so_far", None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("TextEvent is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("TextEvent is immutable")

    @property
    def field(self) -> str:
        """`path` without its leading `/` (still escaped): `"steps/0"`."""
        return self.path[1:]

    @property
    def keys(self) -> tuple[str, ...]:
        """The unescaped path tokens: `("a/b", "0")` for `"/a~1b/0"`."""
        return pointer.split(self.path)

    @property
    def so_far(self) -> str:
        """The string's text up to and including this piece."""
        if self._so_far is None:
            pieces = self._pieces
            joined = "".join(pieces if len(pieces) == self._count else pieces[: self._count])
            object.__setattr__(self, "_so_far", joined)
        return self._so_far  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"TextEvent(field={self.field!r}, text={self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextEvent) and other.path == self.path and other.text == self.text
