"""Benchmark: how early a tool call's first argument is usable (issue 11).

The embedded model makes a named call of `examples/tool_call.py`'s `lookup_order`
(order_id, shipping, note) in patch mode, through `patch_records` as the server
runs it. Measured from the request: when the tool's name op lands, when the first
argument (`order_id`) lands, and when the call is complete (its last argument).
A server that buffers tool calls (the vLLM / llama.cpp complaint in the issue)
hands the call over at "complete" at best; the difference is the head start an
agent gets. Wall time, median of the runs, model loaded and warmed first.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import anyio

from openbrace.request import parse_chat
from openbrace.streaming import patch_records

from .harness import Section, fmt_time, md_table

__all__ = ["run"]

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Look up an order: where it is and how it ships.",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "pattern": "^[A-Z]-[0-9]{3,5}$"},
                "shipping": {"enum": ["standard", "express"]},
                "note": {"type": "string", "maxLength": 60},
            },
            "required": ["order_id", "shipping", "note"],
        },
    },
}
PROMPT = "My order A-1742 has not arrived and I want it shipped express. Look it up."


async def _one(engine: Any, seed: int) -> dict[str, float]:
    model = (await engine.models())[0].id
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "lookup_order"}},
        "stream": "patch",
        "seed": seed,
        "max_tokens": 120,
    }
    request = parse_chat(body).request
    marks: dict[str, float] = {}
    started = time.perf_counter()
    async for record in patch_records(engine, request):
        path = record.get("path", "")
        now = time.perf_counter() - started
        if path == "/tool_calls/0/name":
            marks["name"] = now
        elif path.startswith("/tool_calls/0/arguments/"):
            marks.setdefault("first", now)
            marks["complete"] = now
        elif "error" in record:
            raise RuntimeError(f"the call failed: {record['error']}")
    return marks


async def _measure(engine: Any, runs: int) -> list[dict[str, float]]:
    await engine.load()
    await _one(engine, 0)  # warm: the prompt's KV cache, the grammar compiled
    return [await _one(engine, seed) for seed in range(1, runs + 1)]


def run(out_dir: Path, *, smoke: bool = False, engine: Any = None) -> Section:
    del out_dir
    from openbrace.engines.local import default_engine

    runs = 1 if smoke else 7
    marks = anyio.run(_measure, engine or default_engine(), runs)
    median = {key: statistics.median(m[key] for m in marks) for key in marks[0]}
    head = statistics.median(m["complete"] - m["first"] for m in marks)
    rows = [
        ["tool name op", fmt_time(median["name"])],
        ["first argument (`order_id`) op", fmt_time(median["first"])],
        ["call complete (last argument)", fmt_time(median["complete"])],
        ["head start: first argument before the call completes", fmt_time(head)],
    ]
    body = "\n".join(
        [
            "`benchmarks/tools.py`: the embedded SmolLM2-135M makes a named call of "
            "`lookup_order(order_id, shipping, note)` (examples/tool_call.py) in patch mode, "
            "through `patch_records`; times from the request, warm model and grammar, "
            f"median of {runs} seeded run(s). A server that buffers tool calls delivers the "
            'call at "call complete" at the earliest.',
            "",
            md_table(["moment", "median"], rows),
        ]
    )
    goals = [
        (
            "a tool call's first argument usable before the call completes",
            f"{fmt_time(head)} earlier",
            "met" if head > 0 else "not met",
        )
    ]
    return Section("7. Tool calls: first argument vs whole call (issue 11)", body, [], goals)
