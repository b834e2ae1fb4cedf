"""Benchmark 2: client cost per event, openbrace's `PatchEvent` vs the dottxt SDK's.

Both clients receive the same NDJSON op stream, one line per network chunk (the
server flushes every op on its own), for documents of 1 KB to 100 KB:

- `openbrace field/value`: the HTTP client's own bytes-to-events path,
  `openbrace.client._PatchDecoder("ndjson").feed(line)` (NDJSON decoder, then
  `Document.apply` per op), reading `event.field` and `event.value`.
- `openbrace snapshot`: the same, also reading `event.snapshot` for every event
  (an independent deep copy of the document, built on first read).
- `dottxt`: the `dottxt.streaming.stream` loop over the decoded text and the SDK's
  `_handle_line` per line, reading `event.field` and `event.value`; the SDK builds
  deep copies of the op and of the whole document for every event, read or not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .extraction import SMOKE_BUDGET, make_document, reference_ops
from .harness import Budget, OverBudget, Section, Stat, TimedChunks, fmt_time, fresh_heap, md_table

__all__ = ["CONSUMERS", "run"]

SIZES = (1_000, 10_000, 100_000)
SMOKE_SIZES = (200, 500)
SHAPES = ("flat/short", "nested/short")


def _ours(lines: TimedChunks, snapshots: bool) -> int:
    from openbrace.client import _PatchDecoder

    decoder = _PatchDecoder("ndjson")
    events = 0
    for line in lines:
        for event in decoder.feed(line):
            event.field, event.value  # noqa: B018 - what the consumer reads
            if snapshots:
                event.snapshot  # noqa: B018
            events += 1
    for _ in decoder.close():
        events += 1
    return events


def _dottxt(lines: TimedChunks, snapshots: bool) -> int:
    from dottxt.streaming import _handle_line

    doc: Any = None
    buf = ""
    events = 0
    for chunk in lines:  # verbatim from dottxt.streaming.stream, minus the HTTP
        buf += chunk
        while "\n" in buf:
            line, buf = buf.split("\n", 1)
            line = line.strip()
            if not line:
                continue
            doc, event = _handle_line(line, doc)
            event.field, event.value  # noqa: B018
            if snapshots:
                event.snapshot  # noqa: B018
            events += 1
    return events


@dataclass(frozen=True)
class Consumer:
    name: str
    run: Callable[[TimedChunks, bool], int]
    snapshots: bool
    text: bool  # True: gets decoded str chunks (aiter_text), False: bytes


CONSUMERS = (
    Consumer("openbrace field/value", _ours, False, False),
    Consumer("openbrace snapshot", _ours, True, False),
    Consumer("dottxt", _dottxt, False, True),
)


@dataclass
class Result:
    consumer: str
    shape: str
    size: int
    events: int = 0
    per_event: Stat | None = None  # seconds per event, whole stream
    tail: Stat | None = None  # seconds per event over the last 10%
    status: str = "ok"


def _lines(size: int, shape: str) -> list[str]:
    ops = reference_ops(json.loads(make_document(shape, size)))
    return [json.dumps(op, separators=(",", ":"), ensure_ascii=False) + "\n" for op in ops]


def _measure(consumer: Consumer, lines: list[str], budget: Budget) -> tuple[Stat, Stat] | None:
    stream: list[Any] = lines if consumer.text else [line.encode() for line in lines]
    per_event, tail = Stat(), Stat()
    spent = 0.0
    try:
        while True:
            chunks = TimedChunks(stream, tail=max(1, len(stream) // 10), abort=budget.abort)
            fresh_heap()
            start = time.process_time()
            events = consumer.run(chunks, consumer.snapshots)
            end = time.process_time()
            per_event.samples.append((end - start) / events)
            tail.samples.append((end - chunks.tail_start) / chunks.tail_count)
            spent += end - start
            if (
                len(per_event.samples) >= budget.runs_wanted(end - start)
                or spent + (end - start) > budget.total
            ):
                return per_event, tail
    except OverBudget:
        return None


def run(out_dir: Path, *, smoke: bool = False) -> Section:
    """Run benchmark 2 and return its RESULTS.md section."""
    sizes: Sequence[int] = SMOKE_SIZES if smoke else SIZES
    budget = SMOKE_BUDGET if smoke else Budget()
    results: list[Result] = []
    for shape in SHAPES:
        streams = {size: _lines(size, shape) for size in sizes}
        for consumer in CONSUMERS:
            last: Result | None = None
            for size in sizes:
                result = Result(consumer.name, shape, size, events=len(streams[size]))
                results.append(result)
                predicted = 0.0
                if last is not None and last.per_event is not None:
                    seconds = last.per_event.median * last.events
                    predicted = budget.predict(seconds, last.size, size, 2.0)
                over = last is not None and (last.per_event is None or predicted > budget.abort)
                measured = None if over else _measure(consumer, streams[size], budget)
                if measured is None:
                    result.status = "skipped (>budget)"
                    last = result
                    continue
                result.per_event, result.tail = measured
                last = result
    return Section("2. Client cost per event", _report(results, sizes), [], _goals(results, sizes))


def _report(results: list[Result], sizes: Sequence[int]) -> str:
    parts = [
        "Cost per event (one op line in, one event out, whole stream / events): median "
        "(min-max, n=runs), and in brackets the cost per event over the last 10% of the "
        "stream. The same op stream (the ops of the benchmark-1 documents) goes to every "
        "consumer, one line per chunk.",
    ]
    for shape in SHAPES:
        rows = []
        for consumer in CONSUMERS:
            cells = []
            for size in sizes:
                r = next(
                    x
                    for x in results
                    if x.consumer == consumer.name and x.shape == shape and x.size == size
                )
                cells.append(
                    r.status
                    if r.per_event is None or r.tail is None
                    else f"{r.per_event.spread()} [{fmt_time(r.tail.median)}]"
                )
            rows.append([f"`{consumer.name}`", *cells])
        events = [
            next(x.events for x in results if x.shape == shape and x.size == s) for s in sizes
        ]
        headers = ["consumer"] + [
            f"{s / 1000:g} KB ({n} events)" for s, n in zip(sizes, events, strict=True)
        ]
        parts += ["", f"#### {shape}", "", md_table(headers, rows)]
    ratio_rows = []
    for shape in SHAPES:
        for size in sizes:
            pick = {r.consumer: r for r in results if r.shape == shape and r.size == size}
            ours, snap, dottxt = (pick[c.name] for c in CONSUMERS)
            if ours.per_event and dottxt.per_event:
                snap_ratio = (
                    f"{dottxt.per_event.median / snap.per_event.median:.1f}x"
                    if snap.per_event
                    else "-"
                )
                ratio_rows.append(
                    [
                        shape,
                        f"{size / 1000:g} KB",
                        f"{dottxt.per_event.median / ours.per_event.median:.1f}x",
                        snap_ratio,
                    ]
                )
    parts += [
        "",
        "#### dottxt's cost per event / openbrace's",
        "",
        md_table(["shape", "size", "vs field/value", "vs snapshot"], ratio_rows),
    ]
    return "\n".join(parts)


def _goals(results: list[Result], sizes: Sequence[int]) -> list[tuple[str, str, str]]:
    size = sizes[-1]
    ratios = []
    for shape in SHAPES:
        pick = {r.consumer: r for r in results if r.shape == shape and r.size == size}
        ours, dottxt = pick[CONSUMERS[0].name], pick[CONSUMERS[2].name]
        if ours.per_event and dottxt.per_event:
            ratios.append(dottxt.per_event.median / ours.per_event.median)
    if not ratios:
        return []
    return [
        (
            "client cost per event below the dottxt SDK's "
            f"(field/value readers, {size / 1000:g} KB)",
            f"dottxt / openbrace = {min(ratios):.1f}x-{max(ratios):.1f}x",
            "met" if min(ratios) > 1 else "not met",
        )
    ]
