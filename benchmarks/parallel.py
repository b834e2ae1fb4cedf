"""Benchmark: many streams at once on the embedded engine (`--parallel N`), vs llama-server.

N concurrent streams (N = 1, 2, 4, 8, 16), each sending its requests one after the
other (a closed loop, `max(8, 2N)` requests in all, all streams starting together),
over the five example schemas in turn (`benchmarks.generation.load_examples`:
each example's own prompt and `max_tokens`), greedy, so a configuration writes the
same documents on every run. Three configurations:

- openbrace `--parallel N`: `LocalEngine(parallel=N)` (its defaults: the shipped
  model converted once to BF16, flash attention), requests through `patch_records`,
  the pipeline behind the client and the server, in this process;
- one at a time: today's engine, `LocalEngine()` (parallel=1, the shipped Q4_1
  file), the same requests sent one after the other (the baseline of the goals);
- llama-server `-np N`: llama.cpp's own server (built from the llama-cpp-python
  sdist, `benchmarks/llama_server.py`) on the same BF16 file, same thread count,
  its default `--flash-attn auto` (on, on CPU), same chat messages,
  `response_format: json_schema` with the same schema, over HTTP on loopback
  (streamed; its text fed to a `PatchEmitter` to time fields the same way).

Aggregate tokens/s = all completion tokens / wall time of the level. First field =
from sending a request to its first op with a non-empty path. The machine is shared:
each row records the 1-minute load average when it started.

The machine's speed also drifts by 10% or more over minutes, which a ladder measured
once moves into its ratios. So the goals are taken from back-to-back pairs: both
engines loaded, one at a time then 8 streams, three rounds; each goal is the median
of the three rounds' ratios (the ladder's own figures are in the table too).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .harness import Section, Stat, fmt_time, log, md_table

__all__ = ["run"]

LEVELS = (1, 2, 4, 8, 16)
PAIRED, ROUNDS = 8, 3  # streams and rounds of the back-to-back pairs the goals use
Example = tuple[str, dict[str, Any], str, int]
RunOne = Callable[[Example], Awaitable[dict[str, float]]]


@dataclass
class Level:
    config: str
    streams: int
    tokens: int = 0
    seconds: float = 0.0
    load: float = 0.0
    invalid: int = 0  # documents that were not valid JSON
    first: Stat = field(default_factory=Stat)

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class Pair:
    """One at a time, then `PAIRED` streams, run back to back on loaded engines."""

    solo: Level
    batched: Level

    @property
    def speed(self) -> float:
        return self.batched.rate / self.solo.rate

    @property
    def latency(self) -> float:
        return self.batched.first.median / self.solo.first.median


async def _ours(engine: Any, example: Example) -> dict[str, float]:
    from openbrace.engines.base import GenerationRequest
    from openbrace.streaming import patch_records

    _, schema, prompt, max_tokens = example
    request = GenerationRequest(
        model=engine.model_id,
        messages=[{"role": "user", "content": prompt}],
        schema=schema,
        temperature=0,
        max_tokens=max_tokens,
    )
    start = time.perf_counter()
    first = None
    tokens = 0
    async for record in patch_records(engine, request):
        if first is None and record.get("path"):
            first = time.perf_counter() - start
        if "done" in record:
            tokens = record["done"]["usage"]["completion_tokens"]
        elif "error" in record:
            raise RuntimeError(f"run failed: {record}")
    total = time.perf_counter() - start
    return {"tokens": tokens, "first": first or total, "invalid": 0}


async def _theirs(client: Any, url: str, example: Example) -> dict[str, float]:
    from openbrace.emitter import PatchEmitter
    from openbrace.exceptions import OpenBraceError

    _, schema, prompt, max_tokens = example
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    emitter: PatchEmitter | None = PatchEmitter()
    start = time.perf_counter()
    first = None
    tokens = 0
    invalid = 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                text = (choice.get("delta") or {}).get("content") or ""
                try:
                    ops = emitter.feed(text) if text and emitter else []
                except OpenBraceError:  # not JSON: counted, and the stream read to its end
                    emitter, ops, invalid = None, [], 1
                if first is None and any(op["path"] for op in ops):
                    first = time.perf_counter() - start
    total = time.perf_counter() - start
    return {"tokens": tokens, "first": first or total, "invalid": invalid}


async def _level(config: str, streams: int, examples: list[Example], run_one: RunOne) -> Level:
    """`streams` workers share `max(8, 2 * streams)` requests, all starting together."""
    requests = max(8, 2 * streams) if len(examples) > 2 else streams
    queue = [examples[i % len(examples)] for i in range(requests)]
    level = Level(config, streams, load=os.getloadavg()[0])

    async def worker() -> None:
        while queue:
            result = await run_one(queue.pop(0))
            level.tokens += int(result["tokens"])
            level.invalid += int(result["invalid"])
            level.first.samples.append(result["first"])

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(streams)))
    level.seconds = time.perf_counter() - start
    log(f"  {config} x{streams}: {level.rate:.1f} tok/s, first field {level.first.median:.3f} s")
    return level


async def _warm_up(engine: Any, example: Example) -> None:
    """Load the model and run one request, so no level pays for either."""
    await engine.load()
    await _ours(engine, example)


async def _pairs(examples: list[Example], streams: int, rounds: int) -> list[Pair]:
    from openbrace.engines.local import LocalEngine

    solo, batched = LocalEngine(), LocalEngine(parallel=streams)
    pairs = []
    try:
        for engine in (solo, batched):
            await _warm_up(engine, examples[0])
        for _ in range(rounds):
            one = await _level("one at a time", 1, examples, functools.partial(_ours, solo))
            many = await _level(
                "openbrace --parallel N", streams, examples, functools.partial(_ours, batched)
            )
            pairs.append(Pair(one, many))
    finally:
        await solo.aclose()
        await batched.aclose()
    return pairs


async def _measure(levels: tuple[int, ...], examples: list[Example], threads: int) -> list[Level]:
    import httpx

    from openbrace.engines.local import LocalEngine

    from . import llama_server

    out = []
    solo = LocalEngine()
    await _warm_up(solo, examples[0])
    out.append(await _level("one at a time", 1, examples, functools.partial(_ours, solo)))
    await solo.aclose()
    model_file = None
    for n in levels:
        engine = LocalEngine(parallel=n, weights="bf16")
        await _warm_up(engine, examples[0])
        out.append(
            await _level("openbrace --parallel N", n, examples, functools.partial(_ours, engine))
        )
        model_file = engine.model_file
        await engine.aclose()
    assert model_file is not None
    for n in levels:
        with llama_server.running(
            model_file, parallel=n, n_ctx=max(1024, 16384 // n), threads=threads
        ) as url:
            # A fresh connection per request: llama-server drops idle keep-alive ones.
            fresh = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=300, limits=fresh) as client:
                await _theirs(client, url, examples[0])
                out.append(
                    await _level(
                        "llama-server -np N", n, examples, lambda e: _theirs(client, url, e)
                    )
                )
    return out


def run(out_dir: Path, *, smoke: bool = False) -> Section:
    from openbrace.engines.local import LocalEngine

    from .generation import load_examples

    examples = load_examples()
    levels = (1, 2) if smoke else LEVELS
    if smoke:
        examples = examples[:2]
    threads = LocalEngine().n_threads
    results = asyncio.run(_measure(levels, examples, threads))
    pairs = asyncio.run(_pairs(examples, 2 if smoke else PAIRED, 1 if smoke else ROUNDS))
    plots = [] if smoke else [_plot(results, out_dir)]
    return Section(
        "Many streams at once: continuous batching (`--parallel N`) vs llama-server -np N",
        _report(results, threads) + "\n\n" + _report_pairs(pairs),
        plots,
        _goals(results, pairs),
    )


def _find(results: list[Level], config: str, streams: int) -> Level | None:
    return next((r for r in results if r.config == config and r.streams == streams), None)


def _report(results: list[Level], threads: int) -> str:
    rows = [
        [
            r.config,
            r.streams,
            f"{len(r.first.samples)}" + (f" ({r.invalid} invalid JSON)" if r.invalid else ""),
            f"{r.rate:.1f}",
            fmt_time(r.first.median),
            fmt_time(r.first.quantile(0.95)),
            f"{r.load:.2f}",
        ]
        for r in results
    ]
    head = (__doc__ or "").split("\n\n", 1)[1].strip()
    return "\n".join(
        [
            head,
            "",
            f"llama.cpp threads: {threads} (both engines); CPU cores: {os.cpu_count()}.",
            "",
            md_table(
                [
                    "configuration",
                    "streams",
                    "requests",
                    "aggregate tokens/s",
                    "first field p50",
                    "first field p95",
                    "load avg (1 min)",
                ],
                rows,
            ),
        ]
    )


def _report_pairs(pairs: list[Pair]) -> str:
    rows = [
        [
            i + 1,
            f"{p.solo.rate:.1f}",
            f"{p.batched.rate:.1f}",
            f"{p.speed:.2f}x",
            fmt_time(p.solo.first.median),
            fmt_time(p.batched.first.median),
            f"{p.latency:.2f}x",
            f"{p.solo.load:.2f}",
        ]
        for i, p in enumerate(pairs)
    ]
    streams = pairs[0].batched.streams
    return "\n".join(
        [
            f"Back to back (the goals): one at a time, then {streams} streams, per round.",
            "",
            md_table(
                [
                    "round",
                    "one at a time tokens/s",
                    f"{streams} streams tokens/s",
                    "ratio",
                    "one at a time first field p50",
                    f"{streams} streams first field p50",
                    "ratio",
                    "load avg (1 min)",
                ],
                rows,
            ),
        ]
    )


def _goals(results: list[Level], pairs: list[Pair]) -> list[tuple[str, str, str]]:
    theirs = _find(results, "llama-server -np N", 8)
    ours = _find(results, "openbrace --parallel N", 8)
    if not pairs or pairs[0].batched.streams != 8:
        return []
    speed = statistics.median(p.speed for p in pairs)
    latency = statistics.median(p.latency for p in pairs)
    rounds = len(pairs)
    goals = [
        (
            "8 streams: aggregate tokens/s >= 2.5x one at a time",
            f"{speed:.2f}x, median of {rounds} back-to-back rounds "
            f"({', '.join(f'{p.speed:.2f}x' for p in pairs)})",
            "met" if speed >= 2.5 else "not met",
        ),
        (
            "8 streams: first-field median <= 2x one at a time",
            f"{latency:.2f}x, median of {rounds} rounds "
            f"({', '.join(f'{p.latency:.2f}x' for p in pairs)})",
            "met" if latency <= 2 else "not met",
        ),
    ]
    if theirs is not None and ours is not None:
        goals.append(
            (
                "8 streams: aggregate tokens/s ahead of llama-server -np 8 (grammar)",
                f"{ours.rate:.0f} vs {theirs.rate:.0f}",
                "met" if ours.rate > theirs.rate else "not met",
            )
        )
    return goals


def _plot(results: list[Level], out_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    solo = _find(results, "one at a time", 1)
    for config, style in (("openbrace --parallel N", "-o"), ("llama-server -np N", "--s")):
        rows = [r for r in results if r.config == config]
        xs = [r.streams for r in rows]
        left.plot(xs, [r.rate for r in rows], style, label=config)
        right.plot(xs, [r.first.median for r in rows], style, label=f"{config} p50")
        right.plot(
            xs, [r.first.quantile(0.95) for r in rows], style, alpha=0.4, label=f"{config} p95"
        )
    if solo is not None:
        left.axhline(solo.rate, color="gray", linestyle=":", label="one at a time")
        right.axhline(solo.first.median, color="gray", linestyle=":", label="one at a time p50")
    for ax, title, unit in (
        (left, "aggregate tokens/s", "tokens/s"),
        (right, "first field", "seconds"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "parallel.png", dpi=110)
    plt.close(fig)
    return "parallel.png"


if __name__ == "__main__":
    section = run(Path(__file__).resolve().parent)
    print(section.body)
