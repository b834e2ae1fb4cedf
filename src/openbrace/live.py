"""The terminal view of `openbrace stream --live`: a form that fills in field by field.

The rows come from the schema (pending fields are dim), and each value fills in the
moment its op arrives, with the time it landed. A string types itself while it is
written (from the stream's `TextEvent`s, shown with a cursor and `writing`), and is
marked complete when its op lands. Array items and fields the schema
did not predict are inserted where they belong (depth first). Needs `rich`, the
`cli` extra. A frame walks the rows (a few microseconds each), at most 20 a second.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from . import pointer
from .events import PatchEvent, TextEvent
from .exceptions import PointerError

__all__ = ["LiveView", "skeleton"]


def skeleton(schema: Any, root: Any = None, path: str = "") -> list[str]:
    """The JSON Pointers of the fields `schema` predicts, depth first, in property order.

    Object properties are followed through local `$ref`s and single-branch unions
    (Optional); array items are not predicted: they appear as they arrive.
    """
    root = schema if root is None else root
    node = _resolve(schema, root)
    paths = [path] if path else []
    properties = node.get("properties")
    if isinstance(properties, dict):
        for key, sub in properties.items():
            paths += skeleton(sub, root, pointer.join(path, key))
    return paths


def _resolve(node: Any, root: Any, depth: int = 0) -> dict[str, Any]:
    if not isinstance(node, dict) or depth > 20:
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        try:
            tokens = pointer.split(ref[1:])
        except PointerError:  # an anchor (`#name`), not a pointer: nothing to predict
            return {}
        target: Any = root
        for token in tokens:
            target = target.get(token, {}) if isinstance(target, dict) else {}
        return _resolve(target, root, depth + 1)
    branches = node.get("anyOf") or node.get("oneOf")
    if isinstance(branches, list):
        real = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
        if len(real) == 1:
            return _resolve(real[0], root, depth + 1)
    return node


class _Row:
    __slots__ = ("landed_ms", "path", "typing", "value")

    def __init__(self, path: str):
        self.path = path
        self.value: Any = None
        self.landed_ms: float | None = None
        self.typing = False  # a string being written: `value` is its text so far


class LiveView:
    """Draws the fields of one patch stream as they fill in.

    Args:
        schema: the JSON Schema of the request, used to show the pending fields.
        title: shown in the panel's border (the model, say).
        console: where to draw; a recording `Console(record=True)` can export it.
    """

    def __init__(self, schema: Any, *, title: str = "", console: Console | None = None):
        self._rows = [_Row(path) for path in skeleton(schema)]
        self._title = title
        self._console = console or Console()
        self._start = time.perf_counter()
        self._first_ms: float | None = None
        self._ended: float | None = None
        self._status = "generating"
        self.ops = 0
        self.document: Any = None

    def add(self, event: PatchEvent | TextEvent, elapsed_ms: float) -> None:
        """Record one op (or piece of a string) that landed `elapsed_ms` after the
        request started."""
        if isinstance(event, TextEvent):
            row = self._row(event.path)
            row.value = (row.value if row.typing else "") + event.text
            row.typing = True
            return
        self.ops += 1
        if event.path == "" and isinstance(event.value, (dict, list)):
            return  # the root seed: the panel itself is the root
        row = self._row(event.path)
        row.value, row.landed_ms, row.typing = event.value, elapsed_ms, False
        if event.is_leaf and self._first_ms is None:
            self._first_ms = elapsed_ms

    def _row(self, path: str) -> _Row:
        for row in self._rows:
            if row.path == path:
                return row
        # Not predicted (an array item, say): insert after its parent and the parent's
        # rows so far, which keeps the rows in depth-first generation order.
        parent = path[: path.rfind("/")]
        at = len(self._rows)
        for i, row in enumerate(self._rows):
            if row.path == parent or row.path.startswith(parent + "/"):
                at = i + 1
        row = _Row(path)
        self._rows.insert(at, row)
        return row

    def render(self) -> Panel:
        """The current frame."""
        table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False, show_edge=False)
        table.add_column("field", no_wrap=True, style="bold")
        table.add_column("value", ratio=1, overflow="fold")
        table.add_column("landed", justify="right", no_wrap=True)
        for row in self._rows:
            table.add_row(_label(row.path), self._value(row), _landed(row))
        return Panel(
            Group(table, self._footer()),
            title=f"[bold]openbrace[/] stream {self._title}".rstrip(),
            title_align="left",
            border_style="bright_blue",
            padding=(0, 1),
        )

    def _value(self, row: _Row) -> Text:
        if isinstance(row.value, (dict, list)) and row.landed_ms is not None:
            # A container: how many children have landed so far.
            depth = row.path.count("/") + 1
            children = sum(
                r.landed_ms is not None
                and r.path.startswith(row.path + "/")
                and r.path.count("/") == depth
                for r in self._rows
            )
            noun = "item" if isinstance(row.value, list) else "field"
            return Text(f"{children} {noun}{'s' * (children != 1)}", style="dim")
        return _value(row)

    def _footer(self) -> Text:
        elapsed = ((self._ended or time.perf_counter()) - self._start) * 1000
        marks = {
            "loading model": ("◌", "cyan"),
            "generating": ("●", "yellow"),
            "done": ("✓", "green"),
        }
        mark, style = marks.get(self._status, ("✗", "red"))
        text = Text.assemble((f"{mark} {self._status}", f"bold {style}"), f"  {elapsed:.0f} ms")
        text.append(f" · {self.ops} ops")
        if self._first_ms is not None:
            text.append(f" · first field at {self._first_ms:.0f} ms")
        return text

    async def run(
        self,
        events: AsyncIterator[PatchEvent] | AsyncIterator[PatchEvent | TextEvent],
        *,
        loading: Awaitable[Any] | None = None,
    ) -> Any:
        """Draw `events` live until the stream ends; returns the final document.

        `loading` (the model loading, say) is awaited first under a "loading model"
        status; the generation's clock starts after it. Every frame is rendered anew
        (`get_renderable`), so the clock moves while nothing arrives. An error from
        the stream is re-raised after the last frame shows it.
        """
        self._start = time.perf_counter()
        last: PatchEvent | None = None
        live = Live(console=self._console, refresh_per_second=20, get_renderable=self.render)
        with live:
            try:
                if loading is not None:
                    self._status = "loading model"
                    await loading
                    self._status, self._start = "generating", time.perf_counter()
                async for event in events:
                    self.add(event, (time.perf_counter() - self._start) * 1000)
                    if isinstance(event, PatchEvent):
                        last = event
                self._status = "done"
            except BaseException as exc:
                self._status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
                raise
            finally:
                self._ended = time.perf_counter()
                live.refresh()  # the last frame, rendered by get_renderable
        self.document = last.snapshot if last is not None else None
        return self.document


def _label(path: str) -> Text:
    parent, _, name = path.rpartition("/")
    return Text.assemble((f"{parent[1:]}/" if parent else "", "dim"), name or "(root)")


def _value(row: _Row) -> Text:
    if row.typing:
        return Text.assemble((row.value, "green"), ("▌", "bold"))
    if row.landed_ms is None:
        return Text("…", style="dim")
    value = row.value
    if isinstance(value, str):
        return Text(value, style="green")
    if isinstance(value, bool) or value is None:
        return Text(json.dumps(value), style="magenta")
    return Text(json.dumps(value), style="cyan")


def _landed(row: _Row) -> Text:
    if row.typing:
        return Text("writing", style="italic yellow")
    if row.landed_ms is None:
        return Text("pending", style="dim")
    return Text(f"+{row.landed_ms:.0f} ms", style="yellow")
