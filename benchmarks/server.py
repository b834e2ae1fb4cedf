"""Benchmark 4: what one stream can carry, and the latency the server adds per op.

`openbrace.server.app.create_app` serves a scripted `MockEngine` under a real
uvicorn on 127.0.0.1 (port chosen by the OS) in a child process, the way it runs
in production: its own process and event loop. httpx clients in this process POST
`stream: "patch"` requests over loopback and split the NDJSON body on `b"\\n"`
themselves. Both ends stamp with `time.perf_counter`, which on Linux is
`CLOCK_MONOTONIC`, one clock for every process of the machine:

- the scripted engine stamps each text delta just before yielding it;
- the client stamps each op line the moment its bytes arrive.

The delta that *completes* an op is found beforehand by feeding the same deltas to a
`PatchEmitter` (for a number that is the delta after its last digit, since only
then is it complete). Added latency = arrival of the op - yield of that delta:
emitter, schema-free pipeline, framing, Starlette, uvicorn, the loopback socket and
httpx. Server and clients share the machine's 2 cores.

Scripted rates: the latency runs yield one 4-character delta every 10 ms per
stream (100 tokens/s, a typical hosted-model rate); the throughput run yields
deltas as fast as the pipeline takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import Section, Stat, fmt_rate, fmt_time, md_table

__all__ = ["SCRIPT_DOC", "completing_tokens", "run"]

RATE = 100.0  # tokens per second per stream, latency runs
TOKEN_CHARS = 4

SCRIPT_DOC: dict[str, Any] = {
    "intent": "billing",
    "urgency": "high",
    "customer": {"name": "Jane Doe", "id": 48213, "plan": "pro", "verified": True},
    "steps": [
        "verify the duplicate charge on the March invoice",
        "refund the second charge to the original card",
        "add a note to the account",
        "confirm by email",
        "close the ticket",
    ],
    "amounts": [19.99, 19.99, -19.99],
    "tags": ["refund", "duplicate", "card", "priority"],
    "escalate": False,
    "reply": "Hi Jane, thanks for flagging this. You were charged twice for March; "
    "the duplicate is refunded and will reach your card in 3-5 business days.",
    "confidence": 0.93,
}


SMOKE_DOC = {"intent": "billing", "steps": ["verify", "refund"], "n": 2}


def _tokens(doc: Any) -> list[str]:
    text = json.dumps(doc, ensure_ascii=False)
    return [text[i : i + TOKEN_CHARS] for i in range(0, len(text), TOKEN_CHARS)]


def completing_tokens(tokens: Sequence[str]) -> list[int]:
    """For each op of the stream, the index of the delta whose arrival completed it."""
    from openbrace.emitter import PatchEmitter

    emitter = PatchEmitter()
    out = []
    for index, token in enumerate(tokens):
        out += [index] * len(emitter.feed(token))
    out += [len(tokens) - 1] * len(emitter.close())
    return out


def _phase(key: str) -> float:
    """The pacing offset of a stream, in seconds: keys are `script:id:phase`."""
    parts = key.split(":")
    return float(parts[2]) if len(parts) > 2 else 0.0


def _lines_by_delta(tokens: Sequence[str]) -> dict[int, bytes]:
    """The NDJSON lines of the ops each delta completes, by delta index."""
    from openbrace.wire import encode_ndjson

    ops = _ops(tokens)
    out: dict[int, bytes] = {}
    for index, op in zip(completing_tokens(tokens), ops, strict=True):
        out[index] = out.get(index, b"") + encode_ndjson(op)
    return out


def _ops(tokens: Sequence[str]) -> list[dict[str, Any]]:
    from openbrace.emitter import PatchEmitter

    emitter = PatchEmitter()
    ops = [op for token in tokens for op in emitter.feed(token)]
    return ops + emitter.close()


@dataclass(frozen=True)
class Script:
    """What the scripted engine yields for one kind of stream."""

    tokens: list[str]
    interval: float  # seconds between deltas; 0 = as fast as the pipeline pulls


def _serve(scripts: dict[str, Script], max_streams: int, port_queue: Any) -> None:
    """Child-process entry: the app under uvicorn on 127.0.0.1, port sent to the parent.

    The request's last message names its script and stream id (`"latency:17"`). The
    engine stamps every delta; `GET /bench/stamps` hands the stamps over (and forgets
    them), everything else is the openbrace app.
    """
    import uvicorn

    from openbrace.engines.base import Finish, MockEngine, Usage
    from openbrace.server.app import ServerConfig, create_app

    stamps: dict[str, list[float]] = {}
    raw_lines = {name: _lines_by_delta(script.tokens) for name, script in scripts.items()}

    async def handler(request: Any) -> AsyncIterator[Any]:
        key = request.messages[-1]["content"]
        script = scripts[key.split(":")[0]]
        sent = stamps[key] = []
        start = time.perf_counter() + _phase(key)
        for index, token in enumerate(script.tokens):
            if script.interval:
                # Deadline-based pacing: a late tick does not delay every later one.
                await asyncio.sleep(max(0.0, start + index * script.interval - time.perf_counter()))
            sent.append(time.perf_counter())
            yield token
        yield Finish("stop", Usage(1, len(script.tokens)))

    config = ServerConfig(max_concurrent=max_streams, max_queue=max_streams)
    app = create_app(MockEngine(handler), config)

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/stamps":
            body = json.dumps(stamps).encode()
            stamps.clear()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http" and scope["path"].startswith("/bench/raw/"):
            await raw(scope["path"].rsplit("/", 1)[1], send)
            return
        await app(scope, receive, send)

    async def raw(key: str, send: Any) -> None:
        """The floor: the same paced deltas, precomputed op lines, bare ASGI."""
        name = key.split(":")[0]
        script, lines = scripts[name], raw_lines[name]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-ndjson")],
            }
        )
        sent = stamps[key] = []
        start = time.perf_counter() + _phase(key)
        for index in range(len(script.tokens)):
            if script.interval:
                await asyncio.sleep(max(0.0, start + index * script.interval - time.perf_counter()))
            sent.append(time.perf_counter())
            if index in lines:
                await send({"type": "http.response.body", "body": lines[index], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    server = uvicorn.Server(
        uvicorn.Config(
            outer, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
        )
    )

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        port_queue.put(server.servers[0].sockets[0].getsockname()[1] if server.started else None)
        await serving

    asyncio.run(main())


class ServerProcess:
    """The benchmark server in a child process (spawned, so nothing is inherited)."""

    def __init__(self, scripts: dict[str, Script], max_streams: int):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._queue = context.Queue()
        self._process = context.Process(
            target=_serve, args=(scripts, max_streams, self._queue), daemon=True
        )
        self.url = ""

    def __enter__(self) -> ServerProcess:
        import queue

        self._process.start()
        port = None
        deadline = time.monotonic() + 60
        while port is None and self._process.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                port = self._queue.get(timeout=0.2)
        if port is None:
            self.__exit__()
            raise RuntimeError("the benchmark server did not start")
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.join(10)


async def _client_stream(client: Any, url: str, key: str, raw: bool = False) -> list[float]:
    """POST one patch request (or GET the raw floor); the arrival time of each op line."""
    body = {
        "model": "mock",
        "messages": [{"role": "user", "content": key}],
        "stream": "patch",
        "response_format": {"type": "json_object"},
    }
    arrivals: list[float] = []
    tail = b""
    request = (
        client.build_request("GET", f"{url}/bench/raw/{key}")
        if raw
        else client.build_request("POST", url + "/v1/chat/completions", json=body)
    )
    response = await client.send(request, stream=True)
    try:
        if response.status_code != 200:
            raise RuntimeError(
                f"server answered {response.status_code}: {await response.aread()!r}"
            )
        async for chunk in response.aiter_raw():
            now = time.perf_counter()
            *lines, tail = (tail + chunk).split(b"\n")
            arrivals += [now for line in lines if line.startswith(b'{"op"')]
    finally:
        await response.aclose()
    return arrivals


async def _rounds(
    url: str, name: str, script: Script, streams: int, rounds: int, raw: bool = False
) -> list[list[float]]:
    """`rounds` rounds of `streams` parallel streams; each op's added latency per round.

    Stream i of a round starts its pacing i/streams of a delta interval late, so the
    streams tick at spread-out moments as independent users' streams do, not in
    lockstep. An unmeasured first round opens the connections.
    """
    import httpx

    completes = completing_tokens(script.tokens)
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    per_round: list[list[float]] = []
    async with httpx.AsyncClient(limits=limits, timeout=120.0) as client:
        for round_no in range(-1, rounds):
            keys = [
                f"{name}:{(round_no + 1) * streams + i}:{i / streams * script.interval:.6f}"
                for i in range(streams)
            ]
            arrivals = await asyncio.gather(
                *(_client_stream(client, url, key, raw) for key in keys)
            )
            stamps = (await client.get(url + "/bench/stamps")).json()
            latencies = []
            for key, arrived in zip(keys, arrivals, strict=True):
                if len(arrived) != len(completes):
                    raise RuntimeError(f"expected {len(completes)} ops, got {len(arrived)}")
                latencies += [t - stamps[key][k] for t, k in zip(arrived, completes, strict=True)]
            if round_no >= 0:
                per_round.append(latencies)
    return per_round


@dataclass
class Latency:
    path: str  # "openbrace" or "floor"
    streams: int
    rounds: int
    samples: Stat
    round_medians: Stat


def measure(
    levels: Sequence[tuple[int, int]], tokens: list[str], throughput_ops: int, repeats: int
) -> tuple[list[Latency], Stat, int]:
    """Added op latency per (streams, rounds) level, and one stream's ops per second."""
    doc = {"items": [f"v{i:05d}" for i in range(throughput_ops)]}
    text = json.dumps(doc)
    head = text.index("[") + 1
    # One delta per array item (`"v00001", `): each delta completes one op.
    burst = [text[:head]] + [json.dumps(item) + ", " for item in doc["items"][:-1]]
    burst += [json.dumps(doc["items"][-1]) + "]}"]
    scripts = {"latency": Script(tokens, 1.0 / RATE), "burst": Script(burst, 0.0)}
    latencies = []
    rates = Stat()
    with ServerProcess(scripts, max(16, *(n for n, _ in levels))) as server:
        asyncio.run(_rounds(server.url, "latency", scripts["latency"], 1, 1))  # warm-up
        for streams, rounds in levels:
            for path, raw, count in (
                ("openbrace", False, rounds),
                ("floor", True, rounds),
            ):
                per_round = asyncio.run(
                    _rounds(server.url, "latency", scripts["latency"], streams, count, raw)
                )
                latencies.append(
                    Latency(
                        path,
                        streams,
                        count,
                        Stat([x for r in per_round for x in r]),
                        Stat([statistics.median(r) for r in per_round]),
                    )
                )
        for _ in range(repeats):
            rates.samples.append(asyncio.run(_burst(server.url, scripts["burst"])))
    return latencies, rates, len(completing_tokens(burst))


