"""Shared measuring and reporting helpers for the benchmark suite.

Every benchmark times whole runs with `time.perf_counter`, repeats them, and reports
the median with the spread (min-max over runs, and p99 where the samples are
latencies). Nothing here pins CPUs, tweaks the garbage collector or warms caches in a
way a user would not. Before each timed run `fresh_heap()` collects the previous
run's garbage and freezes what survives (`gc.freeze()`), so the cyclic collector
does not rescan the benchmark process's own modules (matplotlib, langchain, openai
...) inside someone's timing: every peer runs under the same rule.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

__all__ = [
    "Budget",
    "OverBudget",
    "Section",
    "Stat",
    "TimedChunks",
    "fmt_rate",
    "fmt_time",
    "fresh_heap",
    "log",
    "loglog_slope",
    "machine_info",
    "md_table",
    "package_versions",
    "timed",
]

PACKAGES = (
    "openbrace",
    "ijson",
    "jiter",
    "openai",
    "instructor",
    "langchain-core",
    "partial-json-parser",
    "dottxt",
    "pydantic",
    "jsonpatch",
    "llama-cpp-python",
    "llguidance",
    "starlette",
    "uvicorn",
    "httpx",
    "matplotlib",
)


class OverBudget(Exception):
    """A run went past its time budget and was abandoned (reported as skipped)."""


@dataclass(frozen=True)
class Budget:
    """How long one configuration may take, in CPU seconds of this process.

    Attributes:
        single: seconds one run may take before larger sizes are skipped.
        abort: seconds after which a run in progress is abandoned.
        total: seconds all repeats of one configuration may take together.
        max_runs: most timed runs of one configuration (fewer when they are slow).
        warmup: do one untimed run first when runs are short.
    """

    single: float = 1.0
    abort: float = 2.0
    total: float = 3.5
    max_runs: int = 7
    warmup: bool = True

    def predict(self, last_seconds: float, last_size: int, size: int, slope: float | None) -> float:
        """Seconds one run at `size` would take, from the last measured size.

        Only used to decide whether to run (never reported). The slope measured so
        far is clamped to [1, 2]: every peer here is at least linear and at most
        quadratic (a re-parse of the whole buffer per chunk).
        """
        return last_seconds * (size / last_size) ** min(2.0, max(1.0, slope or 1.0))

    def runs_wanted(self, seconds: float) -> int:
        """How many timed runs a configuration whose run takes `seconds` gets."""
        return min(
            self.max_runs,
            7 if seconds < 0.02 else 5 if seconds < 0.1 else 3 if seconds < 0.5 else 2,
        )


@dataclass
class Stat:
    """Samples of one measured quantity (seconds unless said otherwise)."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def quantile(self, q: float) -> float:
        """The q-quantile (nearest rank), e.g. `quantile(0.99)` for p99."""
        ordered = sorted(self.samples)
        rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
        return ordered[rank]

    def spread(self, fmt: Callable[[float], str] | None = None) -> str:
        """`median (min-max, n=k)` in the given format."""
        fmt = fmt or fmt_time
        if len(self.samples) == 1:
            return f"{fmt(self.median)} (n=1)"
        return f"{fmt(self.median)} ({fmt(self.low)}-{fmt(self.high)}, n={len(self.samples)})"


@dataclass
class Section:
    """One part of RESULTS.md: a heading, markdown text and the plots it refers to."""

    title: str
    body: str
    plots: list[str] = field(default_factory=list)
    summary: list[tuple[str, str, str]] = field(default_factory=list)  # goal, figure, verdict


class TimedChunks:
    """Iterate over `chunks`, remembering when the tail started and enforcing a budget.

    The tail is the last `tail` chunks: the per-chunk cost there shows whether a
    consumer's cost grows with how much of the document it has already seen. Every
    256 chunks the time spent is checked against `abort` seconds; past it,
    `OverBudget` is raised from inside the consumer's loop. Both read `clock`, the
    CPU time of this process by default, so a busy machine does not skip a peer.
    """

    def __init__(
        self,
        chunks: Sequence[Any],
        *,
        tail: int,
        abort: float | None,
        clock: Callable[[], float] = time.process_time,
    ):
        self.chunks = chunks
        self.clock = clock
        self.tail_index = max(0, len(chunks) - tail)
        self.tail_count = len(chunks) - self.tail_index
        self.abort = abort
        self.start = 0.0
        self.tail_start = 0.0

    def __iter__(self) -> Iterator[Any]:
        chunks, tail_index, abort = self.chunks, self.tail_index, self.abort
        clock = self.clock
        self.start = start = clock()
        for index, chunk in enumerate(chunks):
            if index == tail_index:
                self.tail_start = clock()
            if abort is not None and not index & 255 and clock() - start > abort:
                raise OverBudget
            yield chunk


def log(message: str) -> None:
    """Progress on stderr (the suite takes minutes)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def fresh_heap() -> None:
    """Collect the previous run's garbage and freeze the survivors (see the module doc)."""
    gc.collect()
    gc.freeze()


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of `fn` takes, after `fresh_heap()`."""
    fresh_heap()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def loglog_slope(xs: Iterable[float], ys: Iterable[float]) -> float | None:
    """Least-squares slope of log(y) against log(x); None with fewer than 2 points.

    A slope of 1 means cost proportional to size, 2 means quadratic.
    """
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(points) < 2:
        return None
    mx = statistics.fmean(p[0] for p in points)
    my = statistics.fmean(p[1] for p in points)
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else None


def fmt_time(seconds: float) -> str:
    """A duration with a unit that keeps 3 significant digits: `12.3 µs`, `1.50 s`."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if abs(seconds) >= scale or unit == "ns":
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{seconds} s"  # pragma: no cover


def fmt_rate(per_second: float, unit: str = "/s") -> str:
    """A rate with k/M prefixes: `12.3 k/s`."""
    for prefix, scale in (("M", 1e6), ("k", 1e3), ("", 1.0)):
        if per_second >= scale or not prefix:
            return f"{per_second / scale:.3g} {prefix}{unit}".replace("  ", " ")
    return f"{per_second}{unit}"  # pragma: no cover


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of `names` ("not installed" for missing ones)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_info() -> dict[str, str]:
    """CPU model, core count, memory, OS and Python of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = int(f.readline().split()[1])
            memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average at start (1, 5, 15 min)": load,
    }
