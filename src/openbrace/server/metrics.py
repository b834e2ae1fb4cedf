"""Server metrics on `prometheus_client`, one `CollectorRegistry` per app.

A registry of its own per app (never the process-global one) keeps several
servers in one process, as in tests or an embedding app, from mixing numbers.
Every update happens on the event loop thread.

Other parts of the server add their own series through `counter`, `gauge` and
`histogram`, which register on this app's registry:

```python
from openbrace.server.metrics import Metrics

metrics = Metrics()
held = metrics.gauge("openbrace_streams_held", "Resumable streams kept in the store.")
held.inc()
busy = metrics.gauge("openbrace_busy", "Sequences decoding now.", read=lambda: 3)
assert metrics.sample("openbrace_streams_held") == 1 and metrics.sample("openbrace_busy") == 3
assert b"openbrace_streams_held 1.0" in metrics.render()
```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the text format `render` writes

# Seconds from request arrival to the first op: tens of ms on a warm engine,
# seconds on a cold or queued one.
_TTFO_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """What `/metrics` reports, in `registry`.

    Attributes:
        requests: answered HTTP requests, labels `route`, `status`.
        errors: failures, labels `stage` (`before`: an error status; `stream`: an
            in-band error record) and `type` (the OpenAI/SPEC error type).
        ops_sent: patch ops handed to clients.
        streams_in_flight: generations running now (any `stream` mode).
        time_to_first_op: seconds from request arrival to the first op.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = self.counter(
            "openbrace_requests",
            "HTTP requests answered, by route and status.",
            ("route", "status"),
        )
        self.errors = self.counter(
            "openbrace_errors",
            "Failures by stage (before: an error status; stream: an in-band error record)"
            " and type.",
            ("stage", "type"),
        )
        self.ops_sent = self.counter("openbrace_ops_sent", "Patch ops sent to clients.")
        self.streams_in_flight = self.gauge(
            "openbrace_streams_in_flight", "Generations running now."
        )
        self.time_to_first_op = self.histogram(
            "openbrace_time_to_first_op_seconds",
            "Seconds from request arrival to the first patch op sent.",
            _TTFO_BUCKETS,
        )

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        """A counter on this registry; `name` without `_total` (it is exposed with it)."""
        return Counter(name, help, labels, registry=self.registry)

    def gauge(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        read: Callable[[], float] | None = None,
    ) -> Gauge:
        """A gauge on this registry; with `read`, its value is `read()` at each scrape."""
        gauge = Gauge(name, help, labels, registry=self.registry)
        if read is not None:
            gauge.set_function(read)
        return gauge

    def histogram(
        self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        """A histogram on this registry over `buckets` (upper bounds, +Inf added)."""
        return Histogram(name, help, labels, registry=self.registry, buckets=buckets)

    def sample(self, name: str, **labels: str) -> float:
        """The current value of one series (0 if it has no sample yet): for health and tests."""
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def render(self) -> bytes:
        """The whole exposition text (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
