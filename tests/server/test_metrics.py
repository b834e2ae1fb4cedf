"""`/metrics`: the Prometheus series the server keeps, one registry per app."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from openbrace.server.metrics import Metrics
from tests.server.scripted import body, post


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, as the exposition format writes them."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


@pytest.mark.anyio
async def test_metrics(client: httpx.AsyncClient) -> None:
    await post(client, body())
    await post(client, body("midfail"))
    await post(client, body(model="nope"))
    response = await client.get("/metrics")
    text = response.text
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(text)
    assert found['openbrace_requests_total{route="/v1/chat/completions",status="200"}'] >= 2
    assert found['openbrace_requests_total{route="/v1/chat/completions",status="404"}'] >= 1
    assert found['openbrace_errors_total{stage="stream",type="upstream_error"}'] >= 1
    assert found["openbrace_ops_sent_total"] >= 6
    assert found["openbrace_time_to_first_op_seconds_count"] >= 2
    assert found["openbrace_streams_in_flight"] == 0
    assert "# TYPE openbrace_time_to_first_op_seconds histogram" in text


@pytest.mark.anyio
async def test_metrics_parse_and_name_the_slots(app: Starlette, client: httpx.AsyncClient) -> None:
    await client.get("/nowhere")
    text = (await client.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["openbrace_slots_total"].samples[0].value == app.state.config.max_concurrent
    assert families["openbrace_queue_waiting"].samples[0].value == 0
    assert families["openbrace_slots_busy"].samples[0].value == 0
    routes = {s.labels["route"] for s in families["openbrace_requests"].samples}
    assert "other" in routes, "an unknown path is counted under one label"
    assert (await client.get("/healthz")).json()["streams_in_flight"] == 0


def test_each_metrics_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.ops_sent.inc(3)
    assert (one.sample("openbrace_ops_sent_total"), two.sample("openbrace_ops_sent_total")) == (
        3,
        0,
    )


def test_other_parts_add_series() -> None:
    """Counters, gauges (set or read at scrape) and histograms join the app's registry."""
    metrics = Metrics()
    served = metrics.counter("openbrace_resumes", "Resumes served.")
    held = metrics.gauge("openbrace_streams_held", "Streams kept.", ("store",))
    sizes = [4, 2]
    metrics.gauge("openbrace_batch_size", "Sequences in the batch.", read=lambda: sizes[-1])
    waits = metrics.histogram("openbrace_batch_wait_seconds", "Batch waits.", (0.1, 1.0))
    served.inc()
    held.labels("memory").set(5)
    waits.observe(0.5)
    assert metrics.sample("openbrace_resumes_total") == 1
    assert metrics.sample("openbrace_streams_held", store="memory") == 5
    assert metrics.sample("openbrace_batch_size") == 2
    assert metrics.sample("openbrace_batch_wait_seconds_bucket", le="1.0") == 1
    text = metrics.render().decode()
    assert "openbrace_resumes_total 1.0" in text and "openbrace_batch_size 2.0" in text
    with pytest.raises(ValueError, match="Duplicated"):
        metrics.counter("openbrace_resumes", "twice")
