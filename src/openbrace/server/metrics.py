"""Server metrics, rendered in the Prometheus text exposition format (version 0.0.4).

Hand-rolled on purpose: a handful of counters, two gauges and one histogram do not
justify a dependency and a process-global registry (each app gets its own
`Metrics`, so several servers in one process, as in tests, never mix numbers).
Every update is O(1) and happens on the event loop thread, so no locking is needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Mapping

__all__ = ["CONTENT_TYPE", "Histogram", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds from request arrival to the first op: tens of ms on a warm engine,
# seconds on a cold or queued one.
_TTFO_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """A cumulative Prometheus histogram over fixed upper bounds."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str) -> list[str]:
        """The `_bucket`, `_sum` and `_count` sample lines."""
        lines, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{name}_bucket{{le="{le}"}} {running}')
        lines += [f"{name}_sum {self.sum:.6f}", f"{name}_count {self.count}"]
        return lines


class Metrics:
    """What `/metrics` reports. The server updates the fields directly.

    Attributes:
        requests: answered HTTP requests by `(route, status)`.
        errors: failures by `(stage, type)`: stage `before` (an error status) or
            `stream` (an in-band error record), type the OpenAI/SPEC error type.
        ops_sent: patch ops handed to clients.
        streams_in_flight: generations running now (any `stream` mode).
        time_to_first_op: seconds from request arrival to the first op.
    """

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self.ops_sent = 0
        self.streams_in_flight = 0
        self.time_to_first_op = Histogram(_TTFO_BUCKETS)

    def render(self, gauges: Mapping[str, tuple[str, Callable[[], float]]] | None = None) -> str:
        """The whole exposition text; `gauges` adds `name: (help, read)` gauges."""
        out: list[str] = []

        def family(name: str, kind: str, help: str, samples: list[str]) -> None:
            out.extend([f"# HELP {name} {help}", f"# TYPE {name} {kind}", *samples])

        family(
            "openbrace_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
            [
                f'openbrace_requests_total{{route="{_label(route)}",status="{status}"}} {n}'
                for (route, status), n in sorted(self.requests.items())
            ],
        )
        family(
            "openbrace_errors_total",
            "counter",
            "Failures by stage (before: an error status; stream: an in-band error record)"
            " and type.",
            [
                f'openbrace_errors_total{{stage="{stage}",type="{_label(type)}"}} {n}'
                for (stage, type), n in sorted(self.errors.items())
            ],
        )
        family(
            "openbrace_ops_sent_total",
            "counter",
            "Patch ops sent to clients.",
            [f"openbrace_ops_sent_total {self.ops_sent}"],
        )
        family(
            "openbrace_streams_in_flight",
            "gauge",
            "Generations running now.",
            [f"openbrace_streams_in_flight {self.streams_in_flight}"],
        )
        for name, (help, read) in (gauges or {}).items():
            family(name, "gauge", help, [f"{name} {read():g}"])
        family(
            "openbrace_time_to_first_op_seconds",
            "histogram",
            "Seconds from request arrival to the first patch op sent.",
            self.time_to_first_op.render("openbrace_time_to_first_op_seconds"),
        )
        return "\n".join(out) + "\n"


def _label(value: str) -> str:
    """A label value as the exposition format wants it: `\\`, `"` and newlines escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