async def _burst(url: str, script: Script) -> float:
    import httpx

    async with httpx.AsyncClient(timeout=120.0) as client:
        arrivals = await _client_stream(client, url, "burst:0")
        stamps = (await client.get(url + "/bench/stamps")).json()["burst:0"]
    return len(arrivals) / (arrivals[-1] - stamps[0])


def run(out_dir: Any, *, smoke: bool = False) -> Section:
    """Run benchmark 4 and return its RESULTS.md section."""
    tokens = _tokens(SMOKE_DOC if smoke else SCRIPT_DOC)
    levels = [(1, 1), (3, 1)] if smoke else [(1, 8), (10, 4), (100, 2)]
    latencies, rates, ops = measure(levels, tokens, 200 if smoke else 20_000, 1 if smoke else 3)
    return Section(
        "4. Server: ops per stream and added latency",
        _report(latencies, rates, ops, tokens),
        [] if smoke else [_plot(latencies, Path(out_dir))],
        _goals(latencies),
    )


def _plot(latencies: list[Latency], out_dir: Path) -> str:
    """Latency distributions (CDF, log x) per path and concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for lat in latencies:
        xs = sorted(x * 1e3 for x in lat.samples.samples)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        style = "-" if lat.path == "openbrace" else ":"
        ax.plot(xs, ys, style, label=f"{lat.path}, {lat.streams} stream(s)")
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("added latency per op (ms, log)")
    ax.set_ylabel("share of ops")
    ax.set_title("Engine's last token of a value -> op at the client (loopback)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    name = "server_latency.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def _report(latencies: list[Latency], rates: Stat, ops: int, tokens: list[str]) -> str:
    n_ops = len(completing_tokens(tokens))
    rows = [
        [
            f"`{lat.path}`",
            lat.streams,
            lat.rounds,
            len(lat.samples.samples),
            fmt_time(lat.samples.median),
            fmt_time(lat.samples.quantile(0.99)),
            fmt_time(lat.samples.high),
            f"{fmt_time(lat.round_medians.low)}-{fmt_time(lat.round_medians.high)}",
        ]
        for lat in latencies
    ]
    return "\n".join(
        [
            f"The scripted engine streams a {len(''.join(tokens))}-character support-ticket "
            f"answer as {len(tokens)} deltas of {TOKEN_CHARS} characters ({n_ops} ops) at "
            f"{RATE:g} deltas/s per stream. Latency = the op line's arrival at the client minus "
            "the moment the engine yielded the delta that completed the op (server in a child "
            "process, client here, one system-wide monotonic clock). Each level runs `rounds` "
            "times after one unmeasured round that opens the connections; every op of every "
            "stream is one sample. The streams of a level tick out of phase (stream i starts "
            "i/n of a 10 ms interval late), as independent users' streams would. "
            "`openbrace` is the full path "
            '(`POST /v1/chat/completions` with `stream: "patch"`: body parsing, limits, '
            "`patch_records`, the emitter, NDJSON framing, Starlette's streaming response). "
            "`floor` is the same paced deltas and the same op lines sent by a bare ASGI "
            "function on the same uvicorn, no openbrace code: what uvicorn, loopback TCP and "
            "httpx cost on their own on this machine.",
            "",
            md_table(
                [
                    "path",
                    "concurrent streams",
                    "rounds",
                    "samples",
                    "median",
                    "p99",
                    "max",
                    "median per round (min-max)",
                ],
                rows,
            ),
            "",
            f"**Ops per second one stream carries** (the engine yields one complete array item "
            f"per delta and never waits; {ops} ops per run; ops received / time from the first "
            f"delta to the last op's arrival): {rates.spread(lambda r: fmt_rate(r, ' ops/s'))}.",
        ]
    )


def _goals(latencies: list[Latency]) -> list[tuple[str, str, str]]:
    ours = [lat for lat in latencies if lat.path == "openbrace"]
    if not ours:
        return []
    figures = ", ".join(f"{lat.streams} streams: {fmt_time(lat.samples.median)}" for lat in ours)
    met = [lat.streams for lat in ours if lat.samples.median < 1e-3]
    if len(met) == len(ours):
        verdict = "met"
    elif met:
        verdict = "met at " + ", ".join(map(str, met)) + " streams only"
    else:
        verdict = "not met"
    return [("added op latency < 1 ms median on loopback", f"median: {figures}", verdict)]
